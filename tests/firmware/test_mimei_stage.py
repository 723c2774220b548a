# Whole-file puts staged beside cur and swapped in by one commit (issue 10 row 12), sparse
# offsets at the MiMei level (row 3), and the public metadata setter a restore uses.
# Both interpreters.
from leither import mimei, store
from leither.errors import StoreError

from testutil import raises, rmtree, tmpdir

# As test_mimei.py (its imports, Ed25519 and the tree pool) with 12 KB payloads held twice.
# Passes from 232K (its code and ours sit in the unix port's heap); 20% headroom
# so a shifted heap layout cannot fail it (ci/mp_heap_margin.py).
MP_HEAP = "304K"

SEED = bytes(range(32))


def check(cond, msg="check failed"):
    """An assert that survives mpy-cross -O1, which drops assert statements."""
    if not cond:
        raise AssertionError(msg)


def _data(n, salt):
    out = bytearray(n)
    for i in range(n):
        out[i] = (i * 7 + salt) & 255
    return out


def _same(s, m, want):
    """cur equals want, compared in small reads (a 64-bit test heap fragments)."""
    if s.size(m) != len(want):
        return False
    for pos in range(0, len(want), 2048):
        if s.get_data(m, pos, 2048) != want[pos:pos + 2048]:
            return False
    return True


def test_staged_put_is_invisible_until_commit():
    d = tmpdir("stage")
    try:
        s = mimei.Store(d, SEED)
        m = s.create("app", "bin")
        old = _data(5000, 1)
        new = _data(12000, 2)
        s.set_data(m, 0, old)
        raises(StoreError, s.commit, m)  # nothing staged
        raises(StoreError, s.set_data, m, 4096, b"x", True, True)  # a stage starts at 0
        for pos in range(0, len(new), 3000):  # unsynced pieces, as `leither mm put` sends
            s.set_data(m, pos, new[pos:pos + 3000], False, True)
            check(_same(s, m, old))
        check(s.stat(m)["staged"] == len(new) and s.size(m) == len(old))
        s.sync()  # the stage durable, cur still old
        s.close()
        s = mimei.Store(d, SEED)  # as after a power cut between the pieces and the commit
        check(_same(s, m, old) and s.stat(m)["staged"] == len(new))
        raises(StoreError, s.commit, m, len(new) + 1)  # not what the uploader sent: kept
        check(s.stat(m)["staged"] == len(new) and _same(s, m, old))
        check(s.commit(m, len(new)) == len(new))
        check(_same(s, m, new) and s.stat(m)["staged"] is None)
        raises(StoreError, s.commit, m)  # committed once
        s.close()
        s = mimei.Store(d, SEED)
        check(_same(s, m, new))
        s.close()
    finally:
        rmtree(d)


def test_a_new_put_starts_afresh_and_abandoned_ones_are_collected():
    d = tmpdir("stage2")
    try:
        s = mimei.Store(d, SEED)
        m = s.create("app", "bin")
        s.set_data(m, 0, b"cur")
        s.set_data(m, 0, _data(9000, 3), False, True)  # an upload cut off half way
        s.sync()
        s.set_data(m, 0, b"second", False, True)  # the next put begins at 0: a new stage
        check(s.commit(m) == 6 and bytes(s.get_data(m, 0, 100)) == b"second")
        s.set_data(m, 0, b"", True, True)  # an empty file: staged, then committed
        check(s.commit(m) == 0 and s.size(m) == 0)
        # An abandoned stage is kept from collection until dropped, then freed.
        piece = _data(8000, 4)
        for pos in range(0, 40000, 8000):  # distinct chunks: every 4 KiB holds its offset
            piece[0] = pos >> 8
            s.set_data(m, pos, piece, False, True)
        s.sync()
        used = s.blocks.count()
        s.collect(min_dead=0.0)
        check(s.stat(m)["staged"] == 40000)
        raises(StoreError, s.set_data, s.create("app", "", "d", "db"), 0, b"x", True, True)
        s.maintain(now=mimei.time_ms())  # not idle yet: kept
        check(s.stat(m)["staged"] == 40000)
        s.maintain(now=mimei.time_ms() + mimei.STAGE_IDLE + 1000)  # idle past the limit
        check(s.stat(m)["staged"] is None and bytes(s.get_data(m, 0, 10)) == b"")
        s.blocks.seal_open()
        s.collect(min_dead=0.0)
        check(s.blocks.count() < used, "abandoned stage not collected")
        s.set_data(m, 0, b"abc", True, True)
        s.discard(m)
        raises(StoreError, s.commit, m)
        s.close()
    finally:
        rmtree(d)


def test_sparse_offsets_and_the_size_bound():
    d = tmpdir("stage3")
    try:
        s = mimei.Store(d, SEED)
        m = s.create("app", "bin")
        before = s.blocks.count()
        check(s.set_data(m, 6 << 30, b"far") == (6 << 30) + 3)  # a guest's 6 GiB attack
        check(s.blocks.count() - before < 16, "a hole wrote zero chunks")
        check(bytes(s.get_data(m, (6 << 30) - 2, 10)) == b"\x00\x00far")
        raises(StoreError, s.set_data, m, store.MAX_SIZE, b"x")
        raises(StoreError, s.set_data, m, store.MAX_SIZE - 1, b"xy", False, True)
        raises(StoreError, s.truncate, m, store.MAX_SIZE + 1)
        check(s.size(m) == (6 << 30) + 3)
        rec = s.backup(m)  # a version of a sparse file: its blocks walk in a few steps
        check(rec["size"] == (6 << 30) + 3)
        walked = 0
        for _ in s.blocks_of(m, "last"):
            walked += 1
        check(walked < 200, "walk of a sparse version")
        s.close()
    finally:
        rmtree(d)


def test_set_meta_is_the_public_way_to_write_descriptive_fields():
    d = tmpdir("stage4")
    try:
        s = mimei.Store(d, SEED)
        m = s.create("app", "bin")
        meta = {"app": "other", "ext": "txt", "mark": "m", "ctime": 5, "release": None,
                "refs": {"x": 1}, "rights": {"y": mimei.READ}, "size": 123}
        s.set_meta(m, meta)
        s.close()
        s = mimei.Store(d, SEED)
        info = s.info(m)
        check(info["app"] == "other" and info["ext"] == "txt" and info["ctime"] == 5)
        check(s.get_ref(m) == {"x": 1} and s.get_right(m, "y") == mimei.READ)
        check(info["size"] == 0)  # only the META fields are taken
        s.close()
    finally:
        rmtree(d)


class _Fail:
    """An appender whose next write fails as a board's would when the heap runs short."""

    def __init__(self, app):
        self.app = app

    def write(self, data):
        raise MemoryError("memory allocation failed")

    def abandon(self):
        self.app.abandon()


def test_a_failed_append_is_never_zero_filled():
    # After a failed unsynced append (MemoryError: the node answers busy) the writes since
    # the last durable point are gone; the client resends only the piece that failed. That
    # resend must be refused, not stored after a hole of zeros that a commit would accept.
    d = tmpdir("stage3")
    try:
        s = mimei.Store(d, SEED)
        for stage in (True, False):
            m = s.create("app", "lost%d" % stage)
            new = _data(12000, 3)
            s.set_data(m, 0, new[:3000], True, stage)  # durable up to 3000
            s.set_data(m, 3000, new[3000:6000], False, stage)  # taken, not yet durable
            s._app = _Fail(s._app)
            raises(MemoryError, s.set_data, m, 6000, new[6000:9000], False, stage)
            raises(StoreError, s.set_data, m, 6000, new[6000:9000], False, stage)
            raises(StoreError, s.set_data, m, 6000, new[6000:9000], False, stage)  # still
            for pos in range(3000, len(new), 3000):  # from where the data still is: fine
                s.set_data(m, pos, new[pos:pos + 3000], False, stage)
            if stage:
                check(s.commit(m, len(new)) == len(new))
            s.sync()
            check(_same(s, m, new))
        s.close()
    finally:
        rmtree(d)


def test_lost_writes_of_two_puts_are_both_refused():
    # Two uploads at once (a soak's workers): each loses its unsynced pieces in turn, one to
    # a failed append, the other to a state save that ran out of heap while switching MiMei.
    # Each resend past what is still there is refused; a zero-filled hole was committed.
    d = tmpdir("stage5")
    try:
        s = mimei.Store(d, SEED)
        a, b = s.create("app", "a"), s.create("app", "b")
        da, db = _data(9000, 5), _data(9000, 6)
        s.set_data(a, 0, da[:3000], True, True)  # durable
        s.set_data(a, 3000, da[3000:6000], False, True)  # taken, not durable
        s._app = _Fail(s._app)
        raises(MemoryError, s.set_data, a, 6000, da[6000:], False, True)
        s.set_data(b, 0, db[:3000], False, True)  # b's stage itself is not durable yet
        s.set_data(b, 3000, db[3000:6000], False, True)
        s._app = _Fail(s._app)
        raises(MemoryError, s.set_data, b, 6000, db[6000:], False, True)
        raises(StoreError, s.set_data, a, 6000, da[6000:], False, True)  # a's loss remembered
        raises(StoreError, s.set_data, b, 6000, db[6000:], False, True)
        for m, data in ((a, da), (b, db)):
            for pos in range(0, len(data), 3000):
                s.set_data(m, pos, data[pos:pos + 3000], False, True)
        check(s.commit(a, len(da)) == len(da) and s.commit(b, len(db)) == len(db))
        check(_same(s, a, da) and _same(s, b, db))
        # A save that fails while switching MiMei drops the other one's unsynced pieces.
        s.set_data(a, 0, db[:3000], False, True)
        s.set_data(a, 3000, db[3000:6000], False, True)
        real = store.write_file
        store.write_file = _fail_write
        try:
            raises(MemoryError, s.set_data, b, 0, da[:3000], False, True)
        finally:
            store.write_file = real
        raises(StoreError, s.set_data, a, 6000, db[6000:], False, True)
        for pos in range(0, len(db), 3000):
            s.set_data(a, pos, db[pos:pos + 3000], False, True)
        check(s.commit(a, len(db)) == len(db) and _same(s, a, db))
        s.close()
    finally:
        rmtree(d)


class _FailFinish(_Fail):
    """An appender that takes pieces but runs out of heap for its last blocks."""

    def write(self, data):
        return self.app.write(data)

    def finish(self):
        raise MemoryError("memory allocation failed")

    @property
    def size(self):
        return self.app.size


def test_an_appender_that_cannot_finish_loses_its_pieces_openly():
    # The appender took pieces (the cached size counts them) but cannot write its last
    # blocks when another MiMei's call settles it: the pieces are lost, and said so; a
    # resend of the next piece was patched into the old tree after a hole of zeros.
    d = tmpdir("stage6")
    try:
        s = mimei.Store(d, SEED)
        for stage in (True, False):
            a, b = s.create("app", "fa%d" % stage), s.create("app", "fb%d" % stage)
            data = _data(12000, 7)
            s.set_data(a, 0, data[:3000], True, stage)  # durable
            s.set_data(a, 3000, data[3000:6000], False, stage)
            s._app = _FailFinish(s._app)
            s.set_data(a, 6000, data[6000:9000], False, stage)
            raises(MemoryError, s.info, b)  # settling a's appender runs short
            if stage:  # the lost piece was the last one: the commit says so, commits nothing
                err = raises(StoreError, s.commit, a)
                check("were lost" in str(err) and s.size(a) == 0, str(err))
            raises(StoreError, s.set_data, a, 9000, data[9000:], False, stage)
            for pos in range(3000, len(data), 3000):
                s.set_data(a, pos, data[pos:pos + 3000], False, stage)
            if stage:
                check(s.commit(a, len(data)) == len(data))
            s.sync()
            check(_same(s, a, data))
        s.close()
    finally:
        rmtree(d)


def _fail_write(path, fill, what=None):
    raise MemoryError("memory allocation failed")
