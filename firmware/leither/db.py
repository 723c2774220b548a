# The DB MiMei engine: Leither's Redis-like methods (strings, hashes, lists, sets, sorted sets,
# transactions) on the copy-on-write page tree of leither.dbpage, plus a canonical streamed
# export and an atomic restore.
#
# Records (all in one ordered tree; K = the CBOR encoding of the key, prefix-free, so the
# records of one key are contiguous and keys sort in RFC 8949 deterministic order):
#   K                          -> type byte + data   the key's meta record
#     "s" + CBOR(value)            string
#     "h"/"t"/"z" + count(4)       hash / set / sorted set
#     "l" + head(4) + count(4)     list: items live at indices head .. head+count-1
#   K "f" CBOR(field)          -> CBOR(value)        hash field (set member: empty value)
#   K "i" index(4)             -> CBOR(value)        list item (index biased by 2**31)
#   K "m" CBOR(member)         -> score(8)           sorted-set member
#   K "s" score(8) CBOR(member) -> ""                sorted-set order (score, then member)
# Scores are 8-byte big-endian integers biased by 2**63 so that bytes sort like numbers.
#
# Types and limits (documented contract):
# * keys, fields and members are str or bytes of at most 200 bytes (UTF-8 for str); "a" and
#   b"a" are different keys, like in CBOR. Values are str or bytes of at most 600 bytes; an
#   int value is stored as its decimal str (like Redis). Reads return what was stored.
# * Scores are integers in [-2**63, 2**63) (no floats: DESIGN §2 bans them from our encoding).
#   Members with equal scores sort by their CBOR encoding (shorter first, then bytewise).
# * Like Redis, an empty hash, list, set or sorted set does not exist; WRONGTYPE, non-integer
#   values and bad arguments raise StoreError.
# * Returns as Redis: "OK" (Set, Hmset, Lset, Begin, Commit, Rollback), counts of added or
#   removed items, new lengths, None for a missing value; Hgetall gives a dict, Smembers,
#   Sinter, Sunion, Sdiff and Hkeys lists in canonical order, withscores a flat list
#   [member, score, ...]. Zrangebyscore bounds: an int, "(n" (exclusive), "-inf", "+inf".
# * Outside a transaction every write method is atomic and durable when it returns. Between
#   Begin and Commit the writes are visible to this handle and become durable all together at
#   Commit; Rollback, close() or a crash drops them. A write that fails half way inside a
#   transaction poisons it: Commit then rolls back and raises. export() streams the committed
#   content only. One DB object per directory, used by one task at a time.
"""Redis-like database stored on flash, crash safe, bounded RAM (the `db` MiMei type)."""

import struct

from .compat import const
from .dbcodec import (
    MAX_KEY,
    MAX_VALUE,
    NAMES,
    READ_BYTES,
    READ_ITEMS,
    add_int,
    count_of,
    dec,
    enc,
    pair_up,
    too_big,
    writer,
)
from .dbpage import Tree
from .errors import StoreError

_BATCH = const(32)  # records collected per step when deleting a whole key
_S = const(0x73)  # "s"
_H = const(0x68)  # "h"
_L = const(0x6C)  # "l"
_T = const(0x74)  # "t" (set)
_Z = const(0x7A)  # "z"
_WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"

# The methods db.call() may run (Leither names).
API = (
    "Set", "Get", "Del", "Incr", "IncrBy", "Strlen", "Exists", "Type", "Scan",
    "Hset", "Hget", "Hdel", "Hlen", "Hmget", "Hmset", "Hgetall", "Hkeys", "HincrBy",
    "Lpush", "Rpush", "Lpop", "Rpop", "Lrange", "Lindex", "Llen", "Lset",
    "Sadd", "Srem", "Scard", "Smembers", "Sismember", "Sinter", "Sunion", "Sdiff",
    "Zadd", "Zrem", "Zscore", "Zrank", "Zrange", "Zrevrange", "Zrangebyscore", "ZincrBy",
    "Zcard", "Zcount", "Zrevrangebyscore", "Zremrangebyscore",
    "Hscan", "Sscan", "Hmclear", "Lclear", "Sclear", "Zclear",
    "Begin", "Commit", "Rollback",
)


class DB:
    """A db MiMei working copy in directory `path` (owned by this object).

    Methods carry Leither's names and Redis semantics; see the file header for types, limits
    and durability. The RPC layer uses call(name, args)."""

    _coll = False  # leither.dbcoll's methods installed

    def __init__(self, path, _tree=None):
        if _tree is None:
            from .compat import makedirs

            makedirs(path)
            _tree = Tree(path)
        self.path = path
        self._t = _tree
        self._tx = False
        self._broken = False

    # ----- plumbing -----

    def call(self, name, args):
        """Run method `name` with the argument list of an RPC request."""
        if name not in API:
            raise StoreError(f"unknown db method {name}")
        try:
            return getattr(self, name)(*args)
        except TypeError as err:
            raise StoreError(f"bad arguments for {name}: {err}") from err

    def _tree(self):
        if self._t is None:
            raise StoreError("db is closed")
        return self._t

    def _run(self, impl, args):
        t = self._tree()
        writes = t.writes
        try:
            result = impl(self, *args)
            if not self._tx and t.writes != writes:
                t.commit()
            return result
        except Exception as err:
            if self._tx:
                if t.writes != writes:  # half done: the transaction cannot commit
                    self._broken = True
            else:
                t.rollback()
            if isinstance(err, OSError):
                raise StoreError(f"db write failed (disk full?): {err}") from err
            raise

    def _meta(self, key, want):
        """(K, meta record or None) of key; StoreError if it holds another type."""
        k = enc(key, MAX_KEY)
        m = self._tree().get(k)
        if m is not None and want and m[0] != want:
            raise StoreError(_WRONGTYPE)
        return k, m

    def _drop_key(self, k, m):
        """Delete key k (meta m) with every record it owns."""
        t = self._t
        while m[0] != _S:
            batch = []
            for rk, _ in t.scan(k + b"\x00", k + b"\xff"):
                batch.append(rk)
                if len(batch) >= _BATCH:
                    break
            if not batch:
                break
            for rk in batch:
                t.delete(rk)
        t.delete(k)
        t.user -= 1

    def _resize(self, k, m, kind, delta):
        """Store a collection's new size; an empty collection disappears."""
        t = self._t
        n = (0 if m is None else count_of(m)) + delta
        if m is not None and not n:
            t.delete(k)
            t.user -= 1
        elif delta:
            if m is None:
                t.user += 1
            t.put(k, bytes((kind,)) + struct.pack(">I", n))

    def _scan_items(self, lo, hi, skip, withvalues, size):
        """Decoded key suffixes (after skip bytes; none if skip < 0) of the `size` records
        lo <= key < hi; with withvalues the decoded values follow each. The list is made
        at its final size: growing it would need ever larger free runs of a small heap.
        StoreError (too_big) past READ_ITEMS values or READ_BYTES bytes."""
        n = size * ((skip >= 0) + withvalues)
        if n > READ_ITEMS:
            raise too_big(n, "collection")
        out = [None] * n
        j = 0
        gathered = 0
        for rk, v in self._tree().scan(lo, hi):
            if j >= len(out):
                break
            gathered += len(rk) + len(v)
            if gathered > READ_BYTES:
                raise too_big(j, "collection")
            if skip >= 0:
                out[j] = dec(rk, skip)
                j += 1
            if withvalues:
                out[j] = dec(v)
                j += 1
        if j < len(out):
            raise StoreError("db collection count wrong")
        return out

    def _card(self, key, kind):
        return 0 if (m := self._meta(key, kind)[1]) is None else count_of(m)

    # ----- keys and strings -----

    def _set(self, key, value):
        v = enc(value, MAX_VALUE)
        k, m = self._meta(key, 0)
        if m is not None and m[0] != _S:
            self._drop_key(k, m)
            m = None
        if m is None:
            self._t.user += 1
        self._t.put(k, b"s" + v)
        return "OK"

    Set = writer(_set)  # Set(key, value) -> "OK"; replaces a key of any type

    def Get(self, key):
        """The string at key, or None."""
        m = self._meta(key, _S)[1]
        return None if m is None else dec(m, 1)

    def _del(self, *keys):
        n = 0
        for key in keys:
            k, m = self._meta(key, 0)
            if m is not None:
                self._drop_key(k, m)
                n += 1
        return n

    Del = writer(_del)  # Del(key, ...) -> how many existed

    def Exists(self, *keys):
        """How many of keys exist."""
        return sum(1 for key in keys if self._meta(key, 0)[1] is not None)

    def Type(self, key):
        """"string", "hash", "list", "set", "zset" or "none"."""
        m = self._meta(key, 0)[1]
        return "none" if m is None else NAMES[m[0]]

    def Scan(self, cursor="", count=10):
        """Up to count keys after key `cursor` ("": from the start) in canonical order, fewer
        when they pass READ_BYTES: [next cursor ("" when done), [key, ...]]. Redis's SCAN:
        a board lists its keys a page at a time, never the whole database (no KEYS)."""
        t = self._tree()
        if type(count) is not int:
            raise StoreError("count is not an integer")
        count = min(max(count, 1), READ_ITEMS)
        # A key's record is its encoding alone and its entries extend that encoding; the
        # encodings are prefix-free (CBOR heads), so enc(key) + 0xff is past all of key's
        # entries and before the next key: one seek per key, whatever its size.
        lo = enc(cursor, MAX_KEY) + b"\xff" if cursor != "" else b""
        out = []
        last = ""
        gathered = 0
        while True:
            rk = next(t.scan(lo), None)
            if rk is None:
                return ["", out]
            rk = rk[0]
            if len(out) >= count or gathered + len(rk) > READ_BYTES:
                return [last, out]  # more after last
            gathered += len(rk)
            last = dec(rk)
            out.append(last)
            lo = bytes(rk) + b"\xff"

    def _incrby(self, key, increment=1):
        k, m = self._meta(key, _S)
        new, v = add_int(None if m is None else m[1:], increment)
        if m is None:
            self._t.user += 1
        self._t.put(k, b"s" + v)
        return new

    # Incr(key), IncrBy(key, n) -> the new value; the string must be an integer
    Incr = IncrBy = writer(_incrby)

    def Strlen(self, key):
        """Length in bytes (UTF-8 for str) of the string at key; 0 if absent."""
        v = self.Get(key)
        return 0 if v is None else len(v.encode() if isinstance(v, str) else v)

    # ----- hashes (and the field records sets share) -----

    def _fput(self, key, kind, pairs):
        k, m = self._meta(key, kind)
        items = [(k + b"f" + enc(f, MAX_KEY), enc(v, MAX_VALUE) if kind == _H else b"")
                 for f, v in pairs]  # encode (so check) everything before writing
        added = 0
        for rk, v in items:
            if self._t.put(rk, v):
                added += 1
        self._resize(k, m, kind, added)
        return added

    def _fdel(self, key, kind, names):
        k, m = self._meta(key, kind)
        rks = [k + b"f" + enc(f, MAX_KEY) for f in names]
        n = 0
        if m is not None:
            for rk in rks:
                if self._t.delete(rk):
                    n += 1
            self._resize(k, m, kind, -n)
        return n

    def _fget(self, key, kind, name):
        """The stored record of field/member name, or None."""
        k, m = self._meta(key, kind)
        rk = k + b"f" + enc(name, MAX_KEY)
        return None if m is None else self._t.get(rk)

    def _fnames(self, key, kind, withvalues=False):
        k, m = self._meta(key, kind)
        if m is None:
            return []
        return self._scan_items(k + b"f", k + b"g", len(k) + 1, withvalues, count_of(m))

    def _hset(self, key, *pairs):
        return self._fput(key, _H, pair_up(pairs))

    Hset = writer(_hset)  # Hset(key, field, value, ...) -> how many fields are new

    def _hmset(self, key, *pairs):
        if len(pairs) == 1 and isinstance(pairs[0], dict):
            pairs = list(pairs[0].items())
        else:
            pairs = pair_up(pairs)
        self._fput(key, _H, pairs)
        return "OK"

    Hmset = writer(_hmset)  # Hmset(key, {field: value}) or (key, field, value, ...) -> "OK"

    def Hget(self, key, field):
        v = self._fget(key, _H, field)
        return None if v is None else dec(v)

    def Hmget(self, key, *fields):
        """Values of fields (None where absent); fields may also come as one list."""
        if len(fields) == 1 and isinstance(fields[0], (list, tuple)):
            fields = fields[0]
        return [self.Hget(key, f) for f in fields]

    def _hdel(self, key, *fields):
        return self._fdel(key, _H, fields)

    Hdel = writer(_hdel)  # Hdel(key, field, ...) -> how many existed

    def Hlen(self, key):
        return self._card(key, _H)

    def Hgetall(self, key):
        """The hash as a dict (up to READ_ITEMS / 2 fields; read bigger ones with Hscan)."""
        flat = self._fnames(key, _H, True)
        return {flat[j]: flat[j + 1] for j in range(0, len(flat), 2)}

    def Hkeys(self, key):
        """Field names in canonical (CBOR) order."""
        return self._fnames(key, _H)

    def _hincrby(self, key, field, increment):
        k, m = self._meta(key, _H)
        rk = k + b"f" + enc(field, MAX_KEY)
        old = None if m is None else self._t.get(rk)
        new, v = add_int(old, increment)
        self._t.put(rk, v)
        self._resize(k, m, _H, old is None)
        return new

    HincrBy = writer(_hincrby)  # HincrBy(key, field, n) -> the new value

    def __getattr__(self, name):
        # Lists, sets and sorted sets live in leither.dbcoll, loaded on first use so that a
        # db of strings and hashes leaves more of a small heap to the page cache.
        if name.startswith("__") or DB._coll:
            raise AttributeError(name)
        from . import dbcoll

        for method in dbcoll.METHODS:
            setattr(DB, method, getattr(dbcoll, method))
        DB._coll = True
        return getattr(self, name)

    # ----- transactions -----

    def Begin(self):
        """Open a transaction: the following writes commit all together or not at all."""
        self._tree()
        if self._tx:
            raise StoreError("transaction already open")
        self._tx = True
        self._broken = False
        return "OK"

    def Commit(self):
        t = self._end_tx()
        if self._broken:
            t.rollback()
            raise StoreError("transaction failed part way: rolled back")
        try:
            t.commit()
        except OSError as err:
            t.rollback()
            raise StoreError(f"db commit failed (disk full?): {err}") from err
        return "OK"

    def Rollback(self):
        self._end_tx().rollback()
        return "OK"

    def _end_tx(self):
        t = self._tree()
        if not self._tx:
            raise StoreError("no transaction open")
        self._tx = False
        return t

    # ----- whole db -----

    def close(self):
        """Close; an open transaction is rolled back."""
        if self._t is not None:
            if self._tx:
                self.Rollback()
            self._t.close()
            self._t = None

    def size(self):
        """Bytes of pages the db uses on disk."""
        return self._tree().size()

    def export(self):
        """Yield the canonical serialization of the committed content (not an open
        transaction's writes) in pieces of about 1 KiB (see leither.dbio)."""
        from .dbio import export

        return export(self)

    @classmethod
    def restore(cls, path, pieces):
        """Replace the db in `path` by the content of an export() stream, atomically: a
        crash or a bad stream leaves the old content. The db must not be open."""
        from .dbio import restore

        restore(cls, path, pieces)
