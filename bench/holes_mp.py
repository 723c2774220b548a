# Runs ON the 32-bit stand-in (MicroPython, firmware frozen in): bench/holes.py starts it.
# The soak's operations at the storage layer, one after the other, in a heap cut into holes
# of HOLE bytes: any fresh allocation bigger than about twice that fails, so each operation
# that still needs one is named, with the size it asked for and where.
import gc
import sys

from leither import mimei, store

from testutil import fragment  # tests/firmware/testutil.py, copied beside it by bench/holes.py

HOLE = int(sys.argv[1])
ROOT = sys.argv[2]
ROUNDS = int(sys.argv[3])
PIECE = 3840  # bytes of an upload's piece (a 4 KiB frame less the request's own bytes)
SIZES = (3 * PIECE + 100, 40 * PIECE + 7, 64 * PIECE)  # puts: the last one's root > 1 KiB


s = mimei.Store(ROOT, bytes(range(32)))
store.reserve()
files = [s.create("holes", mark="f%d" % i) for i in range(2)]
db = s.create("holes", mark="d", type="db")
piece = bytearray(PIECE)
view = memoryview(bytearray(4096))  # the reply frame a get is read into
counter = [0]
failed = {}


def put(size):
    """Two staged uploads, their pieces interleaved (two workers), then both committed."""
    for off in range(0, size, PIECE):
        n = min(PIECE, size - off)
        for mid in files:
            s.set_data(mid, off, memoryview(piece)[:n], False, True)
    for mid in files:
        s.commit(mid, size)


def get(version="cur"):
    for mid in files:
        off = 0
        while True:
            got = s.get_into(mid, off, view, version)
            if not got:
                break
            off += got


def dbop():
    d = s.db(db)
    counter[0] += 1
    d.call("Set", ["k%d" % (counter[0] % 50), "v" * 128])
    d.call("Incr", ["n"])
    d.call("Get", ["k1"])


def version():
    for mid in files:
        s.backup(mid)
        vers = s.versions(mid)
        if len(vers) > 8:
            s.del_versions(mid, [v["n"] for v in vers[:4]])


def audit():
    for mid in files:
        vers = s.versions(mid)
        if vers:
            get(vers[0]["n"])


def maintain():
    """A maintenance run (retention, mark, sweep) with an upload's pieces between its steps,
    as a node serves its sessions meanwhile (each piece holds the upload's pool buffers)."""
    off = 0
    for _ in s.maintain_steps(keep_last=10):
        if off < SIZES[-1]:
            s.set_data(files[0], off, piece, False, True)
            off += PIECE


OPS = [("put %d" % n, put, (n,)) for n in SIZES] + [
    ("get", get, ()), ("db", dbop, ()), ("version", version, ()), ("audit", audit, ()),
    ("maintain", maintain, ())]

for _name, fn, args in OPS:  # once each first: what a node allocates once, at its first use
    fn(*args)
keep = fragment(HOLE)
print("fragmented: holes of %d bytes, %d bytes free" % (HOLE, gc.mem_free()))
for r in range(ROUNDS):
    for name, fn, args in OPS:
        try:
            fn(*args)
        except MemoryError as err:
            failed[name] = failed.get(name, 0) + 1
            if failed[name] == 1:
                print("FAILED", name, "round", r, ":", err)
                sys.print_exception(err)
        except Exception as err:  # another error: name it, the next round goes on
            print("ERROR", name, "round", r, ":", repr(err))
for name, _fn, _args in OPS:
    print("RESULT %s %d/%d failed" % (name, failed.get(name, 0), ROUNDS))
del keep
s.close()
