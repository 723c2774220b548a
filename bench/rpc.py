# Speed and heap of the node RPC over loopback: handshakes, round trips and bulk reads against a
# MicroPython node and a CPython node, and the smallest MicroPython heap the node runs in, idle
# and with 10 concurrent clients. Prints tables; never passes or fails.
"""Benchmark: Leither RPC over 127.0.0.1 (host client in CPython, node in either interpreter).

    python bench/rpc.py [--quick] [--no-heap] [--no-node]

Two kinds of node are measured:

* ``rpc``  — leither.server alone with a test handler ``Blob`` that returns bytes from RAM
  (isolates the protocol: handshake, sealing, framing, asyncio);
* ``node`` — the full node runtime (``-m leither --no-mdns``: store, services, RPC) serving
  a real file MiMei through MFGetData (what `leither mm get` does).

Frame limits are the ones the node uses: 8 KiB on MicroPython (so a bulk reply carries
``max_data`` ≈ 8 KB), 64 KiB on CPython. Heap figures bisect the smallest
``-X heapsize`` at which the workload still succeeds (1 KiB resolution): "idle" = the node
starts and answers one call; "10 clients" = ten concurrent sessions each doing a handshake,
20 round trips and a 64 KiB bulk read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from leither_host import client  # noqa: E402
from leither_host.keys import HostKey  # noqa: E402

import _mp  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BOARD_FRAME = 8192  # bytes: a MicroPython node's frame at 1 MB heap (memory.frame_for_heap)
HOST_FRAME = 65536

OWNER_SEED = bytes(range(33, 65))
NODE_SEED = bytes(range(1, 33))
TOKEN = "b3nchc1a1m"

RPC_NODE = r"""
import sys, gc, asyncio, binascii
from leither import server
port, max_frame = int(sys.argv[1]), int(sys.argv[2])
srv = server.Server(binascii.unhexlify(sys.argv[3]), owner_key=binascii.unhexlify(sys.argv[4]),
                    max_frame=max_frame, log=lambda m: None)
PATTERN = bytes(range(256)) * ((max_frame + 511) // 256)

def blob(caller, params):
    n = max(0, min(params["length"], params["size"] - params["offset"], srv.max_data))
    start = params["offset"] % 256
    return PATTERN[start:start + n]

def heap(caller, params):
    gc.collect()
    return [gc.mem_alloc(), gc.mem_free()] if hasattr(gc, "mem_alloc") else None

PATTERN_VIEW = memoryview(PATTERN)

def blob_into(caller, params):
    n = max(0, min(params["length"], params["size"] - params["offset"], srv.max_data))
    start = params["offset"] % 256

    def fill(view):
        view[:] = PATTERN_VIEW[start:start + n]

    return server.Bulk(n, fill)

srv.register("Blob", blob)
srv.register("BlobInto", blob_into)
srv.register("Heap", heap)

async def main():
    await srv.start("127.0.0.1", port)
    print("READY")
    if hasattr(sys.stdout, "flush"):
        sys.stdout.flush()
    while True:
        await asyncio.sleep(3600)

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A node process; `ready` once it printed its ready line."""

    def __init__(self, cmd: list[str], env: dict[str, str], marker: str, cwd: str,
                 timeout: float = 30) -> None:
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env, cwd=cwd)
        self.ready = False
        self.output: list[str] = []
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            if marker in line:
                self.ready = True
                break

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def node_env(kind: str) -> dict[str, str]:
    env = dict(os.environ)
    if kind == "micropython":
        env["MICROPYPATH"] = f".frozen:{_mp.BUILD}"
    else:
        env["PYTHONPATH"] = str(REPO / "firmware")
    return env


def interpreter(kind: str, heap_kib: int | None) -> list[str]:
    if kind == "micropython":
        return [_mp.micropython(), "-X", f"heapsize={heap_kib or 1024}K"]
    return [sys.executable]


def start_rpc_node(kind: str, port: int, work: Path, heap_kib: int | None = None) -> Proc:
    script = work / "rpc_node.py"
    script.write_text(RPC_NODE)
    frame = BOARD_FRAME if kind == "micropython" else HOST_FRAME
    owner = HostKey.from_seed(OWNER_SEED)
    cmd = interpreter(kind, heap_kib) + [str(script), str(port), str(frame), NODE_SEED.hex(),
                                         owner.public.hex()]
    return Proc(cmd, node_env(kind), "READY", str(work))


def start_full_node(kind: str, port: int, root: Path, heap_kib: int | None = None,
                    token: bool = False) -> Proc:
    cmd = interpreter(kind, heap_kib) + ["-m", "leither", "--root", str(root), "--port",
                                         str(port), "--no-mdns"]
    if token:
        cmd += ["--claim-token", TOKEN]
    return Proc(cmd, node_env(kind), " ready", str(REPO))


# ---- workloads (host side) ----------------------------------------------------------------


async def measure_speed(port: int, bulk_bytes: int, method: str, params: dict,
                        rounds: int, shakes: int) -> dict[str, float]:
    t0 = time.perf_counter()
    for _ in range(shakes):
        session = await client.connect("127.0.0.1", port, OWNER_SEED)
        await session.close()
    handshake_s = (time.perf_counter() - t0) / shakes
    session = await client.connect("127.0.0.1", port, OWNER_SEED)
    t0 = time.perf_counter()
    for i in range(rounds):
        await session.call("Ping", i)
    rtt_per_s = rounds / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    got = 0
    async for chunk in session.read_chunks(method, dict(params)):
        got += len(chunk)
    elapsed = time.perf_counter() - t0
    await session.close()
    if got != bulk_bytes:
        raise RuntimeError(f"bulk read returned {got} bytes, expected {bulk_bytes}")
    return {"handshake_ms": handshake_s * 1000, "rtt_per_s": rtt_per_s,
            "bulk_mb_s": got / elapsed / 1e6, "chunk": 0}


async def ten_clients(port: int, method: str, params: dict, expect: int) -> bool:
    async def one() -> bool:
        session = await client.connect("127.0.0.1", port, OWNER_SEED, timeout=30)
        try:
            for i in range(20):
                if await session.call("Ping", i) != i:
                    return False
            got = 0
            async for chunk in session.read_chunks(method, dict(params)):
                got += len(chunk)
            return got == expect
        finally:
            await session.close()

    try:
        results = await asyncio.wait_for(asyncio.gather(*[one() for _ in range(10)]), 120)
    except Exception:  # noqa: BLE001 - any failure at this heap size is a "no"
        return False
    return all(results)


async def one_call(port: int) -> bool:
    try:
        session = await client.connect("127.0.0.1", port, OWNER_SEED, timeout=30)
        ok = await session.call("GetVar", "id") is not None
        await session.close()
        return ok
    except Exception:  # noqa: BLE001
        return False


async def prepare_full_node(port: int, size: int) -> str:
    """Claim the node (first run) and store a file MiMei of `size` bytes; returns its ID."""
    session = await client.connect("127.0.0.1", port, OWNER_SEED, timeout=30)
    await session.call("Claim", {"token": TOKEN})
    mid = await session.call("MMCreate", {"app": "bench", "ext": "", "mark": "bench"})
    pattern = bytes(range(256)) * 256
    offset = 0
    step = session.max_data - 64
    while offset < size:
        n = min(step, size - offset)
        start = offset % 256
        await session.call("MFSetData", {"mid": mid, "offset": offset,
                                         "data": pattern[start:start + n]})
        offset += n
    await session.close()
    return str(mid)


# ---- driver -------------------------------------------------------------------------------


def speed_rows(kinds: list[str], quick: bool, full: bool) -> list[list[str]]:
    rows = []
    for kind in kinds:
        bulk = (1 if quick else 4) * 1024 * 1024 if kind == "micropython" else \
            (4 if quick else 32) * 1024 * 1024
        rounds = 200 if quick else 1000
        shakes = 5 if quick else 20
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            node = start_rpc_node(kind, port, Path(tmp))
            if not node.ready:
                raise SystemExit("rpc node did not start:\n" + "".join(node.output))
            try:
                r = asyncio.run(measure_speed(port, bulk, "Blob", {"size": bulk}, rounds, shakes))
            finally:
                node.stop()
            rows.append([kind, "rpc (Blob from RAM)", f"{r['handshake_ms']:.1f}",
                         f"{r['rtt_per_s']:.0f}", f"{r['bulk_mb_s']:.2f}",
                         f"{bulk // 1024} KiB"])
            if not full:
                continue
            root = Path(tmp) / "root"
            port = free_port()
            node = start_full_node(kind, port, root, token=True)
            if not node.ready:
                rows.append([kind, "node: did not start", "", "", "", ""])
                node.stop()
                continue
            try:
                size = (256 if kind == "micropython" else 4096) * 1024
                if quick:
                    size //= 4
                mid = asyncio.run(prepare_full_node(port, size))
                r = asyncio.run(measure_speed(port, size, "MFGetData", {"mid": mid},
                                              rounds, shakes))
            except Exception as err:  # noqa: BLE001 - report, keep benchmarking
                rows.append([kind, f"node: {type(err).__name__}: {err}"[:60], "", "", "", ""])
                continue
            finally:
                node.stop()
            rows.append([kind, "node (MFGetData, store)", f"{r['handshake_ms']:.1f}",
                         f"{r['rtt_per_s']:.0f}", f"{r['bulk_mb_s']:.2f}",
                         f"{size // 1024} KiB"])
    return rows


def bisect(works, low: int = 16, high: int = 512) -> int | None:  # type: ignore[no-untyped-def]
    """Smallest heap (KiB) for which works(heap) is True, assuming monotonic."""
    if not works(high):
        return None
    while high - low > 1:
        mid = (low + high) // 2
        if works(mid):
            high = mid
        else:
            low = mid
    return high


def heap_rows(full: bool) -> list[list[str]]:
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="leither-bench-rpc-"))
    try:
        def rpc_run(heap: int, method: str | None) -> bool:
            port = free_port()
            node = start_rpc_node("micropython", port, tmp, heap)
            try:
                if not node.ready:
                    return False
                if method:
                    ok = asyncio.run(ten_clients(port, method, {"size": 65536}, 65536))
                else:
                    ok = asyncio.run(one_call(port))
                return ok and node.alive()
            finally:
                node.stop()

        idle = bisect(lambda h: rpc_run(h, None))
        busy = bisect(lambda h: rpc_run(h, "Blob"))
        busy_bulk = bisect(lambda h: rpc_run(h, "BlobInto"))
        live = None
        port = free_port()
        node = start_rpc_node("micropython", port, tmp, 512)
        if node.ready:
            async def read_heap() -> list[int]:
                session = await client.connect("127.0.0.1", port, OWNER_SEED)
                one = (await session.call("Heap"))[0]
                more = [await client.connect("127.0.0.1", port, OWNER_SEED)
                        for _ in range(9)]
                ten = (await session.call("Heap"))[0]
                for other in more:
                    await other.close()
                await session.close()
                return [one, (ten - one) // 9]

            live = asyncio.run(read_heap())
        node.stop()
        rows.append(["rpc only, bytes results", _kib(idle), _kib(busy),
                     f"{live[0] / 1024:.1f} KiB (+{live[1]} B a session)" if live else "?"])
        rows.append(["rpc only, Bulk results", "", _kib(busy_bulk), ""])
        if full:
            root = tmp / "root"
            port = free_port()
            node = start_full_node("micropython", port, root, 1024, token=True)
            mid = None
            if node.ready:
                try:
                    mid = asyncio.run(prepare_full_node(port, 65536))
                except Exception as err:  # noqa: BLE001
                    print(f"full node setup failed: {err}", file=sys.stderr)
            node.stop()
            if mid is None:
                rows.append(["full node", "did not start", "", ""])
                return rows

            def node_run(heap: int, many: bool) -> bool:
                port = free_port()
                node = start_full_node("micropython", port, root, heap)
                try:
                    if not node.ready:
                        return False
                    if many:
                        ok = asyncio.run(ten_clients(port, "MFGetData", {"mid": mid}, 65536))
                    else:
                        ok = asyncio.run(one_call(port))
                    return ok and node.alive()
                finally:
                    node.stop()

            n_idle = bisect(lambda h: node_run(h, False))
            n_busy = bisect(lambda h: node_run(h, True))
            rows.append(["full node (-m leither)", _kib(n_idle), _kib(n_busy), ""])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _kib(value: int | None) -> str:
    return "> 512 KiB" if value is None else f"{value} KiB"


def table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    for n, row in enumerate([headers] + rows):
        print("  ".join(str(c).ljust(widths[i]) for i, c in enumerate(row)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads")
    parser.add_argument("--no-heap", action="store_true", help="skip the heap bisection")
    parser.add_argument("--no-node", action="store_true",
                        help="only the RPC server with a RAM handler, not the full node")
    args = parser.parse_args()
    _mp.build()
    print("RPC over 127.0.0.1, host client in CPython; MicroPython node at 1 MiB heap for speed")
    print(f"frames: MicroPython {BOARD_FRAME} B, CPython {HOST_FRAME} B\n")
    table(["node", "server", "handshake ms", "round trips/s", "bulk MB/s", "bulk size"],
          speed_rows(["micropython", "cpython"], args.quick, not args.no_node))
    if not args.no_heap:
        print("\nMicroPython heap: smallest -X heapsize that works (targets: idle <= 40 KB, "
              "10 clients <= 90 KB)\n")
        table(["node", "idle (1 call)", "10 concurrent clients", "live after gc, 1 session"],
              heap_rows(not args.no_node))


if __name__ == "__main__":
    main()
