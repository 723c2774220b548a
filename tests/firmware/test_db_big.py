# 10,000 keys in a DB MiMei at the board's heap (64K under MicroPython), read back after reopen.
from leither.db import DB

from testutil import rmtree, tmpdir

# Passes from 64K (its code and ours sit in the unix port's heap); 20% headroom
# so a shifted heap layout cannot fail it (ci/mp_heap_margin.py).
MP_HEAP = "80K"

MP_TIMEOUT = 120


def test_ten_thousand_keys():
    path = tmpdir("dbbig")
    db = DB(path)
    try:
        db.Begin()
        for i in range(10000):
            db.Set("key:%d" % i, "value %d" % i)
        db.Commit()
        for i in range(0, 10000, 7):
            db.Set("key:%d" % i, "v%d" % i)  # durable one by one
        db.close()
        db = DB(path)
        for i in range(10000):
            want = ("v%d" if i % 7 == 0 else "value %d") % i
            assert db.Get("key:%d" % i) == want
        assert db.Get("key:10000") is None
        db.Begin()
        for i in range(0, 10000, 2):
            db.Del("key:%d" % i)
        db.Commit()
        assert db.Get("key:0") is None and db.Get("key:9999") == "value 9999"
    finally:
        db.close()
        rmtree(path)
