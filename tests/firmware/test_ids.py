# base58btc (Bitcoin alphabet) and the 160-bit IDs of DESIGN §2, on both interpreters.
from leither import crypto, ids
from leither.errors import DecodeError

from testutil import raises, random_bytes, unhex

# Bitcoin Core's base58_encode_decode.json vectors (hex bytes, base58 text).
_VECTORS = (
    ("", ""),
    ("61", "2g"),
    ("626262", "a3gV"),
    ("636363", "aPEr"),
    ("73696d706c792061206c6f6e6720737472696e67", "2cFupjhnEsSn59qHXstmK2ffpLv2"),
    ("00eb15231dfceb60925886b67d065299925915aeb172c06647",
     "1NS17iag9jJgTHD1VXjvLCEnZuQ3rJDE9L"),
    ("516b6fcd0f", "ABnLTmg"),
    ("bf4f89001e670274dd", "3SEo3LWLoPntC"),
    ("572e4794", "3EFU7m"),
    ("ecac89cad93923c02321", "EJDM8drfXA6uyA"),
    ("10c8511e", "Rt5zm"),
    ("00000000000000000000", "1111111111"),
)


def test_base58_vectors():
    for raw, text in _VECTORS:
        assert ids.b58encode(unhex(raw)) == text
        assert ids.b58decode(text) == unhex(raw)


def test_base58_round_trip():
    for n in range(0, 40, 3):
        data = bytes(n % 4) + random_bytes(n, seed=n)  # some with leading zero bytes
        assert ids.b58decode(ids.b58encode(data)) == data


def test_base58_rejects_bad_text():
    for text in ("0", "O", "I", "l", "abc+", "2g ", "ä"):
        raises(DecodeError, ids.b58decode, text)
    raises(DecodeError, ids.b58decode, b"2g")
    raises(DecodeError, ids.b58decode, "2" * 300)  # longer than any ID, bounded


def test_ids():
    public = crypto.sign_public(random_bytes(32, seed=11))
    raw = ids.raw_id(public)
    assert raw == crypto.sha256(public)[:20]
    text = ids.make_id(public)
    assert text == ids.b58encode(raw)
    assert ids.id_raw(text) == raw
    # SHA-256("")[:20] = e3b0c44298fc1c149afbf4c8996fb92427ae41e4
    assert ids.make_id(b"") == ids.b58encode(unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4"))
    for n in range(20):
        assert 27 <= len(ids.make_id(bytes((n,)))) <= 28


def test_id_raw_checks_length():
    raises(DecodeError, ids.id_raw, ids.b58encode(bytes(18) + b"\x01"))
    raises(DecodeError, ids.id_raw, ids.b58encode(b"\x01" * 21))
    raises(DecodeError, ids.id_raw, "")
    raises(DecodeError, ids.id_raw, "0" * 27)
    assert ids.id_raw(ids.b58encode(bytes(20))) == bytes(20)
