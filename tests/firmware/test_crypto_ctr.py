# AES-128-CTR: NIST SP 800-38A F.5.1 vectors and streaming in arbitrary pieces, for the
# interpreter's CTR and for CTRFromECB (the board's build on ECB) on both interpreters.
import sys

from leither import crypto

from testutil import raises, random_bytes, unhex

_KEY = unhex("2b7e151628aed2a6abf7158809cf4f3c")
_IV = unhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
_PLAIN = unhex("6bc1bee22e409f96e93d7e117393172a" "ae2d8a571e03ac9c9eb76fac45af8e51"
               "30c81c46a35ce411e5fbc1191a0a52ef" "f69f2445df4f9b17ad2b417be66c3710")
_CIPHER = unhex("874d6191b620e3261bef6864990db6ce" "9806f66b7970fdff8617187bb9fffdff"
                "5ae4df3edbd5d35e5b4f09020db03eab" "1e031dda2fbe03d1792170a0f3009cee")


def _ecb(key):
    """The interpreter's raw AES-128 ECB encryptor (cryptolib on MicroPython)."""
    if sys.implementation.name == "micropython":
        import cryptolib

        return cryptolib.aes(key, 1)
    from Crypto.Cipher import AES

    return AES.new(key, AES.MODE_ECB)


def _both(key, iv):
    return (crypto.CTR(key, iv), crypto.CTRFromECB(key, iv, _ecb(key)))


def test_sp800_38a_f51():
    for ctr in _both(_KEY, _IV):
        assert ctr.crypt(_PLAIN) == _CIPHER
    for ctr in _both(_KEY, _IV):  # F.5.2: decryption is the same operation
        assert ctr.crypt(_CIPHER) == _PLAIN


def test_ctr_from_ecb_default_backend():
    # cryptolib's AES (C) on MicroPython; on CPython the pure leither.aes, its last resort.
    assert crypto.CTRFromECB(_KEY, _IV).crypt(_PLAIN) == _CIPHER


def test_partial_blocks_stream():
    # The keystream continues across calls whatever the piece sizes.
    for pieces in ((1, 15, 17, 31), (3, 3, 3, 55), (64,), (16, 0, 48), (7, 57)):
        for ctr in _both(_KEY, _IV):
            out = b""
            pos = 0
            for size in pieces:
                out += ctr.crypt(_PLAIN[pos:pos + size])
                pos += size
            assert out == _CIPHER, pieces


def test_long_stream_crosses_batches():
    # More than one 512-byte keystream batch, cut at odd places; both CTRs agree.
    data = random_bytes(1500, seed=7)
    key = random_bytes(16, seed=8)
    iv = random_bytes(16, seed=9)
    ours, other = _both(key, iv)
    whole = ours.crypt(data)
    pieces = b""
    pos = 0
    for size in (1, 510, 2, 600, 387):
        pieces += other.crypt(data[pos:pos + size])
        pos += size
    assert pos == len(data)
    assert pieces == whole
    assert crypto.CTR(key, iv).crypt(whole) == data


def test_counter_wraps_at_2_128():
    # The whole 16-byte block counts and wraps to zero (SP 800-38A B.1 with m = 128).
    iv = b"\xff" * 16
    ecb = _ecb(_KEY)
    counters = iv + bytes(16) + b"\x00" * 15 + b"\x01"
    keystream = bytearray(48)
    ecb.encrypt(counters, keystream)
    for ctr in _both(_KEY, iv):
        assert ctr.crypt(bytes(20)) + ctr.crypt(bytes(28)) == bytes(keystream)


def test_bad_sizes():
    raises(ValueError, crypto.CTR, bytes(15), bytes(16))
    raises(ValueError, crypto.CTR, bytes(16), bytes(12))
    raises(ValueError, crypto.CTRFromECB, bytes(32), bytes(16), None)
    for ctr in _both(_KEY, _IV):
        raises(TypeError, ctr.crypt, "text")
