# The owner's view of a node under attack: how often and how fast the owner connects (handshake
# + one call) while bounded attackers from tests/system/attackers.py hold the node, on a
# MicroPython and a CPython node over loopback. Prints a table; never passes or fails.
"""Benchmark: owner connect success and latency under each attack (issue 10 rows 1, 2, 4).

    python bench/attack.py [--tries N] [--kinds micropython,cpython] [--heap 256K]

Attacks: none; 12 stalled handshakes (hello, read message 2, stall); 24 slow guests (a frame
header, then one byte a second); a junk flood (200 sockets of garbage and silence); wrong claim
tokens every 5 ms from 127.0.0.2 (the owner then claims). "ok" counts owner connects that took
at most 2 s; latencies are of those, in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "system"))
sys.path.insert(0, str(REPO / "tests" / "firmware"))

from attackers import (  # noqa: E402
    Tally,
    owner_connects,
    slow_guests,
    stalled_handshakes,
    wrong_claims,
)
from test_rpc_system import GUEST, NODE_SEED, OWNER, _flood, start_node  # noqa: E402

from leither_host import client  # noqa: E402


async def _under(port: int, node_id: str, attack: str, tries: int) -> tuple[int, list[float], str]:
    stop = asyncio.Event()
    tally = Tally()
    task: asyncio.Task[Any] | None = None
    if attack == "12 stalled handshakes":
        task = asyncio.create_task(stalled_handshakes("127.0.0.1", port, 12, stop, tally))
    elif attack == "24 slow guests":
        task = asyncio.create_task(slow_guests("127.0.0.1", port, 24, stop, tally))
    elif attack == "junk flood (200)":
        task = asyncio.create_task(_flood(port, 200, stop))
    try:
        await asyncio.sleep(2 if task else 0)  # let the attack take the node's slots
        ok, lat = await owner_connects("127.0.0.1", port, OWNER, node_id, tries)
    finally:
        stop.set()
        if task is not None:
            await task
    return ok, lat, f"{tally.opened} opened, {tally.held} held" if tally.opened else ""


async def _claim_under_guessing(port: int) -> tuple[int, list[float], str]:
    stop = asyncio.Event()
    tally = Tally()
    task = asyncio.create_task(wrong_claims("127.0.0.1", port, stop, tally, local="127.0.0.2"))
    try:
        await asyncio.sleep(1)
        started = time.monotonic()
        async with await client.connect("127.0.0.1", port, GUEST) as s:
            await s.call("Claim", {"token": "b3nchc1a1m"})
        took = time.monotonic() - started
    finally:
        stop.set()
        await task
    return int(took <= 2), [took], f"{tally.held} wrong tokens answered"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--kinds", default="micropython,cpython")
    parser.add_argument("--heap", default="256K", help="MicroPython node heap")
    args = parser.parse_args()
    attacks = ["none", "12 stalled handshakes", "24 slow guests", "junk flood (200)"]
    rows = []
    for kind in args.kinds.split(","):
        for attack in attacks + ["wrong claim tokens"]:
            with tempfile.TemporaryDirectory() as tmp:
                claim = attack == "wrong claim tokens"
                node = start_node(kind, Path(tmp), NODE_SEED,
                                  owner=None if claim else OWNER.public,
                                  token="b3nchc1a1m" if claim else None, max_conns=12,
                                  heap=args.heap)
                try:
                    if claim:
                        ok, lat, note = asyncio.run(_claim_under_guessing(node.port))
                        tries = 1
                    else:
                        ok, lat, note = asyncio.run(_under(node.port, node.id, attack,
                                                           args.tries))
                        tries = args.tries
                finally:
                    node.proc.kill()
                    node.proc.wait()
            ms = sorted(x * 1000 for x in lat)
            rows.append((kind, attack, f"{ok}/{tries}",
                         f"{statistics.median(ms):.0f}" if ms else "-",
                         f"{ms[-1]:.0f}" if ms else "-", note))
            print(*rows[-1], sep="  |  ", flush=True)
    print()
    head = ("node", "attack", "owner ok ≤2 s", "median ms", "worst ms", "attacker")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for row in [head] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
