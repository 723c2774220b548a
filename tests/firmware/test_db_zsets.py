# DB MiMei engine (leither.db): sorted sets with integer scores and Redis semantics.
from leither.db import DB
from leither.errors import StoreError

from testutil import raises, rmtree, tmpdir

# db + dbcoll + dbpage are ~45 KB of code on the 64-bit unix port (see test_db_lists_sets).
# Passes from 84K (its code and ours sit in the unix port's heap); 20% headroom
# so a shifted heap layout cannot fail it (ci/mp_heap_margin.py).
MP_HEAP = "112K"


def test_zsets():
    path = tmpdir("dbz")
    db = DB(path)
    try:
        assert db.Zadd("z", 5, "a", 3, "b", 9, "c") == 3
        assert db.Zadd("z", 4, "a", -2, "d") == 1  # "a" moves, "d" is new
        assert db.Zcard("z") == 4 and db.Zcard("nope") == 0
        assert db.Zrange("z", 0, -1) == ["d", "b", "a", "c"]
        assert db.Zrange("z", 0, -1, True) == ["d", -2, "b", 3, "a", 4, "c", 9]
        assert db.Zrange("z", 1, 2) == ["b", "a"] and db.Zrange("z", -1, -1) == ["c"]
        assert db.Zrange("z", 5, 9) == [] and db.Zrange("nope", 0, -1) == []
        assert db.Zrevrange("z", 0, 1) == ["c", "a"]
        assert db.Zrevrange("z", 0, -1, True) == ["c", 9, "a", 4, "b", 3, "d", -2]
        assert db.Zscore("z", "a") == 4 and db.Zscore("z", "q") is None
        assert db.Zrank("z", "d") == 0 and db.Zrank("z", "c") == 3
        assert db.Zrank("z", "q") is None and db.Zrank("nope", "a") is None
        assert db.Zrangebyscore("z", 3, 4) == ["b", "a"]
        assert db.Zrangebyscore("z", "(3", "+inf") == ["a", "c"]
        assert db.Zrangebyscore("z", "-inf", "(4", True) == ["d", -2, "b", 3]
        assert db.Zrangebyscore("z", "-inf", "+inf", False, 1, 2) == ["b", "a"]
        assert db.Zrangebyscore("z", 10, 20) == [] and db.Zrangebyscore("z", 5, 1) == []
        assert db.Zcount("z", "-inf", "+inf") == 4 and db.Zcount("z", "(3", 9) == 2
        assert db.Zcount("z", 100, 200) == 0
        assert db.ZincrBy("z", 10, "b") == 13 and db.Zrange("z", -1, -1) == ["b"]
        assert db.ZincrBy("z", 7, "new") == 7 and db.Zcard("z") == 5
        # equal scores: members in canonical order (shorter first, then bytewise)
        db.Zadd("t", 1, "bb", 1, "a", 1, "c", 1, b"z")
        assert db.Zrange("t", 0, -1) == [b"z", "a", "c", "bb"]
        assert db.Zrem("z", "a", "q") == 1 and db.Zscore("z", "a") is None
        assert db.Zrangebyscore("z", 4, 4) == []
        assert db.Zrem("t", b"z", "a", "c", "bb") == 4 and db.Exists("t") == 0
        lo, hi = -(1 << 63), (1 << 63) - 1
        db.Zadd("e", lo, "min", hi, "max", 0, "zero")
        assert db.Zrange("e", 0, -1, True) == ["min", lo, "zero", 0, "max", hi]
        assert db.Zrangebyscore("e", hi, hi) == ["max"] and db.Zcount("e", lo, lo) == 1
        raises(StoreError, db.Zadd, "e", 1 << 63, "x")
        raises(StoreError, db.Zadd, "e", 1.5, "x")
        raises(StoreError, db.Zadd, "e", "1", "x")
        raises(StoreError, db.Zadd, "e", 1)
        raises(StoreError, db.ZincrBy, "e", 1, "max")  # would pass 2**63 - 1
        assert db.Zscore("e", "max") == hi
        raises(StoreError, db.Zrangebyscore, "e", "abc", 1)
        db.Set("s", "v")
        raises(StoreError, db.Zadd, "s", 1, "m")
        raises(StoreError, db.Zrange, "s", 0, 1)
    finally:
        db.close()
        rmtree(path)


def test_zset_ranks_across_pages():
    path = tmpdir("dbz2")
    db = DB(path)
    try:
        db.Begin()
        n = 600
        for i in range(n):
            db.Zadd("z", (i * 7919) % n, "m%d" % i)  # scores 0..n-1, shuffled
        db.Zadd("a", 1, "x")
        db.Zadd("zz", 1, "x")  # keys around "z" must not leak into its ranks
        db.Commit()
        assert db.Zcard("z") == n
        for s in (0, 1, 299, 300, 598, 599):
            i = next(j for j in range(n) if (j * 7919) % n == s)
            assert db.Zrank("z", "m%d" % i) == s
            assert db.Zrange("z", s, s) == ["m%d" % i]
        assert len(db.Zrange("z", 100, 249)) == 150
        assert db.Zrevrange("z", 0, 0, True)[1] == n - 1
        assert db.Zcount("z", 100, 199) == 100
        assert len(db.Zrangebyscore("z", 590, "+inf")) == 10
    finally:
        db.close()
        rmtree(path)


def test_zset_reverse_and_remove_by_score():
    path = tmpdir("dbz3")
    db = DB(path)
    try:
        db.Zadd("z", 1, "a", 2, "b", 3, "c", 4, "d")
        assert db.Zrevrangebyscore("z", "+inf", "-inf") == ["d", "c", "b", "a"]
        assert db.Zrevrangebyscore("z", 3, "(1", True) == ["c", 3, "b", 2]
        assert db.Zrevrangebyscore("z", "+inf", "-inf", False, 1, 2) == ["c", "b"]
        assert db.Zrevrangebyscore("z", 4, 1, False, 3, 5) == ["a"]
        assert db.Zrevrangebyscore("z", 1, 4) == [] and db.Zrevrangebyscore("q", 9, 0) == []
        assert db.Zremrangebyscore("z", 2, "(4") == 2
        assert db.Zrange("z", 0, -1, True) == ["a", 1, "d", 4]
        assert db.Zremrangebyscore("z", 5, 9) == 0 and db.Zremrangebyscore("q", 0, 1) == 0
        assert db.Zremrangebyscore("z", "-inf", "+inf") == 2 and db.Exists("z") == 0
        db.Zadd("z", 7, "x")
        assert db.Zclear("z") == 1 and db.Zclear("z") == 0
        db.Set("s", "v")
        raises(StoreError, db.Zclear, "s")
        raises(StoreError, db.Zremrangebyscore, "s", 0, 1)
    finally:
        db.close()
        rmtree(path)
