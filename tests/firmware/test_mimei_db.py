# A db MiMei on the real engine (leither.db): its backup hashes the same whatever the order of
# the writes that built it, and restore brings a version back into the working copy.
from leither import mimei
from leither.db import DB  # no fallback: a db engine that fails to import fails this module

from testutil import rmtree, tmpdir

# Imports (cbor, crypto, ids, store, mimei, db and its page tree) plus the store's buffers on
# the 64-bit unix port; see test_mimei.py.
# Passes from 284K (its code and ours sit in the unix port's heap); 20% headroom
# so a shifted heap layout cannot fail it (ci/mp_heap_margin.py).
MP_HEAP = "360K"

SEED = bytes(range(32))


def check(cond, msg="check failed"):
    """An assert that survives mpy-cross -O1, which drops assert statements."""
    if not cond:
        raise AssertionError(msg)


def test_real_db_backup_hashes_the_same_whatever_the_order():
    d = tmpdir("rdb")
    try:
        s = mimei.Store(d, SEED, db_class=DB)
        one = s.create("app", "", "r1", "db")
        two = s.create("app", "", "r2", "db")
        a = s.db(one)
        a.Set("k", "v")
        a.Hset("h", "f", "1")
        a.Zadd("z", 5, "m")
        a.Rpush("l", "x", "y")
        b = s.db(two)
        b.Rpush("l", "x")
        b.Zadd("z", 5, "m")
        b.Set("k", "old")
        b.Hset("h", "f", "1")
        b.Rpush("l", "y")
        b.Set("k", "v")
        r1 = s.backup(one)
        check(s.backup(two)["root"] == r1["root"])
        s.db(one).Set("k", "changed")
        s.restore(one, 1)
        check(s.db(one).Get("k") == "v" and s.db(one).Lrange("l", 0, -1) == ["x", "y"])
        s.verify(one, 1)
        s.close()
    finally:
        rmtree(d)


def test_trim_closes_idle_dbs_and_keeps_transactions():
    from leither import dbpage, store

    d = tmpdir("rdbt")
    try:
        s = mimei.Store(d, SEED, db_class=DB)
        one = s.create("app", "", "t1", "db")
        two = s.create("app", "", "t2", "db")
        s.db(one).Set("k", "v1")
        s.db(two).Begin()
        s.db(two).Set("k", "in tx")
        s.set_data(s.create("app", "bin"), 0, b"x" * 5000)
        s.trim()  # short of heap: the tree pool stays (the next upload piece needs it)
        check(len(store._pool) > 0 and len(dbpage._pool) == 0)
        s.trim(unload=True)  # idle: it goes too
        check(len(store._pool) == 0 and len(dbpage._pool) == 0)
        check([mid for mid, _db in s._dbs] == [two], "the db in a transaction stays open")
        check(s.db(two).Commit() == "OK" and s.db(two).Get("k") == "in tx")
        check(s.db(one).Get("k") == "v1")  # reopened on use
        s.close()
    finally:
        rmtree(d)


def test_an_idle_store_unloads_the_db_engine_and_loads_it_again():
    # A node with no session left trims with unload=True: with no db open (none in a
    # transaction), the db engine's modules are forgotten (MicroPython) and the next db call
    # imports them again and finds every key.
    import sys

    d = tmpdir("rdbu")
    try:
        s = mimei.Store(d, SEED)  # the engine comes from the db part, as on a node
        one = s.create("app", "", "u1", "db")
        s.db(one).Set("k", "v")
        s.db(one).Begin()
        s.db(one).Set("t", "in tx")
        s.trim(unload=True)
        check("leither.db" in sys.modules, "unloaded with a transaction open")
        check(s.db(one).Commit() == "OK")
        s.trim(unload=True)
        if sys.implementation.name == "micropython":
            check("leither.db" not in sys.modules and "leither.dbcoll" not in sys.modules,
                  "the db engine stayed loaded")
        check(s.db(one).Get("k") == "v" and s.db(one).Get("t") == "in tx")
        check("leither.db" in sys.modules)
        s.db(one).Hset("h", "f", "1")
        s.trim(unload=True)
        check(s.db(one).Hget("h", "f") == "1")
        s.close()
    finally:
        rmtree(d)
