# Deterministic CBOR (RFC 8949) for everything Leither hashes, signs, stores and sends.
# The encoder writes core deterministic encoding (RFC 8949 §4.2.1). The decoder takes hostile
# input from a buffer or a stream: depth, lengths, counts and total allocation are bounded,
# and every failure is one DecodeError. Same code and behaviour on MicroPython and CPython.
"""Deterministic CBOR codec (RFC 8949 §4.2.1).

Types: int in [-2**64, 2**64) (a CBOR head holds it), bytes (bytearray and memoryview
encode as byte strings), str, list (tuple encodes as an array), dict, True, False, None.
Not supported: floats, undefined and other simple values, tags (so no bignums: an int beyond
64 bits is refused both ways -- a 2**70 offset must never reach code that loops over it),
indefinite lengths.

Encoding -- ``dumps(obj) -> bytes``; ``dump(obj, stream)`` writes containers item by item to
``stream.write`` (which must write everything it is given); ``encode_head(major, n) -> bytes``
lets a caller stream a big array or byte string itself. A type we do not support raises
TypeError, and so does a tuple as a map key (the decoder refuses array keys); an int beyond
64 bits raises ValueError.
Output is byte-identical to ``cbor2.dumps(obj, canonical=True)`` except for two
cases: map keys are sorted bytewise by their encoding as RFC 8949 §4.2.1 says, while cbor2
sorts length-first (RFC 7049) -- the two orders agree when all keys of a map have one major
type, e.g. all text, as in our structures; and cbor2 encodes a memoryview as an array of ints.

Decoding -- ``loads(data, ...) -> obj`` decodes one item filling the whole buffer (trailing
bytes are an error); ``load(stream, ...) -> obj`` reads exactly one item from ``stream.read(n)``
(a file, io.BytesIO, a blocking socket; it never reads past the item; a stream error such as
a socket timeout propagates as OSError). Maps give dict, arrays list, byte strings bytes.
Every malformed, truncated, unsupported or over-limit input raises DecodeError: reserved
additional info (28-30), indefinite lengths, floats and simple values other than
false/true/null, any tag (bignums included),
invalid UTF-8, duplicate map keys (also keys Python sees as equal, such as 1 and True),
arrays or maps as map keys. ``canonical=True`` also rejects what §4.2.1 forbids: heads not
in shortest form and map keys not in strictly increasing bytewise order; use it to check
signed structures.

Limits (keyword arguments of loads/load): max_depth nested arrays/maps, max_len bytes per
byte/text string, max_items entries per array/map, max_total allocation units for the whole
item (string bytes count 1 each, each array element and each map key or value counts
ITEM_COST). Nothing is allocated from a declared length before the bytes arrive.
"""

import struct

from .compat import IS_MICROPYTHON, const
from .errors import DecodeError

# Major types (RFC 8949 §3.1), for encode_head.
UINT = const(0)
NEGINT = const(1)
BYTES = const(2)
TEXT = const(3)
ARRAY = const(4)
MAP = const(5)
TAG = const(6)

# Default decoding limits. Our own structures are far inside them: version records and RPC
# messages nest 3-4 deep, a manifest block is <= 4096 bytes, a chunk is 4096 bytes.
MAX_DEPTH = const(16)  # nested arrays/maps
MAX_LEN = const(65536)  # bytes per byte/text string
MAX_ITEMS = const(4096)  # entries per array or map
MAX_TOTAL = const(131072)  # allocation units per decoded item, see ITEM_COST
ITEM_COST = const(8)  # units per array element / map key or value: one pointer slot, 64-bit

_STREAM_CHUNK = const(4096)  # bytes per stream.read while collecting a string
_U64 = 0x10000000000000000  # 2**64: first integer a CBOR head cannot hold
_TRUNCATED = "CBOR: truncated input"
_OVER_TOTAL = "CBOR: item exceeds the allocation limit"

_pack = struct.pack


# --- encoding ---------------------------------------------------------------------------------


def _head(out, mt, n):
    """Append the shortest head of major type mt (already shifted left by 5), argument n."""
    if n < 24:
        out.append(mt | n)
    elif n < 0x100:
        out.append(mt | 24)
        out.append(n)
    elif n < 0x10000:
        out += _pack(">BH", mt | 25, n)
    elif n < 0x100000000:
        out += _pack(">BI", mt | 26, n)
    else:
        out += _pack(">BQ", mt | 27, n)


def encode_head(major, n):
    """The shortest head of a data item of major type 0..7 with argument 0 <= n < 2**64.

    E.g. ``encode_head(ARRAY, 3)`` before three encoded items, ``encode_head(BYTES, size)``
    before writing size bytes: a caller can stream what it cannot hold in RAM.
    """
    if not 0 <= major <= 7 or not 0 <= n < _U64:
        raise ValueError("CBOR head out of range")
    out = bytearray()
    _head(out, major << 5, n)
    return bytes(out)


def _first(pair):
    return pair[0]


def _sorted_items(d):
    """The (encoded key, value) pairs of d, ordered bytewise by encoded key (§4.2.1)."""
    items = []
    for key, value in d.items():
        encoded = bytearray()
        _enc(key, encoded)
        if 0x80 <= encoded[0] < 0xC0:
            # A tuple key would encode, but loads refuses array and map keys: keep every
            # encoding we make decodable.
            raise TypeError("CBOR map key is a tuple")
        items.append((encoded, value))
    items.sort(key=_first)
    return items


def _enc(obj, out):
    t = type(obj)
    # Exact type checks first: fastest, and bool is not taken for int.
    if t is str:
        data = obj.encode()
        _head(out, 0x60, len(data))
        out += data
    elif t is int:
        if 0 <= obj < _U64:
            _head(out, 0, obj)
        elif -_U64 <= obj < 0:
            _head(out, 0x20, -1 - obj)
        else:
            raise ValueError("CBOR: int beyond 64 bits")
    elif t is bytes or t is bytearray or t is memoryview:
        _head(out, 0x40, len(obj))
        out += obj
    elif t is list or t is tuple:
        _head(out, 0x80, len(obj))
        for item in obj:
            _enc(item, out)
    elif t is dict:
        _head(out, 0xA0, len(obj))
        for key, value in _sorted_items(obj):
            out += key
            _enc(value, out)
    elif obj is None:
        out.append(0xF6)
    elif obj is True:
        out.append(0xF5)
    elif obj is False:
        out.append(0xF4)
    else:
        _enc(_plain(obj), out)


def _plain(obj):
    """The built-in value of a subclass of a supported type (IntEnum, a dict subclass...)."""
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, str):
        return obj.encode().decode()
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj)
    if isinstance(obj, (list, tuple)):
        return list(obj)
    if isinstance(obj, dict):
        return dict(obj)
    raise TypeError("CBOR cannot encode " + type(obj).__name__)


def dumps(obj):
    """The deterministic CBOR encoding of obj (RFC 8949 §4.2.1); TypeError if unsupported."""
    out = bytearray()
    _enc(obj, out)
    return bytes(out)


def dump(obj, stream):
    """Write the encoding of obj to stream.write, containers item by item.

    Only one leaf (and the encoded keys of one map) is ever held in RAM; a byte string is
    written as it is, without a copy.
    """
    write = stream.write
    t = type(obj)
    if t is list or t is tuple:
        write(encode_head(ARRAY, len(obj)))
        for item in obj:
            dump(item, stream)
    elif t is dict:
        write(encode_head(MAP, len(obj)))
        for key, value in _sorted_items(obj):
            write(key)
            dump(value, stream)
    elif t is bytes or t is bytearray or t is memoryview:
        write(encode_head(BYTES, len(obj)))
        write(obj)
    elif t is int or t is str or obj is None or obj is True or obj is False:
        write(dumps(obj))
    else:
        dump(_plain(obj), stream)


# --- decoding ---------------------------------------------------------------------------------

# MicroPython's UTF-8 decoder checks the byte structure only; these leads need one more
# check to reject what CPython rejects: overlong forms, surrogates, code points > U+10FFFF.
# (lead byte, lowest and highest allowed next byte), RFC 3629 §4.
_UTF8_LEADS = ((0xE0, 0xA0, 0xBF), (0xED, 0x80, 0x9F), (0xF0, 0x90, 0xBF), (0xF4, 0x80, 0x8F),
               (0xC0, 1, 0), (0xC1, 1, 0), (0xF5, 1, 0), (0xF6, 1, 0), (0xF7, 1, 0))


def _check_utf8(data):
    for lead, low, high in _UTF8_LEADS:
        pattern = bytes((lead,))
        at = data.find(pattern)
        while at >= 0:
            follow = data[at + 1]  # present: the structure was checked by decode()
            if follow < low or follow > high:
                raise DecodeError("CBOR: invalid UTF-8 in text string")
            at = data.find(pattern, at + 1)


class _Decoder:
    """Recursive decoder over _byte() and _take(n), given by the buffer and stream kinds."""

    def __init__(self, canonical, max_depth, max_len, max_items, max_total):
        self.canonical = canonical
        self.max_depth = max_depth
        self.max_len = max_len
        self.max_items = max_items
        self.budget = max_total

    def _arg(self, ai):
        """The argument that follows an initial byte with additional info 24..27."""
        if ai == 24:
            n = self._byte()
            low = 24
        else:
            size = 1 << (ai - 24)  # 2, 4 or 8 bytes
            n = int.from_bytes(self._take(size), "big")
            low = 1 << (size << 2)  # smallest value that needs this size
        if n < low and self.canonical:
            raise DecodeError("CBOR: head not in shortest form")
        return n

    def _string(self, n):
        if n > self.max_len:
            raise DecodeError("CBOR: string longer than the limit")
        self.budget -= n
        if self.budget < 0:
            raise DecodeError(_OVER_TOTAL)
        return self._take(n)

    def item(self, depth):
        ib = self._byte()
        major = ib >> 5
        ai = ib & 31
        if ai < 24:
            n = ai
        elif ai < 28 and major != 7:
            n = self._arg(ai)
        elif major == 7:
            n = 0  # a float or a two-byte simple value: refused below
        else:
            raise DecodeError(f"CBOR: indefinite length or reserved info (0x{ib:02x})")
        # Tested in order of frequency in our structures: text, unsigned, bytes, containers.
        if major == 3:
            data = self._string(n)
            try:
                text = str(data, "utf-8")
            except UnicodeError:
                raise DecodeError("CBOR: invalid UTF-8 in text string") from None
            if IS_MICROPYTHON and len(text) != n:
                _check_utf8(data)
            return text
        if major == 0:
            return n
        if major == 2:
            return self._string(n)
        if major == 4 or major == 5:
            if depth >= self.max_depth:
                raise DecodeError("CBOR: nested deeper than the limit")
            if n > self.max_items:
                raise DecodeError("CBOR: more entries than the limit")
            depth += 1
            if major == 4:
                self.budget -= n * ITEM_COST
                if self.budget < 0:
                    raise DecodeError(_OVER_TOTAL)
                items = []
                for _ in range(n):
                    items.append(self.item(depth))
                return items
            self.budget -= 2 * n * ITEM_COST
            if self.budget < 0:
                raise DecodeError(_OVER_TOTAL)
            return self._map(n, depth)
        if major == 1:
            return -1 - n
        if major == 6:
            raise DecodeError(f"CBOR: tag {n} not accepted (no bignums: ints stop at 64 bits)")
        if ib == 0xF4:
            return False
        if ib == 0xF5:
            return True
        if ib == 0xF6:
            return None
        raise DecodeError(f"CBOR: float or unsupported simple value (0x{ib:02x})")

    def _map(self, n, depth):
        result = {}
        previous = None
        item = self.item
        for count in range(1, n + 1):
            key = item(depth)
            kind = type(key)
            if kind is list or kind is dict:
                raise DecodeError("CBOR: map key is an array or a map")
            if self.canonical:
                encoded = dumps(key)  # equals the input bytes: the key passed canonical checks
                if previous is not None and encoded <= previous:
                    raise DecodeError("CBOR: map keys not in canonical order")
                previous = encoded
            result[key] = item(depth)
            if len(result) != count:
                raise DecodeError("CBOR: duplicate map key")
        return result

    def run(self):
        try:
            return self.item(0)
        except MemoryError:
            # Hostile or just too big for this heap: either way the input is refused. No
            # formatting here: after a MemoryError there may be no heap for it.
            raise DecodeError("CBOR: out of memory decoding the item") from None
        except (ValueError, IndexError, TypeError, KeyError, OverflowError, RuntimeError) as err:
            # Safety net at the one place input enters: the checks above should leave nothing
            # for it, but hostile input must never surface as another exception type.
            raise DecodeError("CBOR: malformed input (" + type(err).__name__ + ")") from err


class _BufferDecoder(_Decoder):
    def _byte(self):
        at = self.pos
        if at >= self.end:
            raise DecodeError(_TRUNCATED)
        self.pos = at + 1
        return self.data[at]

    def _take(self, n):
        start = self.pos
        end = start + n
        if end > self.end:
            raise DecodeError(_TRUNCATED)
        self.pos = end
        piece = self.data[start:end]
        return piece if type(piece) is bytes else bytes(piece)


class _StreamDecoder(_Decoder):
    def _byte(self):
        data = self.read(1)
        if not data:
            raise DecodeError(_TRUNCATED)
        return data[0]

    def _take(self, n):
        # A hostile declared length must cost only what actually arrives: the buffer starts at
        # one chunk at most and doubles as bytes come, so it stays under 2 x received + chunk.
        # The usual case is one read and no copy. Few, growing buffers (not a list of small
        # parts, nor += per read) keep MicroPython's heap from fragmenting on slow sockets.
        size = min(n, _STREAM_CHUNK)
        part = self.read(size)
        if part and len(part) == n:
            return part if type(part) is bytes else bytes(part)
        buf = bytearray(size)
        have = 0
        while part:
            end = have + len(part)
            if end > n:
                raise DecodeError("CBOR: stream returned more bytes than asked")
            if end > size:
                size = min(n, max(size << 1, end))
                bigger = bytearray(size)
                bigger[:have] = memoryview(buf)[:have]
                buf = bigger
            buf[have:end] = part
            have = end
            if have == n:
                return bytes(buf)
            left = n - have
            part = self.read(min(left, _STREAM_CHUNK))
        if n == 0:
            return b""
        raise DecodeError(_TRUNCATED)


def loads(data, canonical=False, max_depth=MAX_DEPTH, max_len=MAX_LEN, max_items=MAX_ITEMS,
          max_total=MAX_TOTAL):
    """Decode the one CBOR item that fills data (bytes-like); DecodeError on any fault."""
    if type(data) is not bytes:
        data = memoryview(data)  # slices of a bytearray would copy into bytearrays
    decoder = _BufferDecoder(canonical, max_depth, max_len, max_items, max_total)
    decoder.data = data
    decoder.pos = 0
    decoder.end = len(data)
    obj = decoder.run()
    if decoder.pos != decoder.end:
        raise DecodeError(f"CBOR: {decoder.end - decoder.pos} bytes after the item")
    return obj


def load(stream, canonical=False, max_depth=MAX_DEPTH, max_len=MAX_LEN, max_items=MAX_ITEMS,
         max_total=MAX_TOTAL):
    """Read exactly one CBOR item from stream.read(n); DecodeError on any fault.

    A stream that returns nothing (end of file, or None from a non-blocking socket) before the
    item is complete counts as truncated input.
    """
    decoder = _StreamDecoder(canonical, max_depth, max_len, max_items, max_total)
    decoder.read = stream.read
    return decoder.run()
