"""Heap of a paired backup and a restore on the 32-bit frozen ESP32 stand-in (issue 9).

Three nodes run the stand-in binary (`leither build --board esp32`'s, brought up to date with
the firmware first, or --bin) at the ESP32-WROOM heap, on loopback, no mDNS: A (the owner
node) holds N MiMei of SIZE bytes each, written offline; B is its partner (the pairing record
written on both roots, as a button pairing leaves it). A pushes everything to B; then a fresh
node C restores A from B (BackupRestore with A's escrowed seed and backup key). While each runs,
the free heap of the nodes is sampled over one open session (GetVar "heap": free after a
collection); the table gives the lowest seen, the heap in use at that point and the bytes.

    python bench/backup_heap.py [--mimei 20] [--size 102400] [--heap 111936] [--bin PATH]

Measured here (2026-12-02, 32-bit frozen stand-in, 111,936 bytes, after the blob-free board
push): 2 MB in 20 MiMei pushed in 4.6 s and restored in 5.9 s, lowest free heap 24,768
(owner), 35,648 (partner), 20,800 (restoring); 20 MB in 200 MiMei pushed in 36.6-46.2 s, lowest
free 18,656-19,232 (owner) and 27,136-27,728 (partner), but its restore runs short of heap after
~50 of 200 MiMei (a 1 KiB reply copy in rpc.open fails with ~25 KB free: fragmentation, the
restoring node's free heap falling ~100 B per MiMei restored).
After the CTR/tree-diff buffer reuse and the in-place request sealing (07:51): 2 MB in 20 MiMei
pushed in 3.6 s and restored in 4.6 s, lowest free 28,512 (owner), 35,488 (partner), 21,296
(restoring), no MemoryError; 20 MB in 200 MiMei pushed in 34.1 s, lowest free 18,960 (owner),
26,960 (partner); its restore is still refused "busy" (the restoring node short of heap).
After the restore's kept frame, piece-by-piece opening and the partner's reads into its kept
blob buffer (10:35, machine shared with other work): 20 MB in 200 MiMei pushed in 37.7 s,
lowest free 17,744 (owner), 25,856 (partner); restored onto a fresh board in 59.9 s, 200
versions, 5,200 blocks, every block checked against its hash, lowest free 16,800
(restoring), 26,624 (partner), no MemoryError (a run at 10:20: 40.3 s / 75.1 s, lowest
free 14,768 / 26,576 / 16,912 / 26,304). `--keep` then `--reuse DIR` restores again.
After the board push's two-piece chunks and maintenance waiting for a restore (12:25, machine
shared): 20 MB in 200 MiMei pushed in 32.2 s, lowest free 17,648 (owner), 30,720 (partner);
restored in 75.8 s, lowest free 18,128 (restoring), 29,952 (partner), no MemoryError. (With
maintenance started mid-restore by 8 sealed packs: MemoryErrors, restoring node's lowest free
9,504-12,384.)

These nodes run without mDNS (6.6 KB of an idle stand-in's heap) and are claimed and paired by
files: bench/backup.py's boards (a LAN, announced, claimed and paired by their buttons) push
with ~10 KB less free heap on each side (its 2 MB push at the same code: owner ~17.5 KB,
partner ~25.5 KB; here 28,064 and 35,248). So this bench's margins are an upper bound: while
the stores kept a Bloom filter per pack in RAM (10 KB for 20 MB), its 20 MB push went through
and backup.py's failed (partner busy from ~15 MB, owner short of a 4 KiB block).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "firmware"))
sys.path.insert(0, str(REPO / "host_tools"))

from leither import crypto, identity, mimei, pairing  # noqa: E402
from leither.errors import RPCError  # noqa: E402
from leither_host.client import connect_sync  # noqa: E402


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _root(base: Path, name: str, owner_public: bytes) -> tuple[Path, identity.Identity]:
    root = base / name
    root.mkdir()
    ident = identity.load_identity(str(root))
    identity.save_owner(str(root), owner_public)
    return root, ident


def _pair(root: Path, peer: identity.Identity, port: int, quota: int) -> None:
    pairing.save_partner(str(root), {
        "peer_id": peer.id, "peer_key": peer.public, "secret": bytes(32), "code": "000000",
        "tag": bytes(16), "quota_to_peer": quota, "quota_from_peer": quota,
        "addr": "127.0.0.1", "port": port, "since": int(time.time() * 1000)})


def _seed(root: Path, ident: identity.Identity, count: int, size: int) -> None:
    st = mimei.Store(str(root / "store"), ident)
    try:
        for i in range(count):
            mid = st.create("bench", "m%d" % i)
            data = os.urandom(size)
            for off in range(0, size, 65536):
                st.set_data(mid, off, data[off:off + 65536])
            st.backup(mid)
    finally:
        st.close()


class _Node:
    def __init__(self, binary: str, root: Path, port: int, heap: int) -> None:
        self.root = root
        self.port = port
        env = dict(os.environ, MICROPYPATH=".frozen")
        self.log = open(root / "node.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [binary, "-X", "heapsize=%d" % heap, "-m", "leither", "--root", str(root),
             "--port", str(port), "--no-mdns"], stdout=self.log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True)
        deadline = time.monotonic() + 30
        while b"ready" not in (root / "node.log").read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("node %s did not start:\n%s" % (
                    root.name, (root / "node.log").read_text(errors="replace")))
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class _Sampler(threading.Thread):
    """Free heap of one node, sampled over one session until stopped."""

    def __init__(self, port: int, key: bytes, status: bool = False, every: float = 0.05
                 ) -> None:
        super().__init__(daemon=True)
        self.every = every  # seconds between samples
        self.status = status  # also read BackupStatus now and then (over the same session)
        self.last_status: dict[str, Any] | None = None
        self.port = port
        self.key = key
        self.low: int | None = None
        self.samples = 0
        self.errors = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                with connect_sync("127.0.0.1", self.port, self.key, timeout=10) as s:
                    while not self.done.is_set():
                        free = s.call("GetVar", {"name": "heap"})
                        self.samples += 1
                        if isinstance(free, int) and (self.low is None or free < self.low):
                            self.low = free
                        if self.status and self.samples % max(1, int(1 / self.every)) == 1:
                            self.last_status = s.call("BackupStatus", {"limit": 0})
                        time.sleep(self.every)
            except Exception:  # noqa: BLE001 - a node restarting: sample again
                self.errors += 1
                time.sleep(0.2)


def _wait(what: str, predicate: Any, timeout: float, logs: tuple[Path, ...] = ()) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for log in logs:
            text = log.read_text(errors="replace")
            if "MemoryError" in text or text.count("push failed") >= 3:
                raise SystemExit("MemoryError in %s:\n%s" % (log, text[-3000:]))
        got = predicate()
        if got:
            return got
        time.sleep(0.5)
    raise SystemExit("timed out waiting for " + what)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mimei", type=int, default=20)
    ap.add_argument("--size", type=int, default=102400, help="bytes per MiMei")
    ap.add_argument("--heap", type=int, default=111936)
    ap.add_argument("--bin", help="the stand-in binary (default: this checkout's, brought up "
                    "to date first)")
    ap.add_argument("--keep", action="store_true", help="keep the roots")
    ap.add_argument("--reuse", default="", help="roots kept by --keep: restore again only "
                    "(onto a fresh C), skipping the seeding and the push")
    ap.add_argument("--config", default="", help="JSON for the nodes' config.json")
    ap.add_argument("--every", type=float, default=0.05, help="seconds between heap samples")
    args = ap.parse_args()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))  # stop the nodes on the way out
    if args.bin is None:
        from _mp import standin

        args.bin = standin()
    elif not Path(args.bin).exists():
        raise SystemExit(f"{args.bin} missing")
    reuse = Path(args.reuse) if args.reuse else None
    base = reuse or Path(tempfile.mkdtemp(prefix="leither-bkheap-"))
    nodes: list[_Node] = []
    rows = []
    push_s = 0.0
    st: dict[str, Any] = {"sent": 0}
    try:
        pa, pb, pc = _free_port(), _free_port(), _free_port()
        if reuse is None:
            owner = crypto.random(32)
            (base / "owner.seed").write_bytes(owner)
            owner_pub = crypto.sign_public(owner)
            ra, ia = _root(base, "a", owner_pub)
            rb, ib = _root(base, "b", owner_pub)
            rc, ic = _root(base, "c", owner_pub)
            quota = 4 * args.mimei * args.size + (64 << 20)
            _pair(ra, ib, pb, quota)
            _pair(rb, ia, pa, quota)
            _seed(ra, ia, args.mimei, args.size)
        else:  # B holds A's backup already (each restore moves its fence on): a fresh C
            owner = (base / "owner.seed").read_bytes()
            owner_pub = crypto.sign_public(owner)
            ra, rb = base / "a", base / "b"
            ia, ib = identity.load_identity(str(ra)), identity.load_identity(str(rb))
            shutil.rmtree(base / "c", ignore_errors=True)
            rc, ic = _root(base, "c", owner_pub)
        if args.config:
            for r in (ra, rb, rc):
                (r / "config.json").write_text(args.config)
        total = args.mimei * args.size
        b = _Node(args.bin, rb, pb, args.heap)
        nodes.append(b)
        if reuse is None:
            sb = _Sampler(pb, owner, every=args.every)
            sb.start()
            started = time.monotonic()
            a = _Node(args.bin, ra, pa, args.heap)
            nodes.append(a)
            sa = _Sampler(pa, owner, status=True, every=args.every)
            sa.start()

            def pushed() -> Any:
                st = sa.last_status
                return st if st and st["pending"] == 0 and st["state"] not in ("pushing",) \
                    and st["last_ok"] else None

            st = _wait("the push", pushed, 1800, (ra / "node.log", rb / "node.log"))
            push_s = time.monotonic() - started
            sa.done.set()
            sb.done.set()
            rows.append(("push: owner A", args.heap - (sa.low or 0), sa.low, sa.samples))
            rows.append(("push: partner B", args.heap - (sb.low or 0), sb.low, sb.samples))
            print(f"push {push_s:.1f} s ({st['sent']} sealed bytes): {rows[-2]} {rows[-1]}",
                  flush=True)
            a.stop()  # A "dies"
        key = (ra / "backup" / "backup.key").read_bytes()
        c = _Node(args.bin, rc, pc, args.heap)
        nodes.append(c)
        sc = _Sampler(pc, owner, every=args.every)
        sb2 = _Sampler(pb, owner, every=args.every)
        sc.start()
        sb2.start()
        started = time.monotonic()
        for attempt in range(5):  # "busy": the node is short of memory just now
            try:
                with connect_sync("127.0.0.1", pc, owner, timeout=10) as s:
                    result = s.call("BackupRestore", {"seed": ia.seed, "key": key, "partner": {
                        "id": ib.id, "addr": "127.0.0.1", "port": pb}}, timeout=1800)
                break
            except RPCError as err:
                print(f"restore attempt {attempt + 1}: {err}", flush=True)
                if err.code != "busy" or attempt == 4:
                    raise
                time.sleep(2)
        restore_s = time.monotonic() - started
        sc.done.set()
        sb2.done.set()
        rows.append(("restore: fresh C", args.heap - (sc.low or 0), sc.low, sc.samples))
        rows.append(("restore: partner B", args.heap - (sb2.low or 0), sb2.low, sb2.samples))
        errors = sum(b"MemoryError" in (n.root / "node.log").read_bytes() for n in nodes)
        print(f"paired backup of {total} bytes in {args.mimei} MiMei, 32-bit frozen stand-in, "
              f"heap {args.heap} bytes (free heap sampled every {args.every} s over RPC)")
        print(f"push {push_s:.1f} s ({st['sent']} sealed bytes); restore {restore_s:.1f} s: "
              f"{result['versions']} versions, {result['blocks']} blocks, {result['bytes']} "
              f"bytes, incarnation {result.get('incarnation')}; nodes that logged a "
              f"MemoryError: {errors}")
        print("| phase | heap in use at the low point | lowest free | samples |")
        print("|---|---|---|---|")
        for name, used, low, samples in rows:
            print(f"| {name} | {used} | {low} | {samples} |")
        return 0 if result["versions"] == args.mimei and errors == 0 else 1
    finally:
        for n in nodes:
            n.stop()
        if args.keep or reuse is not None:
            print("roots kept in", base)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
