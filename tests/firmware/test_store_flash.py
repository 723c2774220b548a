# The store on the file systems of boards: LittleFS2 and FAT with 4 KiB blocks, on a RAM block
# device (MicroPython only: CPython has no VfsLfs2/VfsFat). Versions survive an unmount, a full
# flash is a clear StoreError that damages nothing committed, and FAT's rename (which cannot
# replace a file) still commits atomically.
import os
import sys

from leither import mimei, store
from leither.errors import StoreError

from testutil import raises, skip

# The flash itself lives in the heap: 96 blocks of 4 KiB = 384 KiB.
# Passes from 556K (its code and ours sit in the unix port's heap); 20% headroom
# so a shifted heap layout cannot fail it (ci/mp_heap_margin.py).
MP_HEAP = "704K"

SEED = bytes(range(32))
_BLOCKS = 96


def check(cond, msg="check failed"):
    """An assert that survives mpy-cross -O1, which drops assert statements."""
    if not cond:
        raise AssertionError(msg)


class RAMDisk:
    """A block device over a bytearray (the protocol os.VfsLfs2/VfsFat mount)."""

    def __init__(self, block_size, count):
        self.block_size = block_size
        self.count = count
        self.data = bytearray(block_size * count)

    def readblocks(self, block, buf, offset=0):
        a = block * self.block_size + offset
        buf[:] = self.data[a:a + len(buf)]

    def writeblocks(self, block, buf, offset=0):
        a = block * self.block_size + offset
        self.data[a:a + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.count
        if op == 5:  # block size
            return self.block_size
        return 0


def _mount(kind, disk, fresh):
    vfs = os.VfsLfs2 if kind == "lfs" else os.VfsFat
    if fresh:
        vfs.mkfs(disk)
    os.mount(vfs(disk), "/flash")


def _cycle(kind, reserve=mimei.RESERVE):
    if sys.implementation.name != "micropython":
        skip("needs MicroPython's VfsLfs2/VfsFat")
    disk = RAMDisk(4096, _BLOCKS)
    _mount(kind, disk, True)
    try:
        s = mimei.Store("/flash/leither", SEED, reserve=reserve)
        mid = s.create("app", "", kind)
        s.set_data(mid, 0, b"first version " * 300)
        s.backup(mid)
        s.set_data(mid, 100, b"second")
        s.backup(mid)
        s.close()
        os.umount("/flash")
        _mount(kind, disk, False)
        s = mimei.Store("/flash/leither", SEED, reserve=reserve)
        check(s.verify(mid, 1)["n"] == 1 and s.verify(mid, 2)["n"] == 2)
        check(s.get_data(mid, 100, 6) == b"second")
        # Fill the flash: a clear error, then everything committed still reads back.
        other = s.create("app", "", "filler")
        err = None
        for i in range(200):
            try:
                s.set_data(other, i * 4096, os.urandom(4096))
            except StoreError as e:
                err = e
                break
        check(err is not None and "full" in str(err), f"no disk-full error: {err!r}")
        size = s.size(other)
        check(s.get_data(mid, 100, 6, 2) == b"second")
        s.verify(mid, 1)
        s.close()
        os.umount("/flash")
        _mount(kind, disk, False)
        s = mimei.Store("/flash/leither", SEED, reserve=reserve)
        s.verify(mid, 2)
        check(s.size(other) == size)
        # Freeing space makes the store writable again. Without a reserve the file system may
        # be too full even to seal or compact: that fails cleanly and loses nothing.
        s.remove(other)
        try:
            s.blocks._seal()
            s.collect(min_dead=0.0)
            s.set_data(mid, 0, b"after")
            check(s.get_data(mid, 0, 5) == b"after")
        except StoreError:
            check(reserve == 0, "collection failed on a full flash despite the reserve")
        s.verify(mid, 1)
        s.verify(mid, 2)
        s.close()
        os.umount("/flash")
        _mount(kind, disk, False)
        s = mimei.Store("/flash/leither", SEED, reserve=reserve)
        s.verify(mid, 1)
        s.verify(mid, 2)
        s.close()
    finally:
        os.umount("/flash")


def test_littlefs_versions_full_flash_and_remount():
    _cycle("lfs")


def test_fat_versions_full_flash_and_remount():
    _cycle("fat")


def test_littlefs_without_reserve_real_enospc():
    # No space kept back: the file system itself fails the write (ENOSPC) mid-pack.
    _cycle("lfs", reserve=0)


def test_fat_rename_cannot_replace_but_commit_is_atomic():
    if sys.implementation.name != "micropython":
        skip("needs MicroPython's VfsFat")
    disk = RAMDisk(4096, 32)
    _mount("fat", disk, True)
    try:
        store.write_file("/flash/state", b"old")
        # A crash after FAT's remove-then-rename removed the old file: the .tmp is complete.
        with open("/flash/state.tmp", "wb") as f:
            f.write(b"new")
        os.remove("/flash/state")
        store.recover_file("/flash/state")
        with open("/flash/state", "rb") as f:
            check(f.read() == b"new")
        # A crash while writing the .tmp (the old file still there): the .tmp is dropped.
        with open("/flash/state.tmp", "wb") as f:
            f.write(b"tor")
        store.recover_file("/flash/state")
        with open("/flash/state", "rb") as f:
            check(f.read() == b"new")
        raises(OSError, os.stat, "/flash/state.tmp")
    finally:
        os.umount("/flash")
