# Bulk writes and reads without per-call allocation: store.appender continues a tree exactly as
# a one-go build would, TreeReader.read_into fills a caller's buffer, and Store.set_data with
# sync=False is not durable until a sync point, yet never leaves cur torn. Both interpreters.
import struct

from leither import mimei, store

from testutil import random_bytes, rmtree, tmpdir

# Passes from 244K (its code and ours sit in the unix port's heap); 20% headroom
# so a shifted heap layout cannot fail it (ci/mp_heap_margin.py).
MP_HEAP = "320K"

store.reserve()

SEED = bytes(range(32))


def check(cond, msg="check failed"):
    if not cond:
        raise AssertionError(msg)


def _piece(start, n):
    """n bytes of a deterministic stream from offset start (4-byte words of their offset)."""
    first = start - start % 4
    out = bytearray(n + 8)
    for w in range(first, start + n, 4):
        struct.pack_into(">I", out, w - first, w)
    return memoryview(out)[start - first:start - first + n]


def _build(bs, size, step=5000):
    w = store.TreeWriter(bs)
    for pos in range(0, size, step):
        w.write(_piece(pos, min(step, size - pos)))
    return w.finish()


def test_appender_continues_any_tree_like_one_build():
    d = tmpdir("app")
    try:
        bs = store.BlockStore(d)
        fan = store.FANOUT * store.CHUNK
        # Sizes around the chunk and the first manifest boundaries (2-level trees and up).
        for size, extra in ((0, 0), (0, 10), (1, 4095), (4096, 1), (4097, 9000), (fan - 1, 2),
                            (fan, 0), (fan, 4096), (fan + 1, 20000)):
            root, got = _build(bs, size)
            check(got == size)
            w = store.appender(bs, root)
            check(w.finish() == (root, size), "appender changed tree of %d" % size)
            w = store.appender(bs, root)
            pos = size
            while pos < size + extra:
                n = min(3000, size + extra - pos)
                w.write(_piece(pos, n))
                pos += n
            check(w.finish() == _build(bs, size + extra), "append %d + %d" % (size, extra))
        bs.close()
    finally:
        rmtree(d)


def test_read_into_fills_a_view_at_any_offset():
    d = tmpdir("rin")
    try:
        bs = store.BlockStore(d)
        size = 3 * 4096 + 100
        root, _ = _build(bs, size)
        r = store.TreeReader(bs, root)
        buf = bytearray(9000)
        view = memoryview(buf)
        for offset, n in ((0, 9000), (4096, 8192), (1, 4095), (5000, 9000), (size - 5, 100),
                          (size, 10), (size + 7, 10)):
            got = r.read_into(offset, view[:n])
            want = _piece(offset, max(0, min(n, size - offset)))
            check(got == len(want) and bytes(buf[:got]) == want, "read_into %d" % offset)
        r.close()
        bs.close()
    finally:
        rmtree(d)


def test_unsynced_writes_commit_at_sync_points():
    d = tmpdir("uns")
    try:
        s = mimei.Store(d, SEED)
        m = s.create("bulk")
        other = s.create("other")
        s.set_data(m, 0, b"committed", sync=True)
        s.set_data(m, 9, b"+more", sync=False)
        s.set_data(m, 2, b"X", sync=False)  # not an append: a patch, also pending
        check(bytes(s.get_data(m, 0, 100)) == b"coXmitted+more")
        buf = bytearray(20)
        check(s.get_into(m, 0, buf) == 14 and bytes(buf[:14]) == b"coXmitted+more")
        # A crash now (a second store opened on the same directory sees only the disk):
        # cur is the last durable state.
        crash = mimei.Store(d, SEED)
        check(bytes(crash.get_data(m, 0, 100)) == b"committed")
        crash.blocks._wf = None  # never write through this one
        # Work on another MiMei commits the pending writes first.
        s.set_data(other, 0, b"o", sync=False)
        seen = mimei.Store(d, SEED)
        check(bytes(seen.get_data(m, 0, 100)) == b"coXmitted+more")
        check(seen.size(other) == 0)
        # A sync=True write commits it all; so do backup, collect and close.
        s.set_data(other, 1, b"p", sync=True)
        seen = mimei.Store(d, SEED)
        check(bytes(seen.get_data(other, 0, 10)) == b"op")
        s.set_data(m, 14, random_bytes(9000, seed=3), sync=False)
        s.collect(min_dead=0.0)
        seen = mimei.Store(d, SEED)
        check(seen.size(m) == 9014)
        s.set_data(m, 9014, b"tail", sync=False)
        rec = s.backup(m)
        check(rec["size"] == 9018)
        s.set_data(m, 0, b"Z", sync=False)
        s.close()
        s = mimei.Store(d, SEED)
        check(bytes(s.get_data(m, 0, 3)) == b"ZoX" and s.size(m) == 9018)
        s.verify(m, rec["n"])
        s.close()
    finally:
        rmtree(d)


def test_unsynced_upload_commits_by_itself_every_sync_bytes():
    d = tmpdir("upl")
    try:
        s = mimei.Store(d, SEED)
        m = s.create("upload")
        piece = 8192
        total = mimei.SYNC_BYTES + 3 * piece
        for pos in range(0, total, piece):
            s.set_data(m, pos, _piece(pos, piece), sync=False)
        crash = mimei.Store(d, SEED)
        durable = crash.size(m)
        check(durable == mimei.SYNC_BYTES, "durable %d" % durable)
        check(crash.get_data(m, durable - 10, 10) == _piece(durable - 10, 10))
        crash.blocks._wf = None
        s.sync()
        s.close()
        s = mimei.Store(d, SEED)
        check(s.size(m) == total)
        buf = bytearray(piece)
        for pos in range(0, total, 100 * piece):
            check(s.get_into(m, pos, buf) == piece and bytes(buf) == _piece(pos, piece))
        root = s._state(m)["root"]
        s.close()
        bs = store.BlockStore(d + "/blocks")
        check(_build(bs, total) == (root, total), "upload tree is not the canonical one")
        bs.close()
    finally:
        rmtree(d)
