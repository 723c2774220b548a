# One db read builds its whole result in RAM: Hgetall, Hkeys, Smembers, Sinter..., Lrange and
# Zrange stop at dbcodec.READ_ITEMS values / READ_BYTES bytes with a clear error, and Hscan,
# Sscan and index ranges page through collections of any size (issue 9 part 3).
from leither import dbcodec
from leither.db import DB
from leither.errors import StoreError

from testutil import raises, rmtree, tmpdir

# db + dbcoll + dbpage code on the 64-bit port, the page cache, and 300-member collections.
# Passes from 204K (its code and ours sit in the unix port's heap); 20% headroom
# so a shifted heap layout cannot fail it (ci/mp_heap_margin.py).
MP_HEAP = "272K"

N = dbcodec.READ_ITEMS + 44  # members: past what one read returns


def _pages(scan, key, count, step):
    """Page through key with a *scan method: (names seen, pages, largest page); the names
    must come in strictly increasing order (every step-th item is a name). Nothing kept."""
    cursor = ""
    seen = pages = largest = 0
    last = ""
    while True:
        cursor, page = scan(key, cursor, count)
        pages += 1
        largest = max(largest, len(page))
        for j in range(0, len(page), step):
            check(page[j] > last, "scan out of order")
            last = page[j]
            seen += 1
        page = None
        if cursor == "":
            return seen, pages, largest


def test_big_collections_are_refused_whole_and_paged():
    path = tmpdir("dbb")
    db = DB(path)
    try:
        db.Begin()
        for i in range(N):
            db.Hset("h", "f%03d" % i, "v%d" % i)
            db.Sadd("s", "m%03d" % i)
            db.Sadd("s2", "m%03d" % i)
            db.Rpush("l", "i%d" % i)
            db.Zadd("z", i, "z%03d" % i)
        db.Commit()
        for call in ((db.Hgetall, "h"), (db.Hkeys, "h"), (db.Smembers, "s"),
                     (db.Lrange, "l", 0, -1), (db.Zrange, "z", 0, -1),
                     (db.Zrangebyscore, "z", "-inf", "+inf"), (db.Sinter, "s", "s2"),
                     (db.Sunion, "s", "s2")):
            raises(StoreError, call[0], *call[1:])
        # Ranges within the bound work, and so do the pages.
        check(db.Lrange("l", 0, 99) == ["i%d" % i for i in range(100)])
        check(db.Zrange("z", N - 3, -1) == ["z%03d" % i for i in range(N - 3, N)])
        seen, _pages_, largest = _pages(db.Hscan, "h", 100, 2)
        check(seen == N and largest == 200)
        check(db.Hscan("h", "", 2) == ["f001", ["f000", "v0", "f001", "v1"]])
        seen, _pages_, largest = _pages(db.Sscan, "s", 1000, 1)  # more than a page may hold
        check(seen == N and largest == dbcodec.READ_ITEMS // 2)
        check(db.Sscan("nope") == ["", []])
        raises(StoreError, db.Sscan, "h")  # WRONGTYPE
        # The call() entry point (RPC) has the paging methods.
        check(db.call("Sscan", ["s", "m%03d" % (N - 2), 5]) == ["", ["m%03d" % (N - 1)]])
    finally:
        db.close()
        rmtree(path)


def test_big_values_are_bounded_by_bytes():
    path = tmpdir("dbb2")
    db = DB(path)
    try:
        value = "x" * dbcodec.MAX_VALUE
        n = dbcodec.READ_BYTES // dbcodec.MAX_VALUE + 2  # few fields, too many bytes
        for i in range(n):
            db.Hset("h", "f%02d" % i, value)
        check(db.Hlen("h") == n)
        raises(StoreError, db.Hgetall, "h")
        seen, pages, largest = _pages(db.Hscan, "h", 100, 2)
        check(seen == n and pages > 1 and db.Hscan("h", "", 1)[1][1] == value)
        check(largest // 2 * dbcodec.MAX_VALUE <= dbcodec.READ_BYTES)
        db.Del("h")
        for i in range(3):
            db.Hset("h", "f%02d" % i, value)
        check(len(db.Hgetall("h")) == 3)  # a small hash is still read whole
    finally:
        db.close()
        rmtree(path)


def check(cond, msg="check failed"):
    """An assert that survives mpy-cross -O1, which drops assert statements."""
    if not cond:
        raise AssertionError(msg)


def test_scan_lists_keys_a_page_at_a_time():
    path = tmpdir("dbscan")
    db = DB(path)
    try:
        names = ["k%03d" % i for i in range(40)]
        db.Begin()
        for i, name in enumerate(names):
            kind = i % 5  # every type; some keys with many entries between them
            if kind == 0:
                db.Set(name, "v")
            elif kind == 1:
                for j in range(30):
                    db.Hset(name, "f%02d" % j, "x")
            elif kind == 2:
                db.Rpush(name, "a", "b")
            elif kind == 3:
                for j in range(30):
                    db.Sadd(name, "m%02d" % j)
            else:
                db.Zadd(name, 1, "z")
        db.Commit()
        seen, pages, largest = _pages(lambda _k, c, n: db.Scan(c, n), None, 7, 1)
        check(seen == 40 and pages == 6 and largest == 7)
        check(db.Scan("", 3) == ["k002", ["k000", "k001", "k002"]])
        check(db.Scan("k038", 5) == ["", ["k039"]])
        check(db.Scan("zzzz") == ["", []])  # canonical order: shorter keys come first
        check(db.Scan("zzz", 1) == ["k000", ["k000"]])
        cursor, page = db.call("Scan", ["", 100])
        check(cursor == "" and page == names)
        db.Del("k001")
        check(db.Scan("k000", 2) == ["k003", ["k002", "k003"]])
        raises(StoreError, db.Scan, "", "2")
    finally:
        db.close()
        rmtree(path)
