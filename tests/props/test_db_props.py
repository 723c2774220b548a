# Property tests of the DB MiMei engine (leither.db) against a plain-Python model (dicts,
# lists, sets, sorted lists), with transactions, reopen in the middle, injected I/O errors,
# and the export checked against cbor2's canonical encoding of the model.
import os
import shutil
import tempfile

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leither import dbpage
from leither.db import DB
from leither.errors import StoreError

KEYS = ["a", "b", "c", b"a"]
NAMES = ["f", "g", "hh", b"f", "\u00e9"]
VALUES = st.one_of(st.sampled_from(["1", "-5", "x", "", "10"]), st.binary(max_size=6),
                   st.text(max_size=5))
SCORES = st.integers(min_value=-50, max_value=50)
INDEX = st.integers(min_value=-6, max_value=6)


def enc(x):
    return cbor2.dumps(x)


class Model:
    """What a Redis-like db holds: key -> (type, value)."""

    def __init__(self):
        self.d = {}

    def get(self, key, kind):
        entry = self.d.get(key)
        if entry is None:
            return None
        if entry[0] != kind:
            raise StoreError("WRONGTYPE")
        return entry[1]

    def put(self, key, kind, value):
        if value in (None, {}, [], set()) and kind != "string":
            self.d.pop(key, None)
        else:
            self.d[key] = (kind, value)

    def copy(self):
        m = Model()
        for k, (kind, v) in self.d.items():
            m.d[k] = (kind, v.copy() if hasattr(v, "copy") else v)
        return m


def parse_int(v):
    try:
        s = v.decode() if isinstance(v, bytes) else v
    except UnicodeDecodeError:
        raise StoreError("not an integer") from None
    digits = s[1:] if s.startswith("-") else s
    if not digits or not digits.isdigit() or (digits[0] == "0" and len(s) > 1):
        raise StoreError("not an integer")
    return int(s)


def span(start, stop, n):
    start = max(start + n if start < 0 else start, 0)
    stop = min(stop + n if stop < 0 else stop, n - 1)
    return start, stop


def zsorted(z):
    return sorted(z.items(), key=lambda kv: (kv[1], enc(kv[0])))


def model_apply(m, op, args):
    """Run op on the model; returns the result Redis would give."""
    if op == "Set":
        k, v = args
        m.d[k] = ("string", v)
        return "OK"
    if op == "Get":
        return m.get(args[0], "string")
    if op == "Del":
        return sum(1 for k in args if m.d.pop(k, None) is not None)
    if op == "IncrBy":
        k, n = args
        old = m.get(k, "string")
        new = (0 if old is None else parse_int(old)) + n
        m.d[k] = ("string", str(new).encode() if isinstance(old, bytes) else str(new))
        return new
    if op == "Hset":
        k, f, v = args
        h = dict(m.get(k, "hash") or {})
        new = f not in h
        h[f] = v
        m.put(k, "hash", h)
        return int(new)
    if op == "Hdel":
        k, f = args
        h = dict(m.get(k, "hash") or {})
        n = int(h.pop(f, None) is not None)
        m.put(k, "hash", h)
        return n
    if op == "HincrBy":
        k, f, n = args
        h = dict(m.get(k, "hash") or {})
        new = (parse_int(h[f]) if f in h else 0) + n
        old = h.get(f)
        h[f] = str(new).encode() if isinstance(old, bytes) else str(new)
        m.put(k, "hash", h)
        return new
    if op == "Hgetall":
        return m.get(args[0], "hash") or {}
    if op == "Hkeys":
        return sorted(m.get(args[0], "hash") or {}, key=enc)
    if op in ("Lpush", "Rpush"):
        k, v = args
        items = list(m.get(k, "list") or [])
        if op == "Lpush":
            items.insert(0, v)
        else:
            items.append(v)
        m.put(k, "list", items)
        return len(items)
    if op in ("Lpop", "Rpop"):
        items = list(m.get(args[0], "list") or [])
        if not items:
            return None
        v = items.pop(0 if op == "Lpop" else -1)
        m.put(args[0], "list", items)
        return v
    if op == "Lrange":
        k, a, b = args
        items = m.get(k, "list") or []
        a, b = span(a, b, len(items))
        return items[a:b + 1] if a <= b else []
    if op == "Lindex":
        k, i = args
        items = m.get(k, "list") or []
        i = i + len(items) if i < 0 else i
        return items[i] if 0 <= i < len(items) else None
    if op == "Lset":
        k, i, v = args
        items = m.get(k, "list")
        if items is None:
            raise StoreError("no such key")
        items = list(items)
        j = i + len(items) if i < 0 else i
        if not 0 <= j < len(items):
            raise StoreError("index out of range")
        items[j] = v
        m.put(k, "list", items)
        return "OK"
    if op in ("Sadd", "Srem"):
        k, x = args
        s = set(m.get(k, "set") or set())
        had = x in s
        if op == "Sadd":
            s.add(x)
        else:
            s.discard(x)
        m.put(k, "set", s)
        return int(not had) if op == "Sadd" else int(had)
    if op == "Smembers":
        return sorted(m.get(args[0], "set") or set(), key=enc)
    if op in ("Sinter", "Sunion", "Sdiff"):
        sets = [m.get(k, "set") or set() for k in args]
        if op == "Sinter":
            r = set.intersection(*sets)
        elif op == "Sunion":
            r = set.union(*sets)
        else:
            r = sets[0].difference(*sets[1:])
        return sorted(r, key=enc)
    if op in ("Zadd", "ZincrBy"):
        k, s, x = args
        z = dict(m.get(k, "zset") or {})
        new = x not in z
        z[x] = z.get(x, 0) + s if op == "ZincrBy" else s
        m.put(k, "zset", z)
        return z[x] if op == "ZincrBy" else int(new)
    if op == "Zrem":
        k, x = args
        z = dict(m.get(k, "zset") or {})
        n = int(z.pop(x, None) is not None)
        m.put(k, "zset", z)
        return n
    if op in ("Zrange", "Zrevrange"):
        k, a, b, ws = args
        z = zsorted(m.get(k, "zset") or {})
        if op == "Zrevrange":
            z.reverse()
        a, b = span(a, b, len(z))
        part = z[a:b + 1] if a <= b else []
        return [y for kv in part for y in kv] if ws else [kv[0] for kv in part]
    if op == "Zrangebyscore":
        k, lo, hi = args
        return [x for x, s in zsorted(m.get(k, "zset") or {}) if lo <= s <= hi]
    if op == "Zrevrangebyscore":
        k, hi, lo = args
        return [x for x, s in reversed(zsorted(m.get(k, "zset") or {})) if lo <= s <= hi]
    if op == "Zremrangebyscore":
        k, lo, hi = args
        z = dict(m.get(k, "zset") or {})
        gone = [x for x, s in z.items() if lo <= s <= hi]
        for x in gone:
            del z[x]
        m.put(k, "zset", z)
        return len(gone)
    if op in ("Hmclear", "Lclear", "Sclear", "Zclear"):
        kind = {"H": "hash", "L": "list", "S": "set", "Z": "zset"}[op[0]]
        v = m.get(args[0], kind)
        m.d.pop(args[0], None) if v is not None else None
        return 0 if v is None else len(v)
    if op in ("Hscan", "Sscan"):
        k, cursor, count = args
        kind = "hash" if op == "Hscan" else "set"
        names = sorted(m.get(k, kind) or {}, key=enc)
        if cursor != "":
            names = [f for f in names if enc(f) > enc(cursor)]
        part = names[:count]
        flat = [y for f in part for y in ((f, m.d[k][1][f]) if kind == "hash" else (f,))]
        return [part[-1] if len(names) > count else "", flat]  # "": nothing after this page
    if op == "Zcount":
        k, lo, hi = args
        return sum(1 for s in (m.get(k, "zset") or {}).values() if lo <= s <= hi)
    if op == "Zrank":
        k, x = args
        z = [kv[0] for kv in zsorted(m.get(k, "zset") or {})]
        return z.index(x) if x in z else None
    if op == "Zscore":
        return (m.get(args[0], "zset") or {}).get(args[1])
    if op == "Type":
        e = m.d.get(args[0])
        return "none" if e is None else e[0]
    raise AssertionError(op)


key = st.sampled_from(KEYS)
name = st.sampled_from(NAMES)
OPS = st.one_of(
    st.tuples(st.just("Set"), st.tuples(key, VALUES)),
    st.tuples(st.just("Get"), st.tuples(key)),
    st.tuples(st.just("Del"), st.lists(key, min_size=1, max_size=2).map(tuple)),
    st.tuples(st.just("IncrBy"), st.tuples(key, SCORES)),
    st.tuples(st.just("Hset"), st.tuples(key, name, VALUES)),
    st.tuples(st.just("Hdel"), st.tuples(key, name)),
    st.tuples(st.just("HincrBy"), st.tuples(key, name, SCORES)),
    st.tuples(st.sampled_from(["Hgetall", "Hkeys", "Smembers", "Type", "Lpop", "Rpop"]),
              st.tuples(key)),
    st.tuples(st.sampled_from(["Lpush", "Rpush"]), st.tuples(key, VALUES)),
    st.tuples(st.just("Lrange"), st.tuples(key, INDEX, INDEX)),
    st.tuples(st.just("Lindex"), st.tuples(key, INDEX)),
    st.tuples(st.just("Lset"), st.tuples(key, INDEX, VALUES)),
    st.tuples(st.sampled_from(["Sadd", "Srem"]), st.tuples(key, name)),
    st.tuples(st.sampled_from(["Sinter", "Sunion", "Sdiff"]),
              st.lists(key, min_size=1, max_size=3).map(tuple)),
    st.tuples(st.sampled_from(["Zadd", "ZincrBy"]), st.tuples(key, SCORES, name)),
    st.tuples(st.just("Zrem"), st.tuples(key, name)),
    st.tuples(st.sampled_from(["Zrange", "Zrevrange"]),
              st.tuples(key, INDEX, INDEX, st.booleans())),
    st.tuples(st.sampled_from(["Zrangebyscore", "Zcount"]), st.tuples(key, SCORES, SCORES)),
    st.tuples(st.sampled_from(["Zrank", "Zscore"]), st.tuples(key, name)),
    st.tuples(st.sampled_from(["Zrevrangebyscore", "Zremrangebyscore"]),
              st.tuples(key, SCORES, SCORES)),
    st.tuples(st.sampled_from(["Hmclear", "Lclear", "Sclear", "Zclear"]), st.tuples(key)),
    st.tuples(st.sampled_from(["Hscan", "Sscan"]),
              st.tuples(key, st.sampled_from(NAMES + [""]), st.integers(1, 3))),
    st.tuples(st.sampled_from(["Begin", "Commit", "Rollback", "reopen", "export"]),
              st.just(())),
)


def canonical(m):
    """The export the model predicts, encoded by cbor2 (canonical = RFC 8949 4.2.1 here)."""
    out = {}
    for k, (kind, v) in m.d.items():
        if kind == "set":
            v = sorted(v, key=enc)
        out[k] = [kind, v]
    return cbor2.dumps(out, canonical=True)


def run(ops, cache=4):
    path = tempfile.mkdtemp(prefix="dbprops")
    db = DB(path)
    db._t.cache_max = cache
    m = Model()
    saved = None  # the model at Begin
    try:
        for op, args in ops:
            if op == "Begin":
                if saved is None:
                    db.Begin()
                    saved = m.copy()
                else:
                    with pytest.raises(StoreError):
                        db.Begin()
                continue
            if op in ("Commit", "Rollback"):
                if saved is None:
                    with pytest.raises(StoreError):
                        getattr(db, op)()
                else:
                    getattr(db, op)()
                    if op == "Rollback":
                        m = saved
                    saved = None
                continue
            if op == "reopen":
                db.close()
                db = DB(path)
                db._t.cache_max = cache
                if saved is not None:
                    m, saved = saved, None
                continue
            if op == "export":  # the committed content: no part of an open transaction
                assert b"".join(db.export()) == canonical(m if saved is None else saved)
                continue
            try:
                want = model_apply(m, op, args)
            except StoreError:
                with pytest.raises(StoreError):
                    db.call(op, list(args))
                continue
            got = db.call(op, list(args))
            assert got == want, (op, args)
        if saved is not None:
            db.Rollback()
            m = saved
        assert b"".join(db.export()) == canonical(m)
        db.close()
        db = DB(path)
        assert b"".join(db.export()) == canonical(m)
    finally:
        db.close()
        shutil.rmtree(path)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(OPS, max_size=60))
def test_db_agrees_with_model(ops):
    run(ops)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(["Hset", "Hdel", "Zadd", "Zrem", "Sadd", "Rpush",
                                           "Lpop", "reopen", "Begin", "Commit"]),
                          st.integers(0, 400)), min_size=50, max_size=400))
def test_big_collections_agree(steps):
    """Hundreds of members: many pages, splits and merges, rank across pages, a tiny cache."""
    ops = []
    for op, i in steps:
        member = "m%03d" % i
        if op in ("reopen", "Begin", "Commit"):
            ops.append((op, ()))
        elif op == "Hset":
            ops.append((op, ("h", member, "v" * (i % 40))))
        elif op == "Zadd":
            ops.append((op, ("z", i % 17, member)))
        elif op == "Rpush":
            ops.append((op, ("l", member)))
        elif op == "Lpop":
            ops.append((op, ("l",)))
        else:
            ops.append((op, ("h" if op == "Hdel" else "z" if op == "Zrem" else "s", member)))
        if i % 50 == 0:
            ops.append(("Zrange", ("z", i % 30, -(i % 7) - 1, True)))
            ops.append(("Zrank", ("z", member)))
            ops.append(("Lrange", ("l", i % 9, i % 60)))
            ops.append(("export", ()))
    run(ops, cache=2)


def test_failed_write_is_all_or_nothing(monkeypatch):
    """An I/O error part way through a write leaves nothing of it (outside a transaction)
    and poisons the transaction it belongs to (inside one)."""
    path = tempfile.mkdtemp(prefix="dbfail")
    db = DB(path)
    try:
        db.Hset("h", "a", "1")
        calls = []
        fail_at = [2]  # the second put: after the first field is in
        real = dbpage.Tree.put

        def flaky(self, k, v):
            calls.append(k)
            if len(calls) == fail_at[0]:
                raise OSError(28, "No space left on device")
            return real(self, k, v)

        monkeypatch.setattr(dbpage.Tree, "put", flaky)
        with pytest.raises(StoreError):
            db.Hset("h", "b", "2", "c", "3")
        assert db.Hgetall("h") == {"a": "1"}
        calls.clear()
        fail_at[0] = 3  # Set is the first put, then field d, then e fails
        db.Begin()
        db.Set("x", "1")
        with pytest.raises(StoreError):
            db.Hset("h", "d", "4", "e", "5")
        with pytest.raises(StoreError):
            db.Commit()
        monkeypatch.setattr(dbpage.Tree, "put", real)
        assert db.Get("x") is None and db.Hgetall("h") == {"a": "1"}
        db.close()
        db = DB(path)
        assert db.Hgetall("h") == {"a": "1"}
    finally:
        db.close()
        shutil.rmtree(path)


def test_corrupt_page_is_detected():
    """A flipped bit in any page reads as StoreError, never as wrong data."""
    path = tempfile.mkdtemp(prefix="dbcorrupt")
    db = DB(path)
    try:
        for i in range(300):
            db.Hset("h", "f%d" % i, "value %d" % i)
        want = b"".join(db.export())
        db.close()
        detected = 0
        segs = sorted(n for n in os.listdir(path) if n[0].isdigit())
        for seg in segs:
            name = os.path.join(path, seg)
            size = os.path.getsize(name)
            for offset in range(700, size, dbpage.PAGE):
                with open(name, "r+b") as f:
                    f.seek(offset)
                    old = f.read(1)
                    f.seek(offset)
                    f.write(bytes([old[0] ^ 0x10]))
                try:
                    db = DB(path)
                    assert b"".join(db.export()) == want  # the page was not in use
                    assert db.Hget("h", "f299") == "value 299"
                except StoreError:
                    detected += 1
                finally:
                    db.close()
                with open(name, "r+b") as f:
                    f.seek(offset)
                    f.write(old)
        assert detected >= 3
    finally:
        db.close()
        shutil.rmtree(path)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 150), st.integers(1, 413),
                          st.integers(0, 600)), min_size=20, max_size=300),
       st.integers(1, 4))
def test_tree_with_big_entries(steps, cache):
    """The page tree with keys and values up to the limits (long separators in internal
    pages, 1-3 entries per page): contents, order, rank and select agree with a dict."""
    path = tempfile.mkdtemp(prefix="dbtree")
    t = dbpage.Tree(path, cache=cache)
    model = {}
    try:
        for j, (put, i, klen, vlen) in enumerate(steps):
            k = (b"%03d" % i) * (klen // 3 + 1)
            k = k[:klen]
            if put:
                v = bytes([i & 0xFF]) * min(vlen, dbpage.MAX_ENTRY - len(k))
                assert t.put(k, v) == (k not in model)
                model[k] = v
            else:
                assert t.delete(k) == (k in model)
                model.pop(k, None)
            if j % 40 == 39:
                t.commit()
                t.close()
                t = dbpage.Tree(path, cache=cache)
        assert t.count == len(model)
        assert list(t.scan(b"")) == sorted(model.items())
        keys = sorted(model)
        for r, k in enumerate(keys):
            assert t.rank(k) == r and t.select(r) == k
        lo = keys[len(keys) // 3] if keys else b""
        hi = keys[2 * len(keys) // 3] if keys else b""
        assert [k for k, _ in t.scan(lo, hi)] == [k for k in keys if lo <= k < hi]
        with pytest.raises(StoreError):
            t.put(b"k", bytes(dbpage.MAX_ENTRY))
    finally:
        t.close()
        shutil.rmtree(path)


def test_root_left_only_as_tmp_is_adopted():
    """FAT under MicroPython renames over a file by deleting it first: a crash in between
    leaves only root.tmp, which must be taken as the committed root; a cut-short root.tmp
    of a first commit is an empty db."""
    path = tempfile.mkdtemp(prefix="dbroot")
    db = DB(path)
    try:
        db.Set("a", "1")
        db.Set("b", "2")
        db.close()
        os.rename(os.path.join(path, "root"), os.path.join(path, "root.tmp"))
        db = DB(path)
        assert db.Get("b") == "2" and os.path.exists(os.path.join(path, "root"))
        db.close()
        shutil.rmtree(path)
        os.mkdir(path)
        with open(os.path.join(path, "root.tmp"), "wb") as f:
            f.write(b"LDB1\x00\x00")
        db = DB(path)
        assert db.Get("a") is None
        db.Set("a", "3")
        db.close()
        with open(os.path.join(path, "root"), "r+b") as f:
            f.write(b"X")
        with pytest.raises(StoreError):
            DB(path)
    finally:
        db.close()
        shutil.rmtree(path)


@pytest.mark.parametrize("stage", ["page", "root"])
def test_full_disk_at_commit_damages_nothing(monkeypatch, stage):
    """ENOSPC while a commit writes its pages or its root record: a clear StoreError, the
    committed content intact, the db usable once there is room again."""
    path = tempfile.mkdtemp(prefix="dbfull")
    db = DB(path)
    try:
        for i in range(50):
            db.Hset("h", "f%d" % i, "v%d" % i)
        before = b"".join(db.export())
        real_open = open

        def no_room_write(self, page):
            raise OSError(28, "No space left on device")

        def no_room_open(name, *args, **kwargs):
            if str(name).endswith("root.tmp"):
                raise OSError(28, "No space left on device")
            return real_open(name, *args, **kwargs)

        if stage == "page":
            monkeypatch.setattr(dbpage.Tree, "_write", no_room_write)
        else:
            monkeypatch.setattr("builtins.open", no_room_open)
        with pytest.raises(StoreError):
            db.Hset("h", "new", "x")
        db.Begin()
        db.Hset("h", "f1", "changed")
        with pytest.raises(StoreError):
            db.Commit()
        monkeypatch.undo()
        assert b"".join(db.export()) == before and db.Hget("h", "f1") == "v1"
        db.Hset("h", "new", "x")
        db.close()
        db = DB(path)
        assert db.Hget("h", "new") == "x" and db.Hlen("h") == 51
    finally:
        db.close()
        shutil.rmtree(path)


def test_db_modules_import_one_way():
    # db -> dbcoll / dbio -> dbcodec (and dbpage): no module below imports one above it, so
    # there is no import cycle over private helpers (issue 9).
    import ast

    import leither

    base = os.path.dirname(leither.__file__)
    below = {"dbcodec": set(), "dbpage": set(), "dbcoll": {"dbcodec"},
             "dbio": {"dbcodec", "dbpage"}, "db": {"dbcodec", "dbpage", "dbcoll", "dbio"}}
    for name, allowed in below.items():
        with open(os.path.join(base, name + ".py")) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module] + [node.module + "." + a.name for a in node.names]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            for mod in mods:
                leaf = mod.rsplit(".", 1)[-1]
                if mod.startswith("leither") and leaf.startswith("db"):
                    assert leaf in allowed, f"{name} imports {leaf}"
