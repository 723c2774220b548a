# X25519: RFC 7748 §5.2 and §6.1 vectors through the crypto facade (pycryptodome on CPython)
# and the pure module leither.x25519 on both interpreters; small-order keys are refused.
import sys

from leither import crypto, x25519
from leither.errors import AuthError

from testutil import raises, skip, unhex

_MICROPYTHON = sys.implementation.name == "micropython"

# RFC 7748 §5.2: (scalar, u-coordinate, output); the second u has its top bit set, and the
# function must ignore it.
_VECTORS = (
    ("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
     "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
     "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"),
    ("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
     "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
     "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"),
)

# RFC 7748 §6.1 Diffie-Hellman example.
_ALICE = ("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
          "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
_BOB = ("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
_SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"

# u-coordinates whose product with any clamped scalar is zero: 0, 1, the two points of
# order 8, p - 1, and p, p + 1 (non-canonical 0 and 1).
_SMALL_ORDER = (
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
)


def test_rfc7748_vectors():
    for scalar, u, out in _VECTORS:
        assert x25519.x25519(unhex(scalar), unhex(u)) == unhex(out)
        assert crypto.dh(unhex(scalar), unhex(u)) == unhex(out)


def test_rfc7748_diffie_hellman():
    shared = unhex(_SHARED)
    for private, public in (_ALICE, _BOB):
        assert crypto.dh_public(unhex(private)) == unhex(public)
        assert x25519.public_key(unhex(private)) == unhex(public)
        # The ladder on u = 9 agrees with the public key's Edwards shortcut.
        assert x25519.x25519(unhex(private), b"\x09" + bytes(31)) == unhex(public)
    assert crypto.dh(unhex(_ALICE[0]), unhex(_BOB[1])) == shared
    assert crypto.dh(unhex(_BOB[0]), unhex(_ALICE[1])) == shared
    assert x25519.x25519(unhex(_ALICE[0]), unhex(_BOB[1])) == shared


def _iterate(fn, count):
    # RFC 7748 §5.2: k = u = 9; then (k, u) = (X25519(k, u), k), count times.
    k = u = b"\x09" + bytes(31)
    for _ in range(count):
        k, u = fn(k, u), k
    return k


def test_rfc7748_iterated_once():
    expected = unhex("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")
    assert _iterate(x25519.x25519, 1) == expected
    assert _iterate(crypto.dh, 1) == expected


def test_rfc7748_iterated_1000():
    # 1000 ladders: about 1 s for the pure module on CPython, 4 s under MicroPython.
    if _MICROPYTHON:
        skip("1000 pure ladders take about 4 s under MicroPython; the RFC checks run there")
    expected = unhex("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51")
    assert _iterate(crypto.dh, 1000) == expected
    assert _iterate(x25519.x25519, 1000) == expected


def test_small_order_keys_refused():
    private = crypto.dh_keypair()[0]
    for u in _SMALL_ORDER:
        assert x25519.x25519(private, unhex(u)) == bytes(32), u
        raises(AuthError, crypto.dh, private, unhex(u))


def test_dh_keypair_agreement():
    a_private, a_public = crypto.dh_keypair()
    b_private, b_public = crypto.dh_keypair()
    assert len(a_public) == 32 and a_public != b_public
    assert crypto.dh(a_private, b_public) == crypto.dh(b_private, a_public)
    assert crypto.dh_public(a_private) == a_public


def test_bad_lengths():
    raises(ValueError, crypto.dh, bytes(31), bytes(32))
    raises(ValueError, crypto.dh, bytes(32), bytes(33))
    raises(ValueError, crypto.dh_public, bytes(16))
    raises(ValueError, x25519.x25519, bytes(32), bytes(31))
