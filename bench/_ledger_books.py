# The bookkeepers' part of bench/ledger.py (issue 13), side by side in one run:
#   1. settled transfers per second: the one-host SQLite path (queue + settle) against three
#      bookkeepers (`leither books serve` processes) on a 3-member loopback etcd cluster, from
#      the first submission to the last epoch co-signed by a quorum; both start from the same
#      books holding ACCOUNTS accounts (a prefilled epoch 1, copied byte for byte);
#   2. time from an input's submission to its epoch's co-signed finality, p50/p95 (paced
#      epochs, so it is latency, not the backlog of phase 1);
#   3. one member's proof at MEMBERS members: bytes (balance + membership paths, and the whole
#      bundle) and `ledger verify --proof` time on the host; the board's check (MicroPython
#      unix port and, if built, the 32-bit ESP32 stand-in) at 64K (paths) and the bundle with
#      its Ed25519 signature at the heap it needs.
"""Bookkeepers on etcd vs one host; one member's proof at scale; the board's check."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from leither import cbor, crypto, ids
from leither_host.ledger import bookkeepers as bk
from leither_host.ledger import members, pool, settle, tx
from leither_host.ledger.etcdcluster import EtcdCluster, etcd_binary
from leither_host.ledger.home import Home
from leither_host.ledger.org import Organization
from leither_host.ledger.smt import SMT, gc_paused

REPO = Path(__file__).resolve().parents[1]
T0 = 1_000_000  # ms: the bench organization's creation time
BATCH = 100  # transfers per log entry
PREFILL_BATCH = 100_000  # accounts per tree batch


def _prefill(org: Organization, accounts: dict[bytes, tuple[int, int]]) -> None:
    """Epoch 1 holding these accounts, written directly (a bench's starting state, not a
    settlement: every copy of these books starts from the same bytes)."""
    db = org.db
    tree = SMT(None, db.load_node)
    items = sorted(accounts.items())
    with gc_paused(), db.transaction():
        for i in range(0, len(items), PREFILL_BATCH):
            tree.apply(dict(items[i:i + PREFILL_BATCH]))
        tree.drop_replaced()
        root_id = db.write_nodes(tree)
        supply = sum(b for b, _n in accounts.values())
        db.add_epoch({"epoch": 1, "root_id": root_id, "root": tree.root_hash(),
                      "start_ms": T0, "end_ms": T0 + 1, "supply": supply, "minted": supply,
                      "burned": 0, "record": b"bench prefill", "inputs": b""})
        db.set_meta("final_epoch", 1)
        db.set_meta("sig_sent", 1)


def _transfers(org_id: str, seeds: list[bytes], n: int) -> list[bytes]:
    """n countersigned transfers among the seeded accounts, nonces in order per sender."""
    pubs = [crypto.sign_public(s) for s in seeds]
    nonces = [0] * len(seeds)
    out = []
    for i in range(n):
        a = i % len(seeds)
        b = (a + 1 + (i * 7) % (len(seeds) - 1)) % len(seeds)
        nonces[a] += 1
        out.append(tx.countersign(seeds[b], tx.transfer(seeds[a], org_id, pubs[b], 1 + i % 50,
                                                        nonces[a])))
    return out


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _final(log: Any, books: dict[str, Any], epoch: int) -> bool:
    roots: dict[bytes, int] = {}
    for _key, value in log.get_prefix(log.key("sig", "%012d" % epoch) + b"/"):
        root = cbor.loads(value)["root"]
        roots[root] = roots.get(root, 0) + 1
    return any(n >= books["quorum"] for n in roots.values())


def _wait_final(log: Any, books: dict[str, Any], epoch: int, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while not _final(log, books, epoch):
        if time.monotonic() > deadline:
            raise TimeoutError(f"epoch {epoch} not final after {timeout} s")
        time.sleep(0.02)
    return time.perf_counter()


def bench_books(accounts: int, transfers: int, per_epoch: int, tmp: Path) -> dict[str, Any]:
    if etcd_binary() is None:
        return {"skipped": "etcd is not installed"}
    rng = random.Random(3)
    seeds = [(5_000_000 + i).to_bytes(32, "big") for i in range(min(2000, transfers))]
    home = Home(tmp / "home" / "data", tmp / "home" / "config")
    founder = home.key("founder")[0]
    bk_seeds = [home.key(f"bk{i}")[0] for i in range(3)]
    cluster = EtcdCluster(tmp / "etcd", 3)
    cluster.start()
    procs: list[subprocess.Popen] = []
    out: dict[str, Any] = {"accounts": accounts, "transfers": transfers,
                           "per_epoch": per_epoch}
    try:
        org = Organization.create(tmp / "org", "bench", founder, now_ms=T0)
        bk.set_bookkeepers(org, [(f"bk{i}", crypto.sign_public(s))
                                 for i, s in enumerate(bk_seeds)], cluster.endpoints)
        books = org.books()
        assert books is not None
        log = bk.log_for(books)
        bk.publish_genesis(org, log)
        org_id = org.id
        org.close()
        started = time.perf_counter()
        first = bk.Bookkeeper(tmp / "b0", bk_seeds[0], log)
        fill = {ids.raw_id(crypto.sign_public(s)): (10 ** 9, 0) for s in seeds}
        while len(fill) < accounts:
            fill[rng.randbytes(20)] = (rng.randrange(1, 10 ** 6), 0)
        _prefill(first.open(), fill)
        first.close()
        del fill
        for i in (1, 2):
            shutil.copytree(tmp / "b0", tmp / f"b{i}")
        shutil.copytree(tmp / "b0", tmp / "one")
        shutil.copy(tmp / "org" / "org.key", tmp / "one" / "org.key")
        one = Organization(tmp / "one")
        with one.db.transaction() as conn:
            conn.execute("DELETE FROM meta WHERE name='books'")
        out["prefill_s"] = time.perf_counter() - started
        signed = _transfers(org_id, seeds, transfers)
        # 1a. one host: queue (signatures checked) and settle, epoch by epoch.
        t = time.perf_counter()
        cpu = time.process_time()
        end = T0 + 10
        for i in range(0, transfers, per_epoch):
            for data in signed[i:i + per_epoch]:
                pool.add_transaction(one.db, data, one.id, {})
            end += 10
            summary = settle.run_epoch(one, end_ms=end, now_ms=end)
            assert not summary["rejected"], summary["rejected"][:2]
        out["one_host_s"] = time.perf_counter() - t
        out["one_host_cpu_s"] = time.process_time() - cpu
        one_root = bytes(one.db.last_epoch()["root"])
        one.close()
        # 1b. three bookkeepers on etcd, everything submitted at once.
        env = dict(os.environ, PYTHONPATH=f"{REPO / 'firmware'}:{REPO / 'host_tools'}")
        for i in range(3):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "leither_host", "books", "serve", "--home",
                 str(tmp / "home"), "--org-id", org_id, "--etcd", ",".join(cluster.endpoints),
                 "--key", f"bk{i}", "--dir", str(tmp / f"b{i}")], env=env,
                stdout=subprocess.DEVNULL, stderr=open(tmp / f"bk{i}.log", "wb")))  # noqa: SIM115
        # They are services: wait until each runs (has reported to etcd) before the clock.
        for i in range(3):
            key = log.key("status", bk.key_id(crypto.sign_public(bk_seeds[i])))
            deadline = time.monotonic() + 120
            while log.get(key) is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"bookkeeper {i} did not start (see {tmp}/bk{i}.log)")
                time.sleep(0.05)
        cpu_before = [_cpu_s(p.pid) for p in procs]
        t = time.perf_counter()
        end = T0 + 10
        epoch = 1
        for i in range(0, transfers, per_epoch):
            chunk = signed[i:i + per_epoch]
            for j in range(0, len(chunk), BATCH):
                bk.submit(log, [("tx", d) for d in chunk[j:j + BATCH]], T0 + 5)
            end += 10
            epoch += 1
            bk.submit(log, [("close", bk.make_close(founder, org_id, epoch, end))], end)
        out["submit_s"] = time.perf_counter() - t
        _wait_final(log, books, epoch)
        out["books_s"] = time.perf_counter() - t
        out["books_cpu_s"] = [_cpu_s(p.pid) - c for p, c in zip(procs, cpu_before)]
        last = [k for k, _v in log.get_prefix(log.key("sig", "%012d" % epoch) + b"/")]
        roots = {cbor.loads(v)["root"] for _k, v in
                 log.get_prefix(log.key("sig", "%012d" % epoch) + b"/")}
        out["same_root_as_one_host"] = roots == {one_root} if len(last) == 3 else \
            one_root in roots
        # 2. latency: paced epochs of 100 transfers from fresh nonces.
        extra = _transfers(org_id, seeds, transfers + 10 * BATCH)[transfers:]
        lat: list[float] = []
        for r in range(10):
            chunk = extra[r * BATCH:(r + 1) * BATCH]
            sent = []
            for j in range(0, BATCH, 20):
                bk.submit(log, [("tx", d) for d in chunk[j:j + 20]], T0 + 5)
                sent.append(time.perf_counter())
            end += 10
            epoch += 1
            bk.submit(log, [("close", bk.make_close(founder, org_id, epoch, end))], end)
            done = _wait_final(log, books, epoch)
            lat.extend((done - s) for s in sent for _ in range(20))
        lat.sort()
        out["latency_p50_ms"] = lat[len(lat) // 2] * 1000
        out["latency_p95_ms"] = lat[int(len(lat) * 0.95)] * 1000
        # A co-signed bundle of one account, for the board's k-of-n check.
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        keeper = bk.Bookkeeper(tmp / "b0", bk_seeds[0], log)
        kept = keeper.open()
        while keeper.step():  # a quorum is 2 of 3: this one may have been the one behind
            pass
        keeper.step()
        row = kept.db.epoch(epoch)
        record = cbor.loads(bytes(row["record"]))
        out["bundles"] = []
        for s in seeds[:10]:
            raw = ids.raw_id(crypto.sign_public(s))
            out["bundles"].append(bytes(cbor.dumps({
                "org_key": kept.public, "record": bytes(row["record"]),
                "member": ids.b58encode(raw), "key": raw, "proof": kept.db.tree().prove(raw),
                "mproof": members.prove(kept.db, record["members"], raw),
                "books": kept.books_record(record["books"])})))
        out["org_key"] = kept.public
        out["sigs"] = len(record["sigs"])
        keeper.close()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        cluster.close()
    out["one_host_tps"] = transfers / out["one_host_s"]
    out["books_tps"] = transfers / out["books_s"]
    out["ratio"] = out["books_tps"] / out["one_host_tps"]
    return out


def bench_member_proof(n_members: int, tmp: Path) -> tuple[dict[str, Any], list[bytes], bytes]:
    """One member's proof at n_members members (and as many accounts)."""
    from leither_host.commands.ledger import verify_bundle

    rng = random.Random(4)
    founder = b"\x07" * 32
    org = Organization.create(tmp / "morg", "members", founder, now_ms=T0)
    keys = [rng.randbytes(20) for _ in range(n_members)]
    t = time.perf_counter()
    with gc_paused(), org.db.transaction():
        changes = {k: members.leaf_value("member", T0 + 5) for k in keys}
        org._publish_member_list(org.seed(), T0 + 5, changes)  # type: ignore[arg-type]
    build_s = time.perf_counter() - t
    _prefill(org, {k: (1000 + i, 0) for i, k in enumerate(keys)})
    settle.run_epoch(org, end_ms=T0 + 100, now_ms=T0 + 100)  # signs the member root
    row = org.db.last_epoch()
    record = settle.open_epoch_record(bytes(row["record"]), org.public)
    bundles = []
    sizes = []
    for k in keys[:20]:
        proof = org.db.tree().prove(k)
        mproof = members.prove(org.db, record["members"], k)
        sizes.append(len(proof) + len(mproof))
        bundles.append(bytes(cbor.dumps({"org_key": org.public, "record": bytes(row["record"]),
                                         "member": ids.b58encode(k), "key": k, "proof": proof,
                                         "mproof": mproof})))
    t = time.perf_counter()
    for b in bundles:
        assert verify_bundle(b)["role"] == "member"
    verify_ms = (time.perf_counter() - t) / len(bundles) * 1000
    org.close()
    return ({"members": n_members, "build_s": build_s,
             "proof_bytes_mean": sum(sizes) / len(sizes), "proof_bytes_max": max(sizes),
             "bundle_bytes_max": max(len(b) for b in bundles), "verify_ms": verify_ms},
            bundles, org.public)


BOARD_SCRIPT = """
import gc, time
from leither import smtverify, cbor
org_key = bytes.fromhex(ORG)
n = 0
us = 0
full = FULL
with open(PATH, 'rb') as f:
    while True:
        head = f.read(2)
        if len(head) < 2:
            break
        data = f.read(head[0] << 8 | head[1])
        gc.collect()
        t0 = time.ticks_us()
        if full:
            smtverify.check_bundle(data, org_key)
        else:
            b = cbor.loads(data)
            r = cbor.loads(b["record"])
            smtverify.verify(r["root"], b["key"], b["proof"])
            smtverify.verify(r["mroot"], b["key"], b["mproof"])
        us += time.ticks_diff(time.ticks_us(), t0)
        n += 1
print(n, us)
"""


def bench_board(bundles: list[bytes], org_key: bytes, tmp: Path) -> list[tuple]:
    """The board's check of one member's bundle: the paths at 64K, the whole bundle (with
    the record's Ed25519 signature) at the heap it needs."""
    path = tmp / "bundles.bin"
    path.write_bytes(b"".join(len(b).to_bytes(2, "big") + b for b in bundles))
    rows = []
    unix = shutil.which("micropython", path=str(Path(sys.executable).parent))
    try:
        from leither_host import standin as standin_mod

        mp32: Path | None = standin_mod.build_standin("esp32").binary
    except standin_mod.Unavailable:
        mp32 = None
    runs = []
    if unix:
        subprocess.run([sys.executable, "-m", "leither_host", "build"], cwd=REPO, check=True,
                       capture_output=True)
        runs.append(("unix 64-bit", unix, {"MICROPYPATH": str(REPO / "build" / "unix")}))
    if mp32 is not None:
        runs.append(("ESP32 stand-in (32-bit, frozen)", str(mp32),
                     {"MICROPYPATH": ".frozen"}))  # frozen modules only, as on a board
    for label, binary, extra in runs:
        for full, heap in ((False, "64K"), (True, "64K"), (True, "96K"), (True, "111936")):
            script = BOARD_SCRIPT.replace("ORG", repr(org_key.hex())).replace(
                "PATH", repr(str(path))).replace("FULL", repr(full))
            proc = subprocess.run([binary, "-X", f"heapsize={heap}", "-c", script],
                                  env=dict(os.environ, **extra), capture_output=True, text=True,
                                  timeout=600, check=False)
            what = "whole bundle (signature, paths, role)" if full else "paths (balance, role)"
            if proc.returncode == 0:
                n, us = proc.stdout.split()
                rows.append((label, what, heap, f"{int(us) / int(n) / 1000:.1f} ms"))
            else:
                tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["?"]
                rows.append((label, what, heap, f"fails: {tail[0][:60]}"))
    return rows
