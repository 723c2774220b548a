# Button pairing speed: from the second button press to both nodes paired, on simulated boards
# (real node processes, each in its own network namespace on a bridge: `leither sim --lan`),
# ESP32 boards (the 32-bit stand-in with the firmware frozen in, at the board's heap), 64-bit
# MicroPython and CPython nodes, p50 over a few runs. Target (issue 5): <= 3 s.
#
# A run: press board1, wait 1 s (the first node's window is already open, as when a person walks
# to the second device), press board2, then poll both nodes' logs for "paired with". The time
# is until the later of the two. Pairing again with the same partner replaces the record, so
# runs follow each other on the same two boards.
"""Pairing benchmark: `python bench/pairing.py [--runs N] [--interpreters esp32,cpython]`."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from leither_host import lan as lanlib
from leither_host.sim import Sim

FIRST_GAP_S = 1.0  # seconds between the two presses
TIMEOUT_S = 20.0  # a run that does not pair in this long counts as failed
POLL_S = 0.01  # log poll period: the resolution of the figure


def log_size(sim: Sim, name: str) -> int:
    return (Path(sim.board(name).root) / "node.log").stat().st_size


def paired_since(sim: Sim, name: str, offset: int) -> bool:
    with open(Path(sim.board(name).root) / "node.log", "rb") as f:
        f.seek(offset)
        return b"leither: paired with" in f.read()


def one_run(sim: Sim) -> float | None:
    offsets = {name: log_size(sim, name) for name in ("board1", "board2")}
    sim.press("board1")
    time.sleep(FIRST_GAP_S)
    start = time.monotonic()
    sim.press("board2")
    done: dict[str, float] = {}
    while len(done) < 2 and time.monotonic() - start < TIMEOUT_S:
        for name, offset in offsets.items():
            if name not in done and paired_since(sim, name, offset):
                done[name] = time.monotonic() - start
        time.sleep(POLL_S)
    return max(done.values()) if len(done) == 2 else None


def bench(interpreter: str, runs: int, use_lan: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="leither-bench-pair-") as tmp:
        sim = Sim(Path(tmp) / "sim")
        try:
            if interpreter == "esp32":
                sim.up(2, "micropython", use_lan=use_lan, kind="esp32")
            else:
                sim.up(2, interpreter, use_lan=use_lan)
            time.sleep(1.5)  # both announced on mDNS (probing + first announcement)
            times = [one_run(sim) for _ in range(runs)]
        finally:
            sim.down()
    ok = sorted(t for t in times if t is not None)
    return {"interpreter": interpreter, "runs": runs, "paired": len(ok),
            "p50": statistics.median(ok) if ok else None, "min": ok[0] if ok else None,
            "max": ok[-1] if ok else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interpreters", default="esp32,micropython,cpython")
    args = parser.parse_args()
    use_lan = os.geteuid() == 0 and lanlib.available() is None
    if not use_lan:
        print("note: not root, boards share loopback; other nodes on this machine can overlap",
              file=sys.stderr)
    rows = [bench(name, args.runs, use_lan) for name in args.interpreters.split(",")]

    def fmt(value: object) -> str:
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    print(f"pairing: second press to both paired ({'LAN namespaces' if use_lan else 'loopback'}"
          f"; target <= 3 s)")
    header = ("interpreter", "runs", "paired", "p50 s", "min s", "max s")
    print("  ".join(f"{h:>12}" for h in header))
    for row in rows:
        print("  ".join(f"{fmt(row[k]):>12}" for k in ("interpreter", "runs", "paired", "p50",
                                                       "min", "max")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
