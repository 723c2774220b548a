# Ledger benchmarks (issue 6): prints numbers, never pass/fail.
#   1. sparse Merkle tree updates/s into a tree of N accounts (default 1,000,000), batched per
#      epoch, in memory and with the epoch committed to SQLite; proof sizes at that size;
#   2. settling R receipts for M members (default 100,000 for 10,000), with the receipt import
#      (Ed25519 checks) measured apart;
#   3. proof verification on MicroPython at 64K heap: ms per proof, and the smallest heap that
#      still verifies (bisected with -X heapsize);
#   4. bookkeepers on a loopback etcd vs one host, finality latency, one member's proof at
#      10^6 members and the board's check of it (bench/_ledger_books.py says how).
# Usage: .venv/bin/python bench/ledger.py [--accounts N] [--members M] [--receipts R] [--quick]
#        [--only tree,settle,books,members] [--books-accounts N] [--transfers T]
"""Benchmarks of the ledger: tree, settlement, board-side proof checks."""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "firmware"), str(REPO / "host_tools"), str(REPO / "bench")]

from leither import crypto, ids, receipt  # noqa: E402
from leither_host.ledger import pool, settle, tx  # noqa: E402
from leither_host.ledger.db import LedgerDB  # noqa: E402
from leither_host.ledger.org import Organization, make_application  # noqa: E402
from leither_host.ledger.smt import SMT  # noqa: E402
from leither_host.output import print_table  # noqa: E402


class Clock:
    """Wall and CPU time of a stretch of work (the machine may be shared: CPU time is the
    figure for this process alone; wall time includes waiting for I/O and for the CPU)."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self) -> Self:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c

    def row(self, label: str, n: int) -> tuple:
        return (label, f"{n:,}", f"{self.wall:.2f}", f"{self.cpu:.2f}",
                f"{n / self.wall:,.0f}" if self.wall else "", f"{n / self.cpu:,.0f}"
                if self.cpu else "")


def bench_tree(accounts: int, batches: list[int], tmp: Path) -> tuple[list, list, list[bytes],
                                                                      bytes]:
    rng = random.Random(1)
    keys = [rng.randbytes(20) for _ in range(accounts)]
    rows = []
    tree = SMT()  # in memory first; stored below
    step = 100_000
    with Clock() as clock:
        for i in range(0, accounts, step):
            tree.apply({k: (1000, 0) for k in keys[i:i + step]})
    rows.append(clock.row("build in memory (100k per batch)", accounts))
    # A long-running host keeps its tree: move it out of the collector's sight, once.
    gc.freeze()

    def epoch_changes(r: int, batch: int) -> dict:
        # 90 % existing accounts, 10 % new ones: a settlement epoch's mix.
        changes = {keys[rng.randrange(accounts)]: (r + 7, r) for _ in range(batch * 9 // 10)}
        changes.update({rng.randbytes(20): (5, 0) for _ in range(batch // 10)})
        return changes

    for batch in batches:
        n = 0
        clock = Clock()
        for r in range(max(1, 200_000 // batch)):
            changes = epoch_changes(r, batch)
            with clock:
                tree.apply(changes)
            n += len(changes)
        rows.append(clock.row(f"epoch of {batch:,} updates, in memory", n))
    db = LedgerDB(tmp / "tree.sqlite")
    tree.drop_replaced()  # the in-memory rounds above replaced many nodes: store live ones only
    with Clock() as clock, db.transaction():
        db.write_nodes(tree)
    rows.append(clock.row("first commit: every node of the tree", len(tree.fresh) or
                          db.next_node_id - 1))
    gc.freeze()  # as after the build: the in-memory rounds' nodes are long-lived too
    for batch in batches:
        n = 0
        clock = Clock()
        for r in range(max(1, 200_000 // batch)):
            changes = epoch_changes(r, batch)
            with clock, db.transaction():
                tree.apply(changes)
                db.write_nodes(tree)
            n += len(changes)
        rows.append(clock.row(f"epoch of {batch:,} updates, committed to SQLite", n))
    sizes = []
    for k in keys[:5000]:
        sizes.append(len(tree.prove(k)))
    absent = [len(tree.prove(rng.randbytes(20))) for _ in range(2000)]
    sizes.sort()
    proof_rows = [
        ("inclusion", len(sizes), f"{sum(sizes) / len(sizes):.0f}", sizes[len(sizes) // 2],
         sizes[int(len(sizes) * 0.99)], sizes[-1]),
        ("absence", len(absent), f"{sum(absent) / len(absent):.0f}",
         sorted(absent)[len(absent) // 2], sorted(absent)[int(len(absent) * 0.99)],
         max(absent)),
    ]
    sample = [tree.prove(k) for k in keys[:200]]
    root = tree.root_hash()
    db.close()
    return rows, proof_rows, [keys[i] + sample[i] for i in range(200)], root


def bench_settle(members: int, receipts: int, tmp: Path) -> list:
    rows = []
    founder = b"\x01" * 32
    with Clock() as clock:
        org = Organization.create(tmp / "org", "bench", founder, now_ms=1000)
        seeds = [i.to_bytes(32, "big") for i in range(2, members + 2)]
        apps = [make_application(s, org.id, "member", "", 1000) for s in seeds]
        org.approve_many(org.submit_many(apps), founder, now_ms=1000)
    rows.append(clock.row(f"admit {members:,} members (sign, check, one member list)", members))
    contract = (REPO / "examples" / "contracts" / "backup-coop.toml").read_text()
    pool.deploy_contract(org.db, contract, set(), now_ms=1000)
    partners = [ids.make_id(crypto.sign_public(s)) for s in seeds]
    rng = random.Random(2)
    made = []
    with Clock() as clock:
        for i in range(receipts):
            issuer = i % members
            partner = (issuer + 1 + rng.randrange(members - 1)) % members
            made.append(receipt.make(seeds[issuer], partners[partner], 2000 + i, 50_000 + i,
                                     stored=rng.randrange(1, 1 << 36),
                                     served=rng.randrange(1 << 30),
                                     audits_ok=rng.randrange(5)))
    rows.append(clock.row("sign receipts (the nodes' work, not the host's)", receipts))
    with Clock() as clock:
        got = pool.import_receipts(org.db, made)
    rows.append(clock.row(f"receipts import: Ed25519 check + pool ({pool.WORKERS} processes; "
                          f"cpu = parent only)", got["accepted"]))
    pool.add_transaction(org.db, tx.income(founder, org.id, "bench", 10**12), org.id,
                         org.supervisors())
    with Clock() as clock:
        summary = settle.run_epoch(org, end_ms=200_000, now_ms=200_000)
    rows.append(clock.row(f"settle: {summary['receipts']:,} receipts, {members:,} members, "
                          f"signed root", receipts))
    with Clock() as clock:
        settle.replay(org, 1, check_receipt_signatures=False)
    rows.append(clock.row("replay that epoch (ledger verify --fast)", receipts))
    org.close()
    return rows


MP_SCRIPT = """
import time
from leither import smtverify
root = bytes.fromhex(ROOT)
n = 0
us = 0
with open(PATH, 'rb') as f:
    while True:
        head = f.read(2)
        if len(head) < 2:
            break
        item = f.read(head[0] << 8 | head[1])
        t0 = time.ticks_us()
        smtverify.verify(root, item[:20], item[20:])
        us += time.ticks_diff(time.ticks_us(), t0)
        n += 1
print(n, us)
"""


def bench_micropython(samples: list[bytes], root: bytes, tmp: Path) -> list:
    binary = shutil.which("micropython", path=str(Path(sys.executable).parent)) or \
        shutil.which("micropython")
    if binary is None:
        return [("micropython not installed", "", "", "")]
    subprocess.run([sys.executable, "-m", "leither_host", "build"], cwd=REPO, check=True,
                   capture_output=True)
    path = tmp / "proofs.bin"
    path.write_bytes(b"".join(len(s).to_bytes(2, "big") + s for s in samples))
    script = MP_SCRIPT.replace("ROOT", repr(root.hex())).replace("PATH", repr(str(path)))
    env = dict(os.environ, MICROPYPATH=str(REPO / "build" / "unix"))

    def run(heap: str) -> tuple[int, int] | None:
        proc = subprocess.run([binary, "-X", f"heapsize={heap}", "-c", script], env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            return None
        n, us = proc.stdout.split()
        return int(n), int(us)

    rows = []
    result = run("64K")
    if result:
        n, us = result
        rows.append(("verify at 64K heap", n, f"{us / n / 1000:.2f} ms/proof",
                     f"{sum(len(s) - 20 for s in samples) / n:.0f} B/proof"))
    low, high = 2, 64  # KiB
    while low < high:
        mid = (low + high) // 2
        if run(f"{mid}K"):
            high = mid
        else:
            low = mid + 1
    rows.append(("smallest heap that verifies", "", f"{low} KiB", "(bisected -X heapsize)"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--accounts", type=int, default=1_000_000)
    ap.add_argument("--members", type=int, default=10_000)
    ap.add_argument("--receipts", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="100k accounts, 10k receipts")
    ap.add_argument("--only", default="tree,settle,books,members",
                    help="parts to run (default: all)")
    ap.add_argument("--books-accounts", type=int, default=1_000_000,
                    help="accounts in the books of the bookkeepers' bench")
    ap.add_argument("--transfers", type=int, default=2000)
    ap.add_argument("--per-epoch", type=int, default=500)
    ap.add_argument("--proof-members", type=int, default=1_000_000)
    args = ap.parse_args()
    if args.quick:
        args.accounts, args.members, args.receipts = 100_000, 1_000, 10_000
        args.books_accounts, args.transfers, args.proof_members = 10_000, 400, 10_000
    parts = set(args.only.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="leither-bench-"))
    print(f"# load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    try:
        if "tree" in parts:
            bench_tree_part(args, tmp)
        if "settle" in parts:
            print(f"# settlement: {args.receipts:,} receipts for {args.members:,} members")
            print_table(["step", "items", "wall s", "cpu s", "per wall s", "per cpu s"],
                        bench_settle(args.members, args.receipts, tmp))
        if "books" in parts:
            bench_books_part(args, tmp)
        if "members" in parts:
            bench_members_part(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_books_part(args: argparse.Namespace, tmp: Path) -> None:
    from _ledger_books import bench_books

    print(f"# settled transfers: 3 bookkeepers on a 3-member loopback etcd vs one host "
          f"({args.books_accounts:,} accounts, {args.transfers:,} transfers, "
          f"{args.per_epoch} per epoch)")
    got = bench_books(args.books_accounts, args.transfers, args.per_epoch, tmp / "books")
    if "skipped" in got:
        print(f"skipped: {got['skipped']}")
        return
    print_table(["path", "seconds", "transfers/s", "note"], [
        ("one host (queue + settle, SQLite)", f"{got['one_host_s']:.2f}",
         f"{got['one_host_tps']:.0f}", ""),
        ("3 bookkeepers (submit -> quorum-final)", f"{got['books_s']:.2f}",
         f"{got['books_tps']:.0f}", f"submitting took {got['submit_s']:.2f} s"),
        ("ratio bookkeepers / one host", "", f"{got['ratio']:.2f}",
         "same root as one host" if got["same_root_as_one_host"] else "ROOTS DIFFER"),
    ])
    cpus = ", ".join(f"{c:.1f}" for c in got["books_cpu_s"])
    print(f"CPU seconds: one host {got['one_host_cpu_s']:.1f}; each bookkeeper process "
          f"{cpus} (from the first submission; pages of the {got['accounts']:,}-account books "
          f"read on first use included); "
          f"on a machine with a core per bookkeeper the ratio is about one host's CPU / one "
          f"bookkeeper's: {got['one_host_cpu_s'] / max(got['books_cpu_s']):.2f}")
    print(f"submission -> co-signed final epoch (paced epochs of 100): p50 "
          f"{got['latency_p50_ms']:.0f} ms, p95 {got['latency_p95_ms']:.0f} ms; "
          f"prefill of the books took {got['prefill_s']:.0f} s")
    print()
    from _ledger_books import bench_board

    print(f"# the board's check of a co-signed bundle ({got['sigs']} bookkeeper signatures "
          f"and the org-signed set: {max(len(b) for b in got['bundles'])} bytes)")
    print_table(["interpreter", "check", "heap", "per bundle"],
                bench_board(got["bundles"], got["org_key"], tmp / "books"))
    print()


def bench_members_part(args: argparse.Namespace, tmp: Path) -> None:
    from _ledger_books import bench_board, bench_member_proof

    print(f"# one member's proof at {args.proof_members:,} members (and as many accounts)")
    got, bundles, org_key = bench_member_proof(args.proof_members, tmp / "members")
    print_table(["what", "value"], [
        ("member tree built (s)", f"{got['build_s']:.1f}"),
        ("balance + membership proof, mean bytes", f"{got['proof_bytes_mean']:.0f}"),
        ("balance + membership proof, max bytes", got["proof_bytes_max"]),
        ("whole bundle, max bytes (with signed record)", got["bundle_bytes_max"]),
        ("ledger verify --proof on the host, ms", f"{got['verify_ms']:.2f}"),
    ])
    print()
    print("# the board's check of those bundles (MicroPython)")
    print_table(["interpreter", "check", "heap", "per bundle"],
                bench_board(bundles, org_key, tmp / "members"))
    print()


def bench_tree_part(args: argparse.Namespace, tmp: Path) -> None:
    print(f"# sparse Merkle tree, {args.accounts:,} accounts (CPython "
          f"{sys.version.split()[0]})")
    rows, proofs, samples, root = bench_tree(args.accounts, [10_000, 100_000], tmp)
    print_table(["workload", "updates", "wall s", "cpu s", "per wall s", "per cpu s"], rows)
    print()
    print(f"# proof sizes at {args.accounts:,} accounts (bytes; target <= 1024)")
    print_table(["proof", "n", "mean", "median", "p99", "max"], proofs)
    print()
    print("# board-side verification (leither.smtverify on MicroPython, unix port)")
    print_table(["workload", "proofs", "time", "note"], bench_micropython(samples, root,
                                                                            tmp))
    print()


if __name__ == "__main__":
    main()
