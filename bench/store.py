# MiMei storage benchmarks (issue 3): throughput against a plain file copy, MicroPython heap
# high-water mark for 10 MB, space after 10 versions with 1% changes, db ops/s, and the flash
# cost of the on-flash layout on LittleFS and FAT (RAM block devices under MicroPython).
# Prints tables of numbers; never pass/fail.
#
#   .venv/bin/python bench/store.py [--quick] [--skip-heap]
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _mp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "firmware"))

# -- workloads: the same source runs under CPython (exec) and MicroPython (-c) ----------------

# Write N bytes into a file MiMei in PIECE-byte set_data calls, back it up, read it back; then
# the same bytes through a plain file on the same disk. Prints "RESULT name seconds".
# BULK=0: every piece a durable commit, reads by get_data (new bytes each); BULK=1: an upload
# as `leither mm put` sends it (sync=False but the last piece), reads by get_into one buffer.
THROUGHPUT = """
import os, time, struct
from leither import mimei, compat
R, N, PIECE, BULK = %r, %d, %d, %d
def now():
    return compat.ticks_ms()
buf = bytearray(os.urandom(PIECE))
s = mimei.Store(R + '/store', bytes(32))
m = s.create('bench', '', 'w')
t = now()
last = N // PIECE - 1
for i in range(N // PIECE):
    for j in range(0, PIECE, 4096):
        buf[j:j + 4] = struct.pack('>I', i * 64 + j // 4096)
    s.set_data(m, i * PIECE, buf, not BULK or i == last)
t1 = now()
s.backup(m)
t2 = now()
for i in range(N // PIECE):
    if BULK:
        s.get_into(m, i * PIECE, buf)
    else:
        s.get_data(m, i * PIECE, PIECE)
t3 = now()
s.close()
f = open(R + '/plain', 'wb')
for i in range(N // PIECE):
    for j in range(0, PIECE, 4096):
        buf[j:j + 4] = struct.pack('>I', i * 64 + j // 4096)
    f.write(buf)
compat.fsync(f)
f.close()
t4 = now()
f = open(R + '/plain', 'rb')
while f.readinto(buf):
    pass
f.close()
t5 = now()
print('RESULT write', (t1 - t) / 1000)
print('RESULT backup', (t2 - t1) / 1000)
print('RESULT read', (t3 - t2) / 1000)
print('RESULT plain_write', (t4 - t3) / 1000)
print('RESULT plain_read', (t5 - t4) / 1000)
"""

# Smallest heap: store N bytes in 4 KiB writes and read them back (verified reads). BULK as in
# THROUGHPUT: 0 = durable writes and get_data, 1 = sync=False but the last, get_into.
HEAP = """
import os, binascii
from leither import mimei
s = mimei.Store(%r + binascii.hexlify(os.urandom(6)).decode(), bytes(32))
m = s.create('bench', '', 'h')
b = bytearray(os.urandom(4096))
N, BULK = %d, %d
for i in range(N):
    b[0] = i & 255
    b[1] = i >> 8
    s.set_data(m, i * 4096, b, not BULK or i == N - 1)
s.backup(m)
for i in range(N):
    if BULK:
        s.get_into(m, i * 4096, b)
    else:
        s.get_data(m, i * 4096, 4096)
print('OK')
"""
HEAP_IMPORT = """
import os, binascii
from leither import mimei
s = mimei.Store(%r + binascii.hexlify(os.urandom(6)).decode(), bytes(32))
m = s.create('bench', '', 'h')
s.set_data(m, 0, b'x')
print('OK')
"""

# The ESP32 stand-in (32-bit MicroPython, firmware frozen in): heap held after each phase of
# a 1 MB whole-file put and get as the RPC handlers run them (7,936-byte pieces: an 8 KiB
# board frame less its overhead; staged, then committed; get_into one reused buffer), and
# "OK" if it ran. PHASE stops after that phase (0 open + one write, 1 put, 2 get).
ESP32 = """
import gc, os
gc.collect()
a0 = gc.mem_alloc()
from leither import mimei, store
gc.collect()
ai = gc.mem_alloc()
class Signer:
    public = bytes(32)
    def sign(self, m):
        return bytes(64)
R, PHASE = %r, %d
pool = 0
s = mimei.Store(R + str(os.urandom(3)[0]) + str(os.urandom(3)[0]), Signer())
m = s.create('bench', '', 'esp32')
s.set_data(m, 0, b'x')
gc.collect()
a1 = gc.mem_alloc()
if PHASE >= 1:
    b = bytearray(7936)
    gc.collect()
    a1 = gc.mem_alloc()
    pos = 0
    while pos < 1048576:
        n = min(7936, 1048576 - pos)
        b[0] = pos >> 12 & 255
        s.set_data(m, pos, memoryview(b)[:n], False, True)
        pos += n
    s.commit(m)
    gc.collect()
    a2 = gc.mem_alloc()
if PHASE >= 2:
    pos = 0
    while pos < 1048576:
        n = s.get_into(m, pos, b)
        if b[0] != pos >> 12 & 255:
            raise SystemExit('bad data at %%d' %% pos)
        pos += n
    gc.collect()
    a3 = gc.mem_alloc()
    pool = len(store._pool)
    s.trim()
    gc.collect()
    a4 = gc.mem_alloc()
    print('RESULT after_get', a3 - a1)
    print('RESULT after_trim', a4 - a1)
if PHASE >= 1:
    print('RESULT after_put', a2 - a1)
print('RESULT imports', ai - a0)
print('RESULT open', a1 - ai)
print('RESULT pool', 4096 * pool)
print('RESULT free', gc.mem_free())
print('OK')
"""

# The same for a db MiMei: heap held by one open db after 300 Hset, by a second one, and after
# Store.trim() (closes idle dbs, drops the page and tree buffer pools).
ESP32_DB = """
import gc, os
from leither import mimei
class Signer:
    public = bytes(32)
    def sign(self, m):
        return bytes(64)
s = mimei.Store(%r + str(os.urandom(3)[0]) + str(os.urandom(3)[0]), Signer())
gc.collect()
a0 = gc.mem_alloc()
db = s.db(s.create('bench', '', 'db1', 'db'))
for i in range(300):
    db.Hset('h', 'f%%d' %% i, 'v' * 50)
gc.collect()
a1 = gc.mem_alloc()
db = s.db(s.create('bench', '', 'db2', 'db'))
for i in range(100):
    db.Set('k%%d' %% i, 'v' * 50)
db = None
gc.collect()
a2 = gc.mem_alloc()
s.trim()
gc.collect()
a3 = gc.mem_alloc()
print('RESULT db_one', a1 - a0)
print('RESULT db_two', a2 - a0)
print('RESULT db_trim', a3 - a0)
print('OK')
"""

# 10 versions of a 1 MB file, 1% (10486 bytes, one random run) changed between versions.
SPACE = """
import os
from leither import mimei
R = %r
s = mimei.Store(R, bytes(32))
m = s.create('bench', '', 's')
size = 1 << 20
for i in range(0, size, 8192):
    s.set_data(m, i, os.urandom(8192))
s.backup(m)
seed = 7
for v in range(9):
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    at = seed %% (size - 10486)
    s.set_data(m, at, os.urandom(10486))
    s.backup(m)
s.blocks._seal()
s.collect(min_dead=0.0)
s.close()
print('OK')
"""

# db ops/s with 10,000 keys (leither.db): load in transactions, then time each method.
DB_OPS = """
from leither import compat
from leither.db import DB
db = DB(%r)
K, OPS = 10000, %d
for b in range(0, K, 500):
    db.Begin()
    for i in range(b, b + 500):
        db.Set('k%%d' %% i, 'v%%d' %% i)
    db.Commit()
def timed(name, fn):
    t = compat.ticks_ms()
    for i in range(OPS):
        fn(i)
    dt = compat.ticks_diff(compat.ticks_ms(), t)
    print('RESULT', name, OPS * 1000 / max(dt, 1))
timed('Set', lambda i: db.Set('k%%d' %% (i * 7919 %% K), 'x%%d' %% i))
timed('Hset', lambda i: db.Hset('h', 'f%%d' %% i, 'v'))
timed('Zadd', lambda i: db.Zadd('z', i * 31 %% 977, 'm%%d' %% i))
for i in range(200):
    db.Rpush('l', 'item%%d' %% i)
timed('Lrange', lambda i: db.Lrange('l', i %% 100, i %% 100 + 9))
timed('Get', lambda i: db.Get('k%%d' %% (i * 7919 %% K)))
db.close()
"""

# Flash used on LittleFS2 / FAT (4 KiB blocks, RAM block device) by N full chunks and M small
# blocks (manifest tails, records), stored one file per block or through the BlockStore.
LAYOUT = """
import os, hashlib, binascii
from leither import store
class RAM:
    def __init__(self, bs, n):
        self.bs = bs; self.n = n; self.data = bytearray(bs * n)
    def readblocks(self, b, buf, off=0):
        a = b * self.bs + off
        buf[:] = self.data[a:a + len(buf)]
    def writeblocks(self, b, buf, off=0):
        a = b * self.bs + off
        self.data[a:a + len(buf)] = buf
    def ioctl(self, op, arg):
        if op == 4: return self.n
        if op == 5: return self.bs
        return 0
KIND, LAYOUT, NFULL, NSMALL = %r, %r, %d, %d
bd = RAM(4096, 2048)
vfs = os.VfsLfs2 if KIND == 'lfs' else os.VfsFat
vfs.mkfs(bd)
os.mount(vfs(bd), '/m')
def used():
    st = os.statvfs('/m')
    return (st[2] - st[3]) * st[0]
u0 = used()
def block(i):
    if i < NFULL:
        return hashlib.sha256(b'%%d' %% i).digest() * 128
    return hashlib.sha256(b'%%d' %% i).digest() * 10
if LAYOUT == 'files':
    for d in range(16):
        os.mkdir('/m/%%x' %% d)
    for i in range(NFULL + NSMALL):
        data = block(i)
        name = binascii.hexlify(hashlib.sha256(data).digest()).decode()
        with open('/m/%%s/%%s' %% (name[0], name), 'wb') as f:
            f.write(data)
else:
    bs = store.BlockStore('/m/blocks')
    for i in range(NFULL + NSMALL):
        bs.put(block(i))
    bs.close()
print('RESULT used', used() - u0)
print('RESULT data', NFULL * 4096 + NSMALL * 320)
"""


def results(out: str) -> dict[str, float]:
    found = {}
    for m in re.finditer(r"^RESULT (\S+) (\S+)$", out, re.MULTILINE):
        found[m.group(1)] = float(m.group(2))
    return found


def run_cpython(code: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "firmware"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=False)
    if proc.returncode:
        raise SystemExit(proc.stdout + proc.stderr)
    return results(proc.stdout)


def run_mp(code: str, heap: str = "1M") -> dict[str, float]:
    ok, out = _mp.run(code, heap=heap, timeout=900)
    if not ok:
        raise SystemExit(out)
    return results(out)


def esp32_run(binary: str, code: str, heap: int) -> tuple[bool, str]:
    env = dict(os.environ, MICROPYPATH=".frozen")
    try:
        proc = subprocess.run([binary, "-X", f"heapsize={heap}", "-c", code], env=env,
                              capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        return False, "[timed out]"
    return proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr


def esp32_min_heap(binary: str, code: str, low: int, high: int) -> int | None:
    """Smallest heapsize in bytes (512-byte steps) at which code runs on the stand-in."""
    if not esp32_run(binary, code, high)[0]:
        return None
    while high - low > 512:
        mid = (low + high) // 2
        if esp32_run(binary, code, mid)[0]:
            high = mid
        else:
            low = mid
    return high


def esp32_section(base: str) -> None:
    """Heap figures of the store on the 32-bit ESP32 stand-in (the board's truth)."""
    from leither_host import standin
    from leither_host.build import board_config

    try:
        binary = str(standin.build_standin("esp32").binary)
    except standin.Unavailable as err:
        print(f"\n== ESP32 stand-in: not available here ({err}) ==")
        return
    heap = int(board_config("esp32")["heap_bytes"])
    print(f"\n== ESP32 stand-in (32-bit, frozen), heap {heap:,} bytes: the store and a 1 MB "
          "put/get as the RPC handlers run them ==")
    root = os.path.join(base, "esp32-")
    ok, out = esp32_run(binary, ESP32 % (root, 2), heap)
    if not ok:
        print(f"1 MB put/get at {heap} bytes failed:\n{out[-2000:]}")
        return
    r = results(out)
    print(f"{'held: the modules (frozen: their dicts)':<44} {int(r['imports']):>8,} bytes")
    print(f"{'held: open store + one write':<44} {int(r['open']):>8,} bytes")
    print(f"{'held beyond that after 1 MB staged put':<44} {int(r['after_put']):>8,} bytes")
    print(f"{'held beyond that after 1 MB get':<44} {int(r['after_get']):>8,} bytes")
    print(f"{'held beyond that after Store.trim()':<44} {int(r['after_trim']):>8,} bytes")
    print(f"{'  of which pooled tree buffers (before trim)':<44} {int(r['pool']):>8,} bytes")
    print(f"{'heap free at the end':<44} {int(r['free']):>8,} bytes")
    ok, out = esp32_run(binary, ESP32_DB % (root,), heap)
    if ok:
        r = results(out)
        print(f"{'held: one db (300 Hset), modules included':<44} {int(r['db_one']):>8,} bytes")
        print(f"{'held: two dbs open':<44} {int(r['db_two']):>8,} bytes")
        print(f"{'held: after Store.trim()':<44} {int(r['db_trim']):>8,} bytes")
    else:
        print(f"db at {heap} bytes failed:\n{out[-2000:]}")
    for phase, label in ((0, "open store + one write"), (1, "... + 1 MB staged put"),
                         (2, "... + 1 MB get")):
        need = esp32_min_heap(binary, ESP32 % (root, phase), 8192, heap)
        shown = f"{need:,} bytes" if need else f"fails at {heap:,}"
        print(f"{'smallest heapsize: ' + label:<44} {shown:>14}")


def disk_bytes(path: str) -> tuple[int, int]:
    """(sum of file sizes, sum rounded up to 4 KiB per file) below path."""
    total = blocks = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            size = os.path.getsize(os.path.join(dirpath, name))
            total += size
            blocks += -(-size // 4096) * 4096
    return total, blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 MB instead of 10 MB")
    parser.add_argument("--skip-heap", action="store_true", help="no heap bisection")
    parser.add_argument("--esp32-only", action="store_true",
                        help="only the ESP32 stand-in heap figures")
    args = parser.parse_args()
    try:
        _mp.build()
    except subprocess.CalledProcessError:
        print("warning: build failed; using the existing build/unix", file=sys.stderr)
    mb = 2 if args.quick else 10
    size = mb * 1024 * 1024
    tmp = tempfile.mkdtemp(prefix="leither-bench-store-")
    if args.esp32_only:
        try:
            esp32_section(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    try:
        esp32_section(tmp)
        print(f"== throughput: {mb} MB file MiMei (set_data pieces, backup, get_data) vs plain "
              f"file on the same disk ==")
        print("mode each: every set_data a durable commit, get_data reads; bulk: sync=False "
              "but the last piece (as leither mm put), get_into one buffer")
        print(f"{'disk':<9} {'interpreter':<12} {'piece':>6} {'mode':<5} {'write MB/s':>10} "
              f"{'backup s':>9} {'read MB/s':>9} {'plain w':>8} {'plain r':>8} {'w ratio':>8} "
              f"{'r ratio':>8}")
        disks = [("disk", tmp)]
        if os.path.isdir("/dev/shm"):
            disks.append(("tmpfs", tempfile.mkdtemp(prefix="leither-bench-tp-", dir="/dev/shm")))
        for disk, base in disks:
            for name, piece, bulk in (("cpython", 65536, 0), ("cpython", 8192, 0),
                                      ("micropython", 8192, 0), ("cpython", 65536, 1),
                                      ("cpython", 8192, 1), ("micropython", 8192, 1)):
                root = os.path.join(base, "tp")
                shutil.rmtree(root, ignore_errors=True)
                os.mkdir(root)
                code = THROUGHPUT % (root, size, piece, bulk)
                r = run_cpython(code) if name == "cpython" else run_mp(code)
                w = mb / r["write"]
                rd = mb / max(r["read"], 1e-3)
                pw = mb / max(r["plain_write"], 1e-3)
                pr = mb / max(r["plain_read"], 1e-3)
                mode = "bulk" if bulk else "each"
                print(f"{disk:<9} {name:<12} {piece:>6} {mode:<5} {w:>10.2f} {r['backup']:>9.3f} "
                      f"{rd:>9.2f} {pw:>8.1f} {pr:>8.1f} {w / pw:>8.3f} {rd / pr:>8.3f}")
                shutil.rmtree(root, ignore_errors=True)
            if base != tmp:
                shutil.rmtree(base, ignore_errors=True)

        print("\n== space: 10 versions of a 1 MB file, 1% (one 10486-byte run) changed "
              "between versions, after collect ==")
        root = os.path.join(tmp, "space")
        run_cpython(SPACE % root)
        logical = (1 << 20) + 9 * 10486
        files, rounded = disk_bytes(root)
        print(f"{'on-disk bytes (files)':<36} {files:>10}  ratio {files / logical:.3f}")
        print(f"{'on-disk bytes (4 KiB per file)':<36} {rounded:>10}  ratio "
              f"{rounded / logical:.3f}")
        print(f"{'unique data (1 MiB + 9 x 10486)':<36} {logical:>10}")
        shutil.rmtree(root, ignore_errors=True)

        print("\n== flash layout: LittleFS2 / FAT, 4 KiB blocks, RAM block device "
              "(MicroPython) ==")
        print(f"{'fs':<4} {'layout':<18} {'full':>5} {'small':>6} {'used':>9} {'data':>9} "
              f"{'ratio':>6}")
        for kind in ("lfs", "fat"):
            for layout in ("files", "packs"):
                for nfull, nsmall in ((1000, 0), (1000, 200)):
                    r = run_mp(LAYOUT % (kind, layout, nfull, nsmall), heap="12M")
                    label = "one file per block" if layout == "files" else "BlockStore packs"
                    print(f"{kind:<4} {label:<18} {nfull:>5} {nsmall:>6} {int(r['used']):>9} "
                          f"{int(r['data']):>9} {r['used'] / r['data']:>6.3f}")

        print("\n== db ops/s with 10,000 keys (leither.db; MicroPython at the first heap that "
              "works of 64K, 96K, 128K, 256K) ==")
        for name, heaps in (("cpython", [None]), ("micropython", ["64K", "96K", "128K", "256K"])):
            for heap in heaps:
                root = os.path.join(tmp, f"db-{name}-{heap}")
                os.mkdir(root)
                code = DB_OPS % (root, 300)
                try:
                    r = run_cpython(code) if heap is None else run_mp(code, heap=heap)
                except SystemExit as err:
                    print(f"{name:<12} heap {heap or '-':<5} failed: "
                          f"{str(err).strip().splitlines()[-1]}")
                    continue
                line = "  ".join(f"{k} {v:,.0f}" for k, v in r.items())
                print(f"{name:<12} heap {heap or '-':<5} {line}")
                break

        if not args.skip_heap:
            print(f"\n== MicroPython heap: smallest -X heapsize storing and reading back "
                  f"{mb} MB (4 KiB writes, backup, verified reads) ==")
            # RAM disk when there is one: the heap does not depend on the disk, time does.
            shm = tempfile.mkdtemp(prefix="leither-bench-heap-",
                                   dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
            root = os.path.join(shm, "heap")
            floor = _mp.min_heap(HEAP_IMPORT % root, low=16, high=128)
            shutil.rmtree(root, ignore_errors=True)
            n = size // 4096
            print(f"{'open store + one write':<36} {floor} KiB")
            for bulk, mode in ((0, "each"), (1, "bulk")):
                t = time.time()
                need = _mp.min_heap(HEAP % (root, n, bulk), low=16, high=128, timeout=900)
                print(f"{'store + read back ' + str(mb) + ' MB, ' + mode:<36} {need} KiB "
                      f"(bisected in {time.time() - t:.0f} s)")
                if floor and need:
                    print(f"{'  working set beyond the line above':<36} {need - floor} KiB")
            shutil.rmtree(shm, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
