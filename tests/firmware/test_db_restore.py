# DB MiMei engine (leither.db): canonical export and atomic restore.
from leither.db import DB
from leither.errors import DecodeError

from testutil import raises, rmtree, tmpdir

# db + dbcoll + dbio + dbpage are ~50 KB of code on the 64-bit unix port (see
# test_db_lists_sets); test_db_big.py covers the 64K heap.
# Passes from 100K (its code and ours sit in the unix port's heap; 88K before the db codec
# became its own module); 20% headroom so a shifted heap layout cannot fail it
# (ci/mp_heap_margin.py).
MP_HEAP = "128K"


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


def _save(db, name):
    """Write db's export to file name, as a backup would; (pieces, largest piece)."""
    n = 0
    big = 0
    with open(name, "wb") as f:
        for piece in db.export():
            f.write(piece)
            n += 1
            big = max(big, len(piece))
    return n, big


def _load(name, cut=0, extra=b""):
    """The saved export in 300-byte pieces (less its last `cut` bytes, plus `extra`)."""
    import os

    left = os.stat(name)[6] - cut
    with open(name, "rb") as f:
        while left > 0:
            piece = f.read(min(300, left))
            left -= len(piece)
            yield piece
    if extra:
        yield extra


def test_restore_round_trip():
    p1 = tmpdir("dbr1")
    p2 = tmpdir("dbr2")
    a = DB(p1)
    try:
        _fill(a, [3, 1, 4, 0, 5, 2, 6, 7])
        for i in range(100):  # spans pages
            a.Hset("wide", "f%03d" % i, "value %03d" % i)
        digest = _export(a)
        saved = p1 + "/export"
        n, big = _save(a, saved)
        assert n > 1 and big <= 2048
        a.close()
        b = DB(p2)
        b.Set("old", "content")
        b.close()
        DB.restore(p2, _load(saved))
        b = DB(p2)
        assert _export(b) == digest and b.Get("old") is None
        assert b.Hget("wide", "f090") == "value 090"
        assert b.Lrange("l", 0, -1) == ["first", "a", "b"]
        b.Set("after", "restore")  # a restored db is an ordinary working copy
        b.close()
        raises(DecodeError, DB.restore, p2, _load(saved, 3))  # truncated: old content stays
        raises(DecodeError, DB.restore, p2, _load(saved, 0, b"\x00"))  # trailing bytes
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
