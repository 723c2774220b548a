# The block store and Merkle trees: dedup, verified reads, canonical trees, crash recovery of
# the open pack, collection. Runs under CPython and MicroPython.
import os
import struct

from leither import liveset, store
from leither.errors import StoreError

from testutil import raises, random_bytes, rmtree, tmpdir


def check(cond, msg="check failed"):
    """An assert that survives mpy-cross -O1, which drops assert statements."""
    if not cond:
        raise AssertionError(msg)


# On the 64-bit unix port the store module alone takes ~18 KB of heap once imported, this
# module and testutil ~9 KB, the tree buffer pool up to 24 KB, and the tests hold their data
# and models beside it: 64K leaves too small a largest free block (measured: 128K passes).
# Passes from 116K (its code and ours sit in the unix port's heap); 20% headroom
# so a shifted heap layout cannot fail it (ci/mp_heap_margin.py).
MP_HEAP = "176K"

store.reserve()  # the tree buffers before the heap is cut up (a port may do it at start)


def _pack_files(path):
    return sorted(n for n in os.listdir(path) if n.endswith(".pk"))


def _chunk(i):
    """A distinct 4096-byte chunk for index i (no dedup between chunks)."""
    return struct.pack(">I", i) * 1024


class _Long:
    """Claims to be one byte longer than a block may be (without allocating it)."""

    def __len__(self):
        return store.BLOCK_MAX + 1


def _same(reader, data, step=1000):
    """reader's content equals data, compared piecewise (no second full copy in RAM)."""
    check(reader.size == len(data))
    for pos in range(0, len(data), step):
        check(reader.read_at(pos, step) == data[pos:pos + step])


def test_put_get_dedup_and_reopen():
    d = tmpdir("bs")
    try:
        bs = store.BlockStore(d)
        a = random_bytes(4096, seed=1)
        h = bs.put(a)
        check(h == store.sha256(a))
        check(bs.put(a) == h and bs.count() == 1)
        check(bs.get(h) == a and bs.has(h))
        buf = bytearray(5000)
        got = bs.get(h, buf)  # into a caller's buffer: a view of it
        check(isinstance(got, memoryview) and bytes(got) == a and bytes(buf[:4096]) == a)
        check(bytes(bs.get(h, bytearray(100))) == a)  # a buffer too small: new bytes
        check(not bs.has(store.sha256(b"other")))
        raises(StoreError, bs.get, store.sha256(b"other"))
        raises(StoreError, bs.put, _Long())
        bs.close()
        bs = store.BlockStore(d)
        check(bs.get(h) == a and bs.count() == 1)
        bs.close()
    finally:
        rmtree(d)


class _Keyed(store.BlockStore):
    """A store keyed otherwise (as leither.vault's sealed names): key = SHA-256("k" + data),
    through the check hooks only."""

    def check(self, h, data):
        return store.sha256(b"k" + bytes(data)) == h

    def _check_from(self, f, h, length, view):
        return self.check(h, f.read(length))

    def put_keyed(self, data):
        h = store.sha256(b"k" + data)
        if self._locate(h) is None:
            self._append(h, data)
        return h


def test_check_hook_keys_records_otherwise():
    d = tmpdir("keyed")
    try:
        ks = _Keyed(d)
        a, b = random_bytes(3000, seed=5), random_bytes(100, seed=6)
        ha, hb = ks.put_keyed(a), ks.put_keyed(b)
        check(ks.get(ha) == a and ks.get(hb) == b)
        ks.close()
        # Reopened, the open pack is scanned with the hook: both records found; a plain
        # BlockStore's SHA-256 check finds neither (they are not content-addressed).
        ks = _Keyed(d)
        check(ks.get(ha) == a and ks.get(hb) == b)
        ks.seal_open()
        check(ks.get(ha) == a)
        ks.close()
        with open(d + "/p00000001.pk", "r+b") as f:  # one flipped bit in a's data
            f.seek(34 + 10)  # record header: hash 32 + length 2
            byte = f.read(1)
            f.seek(34 + 10)  # record header: hash 32 + length 2
            f.write(bytes((byte[0] ^ 1,)))
        ks = _Keyed(d)
        raises(StoreError, ks.get, ha)
        check(ks.get(hb) == b)
        ks.close()
        bs = store.BlockStore(d + "2")
        check(not bs.has(ha))
        bs.close()
        rmtree(d + "2")
    finally:
        rmtree(d)


def test_manifest_is_deterministic_cbor():
    hashes = store.sha256(b"a") + store.sha256(b"b")
    data = store.encode_manifest(2, 70000, hashes)
    # [2, 70000, h'...'] in deterministic CBOR: array(3), 2, uint32 70000, bytes(64).
    check(data[:9] == b"\x83\x02\x1a\x00\x01\x11\x70\x58\x40" and data[9:] == hashes)
    level, size, got = store.decode_manifest(data)
    check((level, size, bytes(got)) == (2, 70000, hashes))
    full = store.encode_manifest(1, 4096 * store.FANOUT, bytes(32 * store.FANOUT))
    check(len(full) <= 4096)
    for bad in (b"", b"\x82\x01\x00", data + b"\x00", b"\x83\x18\x01\x00\x40",
                b"\x83\x01\x00\x41\x00", store.encode_manifest(0, 0, b"")):
        raises(StoreError, store.decode_manifest, bad)


def test_tree_roundtrip_and_canonical():
    d = tmpdir("tr")
    try:
        bs = store.BlockStore(d)
        data = memoryview(random_bytes(4096 + 1000, seed=2))
        for size in (0, 1, 4095, 4096, 4097, len(data)):
            part = data[:size]
            root, got = store.build(bs, [part])
            check(got == size)
            # Same content cut into other pieces gives the same root.
            pieces = [part[i:i + 1000] for i in range(0, size, 1000)]
            check(store.build(bs, pieces)[0] == root)
            r = store.TreeReader(bs, root)
            _same(r, part)
            check(r.read_at(size // 2, 300) == part[size // 2:size // 2 + 300])
            check(r.read_at(size, 10) == b"")
            pos = 0
            while True:
                piece = r.read(1500)
                if not piece:
                    break
                check(piece == part[pos:pos + len(piece)])
                pos += len(piece)
            check(pos == size)
        bs.close()
    finally:
        rmtree(d)


def test_patch_agrees_with_model():
    d = tmpdir("pa")
    try:
        bs = store.BlockStore(d)
        root = store.empty_root(bs)
        model = bytearray()
        seed = 10
        ops = [(0, 100), (50, 1000), (4090, 12), (4500, 10), (4096, 300), (3, 0),
               (4200, 2), (100, 0)]
        for offset, n in ops:
            seed += 1
            piece = random_bytes(n, seed=seed)
            root, size = store.patch(bs, root, offset, piece)
            if n and offset > len(model):
                model.extend(bytes(offset - len(model)))
            model[offset:offset + n] = piece
            _same(store.TreeReader(bs, root), model)
            check(store.build(bs, [model])[0] == root)
        for new_size in (4500, 4096, 4095, 5200, 0, 5):
            root, size = store.patch(bs, root, 0, b"", new_size=new_size)
            if new_size < len(model):
                model = model[:new_size]
            else:
                model.extend(bytes(new_size - len(model)))
            check(size == new_size)
            _same(store.TreeReader(bs, root), model)
            check(store.build(bs, [model])[0] == root)
        bs.close()
    finally:
        rmtree(d)


def test_two_level_tree_patch_and_walk():
    d = tmpdir("tl")
    try:
        bs = store.BlockStore(d)
        n = store.FANOUT + 3  # one chunk more needs a second level
        w = store.TreeWriter(bs)
        for i in range(n - 1):
            w.write(_chunk(i))
        root1, size1 = w.finish()
        check(store.TreeReader(bs, root1).depth == 2)
        # Grow by patching the last chunk in, with a tail: same root as building it whole.
        tail = b"tail"
        root2, size2 = store.patch(bs, root1, (n - 1) * 4096, _chunk(n - 1) + tail)
        w = store.TreeWriter(bs)
        for i in range(n):
            w.write(_chunk(i))
        w.write(tail)
        check(w.finish() == (root2, size2))
        r = store.TreeReader(bs, root2)
        check(r.read_at(4096 * 128 - 2, 4) == _chunk(127)[-2:] + _chunk(128)[:2])
        check(r.read_at(size2 - 4, 10) == tail)
        # A patch deep in the first subtree touches one chunk and two manifests.
        before = bs.count()
        root3, _ = store.patch(bs, root2, 4096 * 5 + 10, b"x")
        check(bs.count() == before + 3)
        check(store.TreeReader(bs, root3).read_at(4096 * 5 + 9, 3) == b"\x00x\x05")
        # Shrink back to one level.
        root4, _ = store.patch(bs, root3, 0, b"", new_size=4096 * 2)
        check(store.TreeReader(bs, root4).depth == 1)
        # walk: root + 2 level-1 manifests + 129 distinct chunks + tail chunk.
        hashes = list(store.walk(bs, root2))
        check(len(hashes) == 1 + 2 + n + 1 and hashes[0] == root2)
        # With no pooled buffer the walk reads each manifest a window at a time, and leaves
        # the pool empty (a collection on a busy board allocates no 4 KiB buffers).
        store.trim()
        check(list(store.walk(bs, root2)) == hashes and not store._pool)
        check(list(store.walk(bs, root2, store.MISSING)) == [])
        bs.close()
    finally:
        rmtree(d)


def _flip(path, offset):
    """Flip one bit of a file in place (bit rot)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x01]))


def test_flipped_bit_is_detected():
    d = tmpdir("fl")
    try:
        bs = store.BlockStore(d)
        data = random_bytes(4500, seed=3)
        root, size = store.build(bs, [data])
        bs.close()
        pack = d + "/" + _pack_files(d)[0]
        # First record is chunk 0: header 34 bytes then data; flip a data bit.
        _flip(pack, 34 + 100)
        bs = store.BlockStore(d)  # the open pack's scan skips the bad record, keeps the rest
        reader = store.TreeReader(bs, root)
        check(reader.read_at(4096, 10) == data[4096:4106])
        raises(StoreError, reader.read_at, 0, 10)
        # Putting the same content again heals it.
        store.build(bs, [data])
        check(reader.read_at(0, 10) == data[:10])
        bs.close()
    finally:
        rmtree(d)
    d = tmpdir("fl")
    try:
        # In a sealed pack the record is still indexed; the read itself must fail.
        bs = store.BlockStore(d)
        h = bs.put(b"sealed")
        bs._seal()
        bs.close()
        _flip(d + "/" + _pack_files(d)[0], 34 + 2)
        bs = store.BlockStore(d)
        check(bs.has(h))
        err = raises(StoreError, bs.get, h)
        check("corrupt" in str(err))
        bs.close()
    finally:
        rmtree(d)


def test_torn_tail_is_cut_and_writing_goes_on():
    d = tmpdir("tt")
    try:
        bs = store.BlockStore(d)
        hs = [bs.put(random_bytes(100, seed=s)) for s in range(5)]
        bs.close()
        pack = d + "/" + _pack_files(d)[0]
        with open(pack, "ab") as f:
            f.write(b"\x12" * 40)  # a record header torn mid-write
        bs = store.BlockStore(d)
        for s in range(5):
            check(bs.get(hs[s]) == random_bytes(100, seed=s))
        h6 = bs.put(b"after the tear")
        bs.close()
        check(len(_pack_files(d)) == 2)  # the torn pack was sealed, a new one opened
        bs = store.BlockStore(d)
        check(bs.get(h6) == b"after the tear" and bs.get(hs[0]))
        bs.close()
    finally:
        rmtree(d)


def test_many_records_seal_packs():
    d = tmpdir("se")
    try:
        bs = store.BlockStore(d)
        n = store.PACK_RECORDS + 40
        for i in range(n):
            bs.put(b"block %d" % i)
        check(len(bs.packs()) == 1)
        bs.close()
        bs = store.BlockStore(d)
        for i in range(0, n, 7):
            check(bs.get(store.sha256(b"block %d" % i)) == b"block %d" % i)
        check(bs.count() == n and not bs.has(store.sha256(b"block %d" % n)))
        bs.close()
        # An index lost mid-seal is rebuilt from the pack at open.
        os.remove(d + "/p00000001.ix")
        bs = store.BlockStore(d)
        check(bs.get(store.sha256(b"block 3")) == b"block 3")
        bs.close()
    finally:
        rmtree(d)


def test_sweep_frees_dead_keeps_live():
    d = tmpdir("sw")
    try:
        bs = store.BlockStore(d)
        live = [bs.put(b"live %d" % i) for i in range(10)]
        pad = bytes(2000)
        dead = [bs.put(pad, b"dead %d" % i) for i in range(10)]
        bs._seal()
        keep = set(live)
        packs, freed = bs.sweep(lambda h: h in keep)
        check(packs == 1 and freed > 10 * 2000)
        for h in dead:
            check(not bs.has(h))
        bs.close()
        bs = store.BlockStore(d)
        for i in range(10):
            check(bs.get(live[i]) == b"live %d" % i)
        check(not bs.has(dead[0]))
        bs.close()
    finally:
        rmtree(d)


def _filter_bytes(bs):
    return sum(len(slab) for slab in bs._blooms)


def test_filter_memory_is_bounded_and_every_block_found():
    # More sealed packs than filters kept in RAM: the older packs' filters are read from
    # their indexes, so RAM stays at the budget (256 B a pack) and nothing is lost to sight.
    d = tmpdir("bh")
    budget = store.BlockStore.bloom_packs * 256
    try:
        bs = store.BlockStore(d)
        packs = store.BlockStore.bloom_packs + 5
        for p in range(packs):
            for i in range(3):
                bs.put(b"pack %d block %d" % (p, i))
            bs.seal_open()
        check(len(bs.packs()) == packs and _filter_bytes(bs) <= budget)
        bs.close()
        bs = store.BlockStore(d)  # reopened: the same bound
        check(_filter_bytes(bs) <= budget)
        for p in range(packs):
            for i in range(3):
                h = store.sha256(b"pack %d block %d" % (p, i))
                check(bs.has(h) and bs.get(h) == b"pack %d block %d" % (p, i))
        check(not bs.has(store.sha256(b"pack 0 block 3")))
        bs.close()
    finally:
        rmtree(d)


def test_sweep_moves_big_live_blocks_and_keeps_a_pack_it_cannot_check():
    # Live blocks are moved in slices: content intact, whatever their size; a live block
    # found corrupt on the way stops the sweep and its pack stays (nothing is dropped).
    d = tmpdir("mv")
    try:
        store.trim()  # no pooled buffer to lean on
        bs = store.BlockStore(d)
        datas = [random_bytes(size) for size in (store.BLOCK_MAX, 4500)]
        live = [bs.put(data) for data in datas]
        dead = [bs.put(b"%d" % i * 2000) for i in range(4)]
        bs.seal_open()
        keep = set(live)
        packs, freed = bs.sweep(lambda h: h in keep)
        check(packs == 1 and freed >= 4 * 2000 and not bs.has(dead[0]))
        bs.close()
        bs = store.BlockStore(d)
        for h, data in zip(live, datas):
            check(bytes(bs.get(h)) == data)
        # The moved blocks are now in the open pack: seal it, then spoil one of them.
        more = [bs.put(b"dead %d" % i) for i in range(20)]
        bs.seal_open()
        n = bs.packs()[-1]
        bs.close()
        with open(d + "/p%08d.pk" % n, "r+b") as f:
            spoilt = f.read(32)  # the first record: a moved (live) one
            f.seek(34 + 100)
            b = f.read(1)
            f.seek(34 + 100)
            f.write(bytes([b[0] ^ 1]))
        check(spoilt in keep)
        bs = store.BlockStore(d)
        packs, _ = bs.sweep(lambda h: h in keep, min_dead=0.01)
        check(packs == 0 and n in bs.packs() and bs.has(more[0]))
        for h, data in zip(live, datas):
            if h == spoilt:
                raises(StoreError, bs.get, h)
            else:
                check(bytes(bs.get(h)) == data)
        bs.seal_open()
        # Without the spoilt block the same pack is compacted (the check was what kept it).
        keep.discard(spoilt)
        packs, _ = bs.sweep(lambda h: h in keep, min_dead=0.01)
        check(packs == 1 and n not in bs.packs() and not bs.has(more[0]))
        for h, data in zip(live, datas):
            if h != spoilt:
                check(bytes(bs.get(h)) == data)
        bs.close()
    finally:
        rmtree(d)


class _SmallBudget(store.BlockStore):
    bloom_packs = 3


def test_sweeping_packs_with_and_without_filters_in_ram():
    d = tmpdir("bs")
    try:
        bs = _SmallBudget(d)
        names = []
        for p in range(7):
            names.append([bs.put(b"p%d b%d" % (p, i)) for i in range(2)])
            bs.seal_open()
        check(_filter_bytes(bs) <= 8 * 256)
        # Pack 1 (filter on disk only) and pack 5 (filter in RAM) die; the rest stays.
        dead = set(names[1] + names[5])
        packs, _ = bs.sweep(lambda h: h not in dead)
        check(packs == 2 and len(bs.packs()) == 5)
        for p in range(7):
            for i in range(2):
                check(bs.has(names[p][i]) == (p not in (1, 5)))
                if p not in (1, 5):
                    check(bs.get(names[p][i]) == b"p%d b%d" % (p, i))
        # The filters in RAM are those of the newest three packs, each its own.
        for k in range(3):
            i = len(bs.packs()) - 3 + k
            with open(bs._name(bs.packs()[i], "ix"), "rb") as f:
                f.seek(12)
                check(bytes(bs._bloom_slot(k)) == f.read(256))
        bs.close()
    finally:
        rmtree(d)


class _FullFile:
    """A file whose writes fail with ENOSPC once the shared budget of bytes is spent."""

    def __init__(self, f, budget):
        self.f = f
        self.budget = budget

    def write(self, data):
        if len(data) > self.budget[0]:
            self.f.write(bytes(data)[:self.budget[0]])
            self.budget[0] = 0
            raise OSError(28)
        self.budget[0] -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.f.close()


def test_full_disk_is_a_clear_error_and_harmless():
    d = tmpdir("fd")
    try:
        bs = store.BlockStore(d)
        data = random_bytes(5000, seed=4)
        root, size = store.build(bs, [data])
        bs.close()  # the next append reopens the pack through the failing open()
        budget = [6000]

        def full_open(path, mode="r"):
            f = open(path, mode)
            return _FullFile(f, budget) if "w" in mode or "+" in mode else f

        store.open = full_open
        try:
            err = raises(StoreError, store.build, bs, [bytes(4096), b"\x01" * 4096])
            check("disk full" in str(err))
        finally:
            del store.open
        _same(store.TreeReader(bs, root), data)
        root2, _ = store.build(bs, [b"space again"])
        bs.close()
        bs = store.BlockStore(d)
        _same(store.TreeReader(bs, root), data)
        check(store.TreeReader(bs, root2).read_at(0, 20) == b"space again")
        bs.close()
    finally:
        rmtree(d)


def test_live_set_shrinks_when_the_heap_has_no_room():
    real = bytearray

    def tight(n=0):  # a heap with no free run over 2 KiB
        if isinstance(n, int) and n > 2048:
            raise MemoryError("no room")
        return real(n)

    liveset.bytearray = tight  # the module's name wins over the builtin
    try:
        live = store.LiveSet(10000)  # would be 128 Ki bits (16 KiB)
    finally:
        del liveset.bytearray
    check(len(live.bits) == 2048)
    h = store.sha256(b"kept")
    live.add(h)
    check(live.has(h))
    # A board's own mark asks for 4 KiB at most, and takes down to 256 B rather than fail.
    check(len(store.LiveSet(10000, least=2048, most=32768).bits) == 4096)
    liveset.bytearray = lambda n=0: real(n) if n <= 256 else tight(1 << 20)
    try:
        check(len(store.LiveSet(10000, least=2048).bits) == 256)
        raises(MemoryError, store.LiveSet, 10000)  # a partner's filter: 1 KiB at least
    finally:
        del liveset.bytearray
