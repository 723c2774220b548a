# Whole-node figures on the unix MicroPython (and CPython for comparison): boot to ready and
# to announced on mDNS, heap used when idle, and the smallest heap at which a node still boots
# and serves 10 concurrent clients. The unix port loads .mpy code into its heap, where a real
# board keeps it in flash (frozen or ROMFS), so the code's share is measured and shown apart.
"""Node benchmark: `python bench/node.py [--runs N]`."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from leither_host import keys  # noqa: E402
from leither_host.client import connect  # noqa: E402

from _mp import BUILD, build, micropython, run  # noqa: E402

MODULES = ("node", "api", "mimei", "store", "server", "rpc", "mdns", "dns", "crypto", "cbor",
           "identity", "led", "ids", "ed25519", "x25519", "sha512", "port.unix", "port.net")
PORT = 4870


def code_heap() -> int:
    """Heap bytes the node's modules take once imported (what freezing would move to flash):
    the runtime's modules and the services it starts (node.SERVICES, with what they import
    at module level) -- without them their code would count as the node's data."""
    imports = "\n".join(f"import leither.{m}" for m in MODULES)
    services = "for s in leither.node.SERVICES:\n    __import__('leither.' + s)"
    code = f"import gc\ngc.collect()\na=gc.mem_alloc()\n{imports}\n{services}\n" \
           f"gc.collect()\nprint(gc.mem_alloc()-a)"
    ok, out = run(code, heap="2M")
    if not ok:
        raise SystemExit(out)
    return int(out.strip().splitlines()[-1])


def start_node(root: Path, heap: str | None, interpreter: str) -> subprocess.Popen[bytes]:
    args = ["--root", str(root), "--port", str(PORT), "--addr", "127.0.0.1", "--name",
            f"bench{os.getpid() % 1000}"]
    if interpreter == "micropython":
        argv = [micropython(), "-X", f"heapsize={heap}", "-m", "leither", *args]
    else:
        argv = [sys.executable, "-m", "leither", *args]
    env = dict(os.environ, MICROPYPATH=f"{BUILD}:.frozen")
    log = open(root / "node.log", "wb")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_for(root: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 30
             ) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if text.encode() in (root / "node.log").read_bytes():
            return time.monotonic()
        if proc.poll() is not None:
            return None
        time.sleep(0.005)
    return None


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(2)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def clients(root: Path, n: int, calls: int) -> int:
    """n concurrent owner sessions, each `calls` GetVar + MFGetData calls; returns the heap free
    while all n (and the first) are still open."""
    key = keys.HostKey.generate()
    first = await connect("127.0.0.1", PORT, key)
    token = (root / "claim.token").read_text().strip()
    await first.call("Claim", {"token": token})
    mid = await first.call("MMCreate", {"app": "bench"})
    data = os.urandom(16384)
    step = first.max_data - 256  # room for the other parameters in the frame
    for offset in range(0, len(data), step):
        await first.call("MFSetData", {"mid": mid, "offset": offset,
                                       "data": data[offset:offset + step]})

    ready = 0
    all_ready, release = asyncio.Event(), asyncio.Event()

    async def one() -> None:
        nonlocal ready
        s = await connect("127.0.0.1", PORT, key)
        try:
            for i in range(calls):
                await s.call("GetVar", {"name": "uptime"})
                data = await s.call("MFGetData", {"mid": mid, "offset": (i * 4096) % 16384,
                                                  "length": 4096})
                assert len(data) == 4096
            ready += 1
            if ready == n:
                all_ready.set()
            await release.wait()  # stay connected until the heap is read
        finally:
            await s.close()

    async def read_heap() -> int:
        await all_ready.wait()
        try:
            return int(await first.call("GetVar", {"name": "heap"}) or 0)
        finally:
            release.set()

    *_, free = await asyncio.gather(*(one() for _ in range(n)), read_heap())
    await first.close()
    return free


def trial(heap_kib: int, n_clients: int = 10) -> tuple[bool, int | None]:
    root = Path(tempfile.mkdtemp(prefix="leither-bench-node-"))
    proc = start_node(root, f"{heap_kib}K", "micropython")
    try:
        if wait_for(root, " ready", proc) is None:
            return False, None
        try:
            free = asyncio.run(asyncio.wait_for(clients(root, n_clients, 10), 60))
        except Exception:  # noqa: BLE001 - any failure means this heap is too small
            return False, None
        return proc.poll() is None, free
    finally:
        stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def boot_times(runs: int, interpreter: str) -> tuple[list[float], list[float]]:
    ready, announced = [], []
    for _ in range(runs):
        root = Path(tempfile.mkdtemp(prefix="leither-bench-boot-"))
        t0 = time.monotonic()
        proc = start_node(root, "512K", interpreter)
        try:
            t_ready = wait_for(root, " ready", proc)
            t_ann = wait_for(root, "mdns: announced", proc)
            if t_ready is None or t_ann is None:
                raise SystemExit((root / "node.log").read_text())
            ready.append(t_ready - t0)
            announced.append(t_ann - t0)
        finally:
            stop(proc)
            shutil.rmtree(root, ignore_errors=True)
    return ready, announced


IDLE_PROBE = """
import gc, sys
gc.collect()
zero = gc.mem_alloc()
import asyncio
import leither.node as node
start = node.Node.start
async def report(n):
    await asyncio.sleep(3)  # announced and settled: the node as it sits idle
    gc.collect()
    print("USED", gc.mem_alloc() - zero)
    print("MODS", " ".join(sorted(sys.modules)))
    n._stopping.set()
async def started(self):
    await start(self)
    self._tasks.append(asyncio.create_task(report(self)))
node.Node.start = started
node.main(%r)
"""


def idle_heap() -> tuple[int, int]:
    """(heap the idle node uses, of which module code) on MicroPython. The real node, booted
    by leither.node.main in a process of its own, measures itself from inside after 3 s of
    idleness (no session: GetVar would need one, and the first session's own buffers would
    count); then a fresh process imports exactly the modules it had loaded, for the code."""
    root = Path(tempfile.mkdtemp(prefix="leither-bench-idle-"))
    try:
        argv = ["--root", str(root), "--port", str(PORT + 1), "--addr", "127.0.0.1",
                "--name", f"idle{os.getpid() % 1000}"]
        ok, out = run(IDLE_PROBE % (argv,), heap="512K", timeout=60)
        lines = dict(line.split(" ", 1) for line in out.splitlines()
                     if line.startswith(("USED ", "MODS ")))
        if not ok or "USED" not in lines:
            raise SystemExit("idle probe failed:\n" + out)
        used = int(lines["USED"])
        imports = "\n".join(f"import {m}" for m in lines["MODS"].split())
        ok, out = run(f"import gc\ngc.collect()\na=gc.mem_alloc()\n{imports}\n"
                      f"gc.collect()\nprint(gc.mem_alloc()-a)", heap="2M")
        if not ok:
            raise SystemExit(out)
        return used, int(out.strip().splitlines()[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10, help="boots per interpreter")
    args = parser.parse_args()
    build()
    bundle = sum(f.stat().st_size for f in (BUILD / "leither").rglob("*.mpy"))
    code = code_heap()
    print(f"firmware bundle (.mpy): {bundle / 1024:.1f} KiB; node modules once imported: "
          f"{code / 1024:.1f} KiB of heap on the unix port")
    print()
    print(f"{'interpreter':<12} {'boot->ready p50/p95 (s)':>26} "
          f"{'boot->announced p50/p95 (s)':>30}")
    for interp in ("micropython", "cpython"):
        ready, ann = boot_times(args.runs, interp)
        print(f"{interp:<12} {pct(ready, 50):>12.2f} / {pct(ready, 95):<11.2f} "
              f"{pct(ann, 50):>15.2f} / {pct(ann, 95):<12.2f}")
    print()
    used, node_code = sorted(idle_heap() for _ in range(3))[1]  # median of 3 by heap used
    print(f"MicroPython idle node (no session open, 3 s after boot): {used / 1024:.1f} KiB "
          f"of heap: module code {node_code / 1024:.1f} KiB, data "
          f"{(used - node_code) / 1024:.1f} KiB ({(used - node_code) / 1000:.1f} kB)")
    lo, hi = 128, 1024  # KiB; bisect in 16 KiB steps
    while hi - lo > 16:
        mid = (lo + hi) // 2 // 16 * 16
        ok, _ = trial(mid)
        if ok:
            hi = mid
        else:
            lo = mid
    ok, free = trial(hi)
    while not ok and hi < 1024:  # the boundary is noisy: confirm upwards
        hi += 16
        ok, free = trial(hi)
    in_use = hi * 1024 - (free or 0)
    print(f"smallest heap that boots and serves 10 concurrent clients: {hi} KiB "
          f"(code {code / 1024:.1f} KiB)")
    print(f"  heap in use with the 11 sessions open, at {hi} KiB: {in_use / 1024:.1f} KiB, "
          f"data {(in_use - node_code) / 1024:.1f} KiB ({(in_use - node_code) / 1000:.1f} kB) "
          f"beside the running node's module code ({node_code / 1024:.1f} KiB)")
    print("  (the unix port is 64-bit: every pointer in a list, dict or object is 8 bytes, where "
          "a 32-bit ESP32 has 4; byte buffers are the same size)")


if __name__ == "__main__":
    main()
