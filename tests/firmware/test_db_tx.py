# DB MiMei engine (leither.db): transactions, and the export of committed content only.
from leither.db import DB
from leither.errors import StoreError

from testutil import raises, rmtree, tmpdir

# db + dbio + dbpage are ~40 KB of code on the 64-bit unix port; with this module and the
# page cache they pass 64 KB (it runs at 80K; 96K leaves a margin). test_db_big.py covers 64K.
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
        db.Set("l", "x")
        assert db.Get("a") == "2" and db.Hget("h", "f") == "v"  # visible inside
        assert db.Rollback() == "OK"
        assert db.Get("a") == "1" and db.Exists("h", "l") == 0
        raises(StoreError, db.Commit)
        raises(StoreError, db.Rollback)
        db.Begin()
        db.Set("a", "3")
        db.Hset("z", "m", "1")
        db.Del("a")
        db.Set("b", "4")
        assert db.Commit() == "OK"
        db.Begin()
        db.Set("c", "lost")
        db.close()  # an open transaction is rolled back
        db = DB(path)
        assert db.Get("a") is None and db.Get("b") == "4" and db.Hget("z", "m") == "1"
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


def _export(db):
    """SHA-256 of the export stream: what a backup hashes (and no big buffer in the heap)."""
    from hashlib import sha256

    h = sha256()
    for piece in db.export():
        h.update(piece)
    return h.digest()


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
