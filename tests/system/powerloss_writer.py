# The victim of the power-loss test (tests/system/test_powerloss.py): under MicroPython or
# CPython it opens a MiMei store and works on it without pause -- file writes and truncates,
# backups, deletes of versions, db transactions, block collection, whole-file puts staged
# beside cur and committed in one step ("S"; one in five abandoned half way) -- until it is
# killed. Half the file writes are sync=False ("U"): not durable until a later sync point.
# Before each operation it prints what the store may look like if it dies during it ("B ..."),
# after it what the store must look like from now on ("C ..."), one flushed line each.
#
#   powerloss_writer.py ROOT SEED
import hashlib
import sys

from leither import mimei
from leither.db import DB


def hexdigest(data):
    import binascii

    return binascii.hexlify(hashlib.sha256(data).digest()).decode()


def say(line):
    sys.stdout.write(line + "\n")
    flush = getattr(sys.stdout, "flush", None)
    if flush:
        flush()


class Rand:
    """xorshift32: the same sequence on both interpreters."""

    def __init__(self, seed):
        self.x = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1

    def next(self):
        x = self.x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.x = x
        return x

    def below(self, n):
        return self.next() % n

    def bytes(self, n):
        out = bytearray(n)
        for i in range(0, n, 4):
            v = self.next()
            out[i:i + 4] = bytes((v & 255, (v >> 8) & 255, (v >> 16) & 255, v >> 24))[:n - i]
        return out


SIGNER_SEED = bytes(range(32))
MAX_SIZE = 14000  # bytes: keeps the model and the checker's reads small


def main():
    root = sys.argv[1]
    rnd = Rand(int(sys.argv[2]))
    s = mimei.Store(root, SIGNER_SEED, db_class=DB)
    fid = s.create("powerloss", "bin", "file")
    did = s.create("powerloss", "", "db", "db")
    size = s.size(fid)
    model = bytearray(s.get_data(fid, 0, size)) if size else bytearray()
    say("READY {} {}".format(fid, did or "-"))
    seen = s.db(did).Get("tx")
    tx = int(seen) if seen is not None else 0
    while True:
        op = rnd.below(100)
        if op < 36:
            # Half the writes are sync=False ("U": durable only at a later sync point), and
            # half of those append at the end (an upload, streamed by the store's appender).
            unsynced = rnd.below(2) == 0
            offset = rnd.below(MAX_SIZE - 3000)
            if unsynced and rnd.below(2) and len(model) < MAX_SIZE - 3000:
                offset = len(model)
            data = rnd.bytes(1 + rnd.below(3000))
            after = bytearray(model)
            if offset > len(after):
                after.extend(bytes(offset - len(after)))
            after[offset:offset + len(data)] = data
            tag = "U " if unsynced else "W "
            say("B " + tag + hexdigest(after))
            s.set_data(fid, offset, data, sync=not unsynced)
            model = after
            say("C " + tag + hexdigest(model))
        elif op < 45:
            # A whole-file put: staged in pieces (not durable), committed in one step.
            data = rnd.bytes(1 + rnd.below(MAX_SIZE - 1))
            abandon = rnd.below(5) == 0
            say("B S " + hexdigest(data))
            pos = 0
            while pos < len(data) and not (abandon and pos > len(data) // 2):
                n = 1 + rnd.below(4000)
                s.set_data(fid, pos, memoryview(data)[pos:pos + n], sync=False, stage=True)
                pos += n
            if abandon:
                say("C S -")
            else:
                s.commit(fid)
                model = data
                say("C S " + hexdigest(model))
        elif op < 52:
            new_size = rnd.below(MAX_SIZE)
            after = model[:new_size] + bytes(max(0, new_size - len(model)))
            say("B W " + hexdigest(after))
            s.truncate(fid, new_size)
            model = after
            say("C W " + hexdigest(model))
        elif op < 65:
            say("B V")
            rec = s.backup(fid)
            say("C V %d %s" % (rec["n"], hexdigest(model)))
        elif op < 72:
            vers = s.versions(fid)
            if len(vers) > 6:
                n = vers[rnd.below(len(vers) - 2)]["n"]
                say("B D %d" % n)
                s.del_versions(fid, [n])
                say("C D %d" % n)
        elif op < 80:
            say("B G")
            s.blocks.sync()
            if rnd.below(2):
                s.collect(min_dead=0.1)
            else:
                # In steps, as a node's maintenance runs, with durable writes between them
                # (each its own B W / C W): nothing they reference may be swept.
                for _ in s.collect_steps(min_dead=0.1):
                    if rnd.below(3) == 0:
                        offset = rnd.below(MAX_SIZE - 3000)
                        data = rnd.bytes(1 + rnd.below(3000))
                        after = bytearray(model)
                        if offset > len(after):
                            after.extend(bytes(offset - len(after)))
                        after[offset:offset + len(data)] = data
                        say("B W " + hexdigest(after))
                        s.set_data(fid, offset, data)
                        model = after
                        say("C W " + hexdigest(model))
            say("C G " + hexdigest(model))  # collect commits pending writes first
        else:
            db = s.db(did)
            tx += 1
            n = rnd.below(200)
            say("B T %d %d" % (tx, n))  # the checker knows what each transaction wrote
            db.Begin()
            db.Hset("h", "tx%d" % tx, "a" * n)
            db.Zadd("z", tx, "m%d" % tx)
            db.Set("k%d" % (tx % 50), "v%d" % tx)
            db.Set("tx", str(tx))
            db.Commit()
            say("C T %d %d" % (tx, n))
            if op > 96:
                say("B DV")
                rec = s.backup(did)
                say("C DV %d" % rec["n"])


main()
