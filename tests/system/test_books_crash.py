# A bookkeeper survives being killed: a real `leither books serve` process replaying an etcd
# log of receipts and epoch closes is SIGKILLed at random moments and restarted; it resumes
# where its last committed log entry left it, and ends with exactly the books of a second
# bookkeeper that was never killed — both sign every epoch's record, so every epoch becomes
# final only if the killed one's records are byte-identical to the other's.
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leither import cbor, crypto, ids, receipt
from leither_host.ledger import bookkeepers as bk
from leither_host.ledger import settle
from leither_host.ledger.etcdcluster import EtcdCluster, etcd_binary
from leither_host.ledger.home import Home
from leither_host.ledger.org import Organization, make_application, make_approval

pytest.importorskip("etcd3gw", reason="bookkeepers need the etcd3gw package")
pytestmark = pytest.mark.skipif(etcd_binary() is None,
                                reason="etcd is not installed (Debian package etcd-server)")

REPO = Path(__file__).resolve().parents[2]
KILLS = 6  # bounded: each costs a process start (~1 s on a loaded machine)
ROUNDS = 10  # epochs in the log
RECEIPTS = 60  # per epoch
T0 = 1_000
CONTRACT = """
format = "leither-contract/1"
name = "crash"
[[share]]
name = "work"
millionths = 1000000
basis = "performance"
weights = { stored = 1000000 }
"""


def _serve(home, org_id, cluster, directory):
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'firmware'}:{REPO / 'host_tools'}")
    return subprocess.Popen(
        [sys.executable, "-m", "leither_host", "books", "serve", "--home", str(home),
         "--org-id", org_id, "--etcd", ",".join(cluster.endpoints), "--key", "bk0",
         "--dir", str(directory)], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)


def test_killed_bookkeeper_resumes_to_the_same_books(tmp_path):
    rng = random.Random(13)
    home = tmp_path / "home"
    h = Home.resolve(str(home))
    founder = h.key("founder")[0]
    seeds = [h.key(f"bk{i}")[0] for i in range(2)]
    with EtcdCluster(tmp_path / "etcd", 1) as cluster:
        org = Organization.create(tmp_path / "org", "crash", founder, now_ms=T0)
        bk.set_bookkeepers(org, [(f"bk{i}", crypto.sign_public(s)) for i, s in
                                 enumerate(seeds)], cluster.endpoints)
        books = org.books()
        log = bk.log_for(books)
        bk.publish_genesis(org, log)
        nodes = [bytes([9, i]) * 16 for i in range(6)]
        node_ids = [ids.make_id(crypto.sign_public(s)) for s in nodes]
        apps = [make_application(s, org.id, "member", "", T0 + 1) for s in nodes]
        bk.submit(log, [("application", a) for a in apps], T0 + 1)
        bk.submit(log, [("approval", make_approval(founder, org.id, a, "member", T0 + 2))
                        for a in apps], T0 + 2)
        bk.submit(log, [("contract", bk.make_deploy(founder, org.id, CONTRACT, T0 + 3))], T0 + 3)
        for r in range(ROUNDS):
            start = T0 + 10 + r * 1000
            made = [receipt.make(nodes[i % 6], node_ids[(i % 6 + 1 + (i // 6) % 5) % 6], start + i,
                                 start + 500 + i, stored=1 + rng.randrange(1 << 20))
                    for i in range(RECEIPTS)]
            for j in range(0, RECEIPTS, 20):
                bk.submit(log, [("receipt", d) for d in made[j:j + 20]], start)
            bk.submit(log, [("close", bk.make_close(founder, org.id, r + 1, start + 999))],
                      start + 999)
        head = log.head()
        org.close()
        directory = tmp_path / "killed"
        kills = 0
        child = _serve(home, org.id, cluster, directory)
        deadline = time.monotonic() + 240
        try:
            while True:
                assert time.monotonic() < deadline, "the bookkeeper never caught up"
                if kills < KILLS:
                    time.sleep(rng.uniform(0.8, 2.0))
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
                    kills += 1
                    child = _serve(home, org.id, cluster, directory)
                    continue
                time.sleep(0.2)
                status = log.get(log.key("status", bk.key_id(crypto.sign_public(seeds[0]))))
                if status and cbor.loads(status)["seq"] == head:
                    break
        finally:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        # The second bookkeeper replays the same log, unharmed; every epoch needs both.
        other = bk.Bookkeeper(tmp_path / "other", seeds[1], bk.log_for(books))
        while other.step():
            pass
        other.step()
        killed = bk.Bookkeeper(directory, seeds[0], bk.log_for(books))
        try:
            killed.step()  # collects the quorums the other one completed
            for k in (other, killed):
                org_k = k.open()
                assert org_k.db.last_epoch()["epoch"] == ROUNDS
                assert int(org_k.db.get_meta("final_epoch")) == ROUNDS
            for n in range(1, ROUNDS + 1):
                assert bytes(killed.open().db.epoch(n)["record"]) == \
                    bytes(other.open().db.epoch(n)["record"])
            assert settle.verify_all(killed.open())["ok"]
            # Every receipt was decided once (paid, or refused as an overlapping duplicate).
            assert killed.open().db.conn.execute(
                "SELECT count(*) FROM receipt_pool WHERE status!='pending'").fetchone()[0] == \
                ROUNDS * RECEIPTS
        finally:
            other.close()
            killed.close()
