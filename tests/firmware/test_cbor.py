# leither.cbor against RFC 8949 Appendix A and against hostile input, on both interpreters.
import io

from leither import cbor
from leither.errors import DecodeError

from testutil import raises, unhex

# Passes from 64K (its code and ours sit in the unix port's heap); 20% headroom
# so a shifted heap layout cannot fail it (ci/mp_heap_margin.py).
MP_HEAP = "80K"


def check(condition, detail=""):
    """An assert that survives mpy-cross -O1, which drops assert statements from the .mpy."""
    if not condition:
        raise AssertionError(detail)


# The tables are built by functions, not held by the module: it runs in a 64K heap.


def vectors():
    """RFC 8949 Appendix A: (value, encoding) for every type we support. All are canonical."""
    return [
        (0, "00"), (1, "01"), (10, "0a"), (23, "17"), (24, "1818"), (25, "1819"), (100, "1864"),
        (1000, "1903e8"), (1000000, "1a000f4240"), (1000000000000, "1b000000e8d4a51000"),
        (18446744073709551615, "1bffffffffffffffff"),
        (-18446744073709551616, "3bffffffffffffffff"),
        (-1, "20"), (-10, "29"), (-100, "3863"), (-1000, "3903e7"),
        (False, "f4"), (True, "f5"), (None, "f6"),
        (b"", "40"), (b"\x01\x02\x03\x04", "4401020304"),
        ("", "60"), ("a", "6161"), ("IETF", "6449455446"), ("\"\\", "62225c"),
        ("\u00fc", "62c3bc"), ("\u6c34", "63e6b0b4"), ("\U00010151", "64f0908591"),
        ([], "80"), ([1, 2, 3], "83010203"), ([1, [2, 3], [4, 5]], "8301820203820405"),
        (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
        ({}, "a0"), ({1: 2, 3: 4}, "a201020304"), ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
        (["a", {"b": "c"}], "826161a161626163"),
        ({"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"},
         "a56161614161626142616361436164614461656145"),
    ]


def malformed():
    """Malformed or unsupported input: every one must raise DecodeError."""
    return [
        "1c", "3d", "5e", "7c", "9d", "be", "dc", "fc",  # reserved additional info 28-30
        "1f", "3f", "5f4100ff", "7f6161ff", "9f01ff", "bf0101ff", "ff",  # indefinite, break
        "f90000", "fa00000000", "fb0000000000000000",  # floats
        "f7", "f0", "f818", "f8ff", "e0",  # undefined and other simple values
        "c074323031332d30332d32315432303a30343a30305a", "c101", "d82076687474703a2f2f",  # tags
        "c201", "c260", "c25f4100ff", "c3f6", "c2c24100",  # bignum content not a byte string
        "c249010000000000000000", "c349010000000000000000",  # bignums: 2**64 and -2**64-1
        "c24a00010000000000000000", "c2480100000000000000", "d8024100", "c34100",
        "62c080", "63eda080", "64f4908080", "64f5808080", "61ff", "6180", "62c328", "63e28228",
        "a201010102", "a2616101616102", "a20100f500",  # duplicate keys (1 and True collide)
        "a18000", "a1a000", "a1820102f6",  # array or map as a key
        "0000", "8001", "f6f6",  # trailing bytes
    ]


def not_canonical():
    """Valid but not core deterministic: accepted by default, rejected with canonical=True."""
    return [
        ("1817", 23), ("190017", 23), ("1a00000017", 23), ("1b0000000000000017", 23),
        ("3800", -1), ("5801ff", b"\xff"), ("780161", "a"), ("980100", [0]), ("b8010000", {0: 0}),
        ("a2616201616102", {"b": 1, "a": 2}), ("a20a010102", {10: 1, 1: 2}),
    ]



def test_rfc_vectors_encode():
    for value, hexed in vectors():
        check(cbor.dumps(value) == unhex(hexed), hexed)


def test_rfc_vectors_decode():
    for value, hexed in vectors():
        data = unhex(hexed)
        check(cbor.loads(data) == value, hexed)
        check(cbor.loads(data, canonical=True) == value, hexed)
        check(cbor.loads(bytearray(data)) == value, hexed)
        check(cbor.loads(memoryview(data)) == value, hexed)
        check(cbor.load(io.BytesIO(data)) == value, hexed)


def test_decoded_types():
    check(type(cbor.loads(unhex("4401020304"))) is bytes)
    check(type(cbor.loads(bytearray(unhex("4401020304")))) is bytes)
    check(type(cbor.loads(unhex("8301820203820405"))[1]) is list)
    check(cbor.loads(unhex("f5")) is True and cbor.loads(unhex("f4")) is False)


def test_encode_other_forms():
    check(cbor.dumps((1, (2, 3))) == unhex("8201820203"))
    check(cbor.dumps(bytearray(b"\x01\x02")) == unhex("420102"))
    check(cbor.dumps(memoryview(b"\x01\x02")) == unhex("420102"))
    # Keys sort bytewise by encoding (RFC 8949 §4.2.1), whatever their types.
    mixed = {"a": 1, 1000: 2, -1: 3, b"a": 4, False: 5, None: 6}
    check(cbor.dumps(mixed) == unhex("a6" "1903e802" "2003" "416104" "616101" "f405" "f606"))


def test_encode_unsupported_raises_typeerror():
    for value in (1.5, {1, 2}, object(), [1, 2.0], {"a": {"b": 0.5}}, {(1, 2): 0}, {(): 0}):
        raises(TypeError, cbor.dumps, value)


def test_ints_beyond_64_bits_refused():
    # No bignums either way: a 2**70 offset must die at the decoder, not in a loop over it.
    check(cbor.loads(cbor.dumps(2 ** 64 - 1)) == 2 ** 64 - 1)
    check(cbor.loads(cbor.dumps(-2 ** 64)) == -2 ** 64)
    for value in (2 ** 64, -2 ** 64 - 1, 2 ** 70, [1, {"offset": 2 ** 200}]):
        raises(ValueError, cbor.dumps, value)
    # The attack as sent: an MFSetData-like map whose offset is the bignum 2**70.
    attack = unhex("a2666f6666736574c24901" + "00" * 8 + "6464617461" + "4100")
    raises(DecodeError, cbor.loads, attack)
    raises(DecodeError, cbor.load, io.BytesIO(attack))


def test_encode_head():
    check(cbor.encode_head(cbor.UINT, 23) == unhex("17"))
    check(cbor.encode_head(cbor.BYTES, 24) == unhex("5818"))
    check(cbor.encode_head(cbor.TEXT, 256) == unhex("790100"))
    check(cbor.encode_head(cbor.ARRAY, 65536) == unhex("9a00010000"))
    check(cbor.encode_head(cbor.MAP, 2 ** 32) == unhex("bb0000000100000000"))
    check(cbor.encode_head(cbor.TAG, 2) == unhex("c2"))
    raises(ValueError, cbor.encode_head, 0, -1)
    raises(ValueError, cbor.encode_head, 0, 2 ** 64)
    raises(ValueError, cbor.encode_head, 8, 0)
    # A caller streams an array of byte strings with heads and raw pieces.
    parts = [b"x" * 30, b"", b"yz"]
    out = cbor.encode_head(cbor.ARRAY, 3)
    for part in parts:
        out += cbor.encode_head(cbor.BYTES, len(part)) + part
    check(out == cbor.dumps(parts))


def test_dump_to_stream_matches_dumps():
    value = {"list": [1, -2, b"\x00" * 300, "t" * 30, None], "map": {3: {"k": [True]}},
             "big": 2 ** 64 - 1, "b": bytearray(b"ab"), "tuple": (1, 2)}
    stream = io.BytesIO()
    cbor.dump(value, stream)
    check(stream.getvalue() == cbor.dumps(value))
    check(cbor.loads(stream.getvalue())["tuple"] == [1, 2])
    raises(TypeError, cbor.dump, [1.5], io.BytesIO())


def test_round_trip():
    value = {"id": "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", "n": 12345, "t": 1764114000000,
             "data": b"\x01" * 32, "tags": ["a", "\u00fc\u6c34", ""], "ok": True, "none": None,
             -5: [2 ** 63, -2 ** 63 - 1, 2 ** 64 - 1, -2 ** 64], b"k": {}}
    data = cbor.dumps(value)
    check(cbor.loads(data) == value)
    check(cbor.loads(data, canonical=True) == value)
    check(cbor.load(io.BytesIO(data)) == value)


def test_malformed_rejected():
    for hexed in malformed():
        data = unhex(hexed)
        raises(DecodeError, cbor.loads, data)
        raises(DecodeError, cbor.loads, data, canonical=True)
        if not hexed.startswith(("0000", "8001", "f6f6")):  # load leaves trailing bytes
            raises(DecodeError, cbor.load, io.BytesIO(data))


def test_utf8_edges_agree_on_both_interpreters():
    # MicroPython's own decoder lets overlong forms, surrogates and > U+10FFFF through; the
    # codec must still accept exactly what CPython (RFC 3629) accepts.
    valid = ["7f", "c280", "dfbf", "e0a080", "ed9fbf", "ee8080", "efbfbf", "f0908080",
             "f48fbfbf", "f3bfbfbf", "61e0a08062", "e0a080e0a080ed9fbf"]
    invalid = ["c0af", "c1bf", "e080af", "e09fbf", "eda080", "edbfbf", "f08f8080", "f4908080",
               "f5808080", "f7bfbfbf", "61eda08062", "e0a080eda080", "f888808080"]
    for hexed in valid:
        data = unhex(hexed)
        check(cbor.loads(cbor.encode_head(cbor.TEXT, len(data)) + data) == data.decode(), hexed)
    for hexed in invalid:
        data = unhex(hexed)
        raises(DecodeError, cbor.loads, cbor.encode_head(cbor.TEXT, len(data)) + data)


def test_truncated_rejected():
    for _, hexed in vectors():
        data = unhex(hexed)
        for cut in range(len(data)):
            raises(DecodeError, cbor.loads, data[:cut])
            raises(DecodeError, cbor.load, io.BytesIO(data[:cut]))


def test_canonical_mode():
    for hexed, value in not_canonical():
        data = unhex(hexed)
        check(cbor.loads(data) == value, hexed)
        raises(DecodeError, cbor.loads, data, canonical=True)
        raises(DecodeError, cbor.load, io.BytesIO(data), canonical=True)


def nested(depth):
    return unhex("81" * depth + "00")


def test_depth_limit():
    check(cbor.loads(nested(cbor.MAX_DEPTH)) is not None)
    raises(DecodeError, cbor.loads, nested(cbor.MAX_DEPTH + 1))
    raises(DecodeError, cbor.loads, unhex("a100" * (cbor.MAX_DEPTH + 1) + "00"))
    check(cbor.loads(nested(3), max_depth=3) == [[[0]]])
    raises(DecodeError, cbor.loads, nested(4), max_depth=3)
    raises(DecodeError, cbor.loads, nested(500))  # deep hostile nesting: no RecursionError


def test_length_and_count_limits():
    text = cbor.dumps("x" * 100)
    check(cbor.loads(text, max_len=100) == "x" * 100)
    raises(DecodeError, cbor.loads, text, max_len=99)
    raises(DecodeError, cbor.load, io.BytesIO(text), max_len=99)
    raises(DecodeError, cbor.loads, cbor.encode_head(cbor.BYTES, cbor.MAX_LEN + 1))
    array = cbor.dumps(list(range(10)))
    check(len(cbor.loads(array, max_items=10)) == 10)
    raises(DecodeError, cbor.loads, array, max_items=9)
    raises(DecodeError, cbor.loads, cbor.dumps({1: 2, 3: 4}), max_items=1)
    # The total bound: 4 strings of 10 bytes fit in 40 units, not in 39.
    four = cbor.dumps([b"0123456789"] * 4)
    check(cbor.loads(four, max_total=40 + 4 * cbor.ITEM_COST) == [b"0123456789"] * 4)
    raises(DecodeError, cbor.loads, four, max_total=39 + 4 * cbor.ITEM_COST)
    # Many small containers, each within the limits, add up past the total.
    wide = cbor.encode_head(cbor.ARRAY, 20) + cbor.dumps([0] * 50) * 20
    check(len(cbor.loads(wide, max_total=20 * 51 * cbor.ITEM_COST)) == 20)
    raises(DecodeError, cbor.loads, wide, max_total=20 * 51 * cbor.ITEM_COST - 1)


def test_declared_lengths_allocate_nothing():
    # Huge declared sizes with the limits lifted must fail as truncated, not with MemoryError:
    # nothing is allocated before the bytes arrive (this runs in a 64K heap).
    huge = {"max_len": 2 ** 62, "max_items": 2 ** 62, "max_total": 2 ** 64}
    for head in ("5b0000000100000000", "7a7fffffff", "9b0000000100000000", "ba7fffffff"):
        data = unhex(head) + b"abc"
        raises(DecodeError, cbor.loads, data, **huge)
        raises(DecodeError, cbor.load, io.BytesIO(data), **huge)
    for head in ("5bffffffffffffffff", "9bffffffffffffffff", "bbffffffffffffffff"):
        raises(DecodeError, cbor.loads, unhex(head) + b"abc")


class Trickle:
    """A stream that hands out at most `step` bytes per read, like a slow socket."""

    def __init__(self, data, step):
        self.data = data
        self.step = step
        self.pos = 0

    def read(self, n):
        piece = self.data[self.pos:self.pos + min(n, self.step)]
        self.pos += len(piece)
        return piece


def test_stream_reads_exactly_one_item():
    first = {"k": b"v" * 300, "n": [1, 2]}
    data = cbor.dumps(first) + cbor.dumps("next") + unhex("ff")
    stream = io.BytesIO(data)
    check(cbor.load(stream) == first)
    check(cbor.load(stream) == "next")
    raises(DecodeError, cbor.load, stream)  # a break byte
    raises(DecodeError, cbor.load, stream)  # end of stream
    trickle = Trickle(data, 3)
    check(cbor.load(trickle) == first)
    check(cbor.load(trickle) == "next")
    check(trickle.pos == len(data) - 1)


def test_stream_short_reads_of_a_long_string():
    # Longer than one read chunk (4096 bytes), delivered 1000 bytes at a time.
    data = cbor.dumps([b"v" * 4500, 7])
    check(cbor.load(Trickle(data, 1000)) == [b"v" * 4500, 7])
    raises(DecodeError, cbor.load, Trickle(data[:4000], 1000))
