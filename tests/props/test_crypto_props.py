# The pure-Python primitives the boards run (leither.ed25519, leither.x25519, leither.sha512,
# crypto.CTRFromECB) agree with pycryptodome and hashlib on random inputs, edge cases included.
from __future__ import annotations

import hashlib

from Crypto.Cipher import AES
from Crypto.Protocol import DH
from Crypto.Signature import eddsa
from hypothesis import given, settings
from hypothesis import strategies as st

from leither import crypto, ed25519, ids, x25519
from leither.sha512 import sha512

key32 = st.binary(min_size=32, max_size=32)
messages = st.binary(max_size=300)
FAST = settings(max_examples=60, deadline=None)


def ref_sign(seed: bytes, msg: bytes) -> bytes:
    return eddsa.new(eddsa.import_private_key(seed), "rfc8032").sign(msg)


def ref_verify(public: bytes, msg: bytes, sig: bytes) -> bool:
    try:
        eddsa.new(eddsa.import_public_key(public), "rfc8032").verify(msg, sig)
        return True
    except ValueError:
        return False


def ref_x25519(scalar: bytes, u: bytes) -> bytes:
    ours = DH.import_x25519_private_key(scalar)
    try:
        theirs = DH.import_x25519_public_key(u)
        return bytes(DH.key_agreement(static_priv=ours, static_pub=theirs, kdf=lambda z: z))
    except ValueError:  # pycryptodome refuses small-order points: zero in RFC 7748 terms
        return bytes(32)


@FAST
@given(key32, messages)
def test_ed25519_matches_pycryptodome(seed: bytes, msg: bytes) -> None:
    public = eddsa.import_private_key(seed).public_key().export_key(format="raw")
    assert ed25519.public_key(seed) == public
    sig = ed25519.sign(seed, msg)
    assert sig == ref_sign(seed, msg)
    assert ed25519.verify(public, msg, sig)
    assert crypto.verify(public, msg, sig)


@FAST
@given(key32, messages, st.integers(0, 63), st.integers(1, 255))
def test_ed25519_verify_agrees_on_tampered(seed: bytes, msg: bytes, at: int, flip: int) -> None:
    public = ed25519.public_key(seed)
    bad = bytearray(ref_sign(seed, msg))
    bad[at] ^= flip
    assert ed25519.verify(public, msg, bytes(bad)) == ref_verify(public, msg, bytes(bad))


def torsion_points() -> list[tuple[int, int, int, int]]:
    """The 8 points of order dividing 8, found as L * Q for points Q of the curve."""
    found: dict[bytes, tuple[int, int, int, int]] = {}
    y = 2
    while len(found) < 8:
        q = ed25519.decode(y.to_bytes(32, "little"))
        y += 1
        if q is None:
            continue
        t = ed25519.mult(ed25519.L, q)
        found[ed25519.encode(t)] = t
    return list(found.values())


TORSION = torsion_points()


@settings(max_examples=40, deadline=None)
@given(key32, key32, messages, st.integers(0, 7), st.integers(0, 7))
def test_ed25519_small_order_components_agree(seed: bytes, nonce: bytes, msg: bytes,
                                              ta: int, tr: int) -> None:
    """Signatures whose key or R carry a small-order component: the cofactored check of both
    implementations accepts exactly the same ones (the board and the host must agree)."""
    h = hashlib.sha512(seed).digest()
    a = (int.from_bytes(h[:32], "little") & ((1 << 254) - 8)) | (1 << 254)
    r = int.from_bytes(hashlib.sha512(nonce).digest(), "little") % ed25519.L
    big_a = ed25519.add(ed25519.base_mult(a), ed25519._cached(TORSION[ta]))
    big_r = ed25519.add(ed25519.base_mult(r), ed25519._cached(TORSION[tr]))
    public = ed25519.encode(big_a)
    r_enc = ed25519.encode(big_r)
    k = int.from_bytes(hashlib.sha512(r_enc + public + msg).digest(), "little") % ed25519.L
    sig = r_enc + ((r + k * a) % ed25519.L).to_bytes(32, "little")
    assert ed25519.verify(public, msg, sig)  # valid under [8]-multiplied verification
    assert ed25519.verify(public, msg, sig) == ref_verify(public, msg, sig)
    assert crypto.verify(public, msg, sig) == ref_verify(public, msg, sig)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 7), st.integers(0, 7), st.binary(min_size=32, max_size=32), messages)
def test_ed25519_small_order_keys_refused(ta: int, tr: int, s: bytes, msg: bytes) -> None:
    """Keys of small order verify nothing on either backend; pycryptodome alone would take
    the forgery R = small order, S = 0 for any message."""
    public = ed25519.encode(TORSION[ta])
    sig = ed25519.encode(TORSION[tr]) + s
    assert not ed25519.verify(public, msg, sig)
    assert not crypto.verify(public, msg, sig)
    forged = ed25519.encode(TORSION[tr]) + bytes(32)
    assert ref_verify(public, msg, forged)  # why the rule exists
    assert not crypto.verify(public, msg, forged)


@FAST
@given(key32)
def test_non_canonical_encodings_agree(raw: bytes) -> None:
    """y >= p, or a sign bit on x = 0: the same answer from both verifiers."""
    y = ed25519.P + int.from_bytes(raw, "little") % 19  # 2^255 - 19 .. 2^255 - 1
    for enc in (y.to_bytes(32, "little"), (y | 1 << 255).to_bytes(32, "little"),
                (1 | 1 << 255).to_bytes(32, "little")):
        seed = raw
        sig = ref_sign(seed, b"m")
        public = ed25519.public_key(seed)
        assert ed25519.verify(enc, b"m", sig) == ref_verify(enc, b"m", sig)
        forged = enc + sig[32:]
        assert ed25519.verify(public, b"m", forged) == ref_verify(public, b"m", forged)


@FAST
@given(key32, key32)
def test_x25519_matches_pycryptodome(scalar: bytes, u: bytes) -> None:
    assert x25519.x25519(scalar, u) == ref_x25519(scalar, u)
    public = DH.import_x25519_private_key(scalar).public_key().export_key(format="raw")
    assert x25519.public_key(scalar) == public


@FAST
@given(key32, st.integers(0, 2**255 - 1))
def test_x25519_non_canonical_u(scalar: bytes, u: int) -> None:
    # Any 255-bit u, including u >= p (taken mod p) and the top bit (ignored).
    for value in (u, (u % 40) + 2**255 - 19 - 20, u | 1 << 255):
        enc = (value % 2**256).to_bytes(32, "little")
        assert x25519.x25519(scalar, enc) == ref_x25519(scalar, enc)


@FAST
@given(st.binary(max_size=700), st.lists(st.integers(0, 700), max_size=4))
def test_sha512_matches_hashlib(data: bytes, cuts: list[int]) -> None:
    h = sha512()
    last = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        h.update(data[last:cut])
        last = cut
    h.update(data[last:])
    assert h.digest() == hashlib.sha512(data).digest()


@FAST
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16),
       st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=6))
def test_ctr_from_ecb_matches_pycryptodome(key: bytes, iv: bytes, data: bytes,
                                           cuts: list[int]) -> None:
    ours = crypto.CTRFromECB(key, iv, AES.new(key, AES.MODE_ECB))
    out = b""
    last = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        out += ours.crypt(data[last:cut])
        last = cut
    out += ours.crypt(data[last:])
    ref = AES.new(key, AES.MODE_CTR, nonce=b"", initial_value=iv).encrypt(data)
    assert out == ref
    assert crypto.CTR(key, iv).crypt(data) == ref


@FAST
@given(st.binary(min_size=16, max_size=16), st.integers(1, 40), st.binary(max_size=1200))
def test_ctr_wrap_matches_pycryptodome(key: bytes, below: int, data: bytes) -> None:
    iv = (2**128 - below).to_bytes(16, "big")  # the counter wraps inside the stream
    ours = crypto.CTRFromECB(key, iv, AES.new(key, AES.MODE_ECB))
    ref = AES.new(key, AES.MODE_CTR, nonce=b"", initial_value=iv).encrypt(data)
    assert ours.crypt(data) == ref


@FAST
@given(st.binary(max_size=40))
def test_base58_round_trip(data: bytes) -> None:
    text = ids.b58encode(data)
    assert ids.b58decode(text) == data
    assert len(text) - len(text.lstrip("1")) == len(data) - len(data.lstrip(b"\0"))


@FAST
@given(st.text(max_size=40))
def test_base58_decode_raises_only_decode_error(text: str) -> None:
    from leither.errors import DecodeError

    try:
        raw = ids.b58decode(text)
    except DecodeError:
        assert any(c not in ids.ALPHABET for c in text)
        return
    assert ids.b58encode(raw) == text  # the text form is canonical: one text per bytes
