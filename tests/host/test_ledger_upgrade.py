# Books written before the member set became a tree (main before issue 13: the member list was
# one org-signed record of every member) open, replay and keep settling with today's code: the
# old epochs replay from the signed lists they were settled with, and the first open grows the
# member tree from the members the books hold. The old code is taken from git history and run
# in a child process.
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from leither import cbor, crypto, ids, smtverify
from leither_host.commands.ledger import verify_bundle
from leither_host.ledger import members, settle
from leither_host.ledger.org import Organization

REPO = Path(__file__).resolve().parents[2]
BEFORE = "cc1ef5c"  # main just before issue 13's changes to the ledger
OLD_SCRIPT = """
import sys
from leither_host.ledger import pool, settle, tx
from leither_host.ledger.org import Organization, make_application
sys.path.insert(0, sys.argv[2])
from ledger_world import CONTRACT
founder = b"\\x01" * 32
org = Organization.create(sys.argv[1], "old", founder, now_ms=1000)
for i in range(3):
    seed = bytes([0x30 + i]) * 32
    org.approve(org.submit(make_application(seed, org.id, "member", "m%d" % i, 1500)), founder,
                now_ms=2000)
pool.deploy_contract(org.db, CONTRACT, set(), now_ms=2500)
pool.add_transaction(org.db, tx.income(founder, org.id, "i1", 1000000), org.id,
                     org.supervisors())
settle.run_epoch(org, end_ms=5000, now_ms=5000)
org.close()
"""


def test_books_from_before_the_member_tree(tmp_path):
    proc = subprocess.run(["git", "-C", str(REPO), "archive", BEFORE, "firmware/leither",
                           "host_tools/leither_host"], capture_output=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"no git history of {BEFORE} here")
    old = tmp_path / "old-code"
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(old, filter="data")
    env = dict(os.environ, PYTHONPATH=f"{old / 'firmware'}:{old / 'host_tools'}")
    books = tmp_path / "org"
    subprocess.run([sys.executable, "-c", OLD_SCRIPT, str(books), str(REPO / "tests" / "host")],
                   env=env, check=True, cwd=tmp_path)
    org = Organization(books)  # grows the member tree
    try:
        assert members.latest(org.db)["count"] == 4
        assert settle.verify_all(org)["ok"]  # epoch 1 replays from the old signed list
        summary = settle.run_epoch(org, end_ms=6000, now_ms=6000)
        assert summary["epoch"] == 2
        assert settle.verify_all(org)["ok"]
        member = ids.make_id(crypto.sign_public(bytes([0x31]) * 32))
        raw = ids.id_raw(member)
        row = org.db.last_epoch()
        record = cbor.loads(bytes(row["record"]))
        bundle = cbor.dumps({"org_key": org.public, "record": bytes(row["record"]),
                             "member": member, "key": raw, "proof": org.db.tree().prove(raw),
                             "mproof": members.prove(org.db, record["members"], raw)})
        assert verify_bundle(bundle)["role"] == "member"
        assert smtverify.check_bundle(bundle, org.public)["joined"] == 2000
    finally:
        org.close()
