# Content-addressed block store and Merkle manifest trees: the bottom layer of MiMei storage.
# Blocks live in append-only pack files (measured: one file per 4 KiB chunk costs 9-33% more
# flash on LittleFS/FAT than packs, see bench/store.py --layout). Everything is crash-safe by
# construction: packs only grow, indexes and pointers are written new and renamed into place.
"""Block store (``BlockStore``) and Merkle trees of 4096-byte chunks.

Blocks
    A block is at most ``BLOCK_MAX`` bytes, named by its SHA-256. ``BlockStore(dir)`` opens or
    creates a store in ``dir`` (recovering the pack that was being written). Methods:

    * ``put(data) -> hash`` -- stored once however often it is put (dedup by hash);
    * ``has(hash) -> bool``; ``get(hash) -> bytes`` -- always verified: a block altered on disk
      raises StoreError, never returns wrong data; a missing one raises StoreError too;
    * ``sync()`` -- make every put so far durable (call before committing a pointer to them);
    * ``sweep(is_live) -> (packs_rewritten, bytes_freed)`` -- the sweep of a mark-and-sweep
      collection: packs holding dead blocks are compacted (live blocks copied to the open pack,
      synced, then the old pack removed) -- a crash at any point loses nothing live;
      ``sweep_steps`` is the same one pack per step (see ``live``);
    * ``used() -> bytes`` of pack data; ``count()`` blocks; ``close()``;
    * ``check(h, data) -> bool`` and ``_check_from(f, h, length, view)``: what makes a record
      genuine (its SHA-256 here); a store keyed otherwise overrides the two (leither.vault).

On-disk layout (directory ``dir``)
    ``pNNNNNNNN.pk``  pack: records ``hash(32) | length(u16 BE) | data``, appended only.
    ``pNNNNNNNN.ix``  index of a sealed pack: ``"LPX1" | count(u32) | end(u32) | bloom(256) |``
                      entries ``hash(32) | offset(u32) | length(u16)`` sorted by hash.
    Every pack but the newest has an index. The newest one without an index is the open pack:
    at open it is scanned (bounded by ``PACK_MAX``) and a torn last record is cut off by sealing
    the pack before it. A failed append (full disk) also seals the pack at its last good record.

Trees
    Content of any length is cut into 4096-byte chunks; a manifest block is the CBOR array
    ``[level, size, hashes]`` (``hashes``: one byte string of up to ``FANOUT`` 32-byte child
    hashes; level 1 points at chunks, level L at level L-1 manifests; ``size``: content bytes
    under it). The shape is canonical -- a level-L node covers ``FANOUT**L`` chunks from a
    multiple of that -- so equal content always has equal root hash however it was written.
    The root is always a manifest (the empty content is ``[1, 0, h'']``).

    * ``TreeWriter(bs)``: ``write(data)`` ... ``finish() -> (root, size)`` streaming build;
    * ``TreeReader(bs, root)``: ``.size``, ``read_at(offset, n)``, ``readinto``/``read`` stream,
      ``chunk(i)``; every manifest and chunk verified, shape checked;
    * ``patch(bs, root, offset, data, new_size=None) -> (root, size)``: copy-on-write write at an
      offset (holes read as zeros) and/or truncate/extend -- touches only the changed path;
    * ``walk(bs, root, mode=ALL)``: yields every hash reachable from root, streaming (RAM: one
      manifest per level); mode ``MISSING`` yields only those not stored, descending where the
      manifest is present (the have/want list of a transfer); ``PRESENT`` only those stored.
"""

import hashlib
import os
import struct

from leither import cbor
from leither.compat import fsync
from leither.errors import StoreError

try:
    from micropython import const
except ImportError:  # CPython
    from leither.compat import const

CHUNK = const(4096)  # bytes per content chunk (DESIGN §2)
FANOUT = const(126)  # child hashes per manifest: 3 + 9 + 3 + 126*32 = 4047 <= 4096 bytes
BLOCK_MAX = const(8192)  # largest block: a chunk sealed for a partner (IV + MAC) fits
PACK_MAX = const(524288)  # bytes per pack before it is sealed: bounds open-pack scan at open
PACK_RECORDS = const(256)  # records per pack: bounds the open pack's RAM index (8 B each)
_BLOOM_BYTES = const(256)  # per sealed pack, kept in RAM: 2048 bits, k=3 over <= 256 hashes
_BLOOM_MASK = const(2047)
_BLOOM_SLAB = const(8)  # filters per slab (2 KiB): see BlockStore._blooms
_HDR = const(34)  # record header: hash 32 + length 2
_IX_HEAD = const(268)  # "LPX1" + count + end + bloom
_IX_ENTRY = const(38)  # hash 32 + offset 4 + length 2
_ENOSPC = const(28)
_HANDLES = const(4)  # open read handles kept (each costs a FS buffer on a board): the index
# and pack being read plus the open pack and one more index, measured to stop reopen thrash

LIVE_MAX_BITS = const(131072)  # largest LiveSet filter: 16 KiB
# Spare 4 KiB buffers kept between operations (a patch or an upload borrows 3-5 at once, the
# rest come and go): 8 KiB of a board's heap held for good (4 measured 4 KiB more retained
# after a 1 MB put and get on the 32-bit ESP32 stand-in, for no smaller peak).
_POOL_MAX = const(2)
# Bytes of content a tree may cover: a 4-level tree (~1 TB, sparse: holes cost nothing). Bounds
# the buffers a patch holds (one per level on its path, and the reader's) to what fits a board.
MAX_SIZE = FANOUT * FANOUT * FANOUT * FANOUT * CHUNK
_ZEROS = bytes(64)  # fills holes in a buffer without a chunk-sized temporary
_SMALL_ROOT = const(1024)  # bytes of root hashes a reader copies out rather than hold 4 KiB

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


def sha256(data):
    return hashlib.sha256(data).digest()


def _hex(h):
    import binascii

    return binascii.hexlify(h).decode()


def _oserror(err, what):
    if err.args and err.args[0] == _ENOSPC:
        return StoreError(f"disk full while {what}")
    return StoreError(f"{what} failed: {err}")


def replace(tmp, path):
    """Rename tmp over path (atomic on POSIX and LittleFS; FAT cannot, see recover_file)."""
    try:
        os.rename(tmp, path)
    except OSError:
        try:
            os.remove(path)
        except OSError:
            pass
        os.rename(tmp, path)


class _Gather:
    """Gathers a streamed writer's small writes (CBOR heads, index entries) into 512-byte
    ones: one file-system call each, and no buffer the size of the file."""

    def __init__(self, f):
        self.f = f
        self.buf = bytearray(512)
        self.n = 0

    def write(self, data):
        n = len(data)
        if self.n + n > 512:
            self.flush()
            if n > 512:
                return self.f.write(data)
        self.buf[self.n:self.n + n] = data
        self.n += n
        return n

    def flush(self):
        if self.n:
            self.f.write(memoryview(self.buf)[:self.n])
            self.n = 0


def write_file(path, data, what=None):
    """Durably replace path with data: write path.tmp, fsync, rename over path. data may be a
    function fill(file) that writes the content itself (streamed: no file-sized buffer)."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                out = _Gather(f)
                data(out)
                out.flush()
            else:
                f.write(data)
            fsync(f)
        replace(tmp, path)
    except OSError as err:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise _oserror(err, what or "writing " + path) from err


def recover_file(path):
    """After a crash: a path.tmp is torn if path exists, else the complete new content."""
    tmp = path + ".tmp"
    try:
        os.stat(tmp)
    except OSError:
        return
    try:
        os.stat(path)
        os.remove(tmp)
    except OSError:
        os.rename(tmp, path)


def _bloom_add(bloom, h, base, at=0):
    """Add hash h (its bytes from h[at]) to the filter at bloom[base:base + _BLOOM_BYTES]."""
    for k in range(at, at + 6, 2):
        bit = ((h[k] << 8) | h[k + 1]) & _BLOOM_MASK
        bloom[base + (bit >> 3)] |= 1 << (bit & 7)


def _bloom_has(bloom, h, base):
    for k in range(3):
        bit = ((h[2 * k] << 8) | h[2 * k + 1]) & _BLOOM_MASK
        if not bloom[base + (bit >> 3)] & (1 << (bit & 7)):
            return False
    return True


class BlockStore:
    """Content-addressed blocks in append-only packs; see the module docstring."""

    def __init__(self, path):
        from leither.compat import makedirs

        self.path = path
        makedirs(path)
        self._sealed = []  # pack numbers with an index, ascending
        # The sealed packs' Bloom filters, _BLOOM_BYTES each in _sealed's order, in slabs of
        # _BLOOM_SLAB packs: a long-lived block per 8 packs, not a small one per pack scattered
        # among the 4 KiB buffers, and never a big one late (a doubling buffer failed to find
        # 4 KiB after 10 MB of writes). RAM: 256 B per 512 KiB pack of flash (0.05%).
        self._blooms = []
        self._open = None  # number of the open pack, or None
        # The open pack's RAM index: 8-byte hash prefixes and offsets of its records (<=
        # PACK_RECORDS). Subclasses (leither.vault) rebuild these two in their own scan.
        # Made at full size with a pack's first record and kept from pack to pack (a growing
        # pair reallocated up to 4 KiB of garbage per pack); none on a store never written.
        # The open pack has len(_offsets) records; _prefix may be longer (stale past that).
        self._prefix = bytearray()
        self._offsets = []
        self._end = 0  # end of the last good record in the open pack
        # The open pack's one handle, read and write ("r+b"): LittleFS and FAT file handles
        # keep their own view of a file's size, so a second handle would not see appends.
        self._wf = None
        self._broken = False  # an append failed: seal at _end before writing more
        self._dirty = False  # appended since the last sync
        self._handles = []  # [(name, file)] most recent last, <= _HANDLES
        self._hint = 0  # index in _sealed of the pack of the last block found there
        self._hdr = bytearray(_HDR)  # record header buffer for reads
        # The LiveSet of a collection in progress (leither.mimei.collect_steps): blocks that
        # put() or has() find meanwhile are added to it, since a reference to them may follow.
        self.live = None
        self._recover()

    # -- opening and recovery --------------------------------------------------------------

    def _name(self, n, ext):
        return "%s/p%08d.%s" % (self.path, n, ext)

    def _recover(self):
        packs = []
        idxs = []
        for name in os.listdir(self.path):
            if name.endswith(".tmp"):
                os.remove(self.path + "/" + name)  # an index write torn by a crash
            elif name.endswith(".pk"):
                packs.append(int(name[1:9]))
            elif name.endswith(".ix"):
                idxs.append(int(name[1:9]))
        for n in idxs:
            if n not in packs:
                os.remove(self._name(n, "ix"))  # pack removed by GC, index removal interrupted
        packs.sort()
        for n in packs:
            if n in idxs:
                self._load_index(n)
            elif n == packs[-1]:
                self._scan_open(n)
            else:
                # Only the newest pack may lack an index; an older one lost it mid-seal.
                self._scan_open(n)
                self._seal()

    def _load_index(self, n):
        with open(self._name(n, "ix"), "rb") as f:
            head = f.read(_IX_HEAD)
        if len(head) != _IX_HEAD or head[:4] != b"LPX1":
            raise StoreError("bad pack index %d" % n)
        self._bloom_slot()[:] = memoryview(head)[12:]
        self._sealed.append(n)

    def _bloom_slot(self, i=None):
        """A writable view of sealed pack i's filter (default: the next pack's; a new slab
        when the last one is full)."""
        if i is None:
            i = len(self._sealed)
        if i // _BLOOM_SLAB >= len(self._blooms):
            self._blooms.append(bytearray(_BLOOM_BYTES * _BLOOM_SLAB))
        base = i % _BLOOM_SLAB * _BLOOM_BYTES
        return memoryview(self._blooms[i // _BLOOM_SLAB])[base:base + _BLOOM_BYTES]

    def _scan_open(self, n):
        """Index the open pack's records, verifying each (bounded: PACK_MAX bytes).

        A record whose hash does not match but whose length fits is skipped (bit rot in the
        middle, or a write the OS reordered before a crash; never synced, so never committed):
        it stays unindexed and reads as missing. A record cut short ends the scan: a torn
        append, after which nothing may be written (the pack is sealed before it).
        """
        self._open = n
        del self._offsets[:]
        off = 0
        hdr = bytearray(_HDR)
        buf = bytearray(512)  # hash records in slices: no block-sized allocation at open
        view = memoryview(buf)
        with open(self._name(n, "pk"), "rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            while len(self._offsets) < PACK_RECORDS:
                if f.readinto(hdr) != _HDR:
                    break
                length = (hdr[32] << 8) | hdr[33]
                if length > BLOCK_MAX or off + _HDR + length > size:
                    break
                if self._check_from(f, bytes(hdr[:32]), length, view):
                    self._add(hdr[:8], off)
                off += _HDR + length
        self._end = off
        self._broken = size != off or len(self._offsets) >= PACK_RECORDS

    # -- the check of a record: a hook for stores keyed otherwise (leither.vault: sealed names,
    # checked by their tag) -- override both; reading, scanning and sealing stay the same.

    def check(self, h, data):
        """Is data the genuine content of record h? Here: its SHA-256 is h."""
        return sha256(data) == h

    def _check_from(self, f, h, length, view):
        """Read a record's length bytes from f and check them (the open-pack scan at open):
        hashed in slices of view (512 bytes), no block-sized buffer. A short read is False."""
        hasher = hashlib.sha256()
        while length:
            got = f.readinto(view[:min(length, len(view))])
            if not got:
                return False
            hasher.update(view[:got])
            length -= got
        return hasher.digest() == h

    def _add(self, prefix, off):
        k = 8 * len(self._offsets)
        if not k and len(self._prefix) < 8 * PACK_RECORDS:
            self._prefix = bytearray(8 * PACK_RECORDS)
            self._offsets = [0] * PACK_RECORDS
            del self._offsets[:]  # keeps its room on MicroPython
        if len(self._prefix) >= k + 8:
            self._prefix[k:k + 8] = prefix
        else:  # a fresh index (leither.vault's own scan builds one)
            self._prefix.extend(prefix)
        self._offsets.append(off)

    # -- lookup ------------------------------------------------------------------------------

    def _handle(self, n, ext):
        name = self._name(n, ext)
        for i in range(len(self._handles)):
            if self._handles[i][0] == name:
                entry = self._handles.pop(i)
                self._handles.append(entry)
                return entry[1]
        if len(self._handles) >= _HANDLES:
            self._handles.pop(0)[1].close()
        f = open(name, "rb")
        self._handles.append((name, f))
        return f

    def _drop_handles(self, n):
        keep = []
        for entry in self._handles:
            if entry[0].startswith(self._name(n, "")):
                entry[1].close()
            else:
                keep.append(entry)
        self._handles = keep

    def _find_open(self, h):
        if self._open is None:
            return -1
        prefix = h[:8]
        end = 8 * len(self._offsets)
        pos = self._prefix.find(prefix, 0, end)
        while pos >= 0:
            if pos & 7 == 0:
                off = self._offsets[pos >> 3]
                if self._read_hash(self._open, off) == h:
                    return off
            pos = self._prefix.find(prefix, pos + 1, end)
        return -1

    def _pack_reader(self, n):
        if n == self._open:
            if self._wf is None:
                self._wf = open(self._name(n, "pk"), "r+b")
            return self._wf
        return self._handle(n, "pk")

    def _read_hash(self, n, off):
        f = self._pack_reader(n)
        f.seek(off)
        return f.read(32)

    def _find_sealed(self, h, i):
        """Binary search pack self._sealed[i]'s index; return (offset, length) or None."""
        f = self._handle(self._sealed[i], "ix")
        f.seek(4)
        count = struct.unpack(">I", f.read(4))[0]
        lo, hi = 0, count
        while lo < hi:
            mid = (lo + hi) >> 1
            f.seek(_IX_HEAD + mid * _IX_ENTRY)
            entry = f.read(_IX_ENTRY)
            key = entry[:32]
            if key == h:
                off, length = struct.unpack(">IH", entry[32:])
                return off, length
            if key < h:
                lo = mid + 1
            else:
                hi = mid
        return None

    def _locate(self, h, skip=-1):
        """(pack, offset) of block h, or None. Searches the open pack, then newest sealed."""
        off = self._find_open(h)
        if off >= 0:
            return self._open, off
        # The pack of the last hit first: the chunks of a file sit together, so a sequential
        # read finds most of them there without testing every pack's Bloom filter.
        hint = self._hint
        if hint < len(self._sealed) and self._sealed[hint] != skip and _bloom_has(
                self._blooms[hint // _BLOOM_SLAB], h, hint % _BLOOM_SLAB * _BLOOM_BYTES):
            found = self._find_sealed(h, hint)
            if found is not None:
                return self._sealed[hint], found[0]
        i = len(self._sealed) - 1
        while i >= 0:
            n = self._sealed[i]
            if n != skip and i != hint and _bloom_has(self._blooms[i // _BLOOM_SLAB], h,
                                                      i % _BLOOM_SLAB * _BLOOM_BYTES):
                found = self._find_sealed(h, i)
                if found is not None:
                    self._hint = i
                    return n, found[0]
            i -= 1
        return None

    def has(self, h):
        h = bytes(h)
        if self._locate(h) is None:
            return False
        if self.live is not None:
            self.live.add(h)  # a reference may be made to it while a collection runs
        return True

    def get(self, h, buf=None):
        """The block named h, verified against its hash.

        With buf (a bytearray) the block is read into it and a memoryview of it is returned
        instead of new bytes: no allocation on hot paths. A block longer than buf is an error.
        """
        h = bytes(h)
        where = self._locate(h)
        if where is None:
            raise StoreError("missing block " + _hex(h))
        return self._read(where[0], where[1], h, buf)

    def _read(self, n, off, h, buf=None):
        head = self._hdr
        try:
            f = self._pack_reader(n)
            f.seek(off)
            got = f.readinto(head)
            length = (head[32] << 8) | head[33] if got == _HDR else -1
            if 0 <= length <= BLOCK_MAX:
                if buf is None:
                    data = f.read(length)
                else:
                    data = memoryview(buf)[:length]
                    if f.readinto(data) != length:
                        data = b""
            else:
                data = b""
        except OSError as err:
            raise _oserror(err, "reading block") from err
        if head[:32] != h or len(data) != length or not self.check(h, data):
            raise StoreError("corrupt block %s in pack %d" % (_hex(h), n))
        return data

    # -- writing -----------------------------------------------------------------------------

    def put(self, data, head=None):
        """Store the block head + data (<= BLOCK_MAX bytes) once; return its SHA-256.

        head (optional, small) lets a caller add a prefix without concatenating buffers.
        """
        total = len(data) + (len(head) if head else 0)
        if total > BLOCK_MAX:
            raise StoreError("block of %d bytes > %d" % (total, BLOCK_MAX))
        hasher = hashlib.sha256()
        if head:
            hasher.update(head)
        hasher.update(data)
        h = hasher.digest()
        if self._locate(h) is None:
            self._append(h, data, head)
        elif self.live is not None:
            self.live.add(h)  # referenced again while a collection runs: keep it
        return h

    def _append(self, h, data, head=None):
        if self._broken or (self._open is not None and (
                self._end + _HDR + len(data) > PACK_MAX or len(self._offsets) >= PACK_RECORDS)):
            self._seal()
        try:
            if self._open is None:
                n = self._sealed[-1] + 1 if self._sealed else 1
                self._wf = open(self._name(n, "pk"), "w+b")
                self._open = n
                self._end = 0
                del self._offsets[:]
            elif self._wf is None:
                self._wf = open(self._name(self._open, "pk"), "r+b")
            total = len(data) + (len(head) if head else 0)
            self._wf.seek(self._end)
            self._wf.write(h + struct.pack(">H", total))
            if head:
                self._wf.write(head)
            self._wf.write(data)
            self._dirty = True
        except OSError as err:
            self._broken = True
            self._close_writer()
            raise _oserror(err, "storing a block") from err
        self._add(h[:8], self._end)
        self._end += _HDR + total

    def sync(self):
        """Make every block put so far durable."""
        if self._wf is not None and self._dirty:
            try:
                fsync(self._wf)
            except OSError as err:
                self._broken = True
                self._close_writer()
                raise _oserror(err, "syncing blocks") from err
            self._dirty = False

    def _close_writer(self):
        if self._wf is not None:
            try:
                self._wf.close()
            except OSError:
                pass
            self._wf = None

    def _seal(self):
        """Write the open pack's sorted index (covering records up to _end); close the pack."""
        n = self._open
        if n is None:
            return
        self.sync()
        self._close_writer()
        count = len(self._offsets)
        prefix = self._prefix

        def key(i):  # first 3 hash bytes: a small int on every port (no allocation)
            return (prefix[8 * i] << 16) | (prefix[8 * i + 1] << 8) | prefix[8 * i + 2]

        order = sorted(range(count), key=key)
        # Records whose first 3 bytes tie (rare: ~0.2% of packs) are ordered by full hash.
        i = 0
        while i < count:
            j = i + 1
            while j < count and key(order[j]) == key(order[i]):
                j += 1
            if j - i > 1:
                order[i:j] = sorted(order[i:j], key=lambda r: self._read_hash(n, self._offsets[r]))
            i = j
        bloom = bytearray(_BLOOM_BYTES)
        for i in range(count):
            _bloom_add(bloom, prefix, 0, 8 * i)

        def fill(out):
            out.write(b"LPX1" + struct.pack(">II", count, self._end))
            out.write(bloom)
            head = self._hdr
            for i in order:
                f = self._handle(n, "pk")
                f.seek(self._offsets[i])
                f.readinto(head)
                out.write(head[:32])
                out.write(struct.pack(">IH", self._offsets[i], (head[32] << 8) | head[33]))

        write_file(self._name(n, "ix"), fill, "sealing a pack")
        self._bloom_slot()[:] = bloom
        self._sealed.append(n)
        self._open = None
        del self._offsets[:]
        self._broken = False

    def seal_open(self):
        """Seal the open pack now, if it holds records: sweep() reaches sealed packs only."""
        if self._open is not None and len(self._offsets):
            self._seal()

    def close(self):
        self.sync()
        self._close_writer()
        for entry in self._handles:
            entry[1].close()
        self._handles = []

    # -- space and collection ----------------------------------------------------------------

    def used(self):
        total = 0
        for name in os.listdir(self.path):
            total += os.stat(self.path + "/" + name)[6]
        return total

    def count(self):
        """Number of blocks stored (an upper bound: includes dead ones not yet swept)."""
        total = len(self._offsets)
        for n in self._sealed:
            with open(self._name(n, "ix"), "rb") as f:
                f.seek(4)
                total += struct.unpack(">I", f.read(4))[0]
        return total

    def packs(self):
        """Numbers of the sealed packs (the open pack is never collected)."""
        return list(self._sealed)

    def _entries(self, n):
        """Yield (hash, offset, length) of sealed pack n from its index, streaming."""
        with open(self._name(n, "ix"), "rb") as f:
            head = f.read(_IX_HEAD)
            count = struct.unpack(">I", head[4:8])[0]
            for _ in range(count):
                entry = f.read(_IX_ENTRY)
                off, length = struct.unpack(">IH", entry[32:])
                yield entry[:32], off, length

    def free(self):
        """Bytes free on the file system holding the store."""
        st = os.statvfs(self.path)
        return st[4] * st[1]

    def sweep(self, is_live, min_dead=0.25):
        """Compact sealed packs whose dead share of bytes is >= min_dead (all-dead: remove).

        is_live(hash) -> bool must never say False for a live block (a Bloom filter of the
        live set is fine: a false positive only keeps garbage a while longer). Packs with no
        live block go first (removing them needs no space), then the others, most dead first,
        each only if the free space holds its live part: a full flash can always be freed.
        Returns (packs rewritten, bytes freed).
        """
        done = [0, 0]
        for step in self.sweep_steps(is_live, min_dead):
            done[0] += step[0]
            done[1] += step[1]
        return done[0], done[1]

    def sweep_steps(self, is_live, min_dead=0.25, packs=None):
        """sweep() as a generator of (packs rewritten, bytes freed), one pack per step; with
        packs, only those (the ones sealed when a mark began: leither.mimei.collect_steps).
        A pack's live part is counted again just before it goes, so a block marked live
        between the steps (BlockStore.live) is moved out, not lost."""
        work = []  # (live bytes, dead bytes, pack): bound: one entry per sealed pack
        for n in list(self._sealed if packs is None else packs):
            if n in self._sealed:
                live, dead = self._liveness(n, is_live)
                if dead and dead >= min_dead * (live + dead):
                    work.append((live, dead, n))
            yield 0, 0
        work.sort(key=lambda w: (w[0] > 0, -w[1] * 1000 // (w[0] + w[1])))
        for _live, _dead, n in work:
            if n not in self._sealed:
                continue
            live = self._liveness(n, is_live)[0]
            if live:
                if self.free() < live + _IX_HEAD + PACK_RECORDS * _IX_ENTRY + 8192:
                    continue  # not enough room to move the live blocks out yet
                try:
                    for h, off, _length in self._entries(n):
                        if is_live(h) and self._locate(h, skip=n) is None:
                            self._append(h, self._read(n, off, h))
                    self.sync()
                except StoreError:
                    # Full after all (file systems need room of their own): keep this pack;
                    # the copies made so far are harmless duplicates. Stop here.
                    return
            size = os.stat(self._name(n, "pk"))[6]
            self._drop_handles(n)
            i = self._sealed.index(n)
            self._sealed.pop(i)
            for j in range(i, len(self._sealed)):  # close the gap (rare: a swept pack)
                self._bloom_slot(j)[:] = self._bloom_slot(j + 1)
            # Pack first, then index: a crash in between leaves an orphan index, dropped at open.
            os.remove(self._name(n, "pk"))
            os.remove(self._name(n, "ix"))
            yield 1, size - live

    def _liveness(self, n, is_live):
        """(live bytes, dead bytes) of sealed pack n."""
        live = 0
        dead = 0
        for h, _off, length in self._entries(n):
            if is_live(h):
                live += _HDR + length
            else:
                dead += _HDR + length
        return live, dead


class LiveSet:
    """Live-set filter for sweep(): no false negatives; salted anew each run, so a block kept
    by a false positive is caught by a later run. Bits: 16 per expected block, a power of two
    between 8 Ki and 128 Ki (16 KiB of RAM at most). Keys are SHA-256 hashes or sealed names:
    uniform bytes, so three 24-bit slices of them are the probes. A partner sweeping for its
    owner rebuilds the owner's filter from (bits, salt): ValueError if they cannot be one."""

    def __init__(self, expected=0, bits=None, salt=None):
        if bits is None:
            n = 8192
            while n < 16 * expected and n < LIVE_MAX_BITS:
                n *= 2
            bits = bytearray(n >> 3)
        n = len(bits) * 8
        if n < 8192 or n > LIVE_MAX_BITS or n & (n - 1):
            raise ValueError("live-set filter of %d bits" % n)
        if salt is None:
            salt = os.urandom(1)[0] % 20
        if not isinstance(salt, int) or not 0 <= salt < 20:
            raise ValueError("live-set salt %r" % (salt,))
        self.mask = n - 1
        self.bits = bits
        self.salt = salt  # which key bytes feed the probes

    def _probes(self, h):
        s = self.salt
        for k in range(3):
            p = s + 4 * k
            yield ((h[p] << 16) | (h[p + 1] << 8) | h[p + 2]) & self.mask

    def add(self, h):
        for bit in self._probes(h):
            self.bits[bit >> 3] |= 1 << (bit & 7)

    def has(self, h):
        for bit in self._probes(h):
            if not self.bits[bit >> 3] & (1 << (bit & 7)):
                return False
        return True


# -- Merkle trees ------------------------------------------------------------------------------


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


def decode_manifest(data):
    """Parse a manifest block strictly; return (level, size, hashes memoryview)."""
    if len(data) == 0 or data[0] != 0x83:
        raise StoreError("bad manifest")
    level, pos = _read_uint(data, 1, 0)
    size, pos = _read_uint(data, pos, 0)
    n, pos = _read_uint(data, pos, 2)
    if pos + n != len(data) or n % 32 or n > 32 * FANOUT or not 1 <= level <= 8:
        raise StoreError("bad manifest")
    return level, size, memoryview(data)[pos:]


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

    RAM: the root manifest, one 4 KiB buffer per lower level on the path being read and one
    4 KiB chunk buffer -- whatever the size of the content.
    """

    def __init__(self, bs, root):
        self.bs = bs
        self.root = bytes(root)
        buf = take()
        level, size, hashes = decode_manifest(bs.get(self.root, buf))
        if len(hashes) <= _SMALL_ROOT:  # e.g. a 1 MB file's root: 64 bytes, not a 4 KiB buffer
            hashes = bytes(hashes)
            give(buf)
            buf = None
        self._rbuf = buf
        self.size = size
        self.n = _chunks(size)
        if level != _depth(self.n) or len(hashes) != 32 * self._children(level, 0):
            raise StoreError("bad tree shape at root")
        self.depth = level
        # Per level: (first chunk, hashes) of the manifest last loaded there, and its buffer.
        self._path = [None] * (level + 1)
        self._path[level] = (0, hashes)
        self._bufs = [None] * level
        self._cbuf = None
        self.pos = 0

    def close(self):
        """Give the buffers back to the pool (the reader is unusable afterwards)."""
        give(self._rbuf)
        give(self._cbuf)
        for buf in self._bufs:
            give(buf)
        self._rbuf = self._cbuf = None
        self._bufs = []

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
        first, hashes = self._path[cur]
        while cur > level + 1:
            span = FANOUT ** (cur - 1)
            j = (start - first) // span
            child = first + j * span
            cached = self._path[cur - 1]
            if cached is None or cached[0] != child:
                buf = self._bufs[cur - 1]
                if buf is None:
                    buf = self._bufs[cur - 1] = take()
                self._path[cur - 1] = None  # the buffer is about to change under it
                lvl, size, sub = decode_manifest(self.bs.get(hashes[32 * j:32 * j + 32], buf))
                expect = min(self.size, (child + span) * CHUNK) - child * CHUNK
                if (lvl != cur - 1 or size != expect
                        or len(sub) != 32 * self._children(cur - 1, child)):
                    raise StoreError("bad tree shape")
                cached = (child, sub)
                self._path[cur - 1] = cached
            first, hashes = cached
            cur -= 1
        span = FANOUT ** level
        j = (start - first) // span
        return bytes(hashes[32 * j:32 * j + 32])

    def chunk_len(self, i):
        end = (i + 1) * CHUNK
        return CHUNK if end <= self.size else self.size - i * CHUNK

    def chunk(self, i):
        """Chunk i's bytes, verified: a memoryview valid until the next chunk() call."""
        if not 0 <= i < self.n:
            raise StoreError("chunk %d out of range" % i)
        if self._cbuf is None:
            self._cbuf = take()
        data = self.bs.get(self.node(0, i), self._cbuf)
        if len(data) != self.chunk_len(i):
            raise StoreError("bad chunk length")
        return data

    def read_at(self, offset, n):
        """Up to n bytes from offset (fewer at the end)."""
        end = min(self.size, offset + n)
        if end <= offset:
            return b""
        out = bytearray(end - offset)
        pos = 0
        while offset < end:
            i = offset // CHUNK
            data = self.chunk(i)
            a = offset - i * CHUNK
            b = min(len(data), end - i * CHUNK)
            out[pos:pos + b - a] = data[a:b]
            pos += b - a
            offset += b - a
        return out

    def read_into(self, offset, view):
        """Fill view (a writable buffer) from offset; return the bytes read (fewer at the end).

        No allocation: a chunk that view covers whole is read and verified straight into it,
        the ends of the range through the reader's one chunk buffer.
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
                got = self.bs.get(self.node(0, i), view[pos:pos + length])
                if len(got) != length:
                    raise StoreError("bad chunk length")
            else:
                view[pos:pos + b - a] = self.chunk(i)[a:b]
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
        self._levels = []

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
    last, unfinished group and the partial last chunk's bytes -- reading one manifest per
    level, so appending costs one chunk hash per 4 KiB instead of a copy-on-write patch.
    """
    w = TreeWriter(bs)
    old = TreeReader(bs, root)
    try:
        size = old.size
        full = size // CHUNK
        # Items a TreeWriter that wrote `full` chunks has received at each level, and how many
        # of them it still holds: it flushes a level only when an item arrives at a full one.
        got = full
        level = 1
        span = 1  # chunks under one item at this level
        while got:
            held = (got - 1) % FANOUT + 1
            acc = [take(), held, held * span * CHUNK]
            first = got - held
            for k in range(held):
                acc[0][32 * k:32 * k + 32] = old.node(level - 1, (first + k) * span)
            w._levels.append(acc)
            got = (got - 1) // FANOUT
            level += 1
            span *= FANOUT
        tail = size - full * CHUNK
        if tail:  # straight into the writer's chunk buffer (no reader chunk buffer taken)
            got = bs.get(old.node(0, full), memoryview(w._buf)[:tail])
            if len(got) != tail:
                raise StoreError("bad chunk length")
            w._fill = tail
        w.size = size
    except Exception:
        w.abandon()
        raise
    finally:
        old.close()
    return w


def build(bs, stream_pieces):
    """Tree of the concatenation of an iterable of byte pieces: (root, size)."""
    w = TreeWriter(bs)
    for piece in stream_pieces:
        w.write(piece)
    return w.finish()


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
    h = put_manifest(bs, level, max(covered, 0), memoryview(hashes)[:32 * k])
    give(hashes)
    return h


ALL = const(0)  # walk modes: every block (a missing manifest is a StoreError)
MISSING = const(1)  # only blocks not stored, descending where the manifest is present
PRESENT = const(2)  # only blocks stored, skipping what is absent (a partial import)


def walk(bs, root, mode=ALL):
    """Yield the hashes of the blocks reachable from root, manifests before their children.

    Streaming: RAM is one manifest per level (<= 4 KiB each); chunks are not read. A child
    equal to its left sibling is skipped (it may still come twice elsewhere): a sparse tree
    of 2**36 zero chunks walks in a few hundred steps.
    """
    root = bytes(root)
    if mode != ALL and not bs.has(root):
        if mode == MISSING:
            yield root
        return
    if mode != MISSING:
        yield root
    buf = take()
    level, _size, hashes = decode_manifest(bs.get(root, buf))
    stack = [(level, hashes, 0, buf)]  # bound: depth <= 8 levels, one pool buffer each
    try:
        while stack:
            level, hashes, i, buf = stack.pop()
            if i * 32 >= len(hashes):
                give(buf)
                continue
            stack.append((level, hashes, i + 1, buf))
            h = bytes(hashes[32 * i:32 * i + 32])
            if i and hashes[32 * i - 32:32 * i] == h:
                continue  # as its left sibling (a hole's zero subtrees): walked already
            present = True if mode == ALL else bs.has(h)
            if (mode == MISSING) != present:
                yield h
            if level == 1 or not present:
                continue
            buf = take()
            sub_level, _s, sub = decode_manifest(bs.get(h, buf))
            if sub_level != level - 1:
                raise StoreError("bad tree shape")
            stack.append((sub_level, sub, 0, buf))
    finally:
        for entry in stack:
            give(entry[3])
