# Lists, sets and sorted sets of the DB MiMei (leither.db). Plain functions taking the db as
# `self`, installed as DB methods on first use (see DB.__getattr__): the engine's resident code
# stays small until an application uses these types. Record layout: see leither.db.
"""Lists, sets and sorted sets for leither.db."""

import struct

from .compat import const
from .dbcodec import (
    READ_BYTES,
    READ_ITEMS,
    check_int,
    count_of,
    dec,
    enc,
    from_score,
    pair_up,
    parse_int,
    span,
    to_score,
    too_big,
    writer,
)
from .errors import StoreError

MAX_KEY = const(200)  # as leither.dbcodec.MAX_KEY
MAX_VALUE = const(600)  # as leither.dbcodec.MAX_VALUE
_LIST_BASE = const(0x80000000)  # index of a new list's first item (room on both sides)
_L = const(0x6C)  # "l"
_T = const(0x74)  # "t" (set)
_Z = const(0x7A)  # "z"
_BIAS = 1 << 63

# ----- lists -----

def _list(self, key):
    """(K, meta, head index, length) of a list (meta None: no list)."""
    k, m = self._meta(key, _L)
    if m is None:
        return k, None, _LIST_BASE, 0
    head, n = struct.unpack(">II", m[1:9])
    return k, m, head, n

def _item(self, k, i):
    return k + b"i" + struct.pack(">I", i)

def _relist(self, k, m, head, n):
    t = self._t
    if not n:
        t.delete(k)
        t.user -= 1
        return
    if m is None:
        t.user += 1
    t.put(k, b"l" + struct.pack(">II", head, n))

def _push(self, key, values, left):
    vs = [enc(v, MAX_VALUE) for v in values]
    if not vs:
        raise StoreError("wrong number of arguments")
    k, m, head, n = self._list(key)
    if (left and head < len(vs)) or head + n + len(vs) > 0xFFFFFFFF:
        raise StoreError("list index space exhausted")
    for v in vs:
        if left:
            head -= 1
        self._t.put(self._item(k, head if left else head + n), v)
        n += 1
    self._relist(k, m, head, n)
    return n

def _lpush(self, key, *values):
    return self._push(key, values, True)

def _rpush(self, key, *values):
    return self._push(key, values, False)

Lpush = writer(_lpush)  # Lpush(key, value, ...) -> new length (each pushed at the head)
Rpush = writer(_rpush)  # Rpush(key, value, ...) -> new length

def _pop(self, key, left):
    k, m, head, n = self._list(key)
    if m is None:
        return None
    rk = self._item(k, head if left else head + n - 1)
    v = self._t.get(rk)
    if v is None:
        raise StoreError("db list corrupt")
    self._t.delete(rk)
    self._relist(k, m, head + 1 if left else head, n - 1)
    return dec(v)

def _lpop(self, key):
    return self._pop(key, True)

def _rpop(self, key):
    return self._pop(key, False)

Lpop = writer(_lpop)  # Lpop(key) -> first item or None
Rpop = writer(_rpop)  # Rpop(key) -> last item or None

def Lrange(self, key, start, stop):
    """Items start..stop inclusive (negative indices count from the end)."""
    k, _m, head, n = self._list(key)
    start, stop = span(start, stop, n)
    if start > stop:
        return []
    return self._scan_items(self._item(k, head + start), self._item(k, head + stop + 1), -1,
                            True, stop - start + 1)

def Lindex(self, key, index):
    k, _m, head, n = self._list(key)
    i = check_int(index, "index")
    i = i + n if i < 0 else i
    if i < 0 or i >= n:
        return None
    return dec(self._t.get(self._item(k, head + i)))

def Llen(self, key):
    return self._list(key)[3]

def _lset(self, key, index, value):
    v = enc(value, MAX_VALUE)
    k, m, head, n = self._list(key)
    if m is None:
        raise StoreError("no such key")
    i = check_int(index, "index")
    i = i + n if i < 0 else i
    if i < 0 or i >= n:
        raise StoreError("index out of range")
    self._t.put(self._item(k, head + i), v)
    return "OK"

Lset = writer(_lset)  # Lset(key, index, value) -> "OK"

# ----- sets -----

def _sadd(self, key, *members):
    return self._fput(key, _T, [(x, None) for x in members])

Sadd = writer(_sadd)  # Sadd(key, member, ...) -> how many were new

def _srem(self, key, *members):
    return self._fdel(key, _T, members)

Srem = writer(_srem)  # Srem(key, member, ...) -> how many were there

def Scard(self, key):
    return self._card(key, _T)

def Sismember(self, key, member):
    return 0 if self._fget(key, _T, member) is None else 1

def Smembers(self, key):
    """Members in canonical (CBOR) order."""
    return self._fnames(key, _T)

def _combine(self, keys, mode):
    """Sinter (mode 0), Sunion (1), Sdiff (2) in canonical order: walk the members of
    each candidate set in order and probe the others; no set is loaded whole."""
    if not keys:
        raise StoreError("wrong number of arguments")
    sets = [self._meta(key, _T) for key in keys]
    t = self._t
    out = []
    gathered = 0
    seen = []  # sets already walked (union: skip members they had)
    for j in range(len(sets) if mode == 1 else 1):
        k0, m0 = sets[j]
        if m0 is None:
            continue
        for rk, _ in t.scan(k0 + b"f", k0 + b"g"):
            mem = rk[len(k0):]
            keep = True
            if mode == 1:
                for k, _m in seen:
                    if t.get(k + mem) is not None:
                        keep = False
                        break
            else:
                for k, m in sets[1:]:
                    if (m is not None and t.get(k + mem) is not None) != (mode == 0):
                        keep = False
                        break
            if keep:
                gathered += len(mem)
                if len(out) >= READ_ITEMS or gathered > READ_BYTES:
                    raise too_big(len(out) + 1, "set operation")
                out.append(mem if mode == 1 else dec(mem, 1))
        seen.append(sets[j])
    if mode == 1:
        out.sort()  # by encoding: canonical order; then decoded in place (no second list)
        for i in range(len(out)):
            out[i] = dec(out[i], 1)
    return out

def Sinter(self, *keys):
    """Members in every set."""
    return self._combine(keys, 0)

def Sunion(self, *keys):
    """Members in any set."""
    return self._combine(keys, 1)

def Sdiff(self, *keys):
    """Members of the first set in none of the others."""
    return self._combine(keys, 2)

# ----- sorted sets -----

def _zadd(self, key, *pairs, incr=False):
    k, m = self._meta(key, _Z)
    items = [(check_int(s, "score"), enc(x, MAX_KEY)) for s, x in pair_up(pairs)]
    t = self._t
    added = 0
    for score, mem in items:
        mk = k + b"m" + mem
        old = t.get(mk)
        if old is not None:
            if incr:
                score += from_score(old)
            new = to_score(score)
            if new == old:
                continue
            t.delete(k + b"s" + old + mem)
        else:
            new = to_score(score)
            added += 1
        t.put(mk, new)
        t.put(k + b"s" + new + mem, b"")
    self._resize(k, m, _Z, added)
    return score if incr else added

Zadd = writer(_zadd)  # Zadd(key, score, member, ...) -> how many members are new

def _zincrby(self, key, increment, member):
    return self._zadd(key, increment, member, incr=True)

ZincrBy = writer(_zincrby)  # ZincrBy(key, n, member) -> the new score

def _zrem(self, key, *members):
    k, m = self._meta(key, _Z)
    mems = [enc(x, MAX_KEY) for x in members]
    n = 0
    for mem in mems if m is not None else ():
        old = self._t.get(k + b"m" + mem)
        if old is not None:
            self._t.delete(k + b"m" + mem)
            self._t.delete(k + b"s" + old + mem)
            n += 1
    self._resize(k, m, _Z, -n)
    return n

Zrem = writer(_zrem)  # Zrem(key, member, ...) -> how many were there

def _zget(self, key, member):
    """(K, member encoding, score record or None)."""
    k, m = self._meta(key, _Z)
    mem = enc(member, MAX_KEY)
    return k, mem, None if m is None else self._t.get(k + b"m" + mem)

def Zscore(self, key, member):
    v = self._zget(key, member)[2]
    return None if v is None else from_score(v)

def Zcard(self, key):
    return self._card(key, _Z)

def Zrank(self, key, member):
    """0-based rank by (score, member), or None."""
    k, mem, v = self._zget(key, member)
    if v is None:
        return None
    return self._t.rank(k + b"s" + v + mem) - self._t.rank(k + b"s")

def _zlist(self, k, a, b, offset, count, withscores, size):
    """Members (and scores) of score records a <= key < b, after offset, at most count;
    size bounds how many there can be (the list is made at that size, then cut)."""
    if count < 0 or count > size:
        count = size
    step = 2 if withscores else 1
    if count * step > READ_ITEMS:
        raise too_big(count * step, "sorted set range")
    out = [None] * (count * step)
    j = 0
    for rk, _ in self._t.scan(a, b):
        if offset > 0:
            offset -= 1
            continue
        if j >= len(out):
            break
        out[j] = dec(rk, len(k) + 9)
        if withscores:
            out[j + 1] = from_score(rk, len(k) + 1)
        j += step
    if j < len(out):
        del out[j:]
    return out

def Zrange(self, key, start, stop, withscores=False, _rev=False):
    """Members by rank start..stop (Redis indices); withscores gives [m1, s1, m2, ...]."""
    k, m = self._meta(key, _Z)
    n = 0 if m is None else count_of(m)
    start, stop = span(start, stop, n)
    if start > stop:
        return []
    if _rev:
        start, stop = n - 1 - stop, n - 1 - start
    t = self._t
    out = self._zlist(k, t.select(t.rank(k + b"s") + start), k + b"t", 0,
                      stop - start + 1, withscores, stop - start + 1)
    if _rev:
        out.reverse()  # in place: a small heap may have no room for a second list
        if withscores:
            for j in range(0, len(out), 2):
                out[j], out[j + 1] = out[j + 1], out[j]
    return out

def Zrevrange(self, key, start, stop, withscores=False):
    """Like Zrange, counting from the highest score."""
    return self.Zrange(key, start, stop, withscores, True)

def _zbounds(self, key, lo, hi):
    """(K, meta, first record key, end record key) of scores lo..hi, where a bound is an
    int, "(n" (exclusive), "-inf" or "+inf"."""
    k, m = self._meta(key, _Z)
    keys = []
    for x, upper in ((lo, True), (hi, False)):
        shift = 0
        if isinstance(x, (str, bytes)):
            x = x.decode() if isinstance(x, bytes) else x
            if x in ("-inf", "+inf", "inf"):
                keys.append(k + (b"s" if x == "-inf" else b"t"))
                continue
            if x.startswith("("):
                shift = 1
                x = x[1:]
            x = parse_int(x)
        x = check_int(x, "score bound")
        # lower bound: first key at x (x + 1 if exclusive); upper: first key past x
        x += shift if upper else 1 - shift
        keys.append(k + (b"t" if x >= _BIAS else b"s" + struct.pack(">Q", x + _BIAS)))
    return k, m, keys[0], keys[1]

def Zrangebyscore(self, key, lo, hi, withscores=False, offset=0, count=-1):
    """Members with lo <= score <= hi, optionally from offset, at most count."""
    k, m, a, b = self._zbounds(key, lo, hi)
    if m is None or a >= b:
        return []
    return self._zlist(k, a, b, offset, count, withscores,
                       self._t.rank(b) - self._t.rank(a) - max(offset, 0))

def Zcount(self, key, lo, hi):
    """How many members have lo <= score <= hi."""
    _k, m, a, b = self._zbounds(key, lo, hi)
    if m is None or a >= b:
        return 0
    return self._t.rank(b) - self._t.rank(a)


def Zrevrangebyscore(self, key, hi, lo, withscores=False, offset=0, count=-1):
    """Members with hi >= score >= lo from the highest (Redis argument order: hi, lo)."""
    k, m, a, b = self._zbounds(key, lo, hi)
    if m is None or a >= b:
        return []
    total = self._t.rank(b) - self._t.rank(a)
    offset = max(offset, 0)
    # descending positions offset.. are ascending positions ..total - 1 - offset
    end = total - offset
    start = 0 if count < 0 else max(end - count, 0)
    if end <= start:
        return []
    out = self._zlist(k, a, b, start, end - start, withscores, end - start)
    out.reverse()
    if withscores:
        for j in range(0, len(out), 2):
            out[j], out[j + 1] = out[j + 1], out[j]
    return out


def _zremrangebyscore(self, key, lo, hi):
    k, m, a, b = self._zbounds(key, lo, hi)
    n = 0
    while m is not None and a < b:
        batch = [rk for rk, _ in _first(self._t.scan(a, b), 32)]
        if not batch:
            break
        for rk in batch:  # K "s" score(8) member -> also drop K "m" member
            self._t.delete(rk)
            self._t.delete(k + b"m" + rk[len(k) + 9:])
        n += len(batch)
    self._resize(k, m, _Z, -n)
    return n


Zremrangebyscore = writer(_zremrangebyscore)  # (key, lo, hi) -> how many were removed


def _first(it, n):
    out = []
    for item in it:
        out.append(item)
        if len(out) >= n:
            break
    return out


def _clearer(kind):
    """Hmclear, Lclear, Sclear, Zclear (LedisDB's names): delete a key of that type only;
    returns how many fields, items or members it held."""

    def clear(self, key):
        k, m = self._meta(key, kind)
        if m is None:
            return 0
        n = struct.unpack(">I", m[-4:])[0]
        self._drop_key(k, m)
        return n

    return writer(clear)


Hmclear = _clearer(0x68)
Lclear = _clearer(_L)
Sclear = _clearer(_T)
Zclear = _clearer(_Z)


def _scan(self, key, kind, cursor, count):
    """Up to count entries after `cursor` ("": from the start) in canonical order, fewer
    when they pass READ_BYTES: [next cursor ("" when done), [name(, value), ...]]."""
    k, m = self._meta(key, kind)
    if m is None:
        return ["", []]
    lo = k + b"f" + (enc(cursor, MAX_KEY) + b"\x00" if cursor != "" else b"")
    count = min(max(check_int(count, "count"), 1), READ_ITEMS // 2)
    out = []
    last = ""
    gathered = 0
    n = 0
    for rk, v in self._t.scan(lo, k + b"g"):
        if n >= count or gathered + len(rk) + len(v) > READ_BYTES:
            return [last, out]  # more after last
        gathered += len(rk) + len(v)
        last = dec(rk, len(k) + 1)
        out.append(last)
        if kind == 0x68:
            out.append(dec(v))
        n += 1
    return ["", out]


def Hscan(self, key, cursor="", count=10):
    """Up to count fields after field `cursor` ("" : from the start) in canonical order:
    [next cursor ("" when done), [field, value, ...]]."""
    return self._scan(key, 0x68, cursor, count)


def Sscan(self, key, cursor="", count=10):
    """Up to count members after `cursor` ("": from the start) in canonical order:
    [next cursor ("" when done), [member, ...]]."""
    return self._scan(key, _T, cursor, count)


METHODS = (
    "Zrevrangebyscore",
    "_zremrangebyscore",
    "Zremrangebyscore",
    "Hmclear",
    "Lclear",
    "Sclear",
    "Zclear",
    "_scan",
    "Hscan",
    "Sscan",
    "_list",
    "_item",
    "_relist",
    "_push",
    "_lpush",
    "_rpush",
    "_pop",
    "_lpop",
    "_rpop",
    "Lrange",
    "Lindex",
    "Llen",
    "_lset",
    "_sadd",
    "_srem",
    "Scard",
    "Sismember",
    "Smembers",
    "_combine",
    "Sinter",
    "Sunion",
    "Sdiff",
    "_zadd",
    "_zincrby",
    "_zrem",
    "_zget",
    "Zscore",
    "Zcard",
    "Zrank",
    "_zlist",
    "Zrange",
    "Zrevrange",
    "_zbounds",
    "Zrangebyscore",
    "Zcount",
    "Lpush",
    "Rpush",
    "Lpop",
    "Rpop",
    "Lset",
    "Sadd",
    "Srem",
    "Zadd",
    "ZincrBy",
    "Zrem",
)
