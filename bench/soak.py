# A long mixed workload against one node on the 32-bit frozen stand-in at the ESP32-WROOM heap:
# puts, gets, db writes, versions (MMBackup), audits of old versions, reconnects, from several
# owner sessions at once. Counts every failure that reached a client as anything but "busy".
"""Soak: 30 minutes (configurable) of mixed work on a node at 111,936 bytes of heap.

    python bench/soak.py [--duration 1800] [--workers 4] [--heap 111936] [--binary PATH]
                         [--ops put,get,db,version,audit,reconnect]

Each worker owns a file MiMei and a db MiMei and loops over random operations:

* put     — a staged whole-file put (1 KiB - 256 KiB, as `leither mm put`) + MFCommit;
* get     — read cur back and compare with what was put;
* db      — Set / Incr on its db, checked with Get now and then;
* version — MMBackup: the current content becomes a numbered version (remembered);
* audit   — read a remembered version back and compare its SHA-256;
* reconnect — close the session and open a new one.

The host client retries "busy" itself (bounded); a call still busy after that is counted
as "busy, given up" (the node said so: not a failure) and the worker pauses a second; anything
else that reaches a worker — another error code, a dropped connection, a wrong byte — is a
failure. Printed at the end: operations
by kind, "busy" answers the node gave (GetVar busy), failures that were not busy (must be 0),
MemoryError lines in the node's log, the free-heap low-water mark (GetVar heap_low) and the
node's heap in use at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heap32 import ESP32_HEAP, KEYS, TOKEN, Node, find_binary  # noqa: E402

from leither.errors import LeitherError  # noqa: E402
from leither_host import client  # noqa: E402


class Worker:
    def __init__(self, n: int, port: int, stats: collections.Counter, failures: list[str]
                 ) -> None:
        self.n = n
        self.port = port
        self.stats = stats
        self.failures = failures
        self.rng = random.Random(n)
        self.session: client.Session | None = None
        self.mid = ""
        self.db = ""
        self.content = b""
        self.versions: dict[int, str] = {}  # version number -> sha256 hex
        self.counter = 0
        self.ops = ("put", "get", "db", "db", "version", "audit", "reconnect")

    async def connect(self) -> client.Session:
        if self.session is None:
            self.session = await client.connect("127.0.0.1", self.port, KEYS[0], timeout=60)
        return self.session

    async def setup(self) -> None:
        s = await self.connect()
        self.mid = await s.call("MMCreate", {"app": "soak", "mark": f"f{self.n}"})
        self.db = await s.call("MMCreate", {"app": "soak", "mark": f"d{self.n}", "type": "db"})

    async def put(self, s: client.Session) -> None:
        data = os.urandom(self.rng.randint(1024, 256 * 1024))
        step = max(1024, s.max_data - 256)
        try:
            for off in range(0, len(data), step):
                await s.call("MFSetData", {"mid": self.mid, "offset": off,
                                           "data": data[off:off + step], "sync": False,
                                           "stage": True}, timeout=60)
        except LeitherError:
            try:  # a client that gives up drops its stage (cur stays as it was)
                await s.call("MFCommit", {"mid": self.mid, "discard": True})
            except LeitherError:
                pass
            raise
        size = await s.call("MFCommit", {"mid": self.mid}, timeout=60)
        if size != len(data):
            raise AssertionError(f"commit size {size} != {len(data)}")
        self.content = data

    async def read(self, s: client.Session, version: object = "cur") -> bytes:
        got = bytearray()
        while True:
            piece = await s.call("MFGetData", {"mid": self.mid, "offset": len(got),
                                               "length": s.max_data, "version": version},
                                 timeout=60)
            if not piece:
                return bytes(got)
            got += piece

    async def step(self) -> None:
        op = self.rng.choice(self.ops)
        if op == "reconnect":
            if self.session is not None:
                await self.session.close()
                self.session = None
            await self.connect()
        else:
            s = await self.connect()
            if op == "put":
                await self.put(s)
            elif op == "get":
                if await self.read(s) != self.content:
                    raise AssertionError("cur differs from the last put")
            elif op == "db":
                await s.call("Set", {"mid": self.db, "args": [f"k{self.counter % 50}",
                                                              os.urandom(64).hex()]})
                try:
                    total = await s.call("Incr", {"mid": self.db, "args": ["n"]})
                except LeitherError as err:
                    if getattr(err, "code", None) == "busy":  # not done: say so, no count
                        raise
                    raise AssertionError(f"Incr failed: {err}") from None
                self.counter += 1
                if total != self.counter:  # lost, or done twice through a retried busy
                    raise AssertionError(f"Incr gave {total}, expected {self.counter}")
            elif op == "version":
                rec = await s.call("MMBackup", {"mid": self.mid}, timeout=60)
                self.versions[int(rec["n"])] = hashlib.sha256(self.content).hexdigest()
            elif op == "audit" and self.versions:
                n = self.rng.choice(sorted(self.versions))
                got = await self.read(s, n)
                if hashlib.sha256(got).hexdigest() != self.versions[n]:
                    raise AssertionError(f"version {n} differs from what was committed")
        self.stats[op] += 1

    async def run(self, until: float) -> None:
        await self.setup()
        while time.monotonic() < until:
            try:
                await self.step()
            except (LeitherError, AssertionError, OSError, asyncio.TimeoutError) as err:
                if getattr(err, "code", None) == "busy" or " is busy: " in str(err):
                    # still busy after the retries (a call, or a session refused for heap)
                    self.stats["busy, given up"] += 1
                    await asyncio.sleep(1)
                    continue
                self.failures.append(f"worker {self.n}: {type(err).__name__}: {err}"[:200])
                if len(self.failures) <= 10:  # as they happen, for a long run
                    print("  failure:", self.failures[-1], flush=True)
                if self.session is not None:
                    await self.session.close()
                    self.session = None
        if self.session is not None:
            await self.session.close()


async def soak(port: int, args: argparse.Namespace) -> dict:
    s = await client.connect("127.0.0.1", port, KEYS[0], timeout=60)
    await s.call("Claim", {"token": TOKEN})
    await s.close()
    stats: collections.Counter = collections.Counter()
    failures: list[str] = []
    until = time.monotonic() + args.duration
    workers = [Worker(i, port, stats, failures) for i in range(args.workers)]
    if args.ops:
        for w in workers:
            w.ops = tuple(args.ops.split(","))
    last = time.monotonic()

    async def report() -> None:
        nonlocal last
        while time.monotonic() < until:
            await asyncio.sleep(min(60, args.duration / 5 + 1))
            print(f"  {int(time.monotonic() - until + args.duration)} s: {dict(stats)}, "
                  f"{len(failures)} failures", flush=True)

    reporter = asyncio.create_task(report())
    await asyncio.gather(*(w.run(until) for w in workers))
    reporter.cancel()
    facts: dict = {"heap": None, "heap_low": None, "busy": None}
    try:
        async with await client.connect("127.0.0.1", port, KEYS[0], timeout=60) as s:
            for name in facts:
                facts[name] = await s.call("GetVar", name)
    except LeitherError as err:
        failures.append(f"the node did not answer at the end: {err}")
    return {"stats": stats, "failures": failures, **facts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=1800, help="seconds (default 1800)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--heap", type=int, default=ESP32_HEAP)
    parser.add_argument("--binary")
    parser.add_argument("--ops", help="only these operations, e.g. put,get (default: all)")
    args = parser.parse_args()
    binary = find_binary(args.binary)
    node = Node(binary, args.heap, echo=True)
    if not node.ready:
        print("node did not boot:", "".join(node.lines))
        return 1
    started = time.monotonic()
    try:
        result = asyncio.run(soak(node.port, args))
    finally:
        log = node.stop()
    elapsed = time.monotonic() - started
    heap = result.get("heap")
    print(f"\nsoak: {elapsed:.0f} s, {args.workers} workers, heapsize {args.heap:,} "
          f"(32-bit frozen stand-in {binary})")
    print("operations:", dict(result["stats"]))
    print("busy answers by the node (retried by the client):", result["busy"],
          "- calls still busy after the retries:", result["stats"].get("busy, given up", 0))
    print("failures that reached a client as anything but busy (must be 0):",
          len(result["failures"]))
    for line in result["failures"][:10]:
        print("   ", line)
    print("MemoryError lines in the node's log:", log.count("MemoryError"))
    if result["failures"]:
        lines = log.splitlines(True)
        worth = [i for i, line in enumerate(lines) if "MemoryError" in line
                 or ("rpc:" in line and "refused" not in line)]
        print("the node's log, MemoryError and drops (refusals left out):")
        for i in worth[:15]:
            print("".join(lines[max(0, i - 4):i + 1]), end="")
    print("free heap low-water mark:", f"{result['heap_low']:,} bytes"
          if result["heap_low"] is not None else "-")
    if heap is not None:
        print(f"heap in use at the end: {args.heap - heap:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
