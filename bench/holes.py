# Which of the soak's operations still need a fresh block of heap bigger than ~2 holes, on the
# 32-bit frozen stand-in: bench/holes_mp.py runs there in a heap cut into holes.
"""Heap holes probe: run the soak's storage operations in a fragmented heap.

    python bench/holes.py [--hole 512] [--rounds 5] [--heap 111936] [--binary PATH]

On the stand-in (firmware frozen in, ESP32 heap) a store is filled and each operation run
once (what a node allocates once at first use), then the free heap is cut into holes of
--hole bytes (blocks of that size allocated until none fits, every other one freed): a fresh
allocation bigger than about twice that fails. Each operation -- two staged uploads with
their pieces interleaved, gets into a reply-sized buffer, db Set/Incr/Get, versions with
deletions, audits of old versions, a maintenance run (retention, mark, sweep) -- runs
--rounds times; printed: each one's MemoryError count, the first one's size and traceback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heap32 import ESP32_HEAP, find_binary  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hole", type=int, default=512, help="bytes per hole (default 512)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--heap", type=int, default=ESP32_HEAP)
    parser.add_argument("--binary")
    args = parser.parse_args()
    binary = os.path.abspath(find_binary(args.binary))
    root = tempfile.mkdtemp(prefix="holes-")
    script = Path(__file__).resolve().parent / "holes_mp.py"
    testutil = Path(__file__).resolve().parent.parent / "tests" / "firmware" / "testutil.py"
    try:
        shutil.copy(script, root)
        shutil.copy(testutil, root)  # holes_mp.py's fragment(), as the firmware tests cut holes
        proc = subprocess.run(
            [binary, "-X", f"heapsize={args.heap}", "holes_mp.py", str(args.hole),
             root + "/store", str(args.rounds)],
            cwd=root, env=dict(os.environ, MICROPYPATH=".frozen:."), capture_output=True,
            text=True, timeout=1800)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(proc.stdout + proc.stderr, end="")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
