# The page engine under the DB MiMei: an ordered map of byte keys to byte values kept as a
# copy-on-write B+tree of 2 KiB pages, made durable by shadow paging.
#
# Crash safety (why no write-ahead log is needed):
# * A page reachable from the committed root is never written in place. Changing it gives it a
#   fresh slot ("copy on write"); its old slot is freed only once the new root is committed.
# * A commit writes the dirty pages to their fresh slots, syncs them, then writes the small root
#   record to root.tmp, syncs it and renames it over `root` (atomic on POSIX and LittleFS;
#   MicroPython's FAT unlinks `root` first, so a lone complete root.tmp is adopted at open).
#   Power lost before the rename leaves the old root and its untouched pages; after it, the
#   new one. Pages of an interrupted commit are simply free again.
# * Recovery at open reads the root record and walks the internal pages only (about 1 % of the
#   pages) to rebuild the free-slot bitmap: time and RAM bounded by the db size / 100.
# * Every page carries a CRC-32: a flipped bit on disk reads as StoreError, never as data.
#
# Layout of directory `path`: `root` (record below) and segment files `<gen>.<n>`, each holding
# _SEG pages; a page id p lives in segment p // _SEG at offset (p % _SEG) * PAGE. Segments
# keep files small: LittleFS rewrites a file from the written block to its end, FAT is happy
# either way. `gen` changes only when the whole tree is replaced (restore).
#
# Page layout (big-endian): 0 crc32(bytes 4..) | 4 level (0 = leaf) | 5 zero | 6 n entries |
# 8 start of the entry area | 10 dead bytes in it | 12 n slots of 2-byte entry offsets, sorted
# by key. An entry is klen(2) vlen(2) key value; entries grow down from the page end. Internal
# pages hold (lower-bound key, child id(4) + record count below it(4)); the counts make rank and
# select (sorted-set rank, index ranges) logarithmic.
"""Copy-on-write B+tree over 2 KiB pages with atomic commits (used by leither.db)."""

import os
import struct
from binascii import crc32

from .compat import const, fsync
from .errors import StoreError

# bytes per page: half a 4 KiB flash block. 4 KiB pages do not fit: on the 64-bit unix port
# the engine's code takes ~40 KB of a 64 KB heap and leaves no free 4 KiB run (measured).
PAGE = const(2048)
_HDR = const(12)  # bytes of page header before the slot array
_SEG = const(16)  # pages per segment file (32 KiB, eight 4 KiB blocks): LittleFS rewrites a
# file from the written block to its end, so this bounds a page write to eight blocks (fewer
# files would mean fewer file switches: 8 pages per file tipped the 96K tests over, measured)
_NONE = const(0xFFFFFFFF)  # "no page" (empty tree)
# bytes of key + value: a full page plus one such entry always splits into two pages that fit
# ((PAGE - _HDR) + 2 * (MAX_ENTRY + 6) <= 2 * (PAGE - _HDR))
MAX_ENTRY = const(1012)
_MERGE_BELOW = const(512)  # bytes used: a page this empty is merged with a sibling if it fits
_ROOT_FMT = ">4sIIIIII"  # magic, gen(commit), root page, page count, file gen, records, user
_MAGIC = b"LDB1"
_MAP_STEP = const(32)  # bytes by which the slot bitmaps grow (256 pages, 512 KiB of db)
_SCRATCH = bytearray(PAGE)  # the old content of a page being split or compacted
# Page buffers are allocated together when a tree opens, and then recycled: MicroPython's
# heap fragments quickly and soon has no free 2 KiB run (measured at 64 KB), so a page is
# never allocated on the hot path unless every buffer is in use.
_POOL_MAX = const(6)  # spare page buffers kept (2 KiB each): one tree's cache and a spare
_pool = []  # kept when the last tree closes: allocating again later may find no 2 KiB run


def trim():
    """Let the spare page buffers go (no tree open: an idle node's heap back)."""
    del _pool[:]


def _take():
    return _pool.pop() if _pool else bytearray(PAGE)


def _u16(b, o):
    return (b[o] << 8) | b[o + 1]


def _put16(b, o, v):
    b[o] = v >> 8
    b[o + 1] = v & 0xFF


class Page:
    """One 2 KiB page in RAM: a bytearray edited in place (no per-entry objects kept)."""

    def __init__(self, pid, buf):
        self.id = pid
        self.buf = buf
        self.mv = memoryview(buf)
        self.dirty = False
        self.tick = 0

    def level(self):
        return self.buf[4]

    def count(self):
        return _u16(self.buf, 6)

    def init(self, level):
        """Empty the page (only the header matters: the rest is reached through slots)."""
        b = self.buf
        for i in range(_HDR):
            b[i] = 0
        b[4] = level
        _put16(b, 8, PAGE)

    def _lo(self):
        return _u16(self.buf, 8)

    def free(self):
        return self._lo() - _HDR - 2 * self.count()

    def used(self):
        """Bytes of live entries and slots (what a merge or split moves)."""
        return PAGE - self.free() - _u16(self.buf, 10) - _HDR

    def _off(self, i):
        return _u16(self.buf, _HDR + 2 * i)

    def key(self, i):
        b = self.buf
        o = _u16(b, _HDR + 2 * i)
        return bytes(self.mv[o + 4:o + 4 + _u16(b, o)])

    def val(self, i):
        b = self.buf
        o = _u16(b, _HDR + 2 * i)
        o2 = o + 4 + _u16(b, o)
        return bytes(self.mv[o2:o2 + _u16(b, o + 2)])

    def raw(self, i):
        """The whole encoded entry i (klen, vlen, key, value)."""
        b = self.buf
        o = _u16(b, _HDR + 2 * i)
        return bytes(self.mv[o:o + 4 + _u16(b, o) + _u16(b, o + 2)])

    def search(self, key):
        """Index of the first entry whose key >= key."""
        lo = 0
        hi = self.count()
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.key(mid) < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def child_index(self, key):
        """Internal page: index of the child whose range holds key (clamped to 0)."""
        i = self.search(key)
        if i < self.count() and self.key(i) == key:
            return i
        return i - 1 if i > 0 else 0

    def child(self, i):
        v = self.val(i)
        return (v[0] << 24) | (v[1] << 16) | (v[2] << 8) | v[3]

    def count_at(self, i):
        v = self.val(i)
        return (v[4] << 24) | (v[5] << 16) | (v[6] << 8) | v[7]

    def total(self):
        if self.buf[4] == 0:
            return self.count()
        t = 0
        for i in range(self.count()):
            t += self.count_at(i)
        return t

    def insert_raw(self, i, raw):
        """Insert an encoded entry at slot i; False if it does not fit even compacted."""
        need = len(raw) + 2
        b = self.buf
        if self.free() < need:
            if self.free() + _u16(b, 10) < need:
                return False
            self.compact()
        n = self.count()
        lo = self._lo() - len(raw)
        self.mv[lo:lo + len(raw)] = raw
        _put16(b, 8, lo)
        s = _HDR + 2 * i
        e = _HDR + 2 * n
        if s < e:
            b[s + 2:e + 2] = b[s:e]
        _put16(b, s, lo)
        _put16(b, 6, n + 1)
        return True

    def insert(self, i, key, val):
        return self.insert_raw(i, _entry(key, val))

    def delete(self, i):
        b = self.buf
        n = self.count()
        o = self._off(i)
        size = 4 + _u16(b, o) + _u16(b, o + 2)
        if o == self._lo():
            _put16(b, 8, o + size)
        else:
            _put16(b, 10, _u16(b, 10) + size)
        s = _HDR + 2 * i
        e = _HDR + 2 * n
        if s + 2 < e:
            b[s:e - 2] = b[s + 2:e]
        _put16(b, 6, n - 1)

    def set_val(self, i, val):
        """Replace entry i's value; same length edits in place. False if it does not fit."""
        b = self.buf
        o = self._off(i)
        kl = _u16(b, o)
        if _u16(b, o + 2) == len(val):
            self.mv[o + 4 + kl:o + 4 + kl + len(val)] = val
            return True
        key = self.key(i)
        self.delete(i)
        return bool(self.insert(i, key, val))

    def set_child(self, i, pid, count):
        return self.set_val(i, struct.pack(">II", pid, count))

    def compact(self):
        """Rewrite the entry area without dead bytes."""
        old = _SCRATCH
        old[:] = self.buf
        n = self.count()
        level = self.buf[4]
        self.init(level)
        for i in range(n):
            o = _u16(old, _HDR + 2 * i)
            size = 4 + _u16(old, o) + _u16(old, o + 2)
            self.insert_raw(i, bytes(memoryview(old)[o:o + size]))


def _entry(key, val):
    if len(key) + len(val) > MAX_ENTRY:
        raise StoreError("db entry too large (%d bytes)" % (len(key) + len(val)))
    return struct.pack(">HH", len(key), len(val)) + key + val


def _root_record(name):
    """The fields of the root record in file name; None if there is no such file or (only
    for root.tmp, which may be cut short) it does not check out."""
    try:
        with open(name, "rb") as f:
            data = f.read()
    except OSError:
        return None
    size = struct.calcsize(_ROOT_FMT)
    if len(data) != size + 4 or struct.unpack(">I", data[size:])[0] != crc32(data[:size]):
        if name.endswith(".tmp"):
            return None
        raise StoreError("db root record corrupt")
    return struct.unpack(_ROOT_FMT, data[:size])


def _sync_dir(path):
    """Make a rename in directory path durable where the OS allows (CPython on Linux: the
    directory itself must be synced, or power loss may undo the rename after Commit
    returned). MicroPython has no os.open: LittleFS and FAT commit a rename themselves."""
    opener = getattr(os, "open", None)
    if opener is None:
        return
    fd = opener(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _bit(bm, i):
    return (bm[i >> 3] >> (i & 7)) & 1


class Tree:
    """Ordered map bytes -> bytes in directory `path` with commit/rollback.

    Writes go to a working state in RAM and fresh page slots; commit() makes them durable
    atomically, rollback() forgets them. `user` is a small integer committed with the root
    (leither.db keeps its key count there)."""

    def __init__(self, path, cache=4, fresh_gen=None):
        # cache: pages kept in RAM between operations (2 KiB each); 4 fits a 64 KB heap.
        self.path = path
        self.cache_max = cache
        self._cache = {}  # page id -> Page; at most cache_max + the pages of one operation
        self._tick = 0
        self._fh = None  # one open segment file: (segment number, file object)
        self._synced = []  # segment numbers written since the last sync (bounded by tx size)
        self.writes = 0  # bumped on every change, so that open scans re-seek
        self.moves = 0  # bumped when a page buffer is reused: open scans re-seek too
        # Slot bitmaps, one bit per page id, grown in _MAP_STEP bytes (no realloc per page):
        # used: in the committed tree or allocated since; fresh: allocated since the last
        # commit (edited in place); pend: committed pages dropped since (free at commit).
        # Bytes [_dlo, _dhi) hold every fresh or pend bit.
        self._hint = 0  # no free slot below this page id
        try:
            while len(_pool) <= cache:  # the cache plus one spare, allocated while we can
                _pool.append(bytearray(PAGE))
        except MemoryError:
            if len(_pool) < 2:
                raise
            self.cache_max = len(_pool) - 1  # a fragmented heap: make do with a smaller cache
        self._dlo = 1 << 30
        self._dhi = 0
        if fresh_gen is None:
            try:
                self._read_root()
                self._recover()
            except Exception:
                self.close()
                raise
        else:
            self.gen = 0
            self.root = _NONE
            self.npages = 0
            self.fgen = fresh_gen
            self.count = 0
            self.user = 0
            self._committed = (_NONE, 0, 0, 0)
            self._maps(0)

    # ----- root record and recovery -----

    def _read_root(self):
        data = _root_record(self.path + "/root")
        if data is None:
            # MicroPython's FAT driver renames over a file by deleting it first: power lost
            # in between leaves only root.tmp, written and synced in full before the rename.
            # (Anywhere else a root.tmp without root is a first commit cut short: its CRC
            # fails or it is complete, and both readings are right.)
            tmp = self.path + "/root.tmp"
            data = _root_record(tmp)
            if data is not None:
                os.rename(tmp, self.path + "/root")
        if data is None:
            self.gen, self.root, self.npages, self.fgen, self.count, self.user = \
                0, _NONE, 0, 0, 0, 0
        else:
            magic, self.gen, self.root, self.npages, self.fgen, self.count, self.user = data
            if magic != _MAGIC:
                raise StoreError("not a db directory")
        self._committed = (self.root, self.npages, self.count, self.user)

    def _recover(self):
        """Rebuild the free-slot bitmap from the committed tree; drop files of other gens."""
        self._maps(self.npages)
        if self.root != _NONE:
            self._mark(self.root)
            stack = [[self.root]]
            while stack:  # depth-first over internal pages: one child-id list per level
                top = stack[-1]
                if not top:
                    stack.pop()
                    continue
                page = self._load(top.pop())
                if page.level() == 0:
                    continue
                kids = []
                for i in range(page.count()):
                    pid = page.child(i)
                    self._mark(pid)
                    if page.level() > 1:
                        kids.append(pid)
                self._evict()
                if kids:
                    stack.append(kids)
        prefix = "%d." % self.fgen
        for name in os.listdir(self.path):
            if name[0] in "0123456789" and not name.startswith(prefix):
                os.remove(self.path + "/" + name)
            elif name.startswith(prefix) and int(name[len(prefix):]) * _SEG >= self.npages:
                os.remove(self.path + "/" + name)  # segments past the committed end

    def _mark(self, pid):
        if pid >= self.npages:
            raise StoreError("db page %d out of range" % pid)
        if _bit(self.used, pid):
            raise StoreError("db page %d linked twice" % pid)
        self.used[pid >> 3] |= 1 << (pid & 7)

    # ----- page I/O -----

    def _file(self, seg):
        if self._fh is not None and self._fh[0] == seg:
            return self._fh[1]
        self._close_file()
        name = "%s/%d.%d" % (self.path, self.fgen, seg)
        try:
            f = open(name, "r+b")
        except OSError:
            f = open(name, "w+b")
        self._fh = (seg, f)
        return f

    def _close_file(self):
        if self._fh is not None:
            self._fh[1].close()
            self._fh = None

    def _read(self, pid):
        if pid >= self.npages:
            raise StoreError("db page %d out of range" % pid)
        buf = self._buf()  # first: making room may write a page and switch files
        f = self._file(pid // _SEG)
        f.seek((pid % _SEG) * PAGE)
        got = f.readinto(buf)
        page = Page(pid, buf)
        if got != PAGE or struct.unpack(">I", buf[:4])[0] != crc32(page.mv[4:]):
            raise StoreError("db page %d corrupt" % pid)
        return page

    def _write(self, page):
        b = page.buf
        struct.pack_into(">I", b, 0, crc32(page.mv[4:]))
        seg = page.id // _SEG
        f = self._file(seg)
        f.seek((page.id % _SEG) * PAGE)
        f.write(b)
        if seg not in self._synced:
            self._synced.append(seg)
        page.dirty = False

    def _load(self, pid):
        page = self._cache.get(pid)
        if page is None:
            page = self._read(pid)
            self._cache[pid] = page
        page.tick = self._tick
        return page

    def _evict(self):
        """Start a new operation: shrink the cache to its bound."""
        self._tick += 1
        self._shrink(self.cache_max)

    def _shrink(self, limit):
        """Evict the oldest cached pages down to limit, sparing those the current operation
        (tick) already uses."""
        cache = self._cache
        while len(cache) > limit:
            oldest = None
            for page in cache.values():
                if page.tick < self._tick and (oldest is None or page.tick < oldest.tick):
                    oldest = page
            if oldest is None:
                return
            if oldest.dirty:
                self._write(oldest)  # dirty pages are always fresh: safe to write now
            del cache[oldest.id]
            self._recycle(oldest)

    def _buf(self):
        """A free page buffer: a spare one, else the oldest cached page's, else a new one."""
        if not _pool and len(self._cache) >= self.cache_max:
            self._shrink(len(self._cache) - 1)
        try:
            return _take()
        except MemoryError:
            # no free 2 KiB run left in the heap: give up a cached page for good
            n = len(self._cache)
            self._shrink(n - 1)
            if len(self._cache) == n:
                raise
            self.cache_max = max(n - 1, 1)
            return _take()

    def _recycle(self, page):
        """Take back a page's buffer (the Page object must not be used again)."""
        if page.buf is not None:
            if len(_pool) < _POOL_MAX:
                _pool.append(page.buf)
            page.buf = page.mv = None
            self.moves += 1

    # ----- slot allocation -----

    def _maps(self, npages):
        size = ((npages >> 3) // _MAP_STEP + 1) * _MAP_STEP
        self.used = bytearray(size)
        self.fresh = bytearray(size)
        self.pend = bytearray(size)

    def _flag(self, bm, pid, on):
        j = pid >> 3
        if on:
            bm[j] |= 1 << (pid & 7)
        else:
            bm[j] &= ~(1 << (pid & 7)) & 0xFF
        self._dlo = min(self._dlo, j)
        self._dhi = max(self._dhi, j + 1)

    def _alloc(self):
        used = self.used
        pid = self._hint
        while pid < self.npages:
            if used[pid >> 3] == 0xFF:
                pid = (pid | 7) + 1
                continue
            if not _bit(used, pid):
                break
            pid += 1
        if pid >= self.npages:
            pid = self.npages
            self.npages += 1
            if (pid >> 3) >= len(used):
                for bm in (used, self.fresh, self.pend):
                    bm.extend(bytes(_MAP_STEP))
        self._hint = pid + 1
        used[pid >> 3] |= 1 << (pid & 7)
        self._flag(self.fresh, pid, True)
        return pid

    def _release(self, pid):
        if _bit(self.fresh, pid):
            self._flag(self.fresh, pid, False)
            self._flag(self.used, pid, False)
            self._hint = min(self._hint, pid)
        else:
            self._flag(self.pend, pid, True)

    def _new_page(self, level):
        page = Page(self._alloc(), self._buf())
        page.init(level)
        page.dirty = True
        page.tick = self._tick
        self._cache[page.id] = page
        return page

    def _writable(self, page):
        """The page, made safe to edit: committed pages move to a fresh slot (copy on write)."""
        if not _bit(self.fresh, page.id):
            old = page.id
            self._cache.pop(old, None)
            page.id = self._alloc()
            self._release(old)
        page.dirty = True
        page.tick = self._tick
        self._cache[page.id] = page
        return page

    def _drop(self, page):
        self._cache.pop(page.id, None)
        page.dirty = False
        self._release(page.id)
        self._recycle(page)

    # ----- reads -----

    def _leaf(self, key, path=None, root=None):
        pid = self.root if root is None else root
        while True:
            page = self._load(pid)
            if page.level() == 0:
                return page
            i = page.child_index(key)
            if path is not None:
                path.append((page, i))
            pid = page.child(i)

    def get(self, key):
        """The value stored under key, or None."""
        if self.root == _NONE:
            return None
        self._evict()
        leaf = self._leaf(key)
        i = leaf.search(key)
        if i < leaf.count() and leaf.key(i) == key:
            return leaf.val(i)
        return None

    def scan(self, lo, hi=None, committed=False):
        """Yield (key, value) for lo <= key < hi in order. Survives writes made meanwhile by
        re-seeking after the last key it yielded. committed: read the tree as of the last
        commit (its pages are never edited in place, so they are all still there)."""
        after = None
        while (self._committed[0] if committed else self.root) != _NONE:
            self._evict()
            writes = self.writes + self.moves
            path = []
            leaf = self._leaf(lo if after is None else after, path,
                              self._committed[0] if committed else None)
            i = leaf.search(lo) if after is None else leaf.search(after + b"\x00")
            while True:
                if i >= leaf.count():
                    # a new step: keep the path, let the cache shrink, then climb to the
                    # next subtree on the right and down its left edge
                    for page, _ in path:
                        page.tick = self._tick + 1
                    self._evict()
                    writes = self.writes + self.moves
                    while path and path[-1][1] + 1 >= path[-1][0].count():
                        path.pop()
                    if not path:
                        return
                    page, j = path.pop()
                    path.append((page, j + 1))
                    page = self._load(page.child(j + 1))
                    while page.level():
                        path.append((page, 0))
                        page = self._load(page.child(0))
                    leaf = page
                    i = 0
                    continue
                key = leaf.key(i)
                if hi is not None and key >= hi:
                    return
                yield key, leaf.val(i)
                if self.writes + self.moves != writes:
                    after = key
                    break
                i += 1

    def rank(self, key):
        """How many keys are < key."""
        if self.root == _NONE:
            return 0
        self._evict()
        r = 0
        page = self._load(self.root)
        while page.level():
            i = page.child_index(key)
            for j in range(i):
                r += page.count_at(j)
            page = self._load(page.child(i))
        return r + page.search(key)

    def select(self, r):
        """The r-th smallest key (0-based), or None past the end."""
        if self.root == _NONE or r < 0 or r >= self.count:
            return None
        self._evict()
        page = self._load(self.root)
        while page.level():
            for j in range(page.count()):
                c = page.count_at(j)
                if r < c:
                    break
                r -= c
            page = self._load(page.child(j))
        return page.key(r)

    # ----- writes -----

    def put(self, key, val):
        """Store val under key; True if the key is new."""
        raw = _entry(key, val)
        self._evict()
        self.writes += 1
        if self.root == _NONE:
            leaf = self._new_page(0)
            leaf.insert_raw(0, raw)
            self.root = leaf.id
            self.count = 1
            return True
        path = []
        leaf = self._leaf(key, path)
        i = leaf.search(key)
        found = i < leaf.count() and leaf.key(i) == key
        if found and leaf.val(i) == val:
            return False
        leaf = self._writable(leaf)
        if found:
            leaf.delete(i)
        delta = 0 if found else 1
        right = None
        if not leaf.insert_raw(i, raw):
            right = self._split(leaf, i, raw)
        self.count += delta
        self._fix_up(path, leaf, right, delta)
        return not found

    def _split(self, page, i, raw):
        """Split full `page` around new entry `raw` (slot i); returns the new right page.

        The n + 1 entries are cut where the bytes balance best; both halves always fit since
        an entry is at most MAX_ENTRY. Appending at the end keeps the left page full, so
        sequential loads (restore, growing lists) fill their pages."""
        n = page.count()
        _SCRATCH[:] = page.buf
        old = Page(page.id, _SCRATCH)
        level = page.buf[4]
        page.init(level)
        right = self._new_page(level)

        def size(k):  # bytes of merged entry k, slot included
            if k == i:
                return len(raw) + 2
            return len(old.raw(k if k < i else k - 1)) + 2

        if i == n:
            cut = n
        else:
            total = old.used() + len(raw) + 2
            acc = 0
            c = 0
            while c < n and acc + size(c) <= total // 2:
                acc += size(c)
                c += 1
            # entry c straddles the middle: put it on the side that keeps both halves small
            x = size(c)
            if c == 0 or (c < n and max(acc + x, total - acc - x) < max(acc, total - acc)):
                c += 1
            cut = c
        for k in range(n + 1):
            entry = raw if k == i else old.raw(k if k < i else k - 1)
            if k < cut:
                ok = page.insert_raw(k, entry)
            else:
                ok = right.insert_raw(k - cut, entry)
            if not ok:
                raise StoreError("db page split overflow")
        return right

    def _fix_up(self, path, child, right, delta):
        """Propagate a leaf change to the root: new child ids, counts and split pages."""
        while path:
            parent, i = path.pop()
            parent = self._writable(parent)
            # Pages of the level below are done with once their parent entry is set: unpin
            # them (tick of an earlier operation) so that a tight heap may write them out
            # rather than need another page buffer for a split further up.
            if right is None:
                # child values are 8 bytes: this edits in place
                parent.set_child(i, child.id, parent.count_at(i) + delta)
                child.tick = self._tick - 1
            else:
                parent.set_child(i, child.id, child.total())
                raw = _entry(right.key(0), struct.pack(">II", right.id, right.total()))
                child.tick = right.tick = self._tick - 1
                if parent.insert_raw(i + 1, raw):
                    right = None
                else:
                    right = self._split(parent, i + 1, raw)
            child = parent
        if right is not None:
            root = self._new_page(child.level() + 1)
            root.insert(0, b"", struct.pack(">II", child.id, child.total()))
            root.insert(1, right.key(0), struct.pack(">II", right.id, right.total()))
            child = root
        self.root = child.id

    def delete(self, key):
        """Remove key; True if it was there."""
        if self.root == _NONE:
            return False
        self._evict()
        path = []
        leaf = self._leaf(key, path)
        i = leaf.search(key)
        if i >= leaf.count() or leaf.key(i) != key:
            return False
        self.writes += 1
        leaf = self._writable(leaf)
        leaf.delete(i)
        self.count -= 1
        child = leaf
        gone = leaf.count() == 0
        while path:
            parent, i = path.pop()
            parent = self._writable(parent)
            if gone:
                self._drop(child)
                parent.delete(i)
                gone = parent.count() == 0
            else:
                parent.set_child(i, child.id, parent.count_at(i) - 1)
                if child.used() < _MERGE_BELOW and parent.count() > 1:
                    self._merge(parent, i, child)
            child = parent
        if gone:
            self._drop(child)
            self.root = _NONE
            return True
        while child.level() and child.count() == 1:  # a root with one child: the child is the root
            only = self._load(child.child(0))
            self._drop(child)
            child = only
        self.root = child.id
        return True

    def _merge(self, parent, i, child):
        """Fold child (parent's slot i) and a neighbour into one page if they fit."""
        j = i + 1 if i + 1 < parent.count() else i - 1
        sib = self._load(parent.child(j))
        li, ri = (i, j) if i < j else (j, i)
        right = sib if li == i else child
        # an internal right page takes the parent's separator as its first key
        grow = len(parent.key(ri)) - len(right.key(0)) if right.level() else 0
        if child.used() + sib.used() + grow > PAGE - _HDR:
            return
        left = child if li == i else self._writable(sib)
        base = left.count()
        for k in range(right.count()):
            raw = right.raw(k)
            if k == 0 and right.level():
                raw = _entry(parent.key(ri), right.val(0))
            if not left.insert_raw(base + k, raw):
                raise StoreError("db page merge overflow")
        total = parent.count_at(li) + parent.count_at(ri)
        parent.delete(ri)
        parent.set_child(li, left.id, total)
        self._drop(right)

    # ----- transactions -----

    def commit(self):
        """Make every change since the last commit durable, atomically."""
        dirty = [p for p in self._cache.values() if p.dirty]
        dirty.sort(key=lambda p: p.id)
        for page in dirty:
            self._write(page)
        for seg in self._synced:
            fsync(self._file(seg))
        self._synced = []
        self.gen += 1
        body = struct.pack(_ROOT_FMT, _MAGIC, self.gen, self.root, self.npages, self.fgen,
                           self.count, self.user)
        tmp = self.path + "/root.tmp"
        with open(tmp, "wb") as f:
            f.write(body + struct.pack(">I", crc32(body)))
            fsync(f)
        os.rename(tmp, self.path + "/root")
        # Committed on disk now: nothing below may fail into a rollback (that would free the
        # pages the new root uses).
        self._settle(self.pend)
        self._committed = (self.root, self.npages, self.count, self.user)
        try:
            _sync_dir(self.path)
        except OSError:
            pass  # the rename stands; only its durability before the next sync is weaker

    def rollback(self):
        """Forget every change since the last commit."""
        self.writes += 1
        for page in list(self._cache.values()):
            if _bit(self.fresh, page.id):
                del self._cache[page.id]
                self._recycle(page)
        self._settle(self.fresh)
        self._synced = []
        self.root, _, self.count, self.user = self._committed

    def _settle(self, drop):
        """End a transaction: free the slots marked in `drop`, clear fresh and pend."""
        used = self.used
        for j in range(self._dlo, self._dhi):
            used[j] &= ~drop[j] & 0xFF
            self.fresh[j] = 0
            self.pend[j] = 0
        self._hint = min(self._hint, self._dlo << 3)
        self._dlo = 1 << 30
        self._dhi = 0

    def close(self):
        self._close_file()
        for page in self._cache.values():
            self._recycle(page)
        self._cache = {}

    def size(self):
        """Bytes of pages in use on disk (committed tree and pending changes)."""
        n = 0
        for pid in range(self.npages):
            n += _bit(self.used, pid)
        return n * PAGE
