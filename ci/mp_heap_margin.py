# How close each firmware test module runs to the MicroPython heap it declares.
#
# A module that passes at its declared heap by a few hundred bytes fails on another machine: the
# unix port's heap layout shifts with the length of the paths in argv and MICROPYPATH, and
# fragmentation decides whether a 512-byte list still fits. This finds, per module, the smallest
# heap (in 4K steps) at which every test in it passes, and flags modules whose declared heap
# leaves less than MARGIN of headroom. At the declared heap it also tries SHIFTS layouts.
#
#   .venv/bin/python ci/mp_heap_margin.py [test_module ...]     (after `make build`)
from __future__ import annotations

import ast
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import conftest  # noqa: E402

MARGIN = 0.20  # declared heap must be at least 20% above the smallest passing heap
STEP = 4  # KiB


def declared(path: Path) -> tuple[int, int]:
    heap, timeout = conftest.DEFAULT_HEAP, 300
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == "MP_HEAP":
                    heap = str(node.value.value)
                if isinstance(target, ast.Name) and target.id == "MP_TIMEOUT":
                    timeout = int(node.value.value)
    return int(heap.rstrip("K")), timeout


def passes(module: str, kib: int, timeout: int, shift: int = 0) -> bool:
    """Does every test of module pass at kib? shift > 0 lengthens each MICROPYPATH entry by
    2*shift bytes ("./" prefixes): the same run with the heap's objects laid out differently."""
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join(p if p == ".frozen" else "./" * shift + p  # .frozen: a marker
                                  for p in conftest.mp_path(conftest.BUILD / "tests").split(":"))
    cmd = [conftest.micropython_binary(), "-X", f"heapsize={kib}K", "tests/mp_run.py", module]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                             cwd=str(REPO)).stdout
    except subprocess.TimeoutExpired:
        out = "[timed out]"
    ok = "MPDONE" in out and " FAIL " not in out
    if not ok and kib == declared(conftest.FIRMWARE_TESTS / f"{module}.py")[0]:
        fails = [ln for ln in out.splitlines() if " FAIL " in ln] or out.splitlines()[-3:]
        print(f"{module} at {kib}K, layout {shift}: " + " | ".join(fails)[:600], flush=True)
    return ok


SHIFTS = 6  # layouts tried at the declared heap


def smallest(path: Path) -> tuple[str, int, int | None]:
    heap, timeout = declared(path)
    module = path.stem
    if not all(passes(module, heap, timeout, shift) for shift in range(SHIFTS)):
        return module, heap, None
    lo, hi = 0, heap // STEP  # hi passes; lo*STEP assumed to fail
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(module, mid * STEP, timeout):
            hi = mid
        else:
            lo = mid
    return module, heap, hi * STEP


def main() -> int:
    conftest.build_for_micropython()
    names = sys.argv[1:]
    paths = sorted(conftest.FIRMWARE_TESTS.glob("test_*.py"))
    if names:
        paths = [p for p in paths if p.stem in names]
    bad = 0
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for module, heap, low in pool.map(smallest, paths):
            if low is None:
                print(f"{module:32} declared {heap:4}K  FAILS at its declared heap in some layout")
                bad += 1
                continue
            room = (heap - low) / heap
            flag = "" if room >= MARGIN else "  <-- under %d%% headroom" % (MARGIN * 100)
            bad += bool(flag)
            print(f"{module:32} declared {heap:4}K  passes from {low:4}K  "
                  f"headroom {room:4.0%}{flag}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
