# Heap figures of the whole node on the 32-bit MicroPython stand-in for an ESP32-WROOM (firmware
# frozen in, -X heapsize=111936): idle, 4 owners putting and getting 1 MB at once, 10 sessions
# at once. Prints a table; never passes or fails (issue 9 targets beside each figure).
"""Benchmark: the node's heap on the 32-bit frozen stand-in (ESP32-WROOM budget).

    python bench/heap32.py [--binary PATH] [--heap 111936]
                           [--size 1000000] [--owners 4] [--sessions 10] [--min-heap]

The binary is the 32-bit unix MicroPython with firmware/leither frozen in (`leither build
--board esp32`'s stand-in, built or brought up to date first; --binary for another). Workloads:

* idle      — node booted, claimed, one session open: heap in use = heapsize - free heap
              (GetVar "heap"), the session's frame buffers included (made for the first
              connection, given back after the last); the settled idle node with no session
              (target ≤ 40 KiB) is bench/node.py's figure;
* N owners  — N sessions each put (as `leither mm put`: staged pieces, MFCommit) and read back
              SIZE bytes into its own MiMei, all at once: success, byte-identical, time, the
              "busy" answers the host client retried, free-heap low-water mark (GetVar
              "heap_low"); target: 4 × 1 MB all succeed at 111,936;
* sessions  — M sessions at once, each GetVar + ten 4 KiB reads; target: 10 served.

--min-heap bisects (4 KiB steps) the smallest heapsize at which each workload passes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from leither.errors import LeitherError
from leither_host import client
from leither_host.keys import HostKey

REPO = Path(__file__).resolve().parents[1]
TOKEN = "h3apc1a1m"
ESP32_HEAP = 111936  # bytes: an ESP32-WROOM-32's MicroPython heap after its one growth
KEYS = [HostKey.from_seed(bytes([i + 1]) * 32) for i in range(16)]


def find_binary(given: str | None) -> str:
    """The binary given, else the ESP32 stand-in built from this checkout's firmware (rebuilt
    when it changed: a binary left from an older build would measure older code)."""
    if given:
        return given
    from _mp import standin

    return standin()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """The node (`-m leither`) on the stand-in at a given heap, unclaimed with TOKEN."""

    def __init__(self, binary: str, heap: int, echo: bool = False,
                 config: dict | None = None) -> None:
        self.echo = echo  # print the node's failure lines as they come
        self.root = tempfile.mkdtemp(prefix="heap32-")
        if config:  # the node's config.json (e.g. maintain_ms)
            with open(os.path.join(self.root, "config.json"), "w") as f:
                json.dump(config, f)
        self.port = free_port()
        env = dict(os.environ, MICROPYPATH=".frozen")
        self.proc = subprocess.Popen(
            [binary, "-X", f"heapsize={heap}", "-m", "leither", "--root", self.root, "--port",
             str(self.port), "--addr", "127.0.0.1", "--no-mdns", "--claim-token", TOKEN],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            cwd=self.root)
        self.lines: list[str] = []
        self.ready = False
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if " ready" in line:
                self.ready = True
                break
        # Keep reading the node's output: a full pipe would block the node at its next print.
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if self.echo and ("failed" in line or "Error" in line or "Traceback" in line):
                print("  node:", line.rstrip()[:200], flush=True)

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        shutil.rmtree(self.root, ignore_errors=True)
        return "".join(self.lines)


async def _claim(port: int) -> client.Session:
    s = await client.connect("127.0.0.1", port, KEYS[0], timeout=30)
    await s.call("Claim", {"token": TOKEN})
    return s


async def _put_get(port: int, size: int, seed: int) -> tuple[bool, str]:
    """One owner session: a staged put of `size` bytes, commit, read back, compare."""
    data = os.urandom(size)
    s = await client.connect("127.0.0.1", port, KEYS[0], timeout=30)
    try:
        mid = await s.call("MMCreate", {"app": "heap32", "mark": str(seed)})
        step = max(1024, s.max_data - 256)
        for off in range(0, size, step):
            await s.call("MFSetData", {"mid": mid, "offset": off, "data": data[off:off + step],
                                       "sync": False, "stage": True}, timeout=60)
        await s.call("MFCommit", {"mid": mid}, timeout=60)
        got = bytearray()
        while len(got) < size:
            piece = await s.call("MFGetData", {"mid": mid, "offset": len(got),
                                               "length": s.max_data}, timeout=60)
            if not piece:
                break
            got += piece
        if bytes(got) != data:
            return False, f"read back {len(got)} bytes, not identical"
        return True, ""
    except LeitherError as err:
        return False, str(err)
    finally:
        await s.close()


async def _sessions(port: int, count: int) -> tuple[int, str]:
    owner = await client.connect("127.0.0.1", port, KEYS[0], timeout=30)
    mid = await owner.call("MMCreate", {"app": "heap32", "mark": "reads"})
    content = os.urandom(4096)
    half = len(content) // 2  # a 4 KiB frame carries less than 4 KiB of data
    await owner.call("MFSetData", {"mid": mid, "data": content[:half]})
    await owner.call("MFSetData", {"mid": mid, "offset": half, "data": content[half:]})
    await owner.close()

    async def read_4k(s: client.Session) -> bytes:
        got = b""
        while len(got) < len(content):  # one 4 KiB read: as many calls as the frame needs
            got += await s.call("MFGetData", {"mid": mid, "offset": len(got),
                                              "length": len(content) - len(got)})
        return got

    async def one() -> str:
        try:
            s = await client.connect("127.0.0.1", port, KEYS[0], timeout=30)
        except LeitherError as err:
            return str(err)
        try:
            await s.call("GetVar", "id")
            for _ in range(10):
                if await read_4k(s) != content:
                    return "read back differs"
            return ""
        except LeitherError as err:
            return str(err)
        finally:
            await s.close()

    errors = await asyncio.gather(*(one() for _ in range(count)))
    bad = [e for e in errors if e]
    return count - len(bad), bad[0] if bad else ""


async def _facts(s: client.Session) -> tuple[int | None, int | None, int]:
    heap = await s.call("GetVar", "heap")
    low = await s.call("GetVar", "heap_low")
    busy = await s.call("GetVar", "busy")
    return heap, low, busy


def run_workload(binary: str, heap: int, workload: str, args: argparse.Namespace) -> dict:
    node = Node(binary, heap)
    result: dict = {"heap": heap, "ok": False, "note": ""}
    try:
        if not node.ready:
            result["note"] = "did not boot: " + "".join(node.lines[-3:]).strip()
            return result

        async def go() -> None:
            admin = await _claim(node.port)
            try:
                free, _, _ = await _facts(admin)
                result["idle_used"] = heap - free if free is not None else None
                started = time.monotonic()
                if workload == "idle":
                    result["ok"] = free is not None
                elif workload == "owners":
                    outcomes = await asyncio.gather(*(_put_get(node.port, args.size, i)
                                                      for i in range(args.owners)))
                    good = sum(1 for ok, _ in outcomes if ok)
                    result["ok"] = good == args.owners
                    result["note"] = f"{good}/{args.owners} byte-identical" + "".join(
                        f"; {why}" for ok, why in outcomes if not ok)[:200]
                else:
                    served, why = await _sessions(node.port, args.sessions)
                    result["ok"] = served == args.sessions
                    result["note"] = f"{served}/{args.sessions} served" + (f"; {why}"
                                                                          if why else "")
                result["seconds"] = time.monotonic() - started
                free, low, busy = await _facts(admin)
                result.update(free_after=free, low=low, busy=busy)
            finally:
                await admin.close()

        try:
            asyncio.run(asyncio.wait_for(go(), 600))
        except (LeitherError, OSError, asyncio.TimeoutError) as err:
            result["note"] = f"failed: {err}"
    finally:
        log = node.stop()
        result["memory_errors"] = log.count("MemoryError")
        alive = "Traceback" not in log
        if not alive:
            result["note"] += " (node traceback)"
    return result


def min_heap(binary: str, workload: str, args: argparse.Namespace) -> int | None:
    lo, hi = 48 * 1024, 512 * 1024
    if not run_workload(binary, hi, workload, args)["ok"]:
        return None
    while hi - lo > 4096:
        mid = (lo + hi) // 2 // 1024 * 1024
        if run_workload(binary, mid, workload, args)["ok"]:
            hi = mid
        else:
            lo = mid
    return hi


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary")
    parser.add_argument("--heap", type=int, default=ESP32_HEAP)
    parser.add_argument("--size", type=int, default=1000000)
    parser.add_argument("--owners", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--min-heap", action="store_true", help="bisect the smallest heap")
    parser.add_argument("--workloads", default="idle,owners,sessions")
    args = parser.parse_args()
    binary = find_binary(args.binary)
    head = ("workload", "ok", "in use, 1 session", "free after", "low-water", "busy retried",
            "MemoryError in log", "s", "note", "smallest heap")
    rows = []
    names = {"idle": "claimed, one session open",
             "owners": f"{args.owners} owners × {args.size:,} B put+get",
             "sessions": f"{args.sessions} sessions, GetVar + 4 KiB reads"}
    for workload in args.workloads.split(","):
        r = run_workload(binary, args.heap, workload, args)
        smallest = min_heap(binary, workload, args) if args.min_heap else None
        used = r.get("idle_used")
        rows.append((names[workload], "yes" if r["ok"] else "NO",
                     f"{used:,} B ({used / 1024:.1f} KiB)" if used is not None else "-",
                     f"{r.get('free_after'):,}" if r.get("free_after") is not None else "-",
                     f"{r.get('low'):,}" if r.get("low") is not None else "-",
                     str(r.get("busy", "-")), str(r.get("memory_errors", "-")),
                     f"{r.get('seconds', 0):.1f}", r["note"],
                     f"{smallest:,}" if smallest else ("-" if not args.min_heap else "none")))
        print(" | ".join(rows[-1]), flush=True)
    print(f"\n32-bit frozen stand-in {binary}, heapsize {args.heap:,} bytes")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for row in [head] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
