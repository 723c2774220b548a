# DB MiMei engine (leither.db): strings, keys, hashes, errors and the RPC entry point.
from leither.db import DB
from leither.errors import StoreError

from testutil import raises, rmtree, tmpdir

# The engine (db + dbpage, ~30 KB of code on the 64-bit unix port) and this module do not
# leave a 64 KB heap room for the page cache; test_db_big.py runs 10,000 keys at 64K.
# Passes from 80K; 20% headroom (ci/mp_heap_margin.py).
MP_HEAP = "100K"


def _db():
    path = tmpdir("db")
    return path, DB(path)


def test_strings():
    path, db = _db()
    try:
        assert db.Get("a") is None
        assert db.Set("a", "1") == "OK"
        assert db.Get("a") == "1"
        assert db.Set(b"a", b"\x00\xff") == "OK"  # bytes and str keys differ
        assert db.Get(b"a") == b"\x00\xff" and db.Get("a") == "1"
        assert db.Incr("a") == 2 and db.Get("a") == "2"
        assert db.IncrBy("n", -7) == -7 and db.Get("n") == "-7"
        raises(StoreError, db.IncrBy, b"a", 1)  # b"a" holds bytes that are no integer
        db.Set("b", b"41")
        assert db.Incr("b") == 42 and db.Get("b") == b"42"  # stays bytes
        assert db.Strlen("b") == 2 and db.Strlen("none") == 0
        db.Set("u", "\u00e9t\u00e9")
        assert db.Strlen("u") == 5 and db.Get("u") == "\u00e9t\u00e9"
        db.Set("i", 12)  # an int value is stored as its decimal str
        assert db.Get("i") == "12"
        assert db.Del("a", "b", "nope") == 2 and db.Get("a") is None
        assert db.Exists("i", "u", "x") == 2
        assert db.Type("i") == "string" and db.Type("x") == "none"
    finally:
        db.close()
        rmtree(path)


def test_string_errors():
    path, db = _db()
    try:
        db.Set("s", "abc")
        assert "integer" in str(raises(StoreError, db.Incr, "s"))
        for bad in ("01", "+1", " 1", "1.5", "", "-"):
            db.Set("s", bad)
            raises(StoreError, db.Incr, "s")
        db.Set("s", "9223372036854775807")
        assert "overflow" in str(raises(StoreError, db.Incr, "s"))
        raises(StoreError, db.IncrBy, "s", "1")
        raises(StoreError, db.Set, "k", 1.5)
        raises(StoreError, db.Set, 5, "v")
        raises(StoreError, db.Set, "k" * 201, "v")
        raises(StoreError, db.Set, "k", "v" * 601)
        db.Set("k" * 200, "v" * 600)  # the limits themselves fit
        assert db.Get("k" * 200) == "v" * 600
        db.Hset("h", "f", "v")
        assert "WRONGTYPE" in str(raises(StoreError, db.Get, "h"))
        raises(StoreError, db.Incr, "h")
        raises(StoreError, db.Strlen, "h")
        assert db.Set("h", "now a string") == "OK"  # Set replaces any type
        assert db.Get("h") == "now a string"
        raises(StoreError, db.Hlen, "h")
    finally:
        db.close()
        rmtree(path)


def test_hashes():
    path, db = _db()
    try:
        assert db.Hset("h", "a", "1") == 1
        assert db.Hset("h", "a", "2", "b", b"3", "c", "4") == 2
        assert db.Hget("h", "a") == "2" and db.Hget("h", "b") == b"3"
        assert db.Hget("h", "x") is None and db.Hget("nope", "a") is None
        assert db.Hlen("h") == 3 and db.Hlen("nope") == 0
        assert db.Hmget("h", "a", "x", "c") == ["2", None, "4"]
        assert db.Hmget("h", ["c"]) == ["4"]
        assert db.Hmset("h", {"d": "5", b"e": "6"}) == "OK"
        assert db.Hmset("h", "f", "7") == "OK"
        assert db.Hgetall("h") == {"a": "2", "b": b"3", "c": "4", "d": "5", b"e": "6",
                                   "f": "7"}
        # canonical order: bytes before text, shorter first, then bytewise
        assert db.Hkeys("h") == [b"e", "a", "b", "c", "d", "f"]
        assert db.HincrBy("h", "n", 5) == 5 and db.HincrBy("h", "n", -6) == -1
        assert db.Hget("h", "n") == "-1"
        raises(StoreError, db.HincrBy, "h", "a", 1.0)
        db.Hset("h", "t", "x")
        raises(StoreError, db.HincrBy, "h", "t", 1)
        assert db.Hdel("h", "a", "b", "zz") == 2 and db.Hlen("h") == 6
        assert db.Hdel("h", "c", "d", b"e", "f", "n", "t") == 6
        assert db.Exists("h") == 0 and db.Hgetall("h") == {}  # empty hashes vanish
        raises(StoreError, db.Hset, "h", "a")
        raises(StoreError, db.Hset, "h", "a", 1.5)
        assert db.Exists("h") == 0  # nothing half written
        db.Set("s", "v")
        raises(StoreError, db.Hset, "s", "a", "b")
        raises(StoreError, db.Hgetall, "s")
    finally:
        db.close()
        rmtree(path)


def test_call_and_reopen():
    path, db = _db()
    try:
        assert db.call("Set", ["k", "v"]) == "OK"
        assert db.call("Get", ["k"]) == "v"
        assert db.call("Hset", ["h", "f", "v"]) == 1
        raises(StoreError, db.call, "Nope", [])
        raises(StoreError, db.call, "close", [])
        raises(StoreError, db.call, "_set", ["a", "b"])
        raises(StoreError, db.call, "Get", [])
        raises(StoreError, db.call, "Get", ["a", "b", "c"])
        db.close()
        raises(StoreError, db.Get, "k")
        db = DB(path)
        assert db.Get("k") == "v" and db.Hget("h", "f") == "v"
        assert db.size() > 0
    finally:
        db.close()
        rmtree(path)
