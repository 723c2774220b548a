# DB MiMei engine (leither.db): transactions, canonical export and atomic restore.
from leither.db import DB
from leither.errors import DecodeError, StoreError
from testutil import raises, rmtree, tmpdir

# db + dbcoll + dbio + dbpage are ~50 KB of code on the 64-bit unix port (see
# test_db_lists_sets); test_db_big.py covers the 64K heap.
MP_HEAP = "96K"


def test_transactions():
    path = tmpdir("dbtx")
    db = DB(path)
    try:
        db.Set("a", "1")
        assert db.Begin() == "OK"
        raises(StoreError, db.Begin)
        db.Set("a", "2")
        db.Hset("h", "f", "v")
        db.Rpush("l", "x")
        assert db.Get("a") == "2" and db.Hget("h", "f") == "v"  # visible inside
        assert db.Rollback() == "OK"
        assert db.Get("a") == "1" and db.Exists("h", "l") == 0
        raises(StoreError, db.Commit)
        raises(StoreError, db.Rollback)
        db.Begin()
        db.Set("a", "3")
        db.Zadd("z", 1, "m")
        db.Del("a")
        db.Set("b", "4")
        assert db.Commit() == "OK"
        db.Begin()
        db.Set("c", "lost")
        db.close()  # an open transaction is rolled back
        db = DB(path)
        assert db.Get("a") is None and db.Get("b") == "4" and db.Zscore("z", "m") == 1
        assert db.Get("c") is None
        db.Begin()
        raises(StoreError, db.Hset, "h", "f")  # refused before writing: tx still fine
        db.Hset("h", "f", "ok")
        db.Commit()
        assert db.Hget("h", "f") == "ok"
        db.Begin()
        for i in range(500):  # bigger than the page cache: pages spill, then commit
            db.Hset("big", "f%d" % i, "v%d" % i)
        db.Rollback()
        assert db.Exists("big") == 0 and db.Hget("h", "f") == "ok"
    finally:
        db.close()
        rmtree(path)


def _fill(db, order):
    """The same content whatever the order of the writes (and with detours)."""
    steps = [
        lambda: db.Set("s", "v"),
        lambda: db.Set(b"bin", b"\x00\x01"),
        lambda: db.Hset("h", "b", "2", "a", "1"),
        lambda: db.Hset("h", "c", "x"),
        lambda: db.Sadd("set", "z", "y", b"x"),
        lambda: db.Zadd("z", 5, "five", -1, "neg"),
        lambda: db.Zadd("z", 2, "two"),
        lambda: db.Set("gone", "soon"),
    ]
    for i in order:
        steps[i]()
    db.Rpush("l", "a", "b")
    db.Lpush("l", "first")
    db.Hdel("h", "c")
    db.Del("gone")
    db.Set("n", "0")
    db.Incr("n")


def _export(db):
    """SHA-256 of the export stream: what a backup hashes (and no big buffer in the heap)."""
    from hashlib import sha256

    h = sha256()
    for piece in db.export():
        h.update(piece)
    return h.digest()


def test_export_is_canonical():
    p1 = tmpdir("dbe1")
    a = DB(p1)
    try:
        _fill(a, [0, 1, 2, 3, 4, 5, 6, 7])
        ea = _export(a)
        a.close()
        rmtree(p1)
        p1 = tmpdir("dbe2")  # the same content, written in the reverse order
        a = DB(p1)
        _fill(a, [7, 6, 5, 4, 3, 2, 1, 0])
        a.Zadd("z", 3, "five")  # a detour that ends in the same state
        a.Zadd("z", 5, "five")
        assert _export(a) == ea
        head = b"".join(a.export())[:5]
        assert head == b"\xa7\x43bin"  # a map of 7 keys; bytes keys sort first
        a.Set("s", "w")
        assert _export(a) != ea
        a.close()
        rmtree(p1)
        p1 = tmpdir("dbe3")
        a = DB(p1)
        assert b"".join(a.export()) == b"\xa0"
    finally:
        a.close()
        rmtree(p1)


def test_restore_round_trip():
    p1 = tmpdir("dbr1")
    p2 = tmpdir("dbr2")
    a = DB(p1)
    try:
        _fill(a, [3, 1, 4, 0, 5, 2, 6, 7])
        for i in range(100):  # spans pages (the export must stay small for the heap)
            a.Hset("wide", "f%03d" % i, "value %03d" % i)
        digest = _export(a)
        pieces = list(a.export())
        assert len(pieces) > 1 and max(len(p) for p in pieces) <= 2048
        a.close()
        b = DB(p2)
        b.Set("old", "content")
        b.close()
        DB.restore(p2, pieces)
        b = DB(p2)
        assert _export(b) == digest and b.Get("old") is None
        assert b.Hget("wide", "f090") == "value 090" and b.Lrange("l", 0, -1) == ["first", "a",
                                                                               "b"]
        b.Set("after", "restore")  # a restored db is an ordinary working copy
        b.close()
        cut = pieces[:-1] + [pieces[-1][:-3]]
        raises(DecodeError, DB.restore, p2, cut)  # truncated: the old content stays
        raises(DecodeError, DB.restore, p2, pieces + [b"\x00"])  # trailing bytes
        raises(DecodeError, DB.restore, p2, [b"\xbf"])  # indefinite length
        raises(DecodeError, DB.restore, p2, [b"\xa1\x61k\x82\x64list\xa0"])  # list as map
        b = DB(p2)
        assert b.Get("after") == "restore" and b.Hlen("wide") == 100
        b.close()
        DB.restore(p2, [b"\xa0"])
        b = DB(p2)
        assert b"".join(b.export()) == b"\xa0"
        b.close()
    finally:
        a.close()
        rmtree(p1)
        rmtree(p2)


def test_export_is_the_committed_content():
    path = tmpdir("dbec")
    db = DB(path)
    try:
        db.Set("a", "1")
        db.Hset("h", "f", "v")
        before = _export(db)
        db.Begin()
        db.Set("a", "2")
        for i in range(150):  # enough to move pages: the committed ones stay readable
            db.Hset("h", "g%d" % i, "w")
        db.Del("h")
        assert _export(db) == before  # a backup sees no half of a transaction
        db.Commit()
        after = _export(db)
        assert after != before
        db.close()
        db = DB(path)
        assert _export(db) == after
    finally:
        db.close()
        rmtree(path)
