# Whole-node figures. First the board's own: the ESP32 stand-in (32-bit MicroPython with the
# firmware frozen in, leither_host.standin) at the ESP32-WROOM's heap -- bundle and ROMFS image
# size, boot to ready and to announced, heap in use when idle, the smallest heap that boots and
# announces, 10 concurrent sessions (GetVar + 4 KiB reads) and 4 owners each putting and
# getting 1 MB. Then the 64-bit unix MicroPython and CPython as before: the unix port loads
# .mpy code into its heap, where a real board keeps it in flash, so its code share is shown.
"""Node benchmark: `python bench/node.py [--runs N] [--esp32-only]`."""

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
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from leither_host import keys  # noqa: E402
from leither_host.client import connect  # noqa: E402

from _mp import BUILD, build, env_for, esp32_heap, heap_arg, micropython, run, standin  # noqa: E402

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


def start_node(root: Path, heap: str | int | None, interpreter: str
               ) -> subprocess.Popen[bytes]:
    """interpreter: "micropython" (64-bit unix), "esp32" (the stand-in) or "cpython"."""
    args = ["--root", str(root), "--port", str(PORT), "--addr", "127.0.0.1", "--name",
            f"bench{os.getpid() % 1000}"]
    if interpreter in ("micropython", "esp32"):
        binary = standin() if interpreter == "esp32" else micropython()
        argv = [binary, "-X", f"heapsize={heap_arg(heap or '512K')}", "-m", "leither", *args]
    else:
        argv = [sys.executable, "-m", "leither", *args]
    env = env_for("esp32" if interpreter == "esp32" else "unix")
    log = open(root / "node.log", "wb")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)


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
    blob = os.urandom(16384)
    step = first.max_data - 256  # room for the other parameters in the frame
    for offset in range(0, len(blob), step):
        await first.call("MFSetData", {"mid": mid, "offset": offset,
                                       "data": blob[offset:offset + step]})

    ready = 0
    all_ready, release = asyncio.Event(), asyncio.Event()

    async def one() -> None:
        nonlocal ready
        s = await connect("127.0.0.1", PORT, key)
        try:
            for i in range(calls):
                await s.call("GetVar", {"name": "uptime"})
                # 4 KiB, in as many calls as the node's frame needs (a board's frame may be
                # 4 KiB itself, which leaves less than that for data).
                offset = (i * 4096) % 16384
                data = b""
                while len(data) < 4096:
                    got = await s.call("MFGetData", {"mid": mid, "offset": offset + len(data),
                                                     "length": min(4096 - len(data),
                                                                   s.max_data - 64)})
                    if not got:
                        break
                    data += got
                assert data == blob[offset:offset + 4096]
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


def trial(heap_kib: int, n_clients: int = 10, interpreter: str = "micropython"
          ) -> tuple[bool, int | None]:
    root = Path(tempfile.mkdtemp(prefix="leither-bench-node-"))
    proc = start_node(root, heap_kib, interpreter)
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


def boot_times(runs: int, interpreter: str, heap: str | int = "512K"
               ) -> tuple[list[float], list[float]]:
    ready, announced = [], []
    for _ in range(runs):
        root = Path(tempfile.mkdtemp(prefix="leither-bench-boot-"))
        t0 = time.monotonic()
        proc = start_node(root, heap, interpreter)
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


# The node, booted by leither.node.main, watching its own heap: each time it has settled idle
# -- mDNS announced, no connection for SETTLE_S -- it collects and prints "IDLE <bytes in use>
# <modules loaded>" (bytes since just before asyncio and the node were imported: what the
# node holds, the frozen modules' function and class objects included). With "once" it stops
# after the first report and prints its modules.
IDLE_WATCH = """
import gc, sys
gc.collect()
zero = gc.mem_alloc()
import asyncio
import leither.node as node
start = node.Node.start
async def watch(n):
    if n.mdns is not None:
        await n.mdns.announced.wait()
    quiet = 0
    told = False
    seen = n.server.stats["accepted"]
    while True:
        await asyncio.sleep(0.25)
        if n.server.connections or n.server.stats["accepted"] != seen:
            seen = n.server.stats["accepted"]
            quiet = 0
            told = False
            continue
        quiet += 1
        if quiet == %(settle)d and not told:
            told = True
            gc.collect()
            print("IDLE", gc.mem_alloc() - zero, len(sys.modules))
            if %(once)s:
                print("MODS", " ".join(sorted(sys.modules)))
                n._stopping.set()
async def started(self):
    await start(self)
    self._tasks.append(asyncio.create_task(watch(self)))
node.Node.start = started
node.main(%(argv)r)
"""
SETTLE_S = 2  # seconds with no connection (after mDNS announced) before an idle figure


def idle_code(argv: list[str], once: bool) -> str:
    return IDLE_WATCH % {"settle": SETTLE_S * 4, "once": once, "argv": argv}


def idle_used(heap: str | int, board: str) -> int:
    """Heap in use by the settled idle node (announced, no session, after a collection),
    measured from inside."""
    root = Path(tempfile.mkdtemp(prefix="leither-bench-idle-"))
    try:
        argv = ["--root", str(root), "--port", str(PORT + 1), "--addr", "127.0.0.1",
                "--name", f"idle{os.getpid() % 1000}"]
        ok, out = run(idle_code(argv, True), heap=heap, timeout=60, board=board)
        used = [line.split()[1] for line in out.splitlines() if line.startswith("IDLE ")]
        if not ok or not used:
            raise SystemExit("idle probe failed:\n" + out)
        return int(used[0])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def idle_heap() -> tuple[int, int]:
    """(heap the idle node uses, of which module code) on MicroPython. The real node, booted
    by leither.node.main in a process of its own, measures itself from inside once settled
    idle (no session: GetVar would need one, and the first session's own buffers would
    count); then a fresh process imports exactly the modules it had loaded, for the code."""
    root = Path(tempfile.mkdtemp(prefix="leither-bench-idle-"))
    try:
        argv = ["--root", str(root), "--port", str(PORT + 1), "--addr", "127.0.0.1",
                "--name", f"idle{os.getpid() % 1000}"]
        ok, out = run(idle_code(argv, True), heap="512K", timeout=60)
        lines = dict(line.split(" ", 1) for line in out.splitlines()
                     if line.startswith(("IDLE ", "MODS ")))
        if not ok or "IDLE" not in lines:
            raise SystemExit("idle probe failed:\n" + out)
        used = int(lines["IDLE"].split()[0])
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
    parser.add_argument("--esp32-only", action="store_true", help="skip the 64-bit figures")
    args = parser.parse_args()
    esp32_report(args.runs)
    if args.esp32_only:
        return
    print()
    print("-- 64-bit unix MicroPython (code in the heap) and CPython --")
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
    print(f"MicroPython idle node (announced, no session, settled): {used / 1024:.1f} KiB "
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


# -- the ESP32 stand-in ------------------------------------------------------------------------

BIG = 1024 * 1024  # bytes each owner puts and gets back


async def owners(root: Path, n: int) -> tuple[int, int | None]:
    """n concurrent owner sessions, each putting BIG bytes into its own MiMei and reading them
    back; returns (sessions whose bytes came back identical, the node's heap low-water mark)."""
    key = keys.HostKey.generate()
    first = await connect("127.0.0.1", PORT, key)
    token = (root / "claim.token").read_text().strip()
    await first.call("Claim", {"token": token})

    async def one(i: int) -> bool:
        s = await connect("127.0.0.1", PORT, key)
        try:
            data = os.urandom(BIG)
            mid = await s.call("MMCreate", {"app": "bench", "ext": f"o{i}"})
            step = s.max_data - 256  # room for the other parameters in the frame
            for offset in range(0, BIG, step):
                await s.call("MFSetData", {"mid": mid, "offset": offset,
                                           "data": data[offset:offset + step]})
            back = bytearray()
            while len(back) < BIG:
                got = await s.call("MFGetData", {"mid": mid, "offset": len(back),
                                                 "length": min(step, BIG - len(back))})
                if not got:
                    break
                back += got
            return bytes(back) == data
        finally:
            await s.close()

    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    try:
        low = await first.call("GetVar", {"name": "heap_low"})
    except Exception:  # noqa: BLE001 - older firmware: no low-water mark
        low = None
    await first.close()
    return sum(1 for r in results if r is True), low if isinstance(low, int) else None


def owners_trial(heap: int, n: int = 4) -> tuple[bool, int | None, float]:
    """(all n owners' MB came back identical and the node lived, low-water mark, seconds)."""
    root = Path(tempfile.mkdtemp(prefix="leither-bench-owners-"))
    proc = start_node(root, heap, "esp32")
    t0 = time.monotonic()
    try:
        if wait_for(root, " ready", proc) is None:
            return False, None, 0.0
        try:
            good, low = asyncio.run(asyncio.wait_for(owners(root, n), 600))
        except Exception:  # noqa: BLE001 - any failure means this heap is too small
            return False, None, time.monotonic() - t0
        return good == n and proc.poll() is None, low, time.monotonic() - t0
    finally:
        stop(proc)
        shutil.rmtree(root, ignore_errors=True)


async def put_get(port: int, key: keys.HostKey, size: int, mark: str) -> None:
    """One owner session: `size` bytes put as `leither mm put` does (staged pieces, MFCommit)
    into a fresh MiMei and read back."""
    s = await connect("127.0.0.1", port, key)
    try:
        data = os.urandom(size)
        mid = await s.call("MMCreate", {"app": "bench", "mark": mark})
        step = s.max_data - 256  # room for the other parameters in the frame
        for offset in range(0, size, step):
            await s.call("MFSetData", {"mid": mid, "offset": offset, "stage": True,
                                       "sync": False, "data": data[offset:offset + step]})
        await s.call("MFCommit", {"mid": mid, "size": size})
        back = bytearray()
        while len(back) < size:
            back += await s.call("MFGetData", {"mid": mid, "offset": len(back),
                                               "length": min(step, size - len(back))})
        if bytes(back) != data:
            raise SystemExit("1 MB put/get: read back differs")
    finally:
        await s.close()


async def db_work(port: int, key: keys.HostKey, n: int) -> None:
    """One owner session: a db MiMei with n keys and a hash of n fields, read back."""
    s = await connect("127.0.0.1", port, key)
    try:
        mid = await s.call("MMCreate", {"app": "bench", "mark": "db", "type": "db"})
        for i in range(n):
            await s.call("Set", {"mid": mid, "args": [f"k{i}", "v" * 40]})
            await s.call("Hset", {"mid": mid, "args": ["h", f"f{i}", str(i)]})
        if await s.call("Hget", {"mid": mid, "args": ["h", f"f{n - 1}"]}) != str(n - 1):
            raise SystemExit("db work: read back differs")
    finally:
        await s.close()


def idle_after_work(heap: int) -> list[tuple[str, int]]:
    """The settled idle node's heap in use (from inside, see IDLE_WATCH) after boot and after
    each piece of work: a claim, 1 MB put and read back twice, then db writes."""
    root = Path(tempfile.mkdtemp(prefix="leither-bench-work-"))
    port = PORT + 2
    argv = ["--root", str(root), "--port", str(port), "--addr", "127.0.0.1", "--name",
            f"work{os.getpid() % 1000}"]
    log = open(root / "node.log", "wb")
    proc = subprocess.Popen([standin(), "-X", f"heapsize={heap}", "-c", idle_code(argv, False)],
                            stdout=log, stderr=subprocess.STDOUT, env=env_for("esp32"),
                            cwd=root)
    figures: list[tuple[str, int]] = []

    def settled(what: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            seen = [line for line in (root / "node.log").read_text().splitlines()
                    if line.startswith("IDLE ")]
            if len(seen) > len(figures):
                figures.append((what, int(seen[len(figures)].split()[1])))
                return
            time.sleep(0.05)
        raise SystemExit(f"no settled idle figure {what}:\n" + (root / "node.log").read_text())

    async def claim(key: keys.HostKey) -> None:
        s = await connect("127.0.0.1", port, key)
        await s.call("Claim", {"token": (root / "claim.token").read_text().strip()})
        await s.close()

    try:
        key = keys.HostKey.generate()
        settled("booted, announced")
        asyncio.run(claim(key))
        settled("claimed (one session, closed)")
        asyncio.run(put_get(port, key, BIG, "a"))
        settled("after 1 MB put + get")
        asyncio.run(put_get(port, key, BIG, "b"))
        settled("after a second 1 MB put + get")
        asyncio.run(db_work(port, key, 100))
        settled("after 200 db writes (the db engine is unloaded when idle)")
        return figures
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def boots_and_announces(heap: int) -> bool:
    root = Path(tempfile.mkdtemp(prefix="leither-bench-small-"))
    proc = start_node(root, heap, "esp32")
    try:
        return wait_for(root, "mdns: announced", proc, timeout=20) is not None and \
            proc.poll() is None
    finally:
        stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def smallest(works: Callable[[int], bool], low: int, high: int, step: int) -> int | None:
    """Smallest heap in bytes (step resolution) for which works() holds, if high works."""
    if not works(high):
        return None
    while high - low > step:
        mid = (low + high) // 2 // step * step
        if works(mid):
            high = mid
        else:
            low = mid
    return high


def esp32_report(runs: int) -> None:
    from leither_host import romfs
    from leither_host.build import build as build_bundle

    heap = esp32_heap()
    standin()  # built before anything is timed
    print(f"-- ESP32 stand-in: 32-bit MicroPython, firmware frozen in, heap {heap} bytes --")
    bundle = build_bundle("esp32")
    image = romfs.build_image("esp32")
    limit, part = romfs.bundle_limit("esp32"), romfs.partition_bytes("esp32")
    print(f"bundle (.mpy, -O level of board.json): {bundle.size} bytes = "
          f"{bundle.size / 1024:.1f} KiB (budget {limit}); ROMFS image {image.size} bytes "
          f"(partition {part}): {'fits' if part and image.size <= part else 'does NOT fit'}")
    full = build_bundle("esp32", parts=["all"])
    print(f"  {image.parts_line()}; with every part (a frozen image's modules): {full.size} "
          f"bytes = {full.size / 1024:.1f} KiB")
    ready, ann = boot_times(runs, "esp32", heap)
    print(f"boot -> ready p50/p95: {pct(ready, 50):.2f} / {pct(ready, 95):.2f} s; "
          f"boot -> announced p50/p95: {pct(ann, 50):.2f} / {pct(ann, 95):.2f} s (target 2 s)")
    used = sorted(idle_used(heap, "esp32") for _ in range(3))[1]
    print(f"idle node (announced, no session for {SETTLE_S} s, after a collection): {used} bytes "
          f"= {used / 1024:.1f} KiB of heap in use (target 40 KiB; median of 3 boots)")
    for what, figure in idle_after_work(heap):
        print(f"  settled idle, {what}: {figure} bytes = {figure / 1024:.1f} KiB")
    small = smallest(boots_and_announces, 16 * 1024, heap, 1024)
    print(f"smallest heap that boots and announces: "
          f"{small if small else 'over ' + str(heap)} bytes")
    ok, free = trial(heap, 10, "esp32")
    print(f"10 concurrent sessions (GetVar + 4 KiB reads) at {heap}: "
          f"{'served' if ok else 'FAILED'}" +
          (f", heap in use with 11 sessions open {heap - free} bytes" if ok and free else ""))
    small10 = smallest(lambda h: trial(h, 10, "esp32")[0], 32 * 1024, 4 * heap, 4096)
    print(f"  smallest heap serving them: {small10 if small10 else 'over ' + str(4 * heap)}")
    ok, low, secs = owners_trial(heap)
    print(f"4 owners x 1 MB put + get at {heap}: {'all identical' if ok else 'FAILED'} "
          f"({secs:.1f} s" + (f", heap low-water {low} bytes free" if low is not None else "") +
          ")")
    small4 = smallest(lambda h: owners_trial(h)[0], 64 * 1024, 4 * heap, 16384)
    print(f"  smallest heap passing it: {small4 if small4 else 'over ' + str(4 * heap)}")


if __name__ == "__main__":
    main()
