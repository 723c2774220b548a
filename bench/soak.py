# A long mixed workload against one node on the 32-bit frozen stand-in at the ESP32-WROOM heap:
# puts, gets, db writes, versions (MMBackup), audits of old versions, reconnects, from several
# owner sessions at once. Counts every failure that reached a client as anything but "busy".
"""Soak: 30 minutes (configurable) of mixed work on a node at 111,936 bytes of heap.

    python bench/soak.py [--duration 1800] [--workers 4] [--heap 111936] [--binary PATH]
                         [--ops put,get,db,version,audit,reconnect]

Each worker owns a file MiMei and a db MiMei and loops over random operations:

* put     — a staged whole-file put (1 KiB - 256 KiB, as `leither mm put`) + MFCommit,
            started again (as `mm put` does) when the node says its unsynced pieces were lost;
* get     — read cur back and compare with what was put;
* db      — Set / Incr on its db, checked with Get now and then;
* version — MMBackup: the current content becomes a numbered version (remembered; past 24,
            the oldest 8 are deleted with MMDelVers, as retention would: a MiMei holds 256);
* audit   — read a remembered version back and compare its SHA-256;
* reconnect — close the session and open a new one.

The host client retries "busy" itself (bounded); a call still busy after that is counted
as "busy, given up" (the node said so: not a failure) and the worker pauses a second, as is a
put whose pieces the node lost for want of heap four times running (it says so); anything
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

from leither.errors import LeitherError, RPCError  # noqa: E402
from leither_host import client  # noqa: E402

PUT_RESTARTS = 3  # as leither mm put: restarts of a put whose pieces the node lost
# Versions a worker keeps (and audits); older ones are deleted. Fewer than the node's retention
# keeps whatever their age (history.KEEP_LAST, 10), so its maintenance never drops one.
KEEP_VERSIONS = 8
DROP_VERSIONS = 4  # deleted at a time


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
        self.prev = b""  # the content before the last put (what a lost put leaves)
        self.versions: dict[int, str] = {}  # version number -> sha256 hex
        self.counter = 0
        self.ops = ("put", "get", "db", "db", "version", "audit", "reconnect")
        self.op = ""  # the operation under way
        self.busy_ops: collections.Counter = collections.Counter()  # still busy, by op

    async def connect(self) -> client.Session:
        if self.session is None:
            self.session = await client.connect("127.0.0.1", self.port, KEYS[0], timeout=60)
        return self.session

    async def setup(self) -> None:
        s = await self.connect()
        self.mid = await s.call("MMCreate", {"app": "soak", "mark": f"f{self.n}"})
        self.db = await s.call("MMCreate", {"app": "soak", "mark": f"d{self.n}", "type": "db"})

    async def put(self, s: client.Session) -> None:
        """A whole-file put; restarted, as `leither mm put` does, when the node says its
        unsynced pieces were lost (it ran short of heap: nothing wrong was ever committed)."""
        data = os.urandom(self.rng.randint(1024, 256 * 1024))
        for attempt in range(PUT_RESTARTS + 1):
            try:
                await self.put_once(s, data)
                break
            except RPCError as err:
                if "were lost" not in err.msg or attempt == PUT_RESTARTS:
                    raise
                self.stats["put restarted (pieces lost)"] += 1
        self.prev = self.content
        self.content = data

    async def put_once(self, s: client.Session, data: bytes) -> None:
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
        size = await s.call("MFCommit", {"mid": self.mid, "size": len(data)}, timeout=60)
        if size != len(data):
            raise AssertionError(f"commit size {size} != {len(data)}")

    async def read(self, s: client.Session, version: object = "cur") -> bytes:
        got = bytearray()
        while True:
            piece = await s.call("MFGetData", {"mid": self.mid, "offset": len(got),
                                               "length": s.max_data, "version": version},
                                 timeout=60)
            if not piece:
                return bytes(got)
            got += piece

    async def drop_versions(self, s: client.Session) -> None:
        """Delete the oldest remembered versions, as an app (or the node's retention) does:
        a MiMei holds at most 256, and its state is read into the heap whole."""
        old = sorted(self.versions)[:DROP_VERSIONS]
        try:
            await s.call("MMDelVers", {"mid": self.mid, "versions": old})
        except RPCError as err:
            if err.code == "busy":
                raise
            # Deleted, then answered busy and retried? Then none of them is listed now.
            listed = {v["n"] for v in await s.call("MMVersions", {"mid": self.mid})}
            if listed & set(old):
                raise
            self.stats["versions deleted before a busy answer"] += 1
        for n in old:
            del self.versions[n]
        self.stats["versions deleted"] += len(old)

    async def step(self) -> None:
        op = self.op = self.rng.choice(self.ops)
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
                got = await self.read(s)
                if got != self.content:
                    raise AssertionError("cur differs from the last put: " + _diff(
                        got, self.content, self.prev))
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
                if len(self.versions) > KEEP_VERSIONS:
                    await self.drop_versions(s)
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
                if isinstance(err, RPCError) and "were lost" in err.msg:
                    # The node lost the put's pieces for want of heap PUT_RESTARTS + 1 times
                    # running and said so (nothing wrong committed): a busy node, counted
                    # on its own line.
                    self.stats["busy, given up (a put's pieces lost 4 times)"] += 1
                    await asyncio.sleep(1)
                    continue
                if getattr(err, "code", None) == "busy" or " is busy: " in str(err):
                    # still busy after the retries (a call, or a session refused for heap)
                    self.stats["busy, given up"] += 1
                    self.busy_ops[self.op] += 1
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


def _diff(got: bytes, want: bytes, prev: bytes) -> str:
    """How cur differs from what was put (for the failure line)."""
    if got == prev:
        return f"it is the put before ({len(got)} bytes), as if the last one never committed"
    at = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]),
              min(len(got), len(want)))
    end = at
    while end < min(len(got), len(want)) and got[end] != want[end]:
        end += 1
    zeros = got[at:end].count(0) == end - at
    return (f"{len(got)} bytes, put {len(want)}; first difference at {at}, "
            f"{end - at} bytes differ there{' (zeros)' if zeros else ''}; "
            f"the put before was {len(prev)} bytes")


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
    per_minute: list[int] = []  # puts done in each minute (the last one may be short)

    async def report() -> None:
        puts = 0
        while time.monotonic() < until:
            await asyncio.sleep(min(60.0, until - time.monotonic()))
            per_minute.append(stats["put"] - puts)
            puts = stats["put"]
            print(f"  {int(time.monotonic() - until + args.duration)} s: {dict(stats)}, "
                  f"{len(failures)} failures, {per_minute[-1]} puts this minute", flush=True)

    reporter = asyncio.create_task(report())
    await asyncio.gather(*(w.run(until) for w in workers))
    reporter.cancel()
    busy_ops: collections.Counter = collections.Counter()
    for w in workers:
        busy_ops.update(w.busy_ops)
    facts: dict = {"heap": None, "heap_low": None, "busy": None}
    try:
        async with await client.connect("127.0.0.1", port, KEYS[0], timeout=60) as s:
            for name in facts:
                facts[name] = await s.call("GetVar", name)
    except LeitherError as err:
        failures.append(f"the node did not answer at the end: {err}")
    return {"stats": stats, "failures": failures, "per_minute": per_minute,
            "busy_ops": busy_ops, **facts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=1800, help="seconds (default 1800)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--heap", type=int, default=ESP32_HEAP)
    parser.add_argument("--binary")
    parser.add_argument("--ops", help="only these operations, e.g. put,get (default: all)")
    parser.add_argument("--maintain-ms", type=int, default=60000,
                        help="the node's retention + collection period (default 60 s; a "
                             "node's own default is an hour). The stand-in writes to the "
                             "host's disk: without collection its store grows by ~4 MB a "
                             "minute here, and with it the heap that indexes its packs "
                             "(256 bytes per 512 KiB pack), where a board's ~3 MB of flash "
                             "would be full within a minute")
    args = parser.parse_args()
    binary = find_binary(args.binary)
    node = Node(binary, args.heap, echo=True, config={"maintain_ms": args.maintain_ms})
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
          "- calls still busy after the retries:", result["stats"].get("busy, given up", 0),
          "- puts whose pieces the node lost 4 times running:",
          result["stats"].get("busy, given up (a put's pieces lost 4 times)", 0))
    print("failures that reached a client as anything but busy (must be 0):",
          len(result["failures"]))
    for line in result["failures"][:10]:
        print("   ", line)
    print("calls still busy after the retries, by operation:", dict(result["busy_ops"]))
    print("puts per minute:", result["per_minute"])
    print("MemoryError lines in the node's log:", log.count("MemoryError"))
    kinds = collections.Counter(
        ("maintenance" if "maintenance" in line else "a session (rpc)" if "rpc:" in line
         else line.strip()[:40],
         line.rsplit("allocating", 1)[-1].split("bytes")[0].strip()
         if "allocating" in line else "?")
        for line in log.splitlines() if "MemoryError" in line)
    for (where, size), count in sorted(kinds.items()):
        print(f"    {count} x {where}: allocating {size} bytes")
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
