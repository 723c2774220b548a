# Receipts: the proof of performance a node signs for its partner ("you stored my backups for
# this many byte-hours and served this many bytes; these audits passed") — what settlement pays
# for (DESIGN §5, §7). Made and checked on the board (pairing/backup) and on the host (settle).
#
# A receipt is one deterministic-CBOR map with text keys:
#   "v"        1, the format version
#   "issuer"   node ID (text) of the node that received the service and signs
#   "key"      the issuer's Ed25519 public key (32 bytes); "issuer" must be its ID
#   "partner"  node ID of the node that gave the service (the one credited)
#   "start", "end"  the period covered, integer ms since the Unix epoch, start < end
#   "stored"   byte-hours the partner held the issuer's data in the period
#   "served"   bytes the partner served to the issuer in the period
#   "audits_ok", "audits_failed"   storage audits (challenge/response on held blocks)
#   "sig"      Ed25519 signature over b"leither-receipt/1" + CBOR(the map without "sig")
# The domain prefix keeps a receipt signature from being valid as any other signed record.
# A receipt's identity is SHA-256 of its encoded bytes; decoding is canonical, so one receipt
# has exactly one encoding.
"""Signed proof-of-performance receipts: make(), verify(), receipt_id(), check_credit()."""

from . import cbor, crypto, ids
from .errors import AuthError, DecodeError, QuotaError

VERSION = 1
DOMAIN = b"leither-receipt/1"
MAX_RECEIPT = 512  # bytes: a receipt encodes to ~220; bounds hostile input before decoding
_COUNTERS = ("stored", "served", "audits_ok", "audits_failed")
_FIELDS = ("v", "issuer", "key", "partner", "start", "end") + _COUNTERS + ("sig",)
_MAX_COUNT = 1 << 63  # counters and times are unsigned 63-bit: they fit every store we use


def _body(issuer, key, partner, start_ms, end_ms, stored, served, audits_ok, audits_failed):
    return {"v": VERSION, "issuer": issuer, "key": key, "partner": partner, "start": start_ms,
            "end": end_ms, "stored": stored, "served": served, "audits_ok": audits_ok,
            "audits_failed": audits_failed}


def make(seed, partner, start_ms, end_ms, stored=0, served=0, audits_ok=0, audits_failed=0):
    """The encoded receipt (bytes) the holder of Ed25519 seed signs for partner (a node ID)."""
    key = crypto.sign_public(seed)
    body = _body(ids.make_id(key), key, partner, start_ms, end_ms, stored, served, audits_ok,
                 audits_failed)
    _check_fields(body)
    body["sig"] = crypto.sign(seed, DOMAIN + cbor.dumps(body))
    return cbor.dumps(body)


def _check_fields(r):
    for name in ("start", "end") + _COUNTERS:
        value = r[name]
        if type(value) is not int or value < 0 or value >= _MAX_COUNT:
            raise DecodeError(f"receipt: {name} must be an unsigned integer")
    if r["start"] >= r["end"]:
        raise DecodeError("receipt: period must have start < end")
    if r["issuer"] == r["partner"]:
        raise DecodeError("receipt: a node cannot sign a receipt for itself")
    ids.id_raw(r["partner"])  # DecodeError unless a 20-byte base58 ID


def decode(data):
    """The fields of an encoded receipt, checked for shape only (not the signature)."""
    if len(data) > MAX_RECEIPT:
        raise DecodeError(f"receipt: {len(data)} bytes, limit {MAX_RECEIPT}")
    r = cbor.loads(data, canonical=True, max_depth=2, max_len=128, max_items=16)
    if type(r) is not dict or len(r) != len(_FIELDS):
        raise DecodeError(f"receipt: not a map of {len(_FIELDS)} fields")
    for name in _FIELDS:
        if name not in r:
            raise DecodeError("receipt: missing field " + name)
    if r["v"] != VERSION:
        raise DecodeError(f"receipt: unknown version {r['v']!r}")
    if type(r["issuer"]) is not str or type(r["partner"]) is not str:
        raise DecodeError("receipt: issuer and partner must be node IDs")
    if type(r["key"]) is not bytes or len(r["key"]) != 32:
        raise DecodeError("receipt: key must be 32 bytes")
    if type(r["sig"]) is not bytes or len(r["sig"]) != 64:
        raise DecodeError("receipt: sig must be 64 bytes")
    _check_fields(r)
    return r


def verify(data):
    """The fields of a receipt whose signature and issuer ID check out.

    DecodeError if it is malformed, AuthError if the issuer ID is not its key's or the
    signature is not the issuer's.
    """
    r = decode(data)
    if ids.make_id(r["key"]) != r["issuer"]:
        raise AuthError(f"receipt: issuer {r['issuer']} is not the ID of its key")
    sig = r.pop("sig")
    if not crypto.verify(r["key"], DOMAIN + cbor.dumps(r), sig):
        raise AuthError(f"receipt: bad signature by {r['issuer']}")
    r["sig"] = sig
    return r


def receipt_id(data):
    """32-byte identity of an encoded receipt (its SHA-256)."""
    return crypto.sha256(data)


def check_credit(limit, used, requested, partner=""):
    """Refuse service past a credit line: QuotaError unless used + requested <= limit.

    limit is what this node granted partner, used is partner's outstanding (unsettled) use
    and requested what the next request would add, all in the same unit (token micro-units
    or byte-hours, as the line was granted).
    """
    if used + requested > limit:
        who = partner or "partner"
        raise QuotaError(f"credit line exhausted: {who} has used {used} of {limit}, "
                         f"asks {requested} more")
    return limit - used - requested
