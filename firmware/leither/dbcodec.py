# The record codec shared by the DB MiMei modules (leither.db, leither.dbcoll, leither.dbio):
# CBOR items of keys and values, biased 8-byte scores, Redis integer rules and argument checks.
# It imports none of them: db -> dbcoll/dbio -> dbcodec, one direction (no import cycle).
"""Encoding of db records and checks of db method arguments (see leither.db's header)."""

import struct

from .compat import const
from .errors import StoreError

# Limits chosen so that every record fits dbpage.MAX_ENTRY (1012 bytes): a hash field record
# is 2+200+1+2+200 key bytes and 3+600 value bytes = 1008.
MAX_KEY = const(200)  # bytes of a key, field or member
MAX_VALUE = const(600)  # bytes of a value
_BIAS = 1 << 63
# One read's result is built in RAM before it is sent: bounded so that it fits a board's heap
# and reply frame. Bigger collections are read in pages: Hscan/Sscan, Lrange/Zrange ranges.
READ_ITEMS = const(256)  # values one read may return (a field and its value count 2)
READ_BYTES = const(8192)  # bytes of encoded keys and values one read may gather
NAMES = {0x73: "string", 0x68: "hash", 0x6C: "list", 0x74: "set", 0x7A: "zset"}  # type bytes


def cbor_head(major, n):
    """CBOR head (major type, argument), shortest form."""
    m = major << 5
    if n < 24:
        return bytes((m | n,))
    if n < 0x100:
        return bytes((m | 24, n))
    if n < 0x10000:
        return struct.pack(">BH", m | 25, n)
    if n < 0x100000000:
        return struct.pack(">BI", m | 26, n)
    return struct.pack(">BQ", m | 27, n)


def enc(x, limit):
    """CBOR encoding of a str or bytes argument of at most `limit` bytes (an int value
    becomes its decimal str)."""
    if type(x) is int and limit == MAX_VALUE:
        x = str(x)
    if isinstance(x, str):
        data = x.encode()
        major = 3
    elif isinstance(x, (bytes, bytearray)):
        data = bytes(x)
        major = 2
    else:
        raise StoreError(f"expected str or bytes, not {type(x).__name__}")
    if len(data) > limit:
        raise StoreError("too long: %d bytes (limit %d)" % (len(data), limit))
    return cbor_head(major, len(data)) + data


def dec(b, o=0):
    """The str or bytes value of the CBOR item our records hold at offset o."""
    ai = b[o] & 31
    n = ai
    p = o + 1
    if ai == 24:
        n = b[p]
        p += 1
    elif ai == 25:
        n = (b[p] << 8) | b[p + 1]
        p += 2
    elif ai > 25:
        raise StoreError("db record corrupt")
    data = b[p:p + n]
    return data.decode() if b[o] >> 5 == 3 else bytes(data)


def check_int(x, what):
    if type(x) is not int:
        raise StoreError(f"{what} is not an integer")
    if x < -_BIAS or x >= _BIAS:
        raise StoreError(f"{what} out of range")
    return x


def to_score(x):
    return struct.pack(">Q", check_int(x, "score") + _BIAS)


def from_score(b, o=0):
    return struct.unpack(">Q", b[o:o + 8])[0] - _BIAS


def parse_int(v):
    """Redis rule for integer strings: an optional '-', digits, no leading zero, 64-bit."""
    if isinstance(v, bytes):
        try:
            v = v.decode()
        except ValueError:
            v = ""
    digits = v[1:] if v.startswith("-") else v
    if (not digits or len(digits) > 19 or (digits[0] == "0" and len(v) > 1)
            or not digits.isdigit()):
        raise StoreError("value is not an integer or out of range")
    return check_int(int(v), "value")


def add_int(old, increment):
    """(new int, its stored encoding) for old (encoded value or None) + increment."""
    check_int(increment, "increment")
    cur = "" if old is None else dec(old)
    new = (0 if old is None else parse_int(cur)) + increment
    if new < -_BIAS or new >= _BIAS:
        raise StoreError("increment or decrement would overflow")
    text = str(new)
    return new, enc(text.encode() if isinstance(cur, bytes) else text, MAX_VALUE)


def count_of(m):
    return struct.unpack(">I", m[-4:])[0]


def span(start, stop, n):
    """Redis range [start, stop] (inclusive, negatives from the end) clamped to [0, n)."""
    start = check_int(start, "index")
    stop = check_int(stop, "index")
    if start < 0:
        start = max(start + n, 0)
    if stop < 0:
        stop += n
    return start, min(stop, n - 1)


def pair_up(args):
    if not args or len(args) % 2:
        raise StoreError("wrong number of arguments")
    return [(args[j], args[j + 1]) for j in range(0, len(args), 2)]


def writer(impl):
    """A public write method: atomic and durable on return outside a transaction."""

    def method(self, *args):
        return self._run(impl, args)

    return method


def too_big(n, what):
    """The error of a read whose result would pass READ_ITEMS values or READ_BYTES bytes."""
    return StoreError("%s: %d values or more, over what one read returns (%d values, %d "
                      "bytes); page it with Hscan, Sscan or an index range" % (
                          what, n, READ_ITEMS, READ_BYTES))
