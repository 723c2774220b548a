# Pi Zero figures for the CPython node: boot to ready, resident memory idle and while 4
# clients each write and read back 256 KiB over and over (a Pi Zero has 512 MB).
#   native    the node on this machine's CPython (64-bit: an upper bound of a 32-bit Pi's
#             memory, pointers and small objects being twice the size here)
#   emulated  the node as the Pi bundle installs it on Debian armel (tests/system/pirootfs.py),
#             under qemu-arm: 32-bit CPython with Debian's own pycryptodome, as on a Pi. Its
#             memory is read from the host's smaps of the qemu process, counting only the
#             guest's 4 GiB address space (qemu's translation cache and heap lie outside it);
#             its boot time is a relative figure only: emulation speed is not a Pi's.
# Root for the emulated part; without it only the native figures print.
"""Pi Zero bench: `python bench/pizero.py [--clients 4] [--seconds 10] [--native-only]`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "system"))
from leither_host import keys  # noqa: E402
from leither_host.client import connect  # noqa: E402

BLOB = 256 * 1024  # bytes each client writes and reads back per round
GUEST_SPACE_KIB = 4 * 1024 * 1024  # a 32-bit guest's address space as qemu reserves it
SAMPLE_S = 0.2  # memory sampling period under load


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def smaps(pid: int) -> list[tuple[int, int, str, int]]:
    """(start, end, path, Rss KiB) of every mapping of a process."""
    out: list[tuple[int, int, str, int]] = []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and ":" in head[3]:
                start, end = (int(x, 16) for x in head[0].split("-"))
                out.append((start, end, head[5] if len(head) > 5 else "", 0))
            elif head[0] == "Rss:" and out:
                start, end, path, _ = out[-1]
                out[-1] = (start, end, path, int(head[1]))
    return out


def rss_kib(pid: int, guest: bool) -> int | None:
    """Resident KiB of a process; with guest, only the emulated program's own memory: the
    contiguous run of mappings (qemu reserves the guest's 4 GiB in one piece) that holds the
    guest's python3 binary. None if that run does not look like a guest address space."""
    maps = smaps(pid)
    if not guest:
        return sum(m[3] for m in maps)
    hits = [i for i, m in enumerate(maps) if "/usr/bin/python3" in m[2]]
    if not hits:
        return None
    lo = hi = hits[0]
    while lo > 0 and maps[lo - 1][1] == maps[lo][0]:
        lo -= 1
    while hi + 1 < len(maps) and maps[hi][1] == maps[hi + 1][0]:
        hi += 1
    size_kib = (maps[hi][1] - maps[lo][0]) // 1024
    if not GUEST_SPACE_KIB * 0.9 <= size_kib <= GUEST_SPACE_KIB * 1.1:
        return None
    return sum(m[3] for m in maps[lo:hi + 1])


async def load(port: int, token: str, clients: int, seconds: float) -> int:
    """Claim the node, then `clients` sessions each write BLOB bytes to a MiMei of its own
    and read them back, round after round, for `seconds`; bytes moved."""
    key = keys.HostKey.generate()
    first = await connect("127.0.0.1", port, key, timeout=60)
    await first.call("Claim", {"token": token})
    moved = 0

    async def one(n: int) -> None:
        nonlocal moved
        s = await connect("127.0.0.1", port, key, timeout=60)
        try:
            mid = await s.call("MMCreate", {"app": "bench", "ext": str(n)})
            data = os.urandom(BLOB)
            step = s.max_data - 256  # room for the other parameters in the frame
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for offset in range(0, BLOB, step):
                    await s.call("MFSetData", {"mid": mid, "offset": offset,
                                               "data": data[offset:offset + step]},
                                 timeout=120)
                back = b"".join([c async for c in s.read_chunks(
                    "MFGetData", {"mid": mid, "offset": 0, "length": BLOB})])
                assert back == data, "read back differs"
                moved += 2 * BLOB
        finally:
            await s.close()

    await asyncio.gather(*(one(n) for n in range(clients)))
    await first.close()
    return moved


def measure(pid: int, guest: bool, port: int, token: str, clients: int, seconds: float
            ) -> dict[str, object]:
    """Idle memory (after a settling pause), then the peak while the clients run."""
    time.sleep(2)
    idle = rss_kib(pid, guest)
    peak = [idle or 0]
    done = []

    def sample() -> None:
        while not done:
            value = rss_kib(pid, guest)
            if value:
                peak[0] = max(peak[0], value)
            time.sleep(SAMPLE_S)

    import threading

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    moved = asyncio.run(load(port, token, clients, seconds))
    elapsed = time.monotonic() - started
    done.append(True)
    sampler.join()
    return {"idle_kib": idle, "peak_kib": peak[0], "mib_moved": moved / 2**20,
            "mib_s": moved / 2**20 / elapsed}


def native(clients: int, seconds: float) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="leither-bench-pi-"))
    port = free_port()
    (root / "config.json").write_text(json.dumps({"name": "benchpi", "bind": "127.0.0.1"}))
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock", PYTHONUNBUFFERED="1")
    log = open(root / "node.log", "wb")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "leither", "--root", str(root), "--board",
                             "pizero", "--port", str(port), "--no-mdns"], stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    try:
        while b" ready" not in (root / "node.log").read_bytes():
            if proc.poll() is not None or time.monotonic() - started > 60:
                raise SystemExit((root / "node.log").read_text())
            time.sleep(0.01)
        ready = time.monotonic() - started
        token = (root / "claim.token").read_text().strip()
        figures = measure(proc.pid, False, port, token, clients, seconds)
        return {"ready_s": ready, **figures}
    finally:
        proc.terminate()
        proc.wait(15)
        subprocess.run(["rm", "-rf", str(root)])


def emulated(clients: int, seconds: float) -> dict[str, object] | str:
    import pirootfs

    from leither_host import pibundle

    reason = pirootfs.unavailable()
    if reason:
        return reason
    tarball, _built = pirootfs.cached_rootfs()
    work = Path(tempfile.mkdtemp(prefix="leither-bench-pi-emul-"))
    os.environ["LEITHER_HOME"] = str(work / "home")  # the bundle's token goes here, not yours
    port = free_port()
    made = pibundle.write_bundle("benchpi", os.urandom(8).hex(), None, None, port, work)
    try:
        with pirootfs.Pi(tarball, work / "pi") as pi:
            with tarfile.open(made.target) as tar:
                tar.extractall(pi.path("/root"), filter="data")
            done = pi.run(["/bin/sh", "/root/leither-benchpi/install.sh"], timeout=900)
            if done.returncode != 0:
                raise SystemExit(done.stdout + done.stderr)
            config = pi.path("/var/lib/leither/config.json")
            config.write_text(json.dumps(dict(json.loads(config.read_text()),
                                              bind="127.0.0.1")))
            # The emulator's own baseline: a bare python3 that has imported nothing of ours.
            bare = pi.start(["/usr/bin/python3", "-c", "import time; time.sleep(30)"],
                            work / "bare.log", user="leither")
            time.sleep(5)
            bare_guest, bare_total = rss_kib(bare.pid, True), rss_kib(bare.pid, False)
            pi.stop(bare)
            proc, ready = pi.start_service(work / "node.log", timeout=600)
            total_idle = rss_kib(proc.pid, False)
            figures = measure(proc.pid, True, port, made.claim_token, clients, seconds)
            total_peak = rss_kib(proc.pid, False)
            pi.stop(proc)
            notes = [line for line in (work / "node.log").read_text().splitlines()
                     if line.startswith("leither: crypto:")]
        return {"ready_s": ready, **figures, "bare_guest_kib": bare_guest,
                "bare_qemu_kib": bare_total, "qemu_idle_kib": total_idle,
                "qemu_after_kib": total_peak, "crypto": notes[0] if notes else "pycryptodome",
                "bundle_bytes": made.bytes}
    finally:
        subprocess.run(["rm", "-rf", str(work)])


def mib(kib: object) -> str:
    return f"{kib / 1024:.1f} MiB" if isinstance(kib, int) else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--native-only", action="store_true")
    args = parser.parse_args()
    rows = [("native CPython " + sys.version.split()[0], native(args.clients, args.seconds))]
    emul = None if args.native_only else emulated(args.clients, args.seconds)
    if isinstance(emul, str):
        print(f"emulated Pi skipped: {emul}")
    elif emul is not None:
        rows.append(("armel under qemu (Debian python3)", emul))
    print(f"\nPi Zero node figures ({args.clients} clients, {BLOB // 1024} KiB write+read "
          f"rounds, {args.seconds:.0f} s)")
    print(f"{'':36} {'ready':>8} {'RSS idle':>10} {'RSS peak':>10} {'moved':>9} {'rate':>10}")
    for name, r in rows:
        print(f"{name:36} {r['ready_s']:7.2f}s {mib(r['idle_kib']):>10} "
              f"{mib(r['peak_kib']):>10} {r['mib_moved']:6.0f}MiB {r['mib_s']:6.2f}MiB/s")
    if len(rows) == 2:
        e = rows[1][1]
        print(f"\nboot to ready, emulated / native: {e['ready_s'] / rows[0][1]['ready_s']:.0f}x "
              f"(relative only: qemu is not a Pi's speed)")
        print(f"emulated RSS counts the guest's address space only; the whole qemu process: "
              f"{mib(e['qemu_idle_kib'])} idle, {mib(e['qemu_after_kib'])} after the load")
        print(f"bare python3 under qemu: {mib(e['bare_guest_kib'])} guest "
              f"({mib(e['bare_qemu_kib'])} with qemu)")
        print(f"crypto on the emulated Pi: {e['crypto']}")
        print(f"bundle: {e['bundle_bytes']} bytes; a Pi Zero has 512 MB of RAM")


if __name__ == "__main__":
    main()
