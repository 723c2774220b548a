# DB MiMei engine benchmark (issue 3): ops/s of Set, Hset, Zadd, Lrange (and Get, and Set
# inside a transaction) on a db of 10,000 keys, under CPython and under MicroPython at 64K
# (or else the smallest heap the workload needs), plus bytes on disk per key. The smallest
# heap is bisected with the workload compiled to .mpy, as firmware ships.
# Prints a table of numbers; never pass/fail. bench/store.py may call rows() for its table.
#
#   .venv/bin/python bench/db.py [--keys N] [--ops N]
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _mp  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# The same source runs under both interpreters. Loads K keys in transactions of 500, then
# times OPS calls of each method (each one durable on return, except "Set in tx").
# Prints "RESULT name ops_per_second" and "SIZE bytes".
WORKLOAD = """
import gc
from leither.compat import ticks_ms, ticks_diff
from leither.db import DB
PATH, K, OPS = %r, %d, %d
db = DB(PATH)
for start in range(0, K, 500):
    db.Begin()
    for i in range(start, min(start + 500, K)):
        db.Set('key:%%d' %% i, 'value %%d' %% i)
    db.Commit()
def timed(name, fn):
    gc.collect()
    t = ticks_ms()
    for i in range(OPS):
        fn(i)
    ms = max(ticks_diff(ticks_ms(), t), 1)
    print('RESULT %%s %%d' %% (name, OPS * 1000 // ms))
timed('Set', lambda i: db.Set('key:%%d' %% (i * 7919 %% K), 'new %%d' %% i))
timed('Get', lambda i: db.Get('key:%%d' %% (i * 7919 %% K)))
timed('Hset', lambda i: db.Hset('hash', 'field%%d' %% i, 'v%%d' %% i))
timed('Zadd', lambda i: db.Zadd('zset', i * 31 %% 977, 'member%%d' %% i))
db.Begin()
for i in range(200):
    db.Rpush('list', 'item%%d' %% i)
db.Commit()
timed('Lrange', lambda i: db.Lrange('list', i %% 100, i %% 100 + 9))
db.Begin()
timed('Set in tx', lambda i: db.Set('tx:%%d' %% i, 'v'))
db.Commit()
print('SIZE %%d' %% db.size())
db.close()
"""

# Strings and hashes only (lists, sets and sorted sets are a module loaded on first use).
STRINGS = WORKLOAD[:WORKLOAD.index("timed('Zadd'")] + "db.close()\n"

METHODS = ("Set", "Get", "Hset", "Zadd", "Lrange", "Set in tx")


def _parse(out: str) -> dict[str, int]:
    found = {m.group(1): int(m.group(2)) for m in re.finditer(r"RESULT (.+) (\d+)", out)}
    size = re.search(r"SIZE (\d+)", out)
    if size:
        found["size"] = int(size.group(1))
    return found


def run_cpython(keys: int, ops: int) -> dict[str, int]:
    tmp = tempfile.mkdtemp(prefix="benchdb")
    try:
        env = dict(os.environ, PYTHONPATH=str(REPO / "firmware"))
        code = WORKLOAD % (tmp + "/db", keys, ops)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, check=True)
        return _parse(proc.stdout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_micropython(keys: int, ops: int, heap: str,
                    workload: str = WORKLOAD) -> tuple[bool, dict[str, int], str]:
    """The workload compiled to .mpy (as firmware ships), so its source takes no heap."""
    from leither_host.build import mpy_cross

    tmp = tempfile.mkdtemp(prefix="benchdb")
    try:
        src = Path(tmp) / "dbwork.py"
        src.write_text(workload % (tmp + "/db", keys, ops))
        subprocess.run([mpy_cross(), "-o", str(src.with_suffix(".mpy")), str(src)], check=True)
        src.unlink()
        env = dict(os.environ, MICROPYPATH=f"{tmp}:{_mp.BUILD}")
        proc = subprocess.run([_mp.micropython(), "-X", f"heapsize={heap}", "-c",
                               "import dbwork"], capture_output=True, text=True, env=env,
                              timeout=600, check=False)
        out = proc.stdout + proc.stderr
        return proc.returncode == 0, _parse(out), out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def esp32_binary() -> str | None:
    """The ESP32 stand-in (32-bit MicroPython, firmware frozen in), or None if not here."""
    from leither_host import standin

    try:
        return str(standin.build_standin("esp32").binary)
    except standin.Unavailable:
        return None


def run_esp32(binary: str, keys: int, ops: int, heap: int,
              workload: str = WORKLOAD) -> tuple[bool, dict[str, int], str]:
    """The workload on the stand-in at heap bytes (the firmware frozen, as on the board)."""
    tmp = tempfile.mkdtemp(prefix="benchdb")
    try:
        env = dict(os.environ, MICROPYPATH=".frozen")
        proc = subprocess.run([binary, "-X", f"heapsize={heap}", "-c",
                               workload % (tmp + "/db", keys, ops)], capture_output=True,
                              text=True, env=env, timeout=900, check=False)
        out = proc.stdout + proc.stderr
        return proc.returncode == 0, _parse(out), out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def esp32_min_heap(binary: str, keys: int, ops: int) -> int | None:
    """Smallest heap (KiB) at which the workload runs on the stand-in: bisected."""
    low, high = 8, 109
    if not run_esp32(binary, keys, ops, high * 1024)[0]:
        return None
    while high - low > 1:
        mid = (low + high) // 2
        if run_esp32(binary, keys, ops, mid * 1024)[0]:
            high = mid
        else:
            low = mid
    return high


def min_heap(keys: int, ops: int, workload: str = WORKLOAD) -> int | None:
    """Smallest heap (KiB) at which the workload still runs: bisected."""
    low, high = 32, 64
    while not run_micropython(keys, ops, "%dK" % high, workload)[0]:
        if high >= 512:
            return None
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        if run_micropython(keys, ops, "%dK" % mid, workload)[0]:
            high = mid
        else:
            low = mid
    return high


def rows(keys: int = 10000, ops: int = 300) -> list[tuple[str, str, list[str]]]:
    """(interpreter, heap, [ops/s per METHODS..., bytes per key]) rows for a table."""
    _mp.build()
    out = []
    cp = run_cpython(keys, ops)
    out.append(("CPython", "-", [str(cp.get(m, "?")) for m in METHODS]
                + ["%.0f" % (cp["size"] / keys)]))
    kib = min_heap(keys, ops)
    heap = "64K" if kib is not None and kib <= 64 else f"{kib}K"
    _, mp, _ = run_micropython(keys, ops, heap)
    out.append(("MicroPython", heap, [str(mp.get(m, "?")) for m in METHODS]
                + (["%.0f" % (mp["size"] / keys)] if "size" in mp else ["?"])))
    # at the smallest heap the collector runs all the time: the same at a roomy heap
    _, roomy, _ = run_micropython(keys, ops, "128K")
    out.append(("MicroPython", "128K", [str(roomy.get(m, "?")) for m in METHODS]
                + (["%.0f" % (roomy["size"] / keys)] if "size" in roomy else ["?"])))
    out.append(("MicroPython needs", f"{kib}K", ["-"] * len(METHODS) + ["-"]))
    out.append(("  strings+hashes only", f"{min_heap(keys, ops, STRINGS)}K",
                ["-"] * len(METHODS) + ["-"]))
    binary = esp32_binary()
    if binary is not None:  # the board's truth: 32-bit, code frozen, the WROOM's heap
        from leither_host.build import board_config

        board_heap = int(board_config("esp32")["heap_bytes"])
        ok, esp, _text = run_esp32(binary, keys, ops, board_heap)
        cells = ([str(esp.get(m, "?")) for m in METHODS]
                 + (["%.0f" % (esp["size"] / keys)] if "size" in esp else ["?"]))
        out.append(("ESP32 stand-in", f"{board_heap}B" if ok else "failed", cells))
        out.append(("ESP32 stand-in needs", f"{esp32_min_heap(binary, keys, ops)}K",
                    ["-"] * len(METHODS) + ["-"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=10000)
    parser.add_argument("--ops", type=int, default=300)
    args = parser.parse_args()
    print("== db ops/s with %d keys (leither.db), each op durable on return "
          "(\"Set in tx\": inside one transaction)" % args.keys)
    head = ["interpreter", "heap"] + [f"{m}/s" for m in METHODS] + ["disk B/key"]
    table = [head] + [[name, heap] + cells for name, heap, cells in rows(args.keys, args.ops)]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
