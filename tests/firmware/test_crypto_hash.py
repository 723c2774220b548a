# SHA-256, pure SHA-512 (FIPS 180-4 vectors), HMAC-SHA256 (RFC 4231), HKDF-SHA256 (RFC 5869)
# and the constant-time compare, on both interpreters.
import sys

from leither import crypto
from leither.sha512 import sha512

from testutil import raises, skip, unhex

# Passes from 56K (its code and ours sit in the unix port's heap); 20% headroom
# so a shifted heap layout cannot fail it (ci/mp_heap_margin.py).
MP_HEAP = "80K"

_MICROPYTHON = sys.implementation.name == "micropython"


def test_sha256_known():
    assert crypto.sha256(b"abc") == unhex(
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_sha512_fips_vectors():
    # FIPS 180-4 examples (NIST CSRC "SHA512.pdf"): one block, empty, two blocks (896 bits).
    assert sha512(b"abc").digest() == unhex(
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")
    assert sha512(b"").digest() == unhex(
        "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
        "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e")
    msg = (b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
           b"ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")
    assert len(msg) * 8 == 896
    assert sha512(msg).hexdigest() == (
        "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
        "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909")


def test_sha512_streaming_matches_one_shot():
    data = bytes(range(256)) * 2
    whole = sha512(data).digest()
    # Split points around the 128-byte block and the 112-byte padding boundary.
    for cut in (0, 1, 111, 112, 113, 127, 128, 129, 255, 256, 300, 512):
        h = sha512(data[:cut])
        h.update(data[cut:])
        assert h.digest() == whole, cut
    h = sha512(b"ab")
    copy = h.copy()
    h.update(b"c")
    assert h.digest() == sha512(b"abc").digest()
    assert copy.digest() == sha512(b"ab").digest()
    assert h.digest() == h.digest()  # digest() does not end the object


def test_sha512_million_a():
    # FIPS 180-4 long message: one million 'a' (7813 blocks), fed in 1000-byte pieces.
    if _MICROPYTHON:
        skip("about 4 s under MicroPython; the short FIPS vectors run there")
    h = sha512()
    piece = b"a" * 1000
    for _ in range(1000):
        h.update(piece)
    assert h.digest() == unhex(
        "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"
        "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b")


# RFC 4231 §4.2-4.8 (case 5, a truncated MAC, does not apply): key, data, HMAC-SHA256.
_RFC4231 = (
    ("0b" * 20, "4869205468657265",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    ("4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    ("aa" * 20, "dd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    ("0102030405060708090a0b0c0d0e0f10111213141516171819", "cd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    ("aa" * 131,
     ("54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a"
     "65204b6579202d2048617368204b6579204669727374"),
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    ("aa" * 131,
     ("5468697320697320612074657374207573696e672061206c6172676572207468"
     "616e20626c6f636b2d73697a65206b657920616e642061206c61726765722074"
     "68616e20626c6f636b2d73697a6520646174612e20546865206b6579206e6565"
     "647320746f20626520686173686564206265666f7265206265696e6720757365"
     "642062792074686520484d414320616c676f726974686d2e"),
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
)


def test_hmac_sha256_rfc4231():
    for key, data, mac in _RFC4231:
        assert crypto.hmac_sha256(unhex(key), unhex(data)) == unhex(mac)


def test_hmac_incremental():
    key, data, mac = _RFC4231[5]
    data = unhex(data)
    h = crypto.HMACSHA256(unhex(key))
    for i in range(0, len(data), 37):
        h.update(data[i:i + 37])
    assert h.digest() == unhex(mac)
    assert h.digest() == unhex(mac)  # final: the same MAC again
    raises(ValueError, h.update, b"more")


def test_hkdf_rfc5869():
    # RFC 5869 Appendix A.1-A.3 (SHA-256).
    okm = crypto.hkdf(unhex("0b" * 22), unhex("000102030405060708090a0b0c"),
                      unhex("f0f1f2f3f4f5f6f7f8f9"), 42)
    assert okm == unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                        "34007208d5b887185865")
    ikm = bytes(range(0x50))
    salt = bytes(range(0x60, 0xB0))
    info = bytes(range(0xB0, 0x100))
    okm = crypto.hkdf(ikm, salt, info, 82)
    assert okm == unhex("b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
                        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
                        "cc30c58179ec3e87c14c01d5c1f3434f1d87")
    okm = crypto.hkdf(unhex("0b" * 22), b"", b"", 42)
    assert okm == unhex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
                        "9d201395faa4b61a96c8")
    assert crypto.hkdf(unhex("0b" * 22), None, None, 42) == okm


def test_hkdf_lengths():
    assert crypto.hkdf(b"k", b"s", b"i", 0) == b""
    assert len(crypto.hkdf(b"k", b"s", b"i", 8160)) == 8160
    assert crypto.hkdf(b"k", b"s", b"i", 100)[:32] == crypto.hkdf(b"k", b"s", b"i", 32)
    raises(ValueError, crypto.hkdf, b"k", b"s", b"i", 8161)


def test_equal():
    assert crypto.equal(b"", b"")
    assert crypto.equal(b"abc", bytearray(b"abc"))
    assert not crypto.equal(b"abc", b"abd")
    assert not crypto.equal(b"abc", b"ab")
    assert not crypto.equal(b"\x00", b"\x80")


def test_random():
    a = crypto.random(32)
    assert len(a) == 32 and a != crypto.random(32)
