# Canonical export and atomic restore of a DB MiMei (leither.db), kept apart so that the
# engine's resident code stays small: only a backup or a restore loads this module.
#
# The export is one CBOR map {key: [type, content]} in RFC 8949 deterministic order (the tree
# already sorts records by the CBOR encoding of key, field and member, which is that order):
#   "string": the value | "hash": map field -> value | "list": array of items |
#   "set": array of members in canonical order | "zset": map member -> integer score.
# It depends only on the content, never on the order of the writes, so the backup of a db
# hashes the same however it was built. It streams: one page of records at a time.
"""Streamed canonical export and atomic restore of a db."""

import os
import struct

from . import dbpage
from .compat import const
from .dbcodec import MAX_KEY, MAX_VALUE, NAMES, cbor_head, enc, from_score
from .dbpage import Tree
from .errors import DecodeError, StoreError

_PIECE = const(1024)  # bytes per export piece: small enough for an RPC frame and the heap
_HASH = const(0x68)
_LIST = const(0x6C)
_SET = const(0x74)
_ZSET = const(0x7A)
_STRING = const(0x73)


def export(db):
    """Yield the export of db's committed content in pieces (an open transaction's writes
    are not in it; the db must not be written meanwhile)."""
    t = db._tree()
    writes = t.writes
    out = _Out()
    out.add(cbor_head(5, t._committed[3]))
    k = None  # encoding of the current key
    kind = 0
    left = 0  # records of the current key still expected
    for rk, v in t.scan(b"", None, True):
        if t.writes != writes:
            raise StoreError("db changed during export")
        if k is not None and rk.startswith(k) and len(rk) > len(k):
            tag = rk[len(k)]
            if tag == 0x66 and kind in (_HASH, _SET):  # "f": field or member
                out.add(rk, len(k) + 1)
                if kind == _HASH:
                    out.add(v)
            elif tag == 0x69 and kind == _LIST:  # "i": list item
                out.add(v)
            elif tag == 0x6D and kind == _ZSET:  # "m": member -> score
                out.add(rk, len(k) + 1)
                s = from_score(v)
                out.add(cbor_head(0, s) if s >= 0 else cbor_head(1, -1 - s))
            elif tag == 0x73 and kind == _ZSET:  # "s": score order, implied by the map
                continue
            else:
                raise StoreError("db record out of place")
            left -= 1
        else:
            if left or v[0] not in NAMES:
                raise StoreError("db collection corrupt")
            k = rk
            kind = v[0]
            out.add(rk)
            out.add(b"\x82")
            out.add(enc(NAMES[kind], MAX_KEY))
            if kind == _STRING:
                out.add(v, 1)
            else:
                left = struct.unpack(">I", v[-4:])[0]
                out.add(cbor_head(5 if kind in (_HASH, _ZSET) else 4, left))
        if out.n >= _PIECE:
            yield out.take()
    if left:
        raise StoreError("db collection corrupt")
    if out.n:
        yield out.take()
    out.done()


class _Out:
    """The piece being built, in a spare page buffer (2 KiB: a piece plus the largest
    record, ~1012 bytes): a growing bytearray would need ever larger free runs of heap."""

    def __init__(self):
        self.buf = dbpage._take()
        self.n = 0

    def done(self):
        dbpage._pool.append(self.buf)

    def add(self, data, start=0):
        end = self.n + len(data) - start
        self.buf[self.n:end] = memoryview(data)[start:]
        self.n = end

    def take(self):
        piece = bytes(memoryview(self.buf)[:self.n])
        self.n = 0
        return piece


def restore(cls, path, pieces):
    """Build a new tree generation in `path` from an export stream, then switch to it with
    the one atomic root rename; on any error the new generation's files are removed."""
    from .compat import makedirs

    makedirs(path)
    old = Tree(path)  # recovery also removes the leftovers of an interrupted restore
    gen = old.fgen + 1
    old.close()
    t = Tree(path, fresh_gen=gen)
    db = cls(path, t)
    db._tx = True  # no commit per record: one commit at the end
    try:
        _load(db, _Stream(pieces))
        t.commit()
    except Exception:
        t.close()
        _remove(path, "%d." % gen, True)
        raise
    t.close()
    _remove(path, "%d." % gen, False)


def _remove(path, prefix, match):
    """Remove the segment files whose name starts with prefix (match) or does not (not)."""
    for name in os.listdir(path):
        if name[0] in "0123456789" and name.startswith(prefix) == match:
            os.remove(path + "/" + name)


def _load(db, s):
    major, n = s.head()
    if major != 5:
        raise DecodeError("db stream: not a map")
    for _ in range(n):
        key = s.item(MAX_KEY)
        if s.head() != (4, 2):
            raise DecodeError("db stream: entry is not [type, content]")
        kind = s.item(8)
        if kind == "string":
            db._set(key, s.item(MAX_VALUE))
            continue
        major, count = s.head()
        if kind == "hash" and major == 5:
            for _ in range(count):
                field = s.item(MAX_KEY)
                db._hset(key, field, s.item(MAX_VALUE))
        elif kind == "list" and major == 4:
            for _ in range(count):
                db._push(key, (s.item(MAX_VALUE),), False)
        elif kind == "set" and major == 4:
            for _ in range(count):
                db._sadd(key, s.item(MAX_KEY))
        elif kind == "zset" and major == 5:
            for _ in range(count):
                member = s.item(MAX_KEY)
                db._zadd(key, s.integer(), member)
        else:
            raise DecodeError("db stream: bad entry type")
    s.end()


class _Stream:
    """Reads the CBOR subset of an export from an iterator of bytes pieces. Hostile input:
    every length is bounded by the caller, indefinite lengths are refused."""

    def __init__(self, pieces):
        self._it = iter(pieces)
        self._buf = b""
        self._pos = 0

    def read(self, n):
        while len(self._buf) - self._pos < n:
            piece = next(self._it, None)
            if piece is None:
                raise DecodeError("db stream truncated")
            self._buf = self._buf[self._pos:] + bytes(piece)
            self._pos = 0
        out = self._buf[self._pos:self._pos + n]
        self._pos += n
        return out

    def head(self):
        ib = self.read(1)[0]
        ai = ib & 31
        if ai < 24:
            n = ai
        elif ai < 28:
            n = 0
            for c in self.read(1 << (ai - 24)):
                n = (n << 8) | c
        else:
            raise DecodeError("db stream: indefinite or reserved length")
        return ib >> 5, n

    def item(self, limit):
        """A str or bytes of at most limit bytes."""
        major, n = self.head()
        if major not in (2, 3) or n > limit:
            raise DecodeError("db stream: expected str/bytes of at most %d bytes" % limit)
        data = self.read(n)
        if major == 2:
            return data
        try:
            return data.decode()
        except ValueError:  # UnicodeError on MicroPython is a ValueError too
            raise DecodeError("db stream: bad UTF-8") from None

    def integer(self):
        major, n = self.head()
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        raise DecodeError("db stream: expected an integer")

    def end(self):
        if self._pos < len(self._buf):
            raise DecodeError("db stream: trailing bytes")
        for piece in self._it:
            if piece:
                raise DecodeError("db stream: trailing bytes")
