# Writer for test_db_powerloss.py: runs numbered units of db work on a DB MiMei until killed.
# Runs unchanged under MicroPython and CPython: `db_writer.py PATH`.
# A unit is a transaction of many writes or, every third unit, one multi-field write outside
# any transaction; either way meta.u holds the number of the last unit in the db. The writer
# prints "R <u>" once open and "C <u>" after each unit's commit returned.
# `db_writer.py PATH restore FILE...` instead restores the db from the export files in turn,
# forever, printing "C <file index>" after each restore returned.
import sys


def unit_ops(u):
    """The writes of unit u as (method, args); the first is "Begin" for a transaction."""
    if u % 3 == 0:
        return [("Hmset", ["meta", {"u": str(u), "x%d" % (u % 5): "y" * (u % 50)}])]
    ops = [("Begin", []), ("Hset", ["meta", "u", str(u)]),
           ("Set", ["k%d" % u, "v" * (u % 200)])]
    if u > 6:
        ops.append(("Del", ["k%d" % (u - 6)]))
    ops.append(("Rpush", ["l", str(u)]))
    if u % 4 == 0:
        ops.append(("Lpop", ["l"]))
    ops.append(("Zadd", ["z", u % 11, "m%d" % u]))
    if u > 9:
        ops.append(("Zrem", ["z", "m%d" % (u - 9)]))
    ops.append(("Sadd", ["s", "m%d" % (u % 40)]))
    if u % 10 == 1:  # a big transaction: more pages than the cache holds, so pages spill
        for j in range(80):
            ops.append(("Hset", ["big%d" % (u % 3), "f%d" % j, "u%d" % u]))
    ops.append(("IncrBy", ["cnt", u]))
    ops.append(("Commit", []))
    return ops


def current(db):
    u = db.Hget("meta", "u")
    return 0 if u is None else int(u)


def apply(db, u):
    for name, args in unit_ops(u):
        db.call(name, args)


def say(line):
    sys.stdout.write(line + "\n")
    if hasattr(sys.stdout, "flush"):
        sys.stdout.flush()


def pieces(name):
    with open(name, "rb") as f:
        while True:
            piece = f.read(512)
            if not piece:
                return
            yield piece


def restore_forever(path, names):
    from leither.db import DB

    say("R 0")
    k = 0
    while True:
        DB.restore(path, pieces(names[k % len(names)]))
        say("C %d" % (k % len(names)))
        k += 1


def main():
    from leither.db import DB

    if len(sys.argv) > 2 and sys.argv[2] == "restore":
        restore_forever(sys.argv[1], sys.argv[3:])
        return
    db = DB(sys.argv[1])
    u = current(db)
    say("R %d" % u)
    while u < 1000000:
        u += 1
        apply(db, u)
        say("C %d" % u)


if __name__ == "__main__":
    main()
