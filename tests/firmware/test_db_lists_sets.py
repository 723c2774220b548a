# DB MiMei engine (leither.db): lists and sets with Redis semantics.
from leither.db import DB
from leither.errors import StoreError

from testutil import raises, rmtree, tmpdir

# db + dbcoll + dbpage are ~45 KB of code on the 64-bit unix port: with the page cache and
# this module they need more than 64 KB (test_db_big.py covers the 64K heap).
# Passes from 88K (its code and ours sit in the unix port's heap); 20% headroom
# so a shifted heap layout cannot fail it (ci/mp_heap_margin.py).
MP_HEAP = "112K"


def test_lists():
    path = tmpdir("dbl")
    db = DB(path)
    try:
        assert db.Llen("l") == 0 and db.Lrange("l", 0, -1) == [] and db.Lpop("l") is None
        assert db.Rpush("l", "a", "b") == 2
        assert db.Lpush("l", "y", b"z") == 4  # each pushed at the head in turn
        assert db.Lrange("l", 0, -1) == [b"z", "y", "a", "b"]
        assert db.Lrange("l", 1, 2) == ["y", "a"]
        assert db.Lrange("l", -2, -1) == ["a", "b"]
        assert db.Lrange("l", -100, 100) == [b"z", "y", "a", "b"]
        assert db.Lrange("l", 3, 1) == [] and db.Lrange("l", 4, 10) == []
        assert db.Lrange("l", 0, -5) == []
        assert db.Lindex("l", 0) == b"z" and db.Lindex("l", -1) == "b"
        assert db.Lindex("l", 4) is None and db.Lindex("l", -5) is None
        assert db.Lset("l", -1, "B") == "OK" and db.Lindex("l", 3) == "B"
        raises(StoreError, db.Lset, "l", 4, "x")
        raises(StoreError, db.Lset, "nope", 0, "x")
        assert db.Lpop("l") == b"z" and db.Rpop("l") == "B" and db.Llen("l") == 2
        assert db.Rpop("l") == "a" and db.Rpop("l") == "y"
        assert db.Rpop("l") is None and db.Exists("l") == 0  # empty lists vanish
        for i in range(0, 300, 3):  # spans pages
            assert db.Rpush("l", "v%d" % i, "v%d" % (i + 1), "v%d" % (i + 2)) == i + 3
        assert db.Lrange("l", 150, 152) == ["v150", "v151", "v152"]
        assert db.Lrange("l", -1, -1) == ["v299"] and db.Llen("l") == 300
        part = db.Lrange("l", -150, -1)  # across pages
        assert len(part) == 150 and part[0] == "v150" and part[-1] == "v299"
        part = None
        db.Set("s", "x")
        raises(StoreError, db.Lpush, "s", "a")
        raises(StoreError, db.Lrange, "s", 0, 1)
        raises(StoreError, db.Lpush, "l")
        raises(StoreError, db.Lrange, "l", "0", 1)
        assert db.Type("l") == "list" and db.Del("l") == 1 and db.Llen("l") == 0
    finally:
        db.close()
        rmtree(path)


def test_sets():
    path = tmpdir("dbs")
    db = DB(path)
    try:
        assert db.Sadd("a", "x", "y", "z", "x") == 3
        assert db.Sadd("a", "y", "w") == 1
        assert db.Scard("a") == 4 and db.Scard("nope") == 0
        assert db.Smembers("a") == ["w", "x", "y", "z"]
        assert db.Sismember("a", "x") == 1 and db.Sismember("a", "q") == 0
        db.Sadd("b", "y", "q", b"y")
        assert db.Smembers("b") == [b"y", "q", "y"]  # bytes sort before text
        assert db.Sinter("a", "b") == ["y"]
        assert db.Sinter("a", "b", "nope") == []
        assert db.Sunion("a", "b", "nope") == [b"y", "q", "w", "x", "y", "z"]
        assert db.Sdiff("a", "b") == ["w", "x", "z"] and db.Sdiff("nope", "a") == []
        assert db.Sdiff("a", "nope") == ["w", "x", "y", "z"]
        assert db.Srem("a", "x", "nope") == 1 and db.Scard("a") == 3
        assert db.Srem("a", "w", "y", "z") == 3 and db.Exists("a") == 0
        db.Set("s", "v")
        raises(StoreError, db.Sadd, "s", "m")
        raises(StoreError, db.Sinter, "b", "s")
        raises(StoreError, db.Sunion)
        raises(StoreError, db.Sadd, "b", 5)
        assert db.Scard("b") == 3  # the failed Sadd wrote nothing
        for i in range(150):  # spans pages
            db.Sadd("big", "m%04d" % (i * 7 % 150))
        db.close()
        db = DB(path)
        members = db.Smembers("big")
        assert len(members) == 150
        for i in range(150):
            assert members[i] == "m%04d" % i
        members = None  # 150 strings: a good part of the free heap
        assert db.Sinter("big", "b") == []
        assert db.Type("big") == "set" and db.Del("big", "b") == 2
    finally:
        db.close()
        rmtree(path)


def test_clear_and_scan():
    path = tmpdir("dbc")
    db = DB(path)
    try:
        db.Hset("h", "a", "1", "b", "2", "c", "3")
        assert db.Hscan("h", "", 2) == ["b", ["a", "1", "b", "2"]]
        assert db.Hscan("h", "b", 2) == ["", ["c", "3"]]
        assert db.Hscan("h") == ["", ["a", "1", "b", "2", "c", "3"]]
        assert db.Hscan("nope") == ["", []]
        db.Rpush("l", "x", "y")
        db.Sadd("s", "m")
        assert db.Lclear("l") == 2 and db.Llen("l") == 0
        assert db.Sclear("s") == 1 and db.Hmclear("h") == 3 and db.Exists("h", "s") == 0
        assert db.Lclear("l") == 0 and db.Sclear("nope") == 0
        db.Set("str", "v")
        raises(StoreError, db.Lclear, "str")
        raises(StoreError, db.Hmclear, "str")
        raises(StoreError, db.Hscan, "str")
        assert db.call("Hmclear", ["nope"]) == 0
    finally:
        db.close()
        rmtree(path)
