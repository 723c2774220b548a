# Content-addressed block store: the bottom layer of MiMei storage (its trees: leither.tree).
# Blocks live in append-only pack files (measured: one file per 4 KiB chunk costs 9-33% more
# flash on LittleFS/FAT than packs, see bench/store.py --layout). Everything is crash-safe by
# construction: packs only grow, indexes and pointers are written new and renamed into place.
"""Block store (``BlockStore``) and durable file replacement (the live-set filter of a
collection, ``LiveSet``, is leither.liveset's, offered here too).

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

Trees (leither.tree, whose names this module also offers: ``store.TreeReader`` ...)
    Merkle trees of 4096-byte chunks over a BlockStore: see leither.tree.
"""

import binascii
import hashlib
import os
import struct

from .compat import const, fsync
from .errors import StoreError
from .liveset import LIVE_MAX_BITS, LiveSet  # noqa: F401 - offered here too (store.LiveSet)
from .tree import (  # noqa: F401 - the tree API, offered here too (store.TreeReader...)
    ALL,
    CHUNK,
    FANOUT,
    MAX_SIZE,
    MISSING,
    PRESENT,
    TreeReader,
    TreeWriter,
    _pool,
    appender,
    build,
    decode_manifest,
    empty_root,
    encode_manifest,
    give,
    manifest_head,
    patch,
    put_manifest,
    reserve,
    take,
    trim,
    walk,
)

BLOCK_MAX = const(8192)  # largest block: a chunk sealed for a partner (IV + MAC) fits
PACK_MAX = const(524288)  # bytes per pack before it is sealed: bounds open-pack scan at open
PACK_RECORDS = const(256)  # records per pack: bounds the open pack's RAM index (8 B each)
_BLOOM_BYTES = const(256)  # per sealed pack, kept in RAM: 2048 bits, k=3 over <= 256 hashes
_BLOOM_MASK = const(2047)
_BLOOM_SLAB = const(8)  # filters per slab (2 KiB): see BlockStore._blooms
_BLOOM_HOT = const(16)  # sealed packs whose filters stay in RAM (4 KiB, 8 MiB of packs)
_HDR = const(34)  # record header: hash 32 + length 2
_IX_HEAD = const(268)  # "LPX1" + count + end + bloom
_IX_ENTRY = const(38)  # hash 32 + offset 4 + length 2
_ENOSPC = const(28)
_HANDLES = const(4)  # open read handles kept (each costs a FS buffer on a board): the index
# and pack being read plus the open pack and one more index, measured to stop reopen thrash


def sha256(data):
    return hashlib.sha256(data).digest()


def _hex(h):
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

    def __init__(self, f, buf):
        self.f = f
        self.buf = buf
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


_spare = []  # write_file's 512-byte gather buffer, kept between calls: every state save and
# seal makes one, and a fresh one each time was what the soak's saves failed to get


def write_file(path, data, what=None):
    """Durably replace path with data: write path.tmp, fsync, rename over path. data may be a
    function fill(file) that writes the content itself (streamed: no file-sized buffer)."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                out = _Gather(f, _spare.pop() if _spare else bytearray(512))
                data(out)
                out.flush()
                _spare.append(out.buf)
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

    bloom_packs = _BLOOM_HOT  # filters kept in RAM (a class attribute: tests set it lower)

    def __init__(self, path):
        from .compat import makedirs

        self.path = path
        makedirs(path)
        self._sealed = []  # pack numbers with an index, ascending
        # The sealed packs' Bloom filters, _BLOOM_BYTES each in _sealed's order, in slabs of
        # _BLOOM_SLAB packs: a long-lived block per 8 packs, not a small one per pack scattered
        # among the 4 KiB buffers, and never a big one late (a doubling buffer failed to find
        # 4 KiB after 10 MB of writes). RAM: 256 B per pack for the newest bloom_packs sealed
        # packs, whatever the store's size (a 30 MB store held 15 KiB of them in a 110 KiB
        # heap); an older pack's filter is read from its index when tested (_bloom_hit).
        self._blooms = []
        self._scratch = None  # 512-byte buffer: an older pack's filter (_bloom_hit), _move
        self._open = None  # number of the open pack, or None
        # The open pack's RAM index: 8-byte hash prefixes and offsets of its records (<=
        # PACK_RECORDS). Subclasses (leither.vault) rebuild these two in their own scan.
        # Made at full size with a pack's first record and kept from pack to pack (a growing
        # pair reallocated up to 4 KiB of garbage per pack); none on a store never written.
        # The open pack has len(_offsets) records; _prefix may be longer (stale past that).
        self._prefix = bytearray()
        self._offsets = []
        self._order = []  # _seal's sort of the open pack's records (kept: see _seal)
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
        self._push_sealed(n, memoryview(head)[12:])

    # -- the sealed packs' Bloom filters: slot k holds the filter of _sealed[_cold() + k] ----

    def _cold(self):
        """Index in _sealed of the oldest pack whose filter is in RAM."""
        return max(0, len(self._sealed) - self.bloom_packs)

    def _bloom_slot(self, k):
        """A writable view of filter slot k (a new slab when the last one is full)."""
        if k // _BLOOM_SLAB >= len(self._blooms):
            self._blooms.append(bytearray(_BLOOM_BYTES * _BLOOM_SLAB))
        base = k % _BLOOM_SLAB * _BLOOM_BYTES
        return memoryview(self._blooms[k // _BLOOM_SLAB])[base:base + _BLOOM_BYTES]

    def _push_sealed(self, n, bloom):
        """Append pack n, just sealed or loaded, with its filter; the oldest filter in RAM
        leaves it when all slots are taken (copies of 256 B: once per sealed pack)."""
        k = len(self._sealed)
        if k >= self.bloom_packs:
            k = self.bloom_packs - 1
            for j in range(k):
                self._bloom_slot(j)[:] = self._bloom_slot(j + 1)
        self._bloom_slot(k)[:] = bloom
        self._sealed.append(n)

    def _pop_sealed(self, i):
        """Remove _sealed[i] (a swept pack) and its filter; the newest pack without a filter in
        RAM gets one back, read from its index."""
        cold = self._cold()
        self._sealed.pop(i)
        if cold == 0:  # every filter was in RAM: close the gap
            for j in range(i, len(self._sealed)):
                self._bloom_slot(j)[:] = self._bloom_slot(j + 1)
            return
        if i < cold:
            return  # a pack without a filter in RAM: every slot keeps its pack
        for k in range(i - cold, 0, -1):
            self._bloom_slot(k)[:] = self._bloom_slot(k - 1)
        with open(self._name(self._sealed[cold - 1], "ix"), "rb") as f:
            f.seek(12)
            if f.readinto(self._bloom_slot(0)) != _BLOOM_BYTES:
                raise StoreError("bad pack index %d" % self._sealed[cold - 1])

    def _bloom_hit(self, i, h):
        """May sealed pack i hold h? Its filter in RAM, or an older pack's from its index."""
        k = i - self._cold()
        if k >= 0:
            return _bloom_has(self._blooms[k // _BLOOM_SLAB], h, k % _BLOOM_SLAB * _BLOOM_BYTES)
        if self._scratch is None:
            self._scratch = bytearray(512)
        f = self._handle(self._sealed[i], "ix")
        f.seek(12)
        if f.readinto(memoryview(self._scratch)[:_BLOOM_BYTES]) != _BLOOM_BYTES:
            return True  # a short index: let its search say (it raises nothing, finds nothing)
        return _bloom_has(self._scratch, h, 0)

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
            self._order = [0] * PACK_RECORDS  # now, while the heap has such a run
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
        if hint < len(self._sealed) and self._sealed[hint] != skip and self._bloom_hit(hint, h):
            found = self._find_sealed(h, hint)
            if found is not None:
                return self._sealed[hint], found[0]
        i = len(self._sealed) - 1
        while i >= 0:
            n = self._sealed[i]
            if n != skip and i != hint and self._bloom_hit(i, h):
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
        instead of new bytes: no allocation on hot paths. A block longer than buf comes as
        new bytes.
        """
        h = bytes(h)
        where = self._locate(h)
        if where is None:
            raise StoreError("missing block " + _hex(h))
        return self._read(where[0], where[1], h, buf)

    def get_part(self, h, start, view):
        """Bytes of block h from start into view: (bytes copied, block length). The whole
        block is checked first in 512-byte slices, so a part of a big block (a manifest's
        hashes, read a window at a time) needs no block-sized buffer."""
        h = bytes(h)
        where = self._locate(h)
        if where is None:
            raise StoreError("missing block " + _hex(h))
        n, off = where
        head = self._hdr
        try:
            f = self._pack_reader(n)
            f.seek(off)
            length = (head[32] << 8) | head[33] if f.readinto(head) == _HDR else -1
            ok = head[:32] == h and 0 <= length <= BLOCK_MAX
            got = want = max(0, min(len(view), length - start))
            view = memoryview(view)[:want]
            if ok and want == length:  # all of it fits: one read, checked where it lies
                got = f.readinto(view)
                ok = got == want and self.check(h, view)
            elif ok:
                if self._scratch is None:
                    self._scratch = bytearray(512)
                ok = self._check_from(f, h, length, memoryview(self._scratch))
                if ok and want:
                    f.seek(off + _HDR + start)
                    got = f.readinto(view)
        except OSError as err:
            raise _oserror(err, "reading block") from err
        if not ok or got != want:
            raise StoreError("corrupt block %s in pack %d" % (_hex(h), n))
        return got, length

    def _read(self, n, off, h, buf=None):
        head = self._hdr
        try:
            f = self._pack_reader(n)
            f.seek(off)
            got = f.readinto(head)
            length = (head[32] << 8) | head[33] if got == _HDR else -1
            if 0 <= length <= BLOCK_MAX:
                if buf is None or length > len(buf):
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

    def _writer(self, h, total):
        """The open pack's handle at its end, record header h | total written (a new pack
        when the open one is full or broken). Callers write the record's total bytes."""
        if self._broken or (self._open is not None and (
                self._end + _HDR + total > PACK_MAX or len(self._offsets) >= PACK_RECORDS)):
            self._seal()
        if self._open is None:
            n = self._sealed[-1] + 1 if self._sealed else 1
            self._wf = open(self._name(n, "pk"), "w+b")
            self._open = n
            self._end = 0
            del self._offsets[:]
        elif self._wf is None:
            self._wf = open(self._name(self._open, "pk"), "r+b")
        self._wf.seek(self._end)
        self._wf.write(h + struct.pack(">H", total))
        return self._wf

    def _append(self, h, data, head=None):
        total = len(data) + (len(head) if head else 0)
        try:
            wf = self._writer(h, total)
            if head:
                wf.write(head)
            wf.write(data)
            self._dirty = True
        except OSError as err:
            self._broken = True
            self._close_writer()
            raise _oserror(err, "storing a block") from err
        self._add(h[:8], self._end)
        self._end += _HDR + total

    def _move(self, n, off, h, length):
        """Copy record h (length bytes of it at off in sealed pack n) to the open pack,
        checked first, through a 512-byte buffer: compaction takes no block-sized buffer
        (a busy board's collection failed for want of 4 KiB). StoreError if it is corrupt or
        cannot be written; a copy cut short is past _end, so never indexed nor kept."""
        if self._scratch is None:
            self._scratch = bytearray(512)
        view = memoryview(self._scratch)
        try:
            src = self._handle(n, "pk")
            src.seek(off + _HDR)
            if not self._check_from(src, h, length, view):
                raise StoreError("corrupt block %s in pack %d" % (_hex(h), n))
            wf = self._writer(h, length)
            left = length
            while left:
                src = self._handle(n, "pk")  # still the LRU's (a seal may have used it)
                src.seek(off + _HDR + length - left)
                got = src.readinto(view[:min(left, len(view))])
                if not got:
                    raise StoreError("pack %d cut short" % n)
                wf.write(view[:got])
                left -= got
            self._dirty = True
        except OSError as err:
            self._broken = True
            self._close_writer()
            raise _oserror(err, "moving a block") from err
        self._add(h[:8], self._end)
        self._end += _HDR + length

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
            if i >= count:
                return 1 << 24  # a slot past the pack's records: last
            return (prefix[8 * i] << 16) | (prefix[8 * i + 1] << 8) | prefix[8 * i + 2]

        # Sorted in place in a list kept from pack to pack: a new one was 1 KiB per seal on
        # a board (2 on the 64-bit port), which a fragmented heap failed to give.
        order = self._order
        if len(order) < PACK_RECORDS:
            order = self._order = [0] * PACK_RECORDS
        for i in range(PACK_RECORDS):
            order[i] = i
        order.sort(key=key)
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
            for k in range(count):
                i = order[k]
                f = self._handle(n, "pk")
                f.seek(self._offsets[i])
                f.readinto(head)
                out.write(head[:32])
                out.write(struct.pack(">IH", self._offsets[i], (head[32] << 8) | head[33]))

        write_file(self._name(n, "ix"), fill, "sealing a pack")
        self._push_sealed(n, bloom)
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

    def sealed(self):
        """How many sealed packs there are (no list made: asked every second)."""
        return len(self._sealed)

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
                # Live blocks are moved in 512-byte slices (_move), not read whole: a busy
                # board's maintenance failed for want of 4 KiB buffers.
                try:
                    for h, off, length in self._entries(n):
                        if is_live(h) and self._locate(h, skip=n) is None:
                            self._move(n, off, h, length)
                    self.sync()
                except StoreError:
                    # Full after all (file systems need room of their own): keep this pack;
                    # the copies made so far are harmless duplicates. Stop here.
                    return
            size = os.stat(self._name(n, "pk"))[6]
            self._drop_handles(n)
            self._pop_sealed(self._sealed.index(n))
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
