# The soak's long-running paths take no fresh 4 KiB (or manifest-sized) block from a heap that
# other work fragments (issue 9): the mark reads manifests a window at a time, a cached reader
# holds no pooled buffer, and an upload taken up again after another MiMei's write needs only
# the buffers the pool holds. Counted (takes that found the pool empty, blocks read at their
# own size), not timed; both interpreters. Under MicroPython the same work also runs in a heap
# cut into holes, where any such allocation fails.
import sys

from leither import mimei, store, tree, treediff

from testutil import fragment, raises, rmtree, tmpdir

# 2 pool buffers, a store, two uploads of up to 480 KB staged piece by piece, and a heap cut
# into holes (half of what is free): passes from 240K; 20% headroom (ci/mp_heap_margin.py).
MP_HEAP = "288K"

PIECE = 3840  # bytes of an upload's piece (a 4 KiB frame less the request's own bytes)
BIG = 512  # a block read at its own size above this is what a fragmented heap cannot give
MICROPYTHON = sys.implementation.name == "micropython"

store.reserve()


def check(cond, msg="check failed"):
    if not cond:
        raise AssertionError(msg)


class Tight(store.BlockStore):
    """A store on a fragmented heap: a block over BIG bytes read into a fresh buffer fails."""

    def get(self, h, buf=None):
        data = store.BlockStore.get(self, h, buf)
        if not isinstance(data, memoryview) and len(data) > BIG:
            raise MemoryError("a fresh %d-byte block" % len(data))
        return data


class Counted:
    """Counts tree.take() calls that found the pool empty (each one a fresh 4 KiB block)."""

    def __init__(self):
        self.fresh = 0
        self.calls = 0
        self.real = tree.take

    def __enter__(self):
        def take():
            self.calls += 1
            if not tree._pool:
                self.fresh += 1
            return self.real()

        tree.take = take
        return self

    def __exit__(self, *exc):
        tree.take = self.real


_ZERO = bytes(PIECE)
_bufs = []  # two PIECE buffers, made before a test cuts the heap into holes
_view = bytearray(PIECE)  # a reply frame's room for a get


def _piece(off, n, seed, k=0):
    """Bytes [off, off + n) of a content: every 251st byte marked, each chunk differs (made
    piece by piece: a MicroPython heap holds no 500 KB), in buffer k of two, made once."""
    while len(_bufs) < 2:
        _bufs.append(bytearray(PIECE))
    out = memoryview(_bufs[k])[:n]
    out[:] = memoryview(_ZERO)[:n]
    for i in range((off + 250) // 251 * 251, off + n, 251):
        out[i - off] = (i // 251 + seed) & 0xFF
    return out


def _build(bs, size, seed):
    w = store.TreeWriter(bs)
    for off in range(0, size, PIECE):
        w.write(_piece(off, min(PIECE, size - off), seed))
    return w.finish()


def _same(read, size, seed, view):
    """Does read(offset, view) -> n give the content, piece by piece?"""
    off = 0
    while True:
        got = read(off, view)
        if got != min(len(view), size - off) or view[:got] != _piece(off, got, seed, 1):
            return False
        if not got:
            return off == size
        off += got


def test_walk_and_reads_in_windows_with_an_empty_pool():
    d = tmpdir("win")
    window = getattr(tree, "WINDOW", store.CHUNK)  # (none before windows: a failure below)
    try:
        bs = Tight(d)
        # Two levels: a root and two level-1 manifests of 4 KiB and 200 bytes.
        size = (store.FANOUT + 5) * store.CHUNK + 77
        root, _ = _build(bs, size, 1)
        want = list(store.walk(bs, root))
        check(len(want) == 1 + 2 + store.FANOUT + 6, "walked %d" % len(want))
        # Grown by a piece: the new root, the second level-1 manifest, the last chunk.
        grown, _ = store.patch(bs, root, size, _piece(size, PIECE, 1))
        changed = list(treediff.tree_diff(bs, grown, root))
        check(len(changed) == 3, "diff of %d" % len(changed))
        store.trim()  # the pool empty: busy uploads hold its buffers
        for win in (64, 512, window):  # windows of 2 hashes, 16, the interpreter's own
            tree.WINDOW = win
            with Counted() as c:
                check(list(store.walk(bs, root)) == want, "walk, window %d" % win)
                check(list(store.walk(bs, root, store.MISSING)) == [])
                check(list(store.walk(bs, root, store.PRESENT)) == want)
                check(list(treediff.tree_diff(bs, root)) == want, "diff, window %d" % win)
                check(list(treediff.tree_diff(bs, grown, root)) == changed)
                check(treediff.random_block(bs, b"r" * 32, root) in want + [b"r" * 32])
                r = store.TreeReader(bs, root)
                view = memoryview(bytearray(PIECE))
                for off in (0, 3 * PIECE, 130 * store.CHUNK - 100, size - 50):
                    got = r.read_into(off, view)
                    check(got == min(PIECE, size - off) and view[:got] == _piece(off, got, 1, 1),
                          "read at %d, window %d" % (off, win))
                check(_same(r.read_into, size, 1, view), "read, window %d" % win)
                for i in (0, 126, r.n - 1):
                    r.check_chunk(i)
                r.close()
            check(c.fresh == 0 and not tree._pool, "took %d buffers" % c.fresh)
        bs.close()
    finally:
        tree.WINDOW = window
        store.reserve()
        rmtree(d)


class Plain:
    """A block source that is no BlockStore and reads blocks only whole, as a host tool's
    (leither_host.escrow fetches a partner's blocks): its get_part copies the part out."""

    def __init__(self, bs):
        self.bs = bs

    def has(self, h):
        return self.bs.has(h)

    def get(self, h, buf=None):
        return self.bs.get(h, buf)

    def get_part(self, h, start, view):
        data = self.bs.get(h)
        n = max(0, min(len(view), len(data) - start))
        if n:
            view[:n] = memoryview(data)[start:start + n]
        return n, len(data)


def test_readers_and_walks_over_a_plain_block_source():
    d = tmpdir("plain")
    window = getattr(tree, "WINDOW", store.CHUNK)
    try:
        bs = store.BlockStore(d)
        size = (store.FANOUT + 2) * store.CHUNK + 5
        root, _ = _build(bs, size, 4)
        want = list(store.walk(bs, root))
        tree.WINDOW = 64
        check(list(store.walk(Plain(bs), root)) == want)
        r = store.TreeReader(Plain(bs), root)
        check(_same(r.read_into, size, 4, memoryview(_view)), "read through a plain source")
        r.check_chunk(r.n - 1)
        bs.close()
    finally:
        tree.WINDOW = window
        rmtree(d)


def test_an_upload_needs_no_buffer_once_started():
    # An upload's writer holds what its pieces and its finish need (up to 516 KB, one
    # level): once it took the first piece, the pool may be empty and no piece or settle
    # fails for want of a 4 KiB block (a settle that did lost the pieces taken before).
    d = tmpdir("upn")
    try:
        bs = store.BlockStore(d)
        for size in (100, store.CHUNK, 3 * PIECE + 1, 40 * store.CHUNK + 7):
            store.reserve()
            w = store.appender(bs, store.empty_root(bs))
            store.trim()
            with Counted() as c:
                for off in range(0, size, PIECE):
                    w.write(_piece(off, min(PIECE, size - off), 3))
                got = w.finish()
            check(c.calls == 0, "%d buffers taken for %d bytes" % (c.calls, size))
            check(got == _build(bs, size, 3), "tree of %d bytes" % size)
        bs.close()
    finally:
        store.reserve()
        rmtree(d)


def test_failed_builds_and_patches_give_their_buffers_back():
    # A db's export that runs short half-way, or a patch whose write fails, must not keep
    # the pool's buffers from the next upload (each lost one is a fresh 4 KiB block later).
    d = tmpdir("giveback")
    try:
        bs = store.BlockStore(d)
        root, _ = _build(bs, 3 * store.CHUNK, 5)
        store.reserve()

        def pieces():
            yield _piece(0, PIECE, 5)
            raise MemoryError("memory allocation failed")

        check(isinstance(raises(MemoryError, store.build, bs, pieces()), MemoryError))
        check(len(tree._pool) == 3, "build kept %d" % (3 - len(tree._pool)))
        put = bs.put

        def failing(data, head=None):
            raise MemoryError("memory allocation failed")

        bs.put = failing
        raises(MemoryError, store.patch, bs, root, 10, b"x" * 5000)
        bs.put = put
        check(len(tree._pool) == 3, "patch kept %d" % (3 - len(tree._pool)))
        bs.close()
    finally:
        rmtree(d)


def _uploads(s, mids, size, seeds):
    """Two staged puts, their pieces interleaved as two workers' calls come in."""
    for off in range(0, size, PIECE):
        for mid, seed in zip(mids, seeds):
            s.set_data(mid, off, _piece(off, min(PIECE, size - off), seed), False, True)
    view = memoryview(_view)
    for mid, seed in zip(mids, seeds):
        check(s.commit(mid, size) == size)
        check(_same(lambda off, v, mid=mid: s.get_into(mid, off, v), size, seed, view),
              "put of %d bytes" % size)


def test_interleaved_uploads_need_only_the_pool():
    d = tmpdir("upl")
    try:
        s = mimei.Store(d, bytes(range(32)))
        s.blocks.__class__ = Tight
        mids = [s.create("win", mark=str(i)) for i in range(2)]
        store.reserve()
        # Up to 126 chunks (one level, a root of up to 4 KiB read back at every switch),
        # then two levels.
        for size, seeds in ((3 * PIECE + 10, (1, 2)), (64 * PIECE, (3, 4)),
                            (store.FANOUT * store.CHUNK + 5000, (5, 6))):
            with Counted() as c:
                _uploads(s, mids, size, seeds)
            check(c.fresh == 0, "%d fresh buffers for puts of %d" % (c.fresh, size))
        s.close()
    finally:
        rmtree(d)


def test_uploads_reads_and_mark_in_a_heap_of_holes():
    if not MICROPYTHON:
        return  # CPython's heap does not fragment this way; the counts above hold there
    d = tmpdir("holes")
    try:
        s = mimei.Store(d, bytes(range(32)))
        mids = [s.create("win", mark=str(i)) for i in range(2)]
        size = 120 * store.CHUNK  # roots of 3.8 KiB: read at their own size they fail
        _uploads(s, mids, size, (1, 2))
        s.backup(mids[0])
        s.collect()  # once first: what a node allocates at its first use
        view = memoryview(_view)
        keep = fragment(1024)  # the 64-bit port's objects are twice an ESP32's
        for round_ in range(2):
            _uploads(s, mids, size, (round_, 7))
            for mid in mids:
                off = 0
                while s.get_into(mid, off, view):
                    off += PIECE
            steps = s.collect_steps()
            off = 0
            for _ in steps:  # an upload's pieces between the mark's steps
                if off < size:
                    s.set_data(mids[1], off, _piece(off, PIECE, 9), False, True)
                    off += PIECE
        del keep
        s.close()
    finally:
        rmtree(d)
