# Signed records: one deterministic-CBOR map with a "sig" field, signed over a domain string and
# the CBOR of the map without "sig". Every record type (application, approval, member list,
# transfer, income, reward, credit grant, epoch root) has its own domain, so no signature is
# valid as another kind of record.
"""Sign and open signed CBOR records; keys on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leither import cbor, crypto, ids
from leither.errors import AuthError, DecodeError
from leither_host.paths import write_private

MAX_RECORD = 1 << 20  # bytes: the biggest record is a member list (~100 B a member)


def sign_record(seed: bytes, domain: bytes, body: dict[str, Any], field: str = "sig") -> bytes:
    """body + {field: signature}, encoded. Other signature fields present are not signed."""
    unsigned = {k: v for k, v in body.items() if not k.startswith("sig")}
    signed = dict(body)
    signed[field] = crypto.sign(seed, domain + cbor.dumps(unsigned))
    return bytes(cbor.dumps(signed))


def add_signature(seed: bytes, domain: bytes, data: bytes, field: str) -> bytes:
    """A second party signs an encoded record (e.g. the receiver of a transfer)."""
    return sign_record(seed, domain, decode_record(data), field)


def decode_record(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_RECORD:
        raise DecodeError(f"record of {len(data)} bytes is over the {MAX_RECORD} limit")
    body = cbor.loads(data, canonical=True, max_items=1 << 16, max_total=1 << 24)
    if type(body) is not dict:
        raise DecodeError("a signed record must be a CBOR map")
    return body


def check_signature(body: dict[str, Any], domain: bytes, key: bytes, field: str = "sig") -> None:
    """AuthError unless body[field] is key's signature over the unsigned part of body."""
    sig = body.get(field)
    unsigned = {k: v for k, v in body.items() if not k.startswith("sig")}
    if type(sig) is not bytes or not crypto.verify(key, domain + cbor.dumps(unsigned), sig):
        raise AuthError(f"bad {field} on {body.get('type', 'record')}")


def key_id(key: bytes) -> str:
    """The text ID of a public key."""
    return str(ids.make_id(key))


def require(body: dict[str, Any], fields: dict[str, type]) -> None:
    """DecodeError naming the first field that is missing or of the wrong type."""
    for name, kind in fields.items():
        value = body.get(name)
        if type(value) is not kind or (isinstance(value, int) and value < 0):
            raise DecodeError(f"{body.get('type', 'record')}: field {name!r} must be "
                              f"{'a non-negative ' if kind is int else 'a '}{kind.__name__}")


# -- key files ------------------------------------------------------------------------------------

def load_or_make_key(path: Path, create: bool = True) -> tuple[bytes, bytes]:
    """(seed, public) of the Ed25519 key stored at path, made there if missing and create."""
    if path.exists():
        seed = path.read_bytes()
        if len(seed) != 32:
            raise DecodeError(f"{path}: not a 32-byte key seed")
        return seed, crypto.sign_public(seed)
    if not create:
        raise FileNotFoundError(f"no key at {path}")
    seed, public = crypto.sign_keypair()
    write_private(path, seed)
    return seed, public
