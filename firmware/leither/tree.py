# Merkle trees of 4096-byte chunks over a content-addressed block store (leither.store): the
# shape of MiMei content. Canonical, so equal content has equal root however it was written;
# copy-on-write, so a change touches one path; sparse, so a hole costs one block per level.
"""Merkle trees of 4096-byte chunks over a BlockStore (``bs``: put/get/has by SHA-256).

Every block source read through (leither_host.escrow's too) has ``get_part(h, start, view)``:
readers and walks take manifests a window at a time and check parts of chunks in slices.

Trees
    Content of any length is cut into 4096-byte chunks; a manifest block is the CBOR array
    ``[level, size, hashes]`` (``hashes``: one byte string of up to ``FANOUT`` 32-byte child
    hashes; level 1 points at chunks, level L at level L-1 manifests; ``size``: content bytes
    under it). The shape is canonical -- a level-L node covers ``FANOUT**L`` chunks from a
    multiple of that -- so equal content always has equal root hash however it was written.
    The root is always a manifest (the empty content is ``[1, 0, h'']``).

    * ``TreeWriter(bs)``: ``write(data)`` ... ``finish() -> (root, size)`` streaming build;
    * ``TreeReader(bs, root)``: ``.size``, ``read_at(offset, n)``, ``readinto``/``read`` stream,
      ``check_chunk(i)``; every manifest and chunk verified, shape checked;
    * ``patch(bs, root, offset, data, new_size=None) -> (root, size)``: copy-on-write write at an
      offset (holes read as zeros) and/or truncate/extend -- touches only the changed path;
    * ``walk(bs, root, mode=ALL)``: yields every hash reachable from root, streaming (RAM: one
      manifest per level); mode ``MISSING`` yields only those not stored, descending where the
      manifest is present (the have/want list of a transfer); ``PRESENT`` only those stored.
"""

from . import cbor
from .compat import IS_MICROPYTHON, const
from .errors import StoreError

CHUNK = const(4096)  # bytes per content chunk (DESIGN §2)
FANOUT = const(126)  # child hashes per manifest: 3 + 9 + 3 + 126*32 = 4047 <= 4096 bytes

# Spare 4 KiB buffers kept between operations: an upload holds its writer's (one per level and
# its chunk buffer: 3 for a file of 0.5-65 MB) and takes them again from here whenever another
# MiMei's write came between; readers and walks take none. With fewer, a long run of mixed
# work asked a fragmented heap for a fresh 4 KiB block at every such switch (the soak's puts
# starved). 12 KiB of a board's heap while it works; an idle node trims them.
_POOL_MAX = const(3)
# Bytes of content a tree may cover: a 4-level tree (~1 TB, sparse: holes cost nothing). Bounds
# the buffers a patch holds (one per level on its path, and the reader's) to what fits a board.
MAX_SIZE = FANOUT * FANOUT * FANOUT * FANOUT * CHUNK
_ZEROS = bytes(64)  # fills holes in a buffer without a chunk-sized temporary
_HEAD_MAX = const(24)  # bytes of a manifest's head at most: 0x83 + level + size + bytes head
# Bytes of a manifest a walk holds per level (16 hashes; each further window is read again,
# the whole block checked): a mark that runs for minutes beside uploads takes no pooled or
# fresh 4 KiB buffer. On CPython, where the heap is no concern, the whole manifest at once.
# Not a const: tests lower it to read CPython's manifests in windows too.
WINDOW = 512 if IS_MICROPYTHON else CHUNK

# Free 4 KiB buffers, reused by every tree operation: a node that runs for months must not
# need a fresh contiguous 4 KiB block per operation from a heap that other code fragments.
# reserve() fills it at start-up, before the heap is cut into pieces; trim() empties it.
_pool = []


def take():
    """Borrow a 4096-byte buffer (from the pool, else newly allocated)."""
    return _pool.pop() if _pool else bytearray(CHUNK)


def give(buf):
    """Return a buffer from take() for reuse."""
    if buf is not None and len(_pool) < _POOL_MAX:
        _pool.append(buf)


def trim():
    """Let the pooled buffers go (an idle node's heap back for other work)."""
    del _pool[:]


def reserve(n=_POOL_MAX):
    """Preallocate n pool buffers (call early, e.g. when the node's storage opens)."""
    while len(_pool) < min(n, _POOL_MAX):
        _pool.append(bytearray(CHUNK))


def manifest_head(level, size, n_bytes):
    """The CBOR bytes before the hashes of manifest [level, size, hashes]."""
    head = bytearray(b"\x83")
    head += cbor.encode_head(cbor.UINT, level)
    head += cbor.encode_head(cbor.UINT, size)
    head += cbor.encode_head(cbor.BYTES, n_bytes)
    return head


def encode_manifest(level, size, hashes):
    """CBOR [level, size, hashes] in deterministic encoding (hashes: 32*k bytes)."""
    return bytes(manifest_head(level, size, len(hashes))) + hashes


def put_manifest(bs, level, size, hashes):
    return bs.put(hashes, manifest_head(level, size, len(hashes)))


def _read_uint(data, pos, major):
    """Decode a shortest-form head of the given major type; return (value, next pos)."""
    if pos >= len(data) or data[pos] >> 5 != major:
        raise StoreError("bad manifest")
    info = data[pos] & 31
    if info < 24:
        return info, pos + 1
    width = {24: 1, 25: 2, 26: 4, 27: 8}.get(info)
    if width is None or pos + 1 + width > len(data):
        raise StoreError("bad manifest")
    n = 0
    for b in data[pos + 1:pos + 1 + width]:
        n = (n << 8) | b
    if n < (24 if width == 1 else 1 << (4 * width)):
        raise StoreError("bad manifest (not shortest form)")
    return n, pos + 1 + width


def _parse_head(data, total):
    """(level, size, offset of the hashes, their bytes) of a manifest of total bytes, from
    data: its first bytes (at least its head), checked strictly."""
    if len(data) == 0 or data[0] != 0x83:
        raise StoreError("bad manifest")
    level, pos = _read_uint(data, 1, 0)
    size, pos = _read_uint(data, pos, 0)
    n, pos = _read_uint(data, pos, 2)
    if pos + n != total or n % 32 or n > 32 * FANOUT or not 1 <= level <= 8:
        raise StoreError("bad manifest")
    return level, size, pos, n


def decode_manifest(data):
    """Parse a manifest block strictly; return (level, size, hashes memoryview)."""
    level, size, pos, _n = _parse_head(data, len(data))
    return level, size, memoryview(data)[pos:]


def _load(bs, h, buf):
    """Read manifest h's hashes into buf from its start, checked (BlockStore.get_part: no
    buffer of the manifest's size besides buf): (level, size, count of hashes)."""
    got, total = bs.get_part(h, 0, memoryview(buf)[:_HEAD_MAX])
    level, size, pos, n = _parse_head(memoryview(buf)[:got], total)
    bs.get_part(h, pos, memoryview(buf)[:n])
    return level, size, n // 32


class Hashes:
    """A manifest's child hashes, read a window at a time (BlockStore.get_part, each read
    checking the whole block): RAM is the window, whatever the manifest's size."""

    def __init__(self, bs, h, win):
        self.bs = bs
        self.h = bytes(h)
        self.win = win
        got, total = bs.get_part(self.h, 0, win)
        self.level, self.size, self.pos, n = _parse_head(memoryview(win)[:got], total)
        self.count = n // 32
        self.base = 0  # the manifest's byte at win[0]
        self.have = got  # bytes of it in win
        self.i = 0  # the next child (next_child)
        self.prev = None  # the hash next_child gave last

    def at(self, i):
        """Child i's hash: a view of the window, valid until the next at()."""
        off = self.pos + 32 * i
        if off < self.base or off + 32 > self.base + self.have:
            self.have = self.bs.get_part(self.h, off, self.win)[0]
            self.base = off
            if self.have < 32:
                raise StoreError("bad manifest")
        a = off - self.base
        return memoryview(self.win)[a:a + 32]

    def next_child(self):
        """The next child's hash (a copy: the window moves) unlike its left sibling's, or None
        when all are done; its index is self.i - 1. A hole's zero subtrees are one run of
        equal hashes: walks (walk, treediff.tree_diff) take it once, in a few hundred steps
        for 2**36 zero chunks."""
        while self.i < self.count:
            i = self.i
            self.i = i + 1
            h = bytes(self.at(i))
            if h != self.prev:
                self.prev = h
                return h
        return None


def _depth(n_chunks):
    d = 1
    cap = FANOUT
    while cap < n_chunks:
        cap *= FANOUT
        d += 1
    return d


def _chunks(size):
    return (size + CHUNK - 1) // CHUNK


class TreeReader:
    """Random and streaming reads of the content under a root; everything verified.

    RAM: a WINDOW of each manifest on the path being read (the root's and one per lower
    level), whatever the size of the content; no 4 KiB buffer: whole chunks are read straight
    into the caller's buffer and parts of chunks checked in slices (BlockStore.get_part), so
    a cached reader holds nothing that an upload beside it needs from the pool.
    """

    def __init__(self, bs, root):
        self.bs = bs
        self.root = bytes(root)
        top = Hashes(bs, self.root, bytearray(WINDOW))
        self.size = top.size
        self.n = _chunks(top.size)
        level = top.level
        if level != _depth(self.n) or top.count != self._children(level, 0):
            raise StoreError("bad tree shape at root")
        self.depth = level
        # Per level: (first chunk, Hashes) of the manifest last loaded there.
        self._path = [None] * (level + 1)
        self._path[level] = (0, top)
        self.pos = 0

    def close(self):
        """Nothing pooled to give back (kept for callers that close readers)."""
        self._path = []

    def _children(self, level, start):
        span = FANOUT ** (level - 1)
        left = self.n - start
        k = (left + span - 1) // span
        return min(FANOUT, k)

    def node(self, level, start):
        """Hash of the level-`level` node (0 = chunk) covering chunks from `start`."""
        if level == self.depth:
            return self.root
        cur = self.depth
        first, m = self._path[cur]
        while cur > level + 1:
            span = FANOUT ** (cur - 1)
            j = (start - first) // span
            child = first + j * span
            cached = self._path[cur - 1]
            if cached is None or cached[0] != child:
                # The level's window is reused: the manifest read before it is gone.
                win = cached[1].win if cached is not None else bytearray(WINDOW)
                self._path[cur - 1] = None
                sub = Hashes(self.bs, m.at(j), win)
                expect = min(self.size, (child + span) * CHUNK) - child * CHUNK
                if (sub.level != cur - 1 or sub.size != expect
                        or sub.count != self._children(cur - 1, child)):
                    raise StoreError("bad tree shape")
                cached = (child, sub)
                self._path[cur - 1] = cached
            first, m = cached
            cur -= 1
        span = FANOUT ** level
        return bytes(m.at((start - first) // span))

    def chunk_len(self, i):
        end = (i + 1) * CHUNK
        return CHUNK if end <= self.size else self.size - i * CHUNK

    def check_chunk(self, i):
        """Read chunk i and check it, into no buffer (a version's verify)."""
        if not 0 <= i < self.n:
            raise StoreError("chunk %d out of range" % i)
        if self.bs.get_part(self.node(0, i), 0, b"")[1] != self.chunk_len(i):
            raise StoreError("bad chunk length")

    def read_at(self, offset, n):
        """Up to n bytes from offset (fewer at the end)."""
        out = bytearray(max(0, min(self.size, offset + n) - offset))
        self.read_into(offset, out)
        return out

    def read_into(self, offset, view):
        """Fill view (a writable buffer) from offset; return the bytes read (fewer at the end).

        No allocation: a chunk that view covers whole is read and verified straight into it,
        a part of one at the ends of the range checked in slices and copied in.
        """
        end = min(self.size, offset + len(view))
        pos = 0
        if not isinstance(view, memoryview):
            view = memoryview(view)
        while offset < end:
            i = offset // CHUNK
            a = offset - i * CHUNK
            length = self.chunk_len(i)
            b = min(length, end - i * CHUNK)
            if a == 0 and b == length:
                got = len(self.bs.get(self.node(0, i), view[pos:pos + length]))
            else:
                got, whole = self.bs.get_part(self.node(0, i), a, view[pos:pos + b - a])
                got = length if whole == length and got == b - a else -1
            if got != length:
                raise StoreError("bad chunk length")
            pos += b - a
            offset += b - a
        return pos

    def read(self, n=-1):
        if n < 0:
            n = self.size - self.pos
        data = self.read_at(self.pos, n)
        self.pos += len(data)
        return data

    def readinto(self, buf):
        got = self.read_into(self.pos, buf)
        self.pos += got
        return got


class TreeWriter:
    """Build a canonical tree from a byte stream: write(...)*, finish() -> (root, size)."""

    def __init__(self, bs):
        self.bs = bs
        self.size = 0
        self._buf = take()  # the chunk being filled
        self._fill = 0
        # Per level from 1: [hashes buffer (FANOUT*32 B), count, bytes covered]; bound: depth.
        # Level 1's is taken now, not at the first whole chunk or at finish(): an upload's
        # pieces, once taken, must not need a buffer that a full heap cannot give (a settle
        # that failed for one lost them), up to 516 KB (a second level).
        self._levels = [[take(), 0, 0]]

    def _push(self, level, h, covered):
        while len(self._levels) < level:
            self._levels.append([take(), 0, 0])
        acc = self._levels[level - 1]
        if acc[1] == FANOUT:
            self._flush(level)
        k = acc[1]
        acc[0][32 * k:32 * k + 32] = h
        acc[1] = k + 1
        acc[2] += covered

    def _flush(self, level):
        acc = self._levels[level - 1]
        h = put_manifest(self.bs, level, acc[2], memoryview(acc[0])[:32 * acc[1]])
        covered = acc[2]
        acc[1] = 0
        acc[2] = 0
        self._push(level + 1, h, covered)

    def write(self, data):
        mv = memoryview(data)
        pos = 0
        while pos < len(mv):
            take = min(CHUNK - self._fill, len(mv) - pos)
            if not self._fill and take == CHUNK:
                self._push(1, self.bs.put(mv[pos:pos + CHUNK]), CHUNK)
            else:
                self._buf[self._fill:self._fill + take] = mv[pos:pos + take]
                self._fill += take
                if self._fill == CHUNK:
                    self._push(1, self.bs.put(self._buf), CHUNK)
                    self._fill = 0
            pos += take
        self.size += len(mv)
        return len(mv)

    def finish(self):
        if self._fill:
            self._push(1, self.bs.put(memoryview(self._buf)[:self._fill]), self._fill)
            self._fill = 0
        depth = _depth(_chunks(self.size))
        while len(self._levels) < depth:
            self._levels.append([take(), 0, 0])
        for level in range(1, depth):
            if self._levels[level - 1][1]:
                self._flush(level)
        acc = self._levels[depth - 1]
        root = put_manifest(self.bs, depth, acc[2], memoryview(acc[0])[:32 * acc[1]])
        self.abandon()
        return root, self.size

    def abandon(self):
        """Give the buffers back without finishing (blocks written so far become garbage)."""
        for acc in self._levels:
            give(acc[0])
        give(self._buf)
        self._levels = []
        self._buf = None


def appender(bs, root):
    """A TreeWriter that continues the content under root: writes append after its end, and
    finish() gives the same root as building the whole content in one go.

    It takes over the tree's right edge -- the hashes of the complete subtrees in each level's
    last, unfinished group and the partial last chunk's bytes -- reading each manifest on the
    path to the last whole chunk straight into the writer's buffer for its level, so
    appending costs one chunk hash per 4 KiB instead of a copy-on-write patch, and taking
    an upload up again (another MiMei's write came between) needs no buffer but the writer's
    own: 2 pooled buffers for a file up to 516 KB.
    """
    w = TreeWriter(bs)
    try:
        _resume(bs, bytes(root), w)
    except Exception:
        w.abandon()
        raise
    return w


def _resume(bs, root, w):
    buf = w._buf  # scratch for the manifests above the levels' own, until the tail goes in
    got, total = bs.get_part(root, 0, memoryview(buf)[:_HEAD_MAX])
    depth, size = _parse_head(memoryview(buf)[:got], total)[:2]
    if depth != _depth(_chunks(size)):
        raise StoreError("bad tree shape at root")
    full = size // CHUNK
    tail = size - full * CHUNK
    # Items a TreeWriter that wrote `full` chunks has received at each level, and how many of
    # them it still holds (it flushes a level only when an item arrives at a full one): the
    # first `held` children of the node above the last item received there.
    got = full
    span = 1  # chunks under one item at this level
    level = 0
    while got:
        held = (got - 1) % FANOUT + 1
        if level == len(w._levels):
            w._levels.append([take(), 0, 0])
        acc = w._levels[level]
        acc[1] = held
        acc[2] = held * span * CHUNK
        level += 1
        q = (got - 1) // FANOUT
        _load_node(bs, _node_hash(bs, root, size, depth, level, q, buf), acc[0], size, level, q)
        got = q
        span *= FANOUT
    w.size = size
    if not tail:
        return
    if full % FANOUT:  # the tail chunk is in the level-1 manifest just read, after the held
        k = w._levels[0][1]
        h = bytes(w._levels[0][0][32 * k:32 * k + 32])
    else:
        h = _node_hash(bs, root, size, depth, 0, full, buf)
    got = bs.get(h, memoryview(buf)[:tail])  # straight into the writer's chunk buffer
    if len(got) != tail:
        raise StoreError("bad chunk length")
    w._fill = tail


def _load_node(bs, h, buf, size, level, q):
    """Read the hashes of node q of a level, in a tree of size bytes, into buf (_load),
    checking that it has the level, size and children the canonical shape gives it."""
    got, sz, count = _load(bs, h, buf)
    span = FANOUT ** (level - 1)
    first = q * span * FANOUT
    end = min(_chunks(size), first + span * FANOUT)
    if (got != level or sz != min(size, end * CHUNK) - first * CHUNK
            or count != (end - first + span - 1) // span):
        raise StoreError("bad tree shape")


def _node_hash(bs, root, size, depth, level, x, buf):
    """The hash of node x of a level (0: chunk x) under root, the manifests above it read
    into buf one after the other."""
    h = root
    for lv in range(depth, level, -1):
        _load_node(bs, h, buf, size, lv, x // FANOUT ** (lv - level))
        j = x // FANOUT ** (lv - 1 - level) % FANOUT
        h = bytes(buf[32 * j:32 * j + 32])
    return h


def build(bs, stream_pieces):
    """Tree of the concatenation of an iterable of byte pieces: (root, size)."""
    w = TreeWriter(bs)
    try:
        for piece in stream_pieces:
            w.write(piece)
        return w.finish()
    except Exception:
        w.abandon()  # its buffers back to the pool (a db's export short of heap, say)
        raise


def empty_root(bs):
    return bs.put(encode_manifest(1, 0, b""))


def patch(bs, root, offset, data, new_size=None):
    """Copy-on-write: write data at offset (a hole before it reads as zeros) and/or set the size.

    Returns (new root, new size). Only chunks in the written range and at the old/new end
    are rewritten, plus the manifests on their paths; other subtrees are reused by hash. A
    hole is stored as a hole: every all-zero subtree of a level is the same block, so a write
    at offset 2**39 costs one manifest per level, not a billion zero chunks.
    """
    if offset < 0 or offset + len(data) > MAX_SIZE or (new_size or 0) > MAX_SIZE:
        raise StoreError("offset or size beyond %d bytes" % MAX_SIZE)
    old = TreeReader(bs, root)
    length = len(data)
    if new_size is None:
        new_size = max(old.size, offset + length) if length else old.size
    if length == 0:
        w0, w1 = 1, 0  # empty write range
    else:
        w0, w1 = offset // CHUNK, (offset + length - 1) // CHUNK
    n_new = _chunks(new_size)
    scratch = [None]  # a chunk buffer, taken only for a chunk partly rewritten
    ctx = (old, offset, data, new_size, n_new, w0, w1, scratch, [])
    try:
        return _build_node(bs, ctx, _depth(n_new), 0), new_size
    finally:
        old.close()
        give(scratch[0])


def _zero_fill(view):
    for i in range(0, len(view), 64):
        n = min(64, len(view) - i)
        view[i:i + n] = _ZEROS[:n]


def _zeros(bs, ctx, level):
    """The stored all-zero subtree of a level (0: the zero chunk), made once per patch."""
    memo = ctx[8]
    while len(memo) <= level:
        buf = take()
        if not memo:
            _zero_fill(buf)
            h = bs.put(buf)
        else:
            for j in range(FANOUT):
                buf[32 * j:32 * j + 32] = memo[-1]
            h = put_manifest(bs, len(memo), FANOUT ** len(memo) * CHUNK,
                             memoryview(buf)[:32 * FANOUT])
        give(buf)
        memo.append(h)
    return memo[level]


def _hole(ctx, a, b):
    """Are chunks [a, b) all zeros in the new tree, whole chunks (beyond the old end, outside
    the write range, before the new end)?"""
    old, _offset, _data, new_size, _n, w0, w1 = ctx[:7]
    return a >= old.n and (b <= w0 or a > w1) and b * CHUNK <= new_size


def _old_len(old, i):
    return old.chunk_len(i) if i < old.n else 0


def _new_len(new_size, i):
    end = (i + 1) * CHUNK
    return CHUNK if end <= new_size else new_size - i * CHUNK


def _reusable(ctx, a, b):
    """Is the old subtree of chunks [a, b) identical in the new tree?"""
    old, _offset, _data, new_size, n_new, w0, w1 = ctx[:7]
    if not (b <= w0 or a > w1):
        return False
    if b > old.n or b > n_new:
        return False
    return _old_len(old, b - 1) == _new_len(new_size, b - 1)


def _new_chunk(bs, ctx, i):
    old, offset, data, new_size, _n, w0, w1, scratch = ctx[:8]
    if _reusable(ctx, i, i + 1):
        return old.node(0, i)
    if _hole(ctx, i, i + 1):
        return _zeros(bs, ctx, 0)
    length = _new_len(new_size, i)
    base = i * CHUNK
    a = b = base
    if w0 <= i <= w1:
        a = max(offset, base)
        b = min(offset + len(data), base + length)
    if a == base and b == base + length:
        return bs.put(memoryview(data)[a - offset:b - offset])  # all new: no old chunk read
    if scratch[0] is None:
        scratch[0] = take()
    buf = memoryview(scratch[0])[:length]
    keep = 0
    if i < old.n:  # the old chunk straight into the scratch (no reader chunk buffer)
        keep = old.chunk_len(i)
        if len(bs.get(old.node(0, i), scratch[0])) != keep:
            raise StoreError("bad chunk length")
        keep = min(keep, length)
    if keep < length:
        _zero_fill(buf[keep:])  # a hole, or the scratch's previous content
    if a < b:
        buf[a - base:b - base] = memoryview(data)[a - offset:b - offset]
    return bs.put(buf)


def _build_node(bs, ctx, level, start):
    old = ctx[0]
    n_new = ctx[4]
    new_size = ctx[3]
    span = FANOUT ** (level - 1)
    hashes = take()  # one per level of recursion: depth * 4 KiB
    try:  # given back however it ends: a buffer lost to a failed patch is a fresh one later
        k = 0
        for j in range(FANOUT):
            child = start + j * span
            if child >= n_new:
                break
            if level == 1:
                h = _new_chunk(bs, ctx, child)
            elif _reusable(ctx, child, child + span) and level - 1 <= old.depth:
                h = old.node(level - 1, child)
            elif _hole(ctx, child, child + span):
                h = _zeros(bs, ctx, level - 1)
            else:
                h = _build_node(bs, ctx, level - 1, child)
            hashes[32 * k:32 * k + 32] = h
            k += 1
        covered = min(new_size, (start + span * FANOUT) * CHUNK) - start * CHUNK
        return put_manifest(bs, level, max(covered, 0), memoryview(hashes)[:32 * k])
    finally:
        give(hashes)


ALL = const(0)  # walk modes: every block (a missing manifest is a StoreError)
MISSING = const(1)  # only blocks not stored, descending where the manifest is present
PRESENT = const(2)  # only blocks stored, skipping what is absent (a partial import)


def walk(bs, root, mode=ALL, wins=None):
    """Yield the hashes of the blocks reachable from root, manifests before their children.

    Streaming: RAM is a WINDOW of one manifest per level (<= 8 levels); chunks are not read.
    A child equal to its left sibling is skipped (it may still come twice elsewhere): a
    sparse tree of 2**36 zero chunks walks in a few hundred steps. ``wins``: a list the
    windows are kept in, for the next walk (a mark walks every version's tree).
    """
    root = bytes(root)
    if mode != ALL and not bs.has(root):
        if mode == MISSING:
            yield root
        return
    if mode != MISSING:
        yield root
    if wins is None:
        wins = []
    if not wins:  # one per depth, made once, reused by every manifest there
        wins.append(bytearray(WINDOW))
    stack = [Hashes(bs, root, wins[0])]  # bound: depth <= 8
    while stack:
        m = stack[-1]
        h = m.next_child()  # a run of equal siblings (a hole): walked once
        if h is None:
            stack.pop()
            continue
        present = True if mode == ALL else bs.has(h)
        if (mode == MISSING) != present:
            yield h
        if m.level == 1 or not present:
            continue
        if len(stack) == len(wins):
            wins.append(bytearray(WINDOW))
        sub = Hashes(bs, h, wins[len(stack)])
        if sub.level != m.level - 1:
            raise StoreError("bad tree shape")
        stack.append(sub)
