# Sparse content is stored as holes (issue 10 row 3): a write far past the end costs one block
# per tree level, never a zero chunk per 4 KiB of the gap, and walking or diffing the result
# touches a few hundred hashes. Counted in blocks, not timed. Runs under both interpreters.
from leither import store, treediff
from leither.errors import StoreError

from testutil import raises, rmtree, tmpdir

# The store module, and a depth-4 patch at MAX_SIZE: a buffer per level for the new path and
# the old reader's. Passes from 152K (its code and ours sit in the unix port's heap); 20%
# headroom so a shifted heap layout cannot fail it (ci/mp_heap_margin.py).
MP_HEAP = "192K"

store.reserve()


def check(cond, msg="check failed"):
    """An assert that survives mpy-cross -O1, which drops assert statements."""
    if not cond:
        raise AssertionError(msg)


def _count(it):
    n = 0
    for _ in it:
        n += 1
    return n


def test_far_writes_cost_one_block_per_level():
    d = tmpdir("holes")
    try:
        bs = store.BlockStore(d)
        empty = store.empty_root(bs)
        for offset in (1 << 32, 6 << 30, 1 << 39, store.MAX_SIZE - 5):
            before = bs.count()
            root, size = store.patch(bs, empty, offset, b"hello")
            check(size == offset + 5)
            r = store.TreeReader(bs, root)
            try:
                added = bs.count() - before
                # Per level: the zero subtree (shared), the path to the data; plus the chunk.
                check(added <= 3 * r.depth + 2, "hole wrote %d blocks" % added)
                check(r.read_at(offset - 3, 10) == b"\x00\x00\x00hello")
                check(r.read_at(offset // 3, 7) == bytes(7))
                check(r.read_at(0, 5) == bytes(5))
            finally:
                r.close()
            check(_count(store.walk(bs, root)) <= 6 * 126, "walk of a hole")
            check(_count(treediff.tree_diff(bs, root, empty)) <= 6 * 126, "diff of a hole")
        # Extending by truncate is a hole too, and a hole inside an old tree keeps its data.
        root, _ = store.patch(bs, empty, 0, b"head")
        root, size = store.patch(bs, root, 0, b"", new_size=1 << 39)
        root, _ = store.patch(bs, root, (1 << 38) + 4093, b"across")
        r = store.TreeReader(bs, root)
        try:
            check(r.size == 1 << 39 and r.read_at(0, 6) == b"head\x00\x00")
            check(r.read_at((1 << 38) + 4090, 12) == b"\x00\x00\x00across\x00\x00\x00")
        finally:
            r.close()
        bs.close()
    finally:
        rmtree(d)


def test_holes_give_the_canonical_tree():
    # The same content written densely has the same root: holes are an encoding detail.
    d = tmpdir("holes2")
    try:
        bs = store.BlockStore(d)
        empty = store.empty_root(bs)
        w = store.TreeWriter(bs)
        gap = 4096 * 130 + 7  # past one level-1 manifest: a zero subtree and a partial one
        for _ in range(gap // 4096):
            w.write(bytes(4096))
        w.write(bytes(gap % 4096))
        w.write(b"xy")
        dense, size = w.finish()
        sparse, size2 = store.patch(bs, empty, gap, b"xy")
        check(size == size2 and sparse == dense)
        grown, _ = store.patch(bs, empty, 0, b"", new_size=gap + 2)
        check(store.patch(bs, grown, gap, b"xy")[0] == dense)
        bs.close()
    finally:
        rmtree(d)


def test_offsets_beyond_max_size_refused():
    d = tmpdir("holes3")
    try:
        bs = store.BlockStore(d)
        empty = store.empty_root(bs)
        before = bs.count()
        raises(StoreError, store.patch, bs, empty, store.MAX_SIZE - 1, b"ab")
        raises(StoreError, store.patch, bs, empty, 1 << 70, b"x")
        raises(StoreError, store.patch, bs, empty, -1, b"x")
        raises(StoreError, store.patch, bs, empty, 0, b"", store.MAX_SIZE + 1)
        check(bs.count() == before)
        bs.close()
    finally:
        rmtree(d)
