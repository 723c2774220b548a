# Bookkeepers on a real 3-member etcd cluster on loopback (own data dirs under tmp, free ports,
# stopped after): inputs from several hosts settle to one co-signed root; the books survive an
# etcd member and a bookkeeper dying mid-epoch; a bookkeeper that mis-credits is outvoted and
# reported; a replayed input is applied once; losing etcd's quorum stalls settlement (no fork)
# until it returns. Skipped where etcd is not installed (Debian: etcd-server).
import time
from unittest import mock

import pytest

from leither import cbor, crypto, ids, smtverify
from leither.errors import AuthError
from leither_host.commands.ledger import verify_bundle
from leither_host.ledger import bookkeepers as bk
from leither_host.ledger import members, settle, tx
from leither_host.ledger.etcdcluster import EtcdCluster, etcd_binary
from leither_host.ledger.etcdlog import EtcdLog, LogUnavailable
from leither_host.ledger.org import Organization, make_application, make_approval

from ledger_world import CONTRACT

pytest.importorskip("etcd3gw", reason="bookkeepers need the etcd3gw package")
pytestmark = pytest.mark.skipif(etcd_binary() is None,
                                reason="etcd is not installed (Debian package etcd-server)")

BK_SEEDS = [bytes([0x60 + i]) * 32 for i in range(3)]
T0 = 1_000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = EtcdCluster(tmp_path_factory.mktemp("etcd"), 3)
    try:
        c.start()
        yield c
    finally:
        c.close()


class World:
    """An organization kept by three bookkeepers, and submitters talking to different etcd
    members (the "hosts")."""

    def __init__(self, tmp, cluster, founder_byte):
        self.tmp = tmp
        self.cluster = cluster
        self.founder = bytes([founder_byte]) * 32
        self.home = Organization.create(tmp / "org", "coop", self.founder, now_ms=T0)
        bk.set_bookkeepers(self.home, [(f"bk{i}", crypto.sign_public(s))
                                       for i, s in enumerate(BK_SEEDS)], cluster.endpoints)
        self.books = self.home.books()
        self.log = bk.log_for(self.books)
        assert bk.publish_genesis(self.home, self.log)
        # Each submitting host reaches the cluster through another member first.
        eps = cluster.endpoints
        self.hosts = [EtcdLog(eps[i:] + eps[:i], bk.PREFIX + self.home.id) for i in range(3)]
        self.keepers = [self.keeper(i) for i in range(3)]
        self.seeds = [bytes([founder_byte, 0x10 + i]) * 16 for i in range(4)]
        self.ids = [ids.make_id(crypto.sign_public(s)) for s in self.seeds]

    def keeper(self, i, cls=bk.Bookkeeper):
        return cls(self.tmp / f"books{i}", BK_SEEDS[i], bk.log_for(self.books))

    def submit(self, inputs, host=0, now=T0 + 100):
        return bk.submit(self.hosts[host], inputs, now)

    def admit_all(self):
        apps = [make_application(s, self.home.id, "member", f"m{i}", T0 + 10)
                for i, s in enumerate(self.seeds)]
        self.submit([("application", a) for a in apps], host=1)
        self.submit([("approval", make_approval(self.founder, self.home.id, a, "member",
                                                T0 + 20)) for a in apps], host=2)
        self.submit([("contract", bk.make_deploy(self.founder, self.home.id, CONTRACT,
                                                 T0 + 30))])

    def close(self, epoch, until, host=0):
        return self.submit([("close", bk.make_close(self.founder, self.home.id, epoch, until))],
                           host=host, now=until)

    def step(self, keepers=None):
        for k in keepers or self.keepers:
            while k.step():
                pass
        for k in keepers or self.keepers:  # quorums form once all have published
            k.step()

    def balance(self, keeper, i):
        found = keeper.open().db.tree().get(ids.id_raw(self.ids[i]))
        return found[0] if found else 0

    def shutdown(self):
        for k in self.keepers:
            k.close()
        self.home.close()


@pytest.fixture
def world(tmp_path, cluster, request):
    w = World(tmp_path, cluster, 0x20 + len(request.node.name) % 200)
    yield w
    w.shutdown()


def _transfer(w, a, b, amount, nonce):
    return tx.countersign(w.seeds[b], tx.transfer(w.seeds[a], w.home.id,
                                                  crypto.sign_public(w.seeds[b]), amount, nonce))


def _fund(w):
    """Epoch 1: members admitted, a receipt from two hosts, an income split by the contract."""
    from leither import receipt

    w.admit_all()
    r1 = receipt.make(w.seeds[0], w.ids[1], T0 + 50, T0 + 400, stored=3000, audits_ok=2)
    r2 = receipt.make(w.seeds[2], w.ids[3], T0 + 50, T0 + 400, stored=1000, served=9)
    w.submit([("receipt", r1)], host=1)
    w.submit([("receipt", r2)], host=2)
    w.submit([("tx", tx.income(w.founder, w.home.id, "invoice-1", 1_000_000, now_ms=T0 + 60))])
    w.close(1, T0 + 500)


def test_three_bookkeepers_cosign_one_root(world):
    w = world
    _fund(w)
    w.step()
    roots = {bytes(k.open().db.epoch(1)["root"]) for k in w.keepers}
    assert len(roots) == 1
    assert [k.rejected for k in w.keepers] == [[], [], []]
    assert w.balance(w.keepers[0], 1) > w.balance(w.keepers[0], 3) > 0  # stored 3000 vs 1000
    # Transfers from two hosts in epoch 2.
    w.submit([("tx", _transfer(w, 1, 0, 50, 1))], host=1)
    w.submit([("tx", _transfer(w, 3, 2, 7, 1))], host=2)
    one_sided = tx.transfer(w.seeds[2], w.home.id, crypto.sign_public(w.seeds[1]), 5, 1)
    w.submit([("tx", one_sided)], host=0)  # queued unchecked, refused by every epoch
    w.close(2, T0 + 900)
    w.step()
    for k in w.keepers:
        assert [r for r, in k.open().db.conn.execute(
            "SELECT reason FROM rejections WHERE epoch=2")] == [
            "transfer is not countersigned by its receiver"]
    for k in w.keepers:
        org = k.open()
        record = settle.open_epoch_record(bytes(org.db.epoch(2)["record"]), org.public,
                                          org.books(), final=True)
        assert len(record["sigs"]) >= 2
        assert settle.verify_all(org)["ok"]
    assert len({bytes(k.open().db.epoch(2)["root"]) for k in w.keepers}) == 1
    st = bk.status(w.log, w.books)
    assert st["agree"] and all(r["lag"] == 0 and r["final"] == 2 for r in st["bookkeepers"])
    # A proof bundle carries the quorum's signatures; host and board check k of n.
    org = w.keepers[1].open()
    raw = ids.id_raw(w.ids[0])
    row = org.db.epoch(2)
    record = cbor.loads(bytes(row["record"]))
    bundle = {"org_key": org.public, "record": bytes(row["record"]), "member": w.ids[0],
              "key": raw, "proof": org.db.tree().prove(raw),
              "mproof": members.prove(org.db, record["members"], raw),
              "books": bytes(org.db.get_meta("books"))}
    board = smtverify.check_bundle(cbor.dumps(bundle), org.public)
    host = verify_bundle(cbor.dumps(bundle))
    assert board["balance"] == host["balance"] == w.balance(w.keepers[0], 0) == 50
    assert board["role"] == "member"
    one = dict(record, sigs=record["sigs"][:1])  # below the quorum
    with pytest.raises(AuthError, match="quorum"):
        smtverify.check_bundle(cbor.dumps(dict(bundle, record=cbor.dumps(one))), org.public)
    twice = dict(record, sigs=[record["sigs"][0], record["sigs"][0]])  # one signer twice
    with pytest.raises(AuthError, match="quorum"):
        smtverify.check_bundle(cbor.dumps(dict(bundle, record=cbor.dumps(twice))), org.public)


def test_etcd_member_and_bookkeeper_die_mid_epoch(world, cluster):
    w = world
    _fund(w)
    w.step()
    w.submit([("tx", _transfer(w, 1, 0, 10, 1))], host=1)
    w.step()
    dead = w.keepers.pop(2)  # killed mid-epoch: applied the transfer, never sees the close
    dead.org = None  # no clean close: its SQLite file is left as a kill leaves it
    cluster.stop(0, kill=True)
    try:
        w.submit([("tx", _transfer(w, 3, 0, 5, 1))], host=0)  # host 0 fails over
        w.close(2, T0 + 900, host=0)
        w.step()
        for k in w.keepers:
            assert int(k.open().db.get_meta("final_epoch")) == 2
    finally:
        cluster.start(0)
    revived = w.keeper(2)
    w.keepers.append(revived)
    w.step()
    assert revived.applied() == w.keepers[0].applied()
    assert bytes(revived.open().db.epoch(2)["root"]) == bytes(w.keepers[0].open().db.epoch(2)[
        "root"])
    assert int(revived.open().db.get_meta("final_epoch")) == 2
    assert bk.status(w.log, w.books)["agree"]


class MisCrediting(bk.Bookkeeper):
    """A bookkeeper whose settlement credits member 0 one token taken from the treasury."""

    victim: bytes = b""
    thief: bytes = b""

    def settle(self, until):
        real = settle.compute

        def patched(ctx, receipts, txs):
            plan = real(ctx, receipts, txs)
            before = dict(plan.changes)
            for raw, delta in ((self.victim, -1), (self.thief, 1)):
                bal, nonce = before.get(raw) or ctx.get(raw) or (0, 0)
                plan.changes[raw] = (bal + delta, nonce)
            return plan

        with mock.patch.object(settle, "compute", patched):
            return super().settle(until)


def test_miscrediting_bookkeeper_is_outvoted_and_reported(world):
    w = world
    bad = w.keeper(2, MisCrediting)
    bad.victim = w.home.raw
    bad.thief = ids.id_raw(w.ids[0])
    w.keepers[2] = bad
    _fund(w)
    w.step(w.keepers[:2])
    with pytest.raises(settle.SettlementError, match="a quorum signed root"):
        bad.step()
    w.step(w.keepers[:2])
    for k in w.keepers[:2]:
        assert int(k.open().db.get_meta("final_epoch")) == 1
    st = bk.status(w.log, w.books)
    assert not st["agree"]
    [report] = st["dissent"]
    assert report["bookkeeper"] == bad.id and report["epoch"] == 1
    assert report["root"] != report["quorum_root"]
    assert report["quorum_root"] == bytes(w.keepers[0].open().db.epoch(1)["root"]).hex()
    # The evidence is its own signed record: anyone can check it signed that root.
    evidence = cbor.loads(bytes.fromhex(report["record"]))
    settle.open_epoch_record(bytes.fromhex(report["record"]), w.home.public, w.books)
    assert evidence["root"].hex() == report["root"]


def test_replayed_input_applied_once_and_books_rebuild_from_log(world):
    w = world
    _fund(w)
    pay = _transfer(w, 1, 0, 25, 1)
    first = w.submit([("tx", pay)], host=1, now=T0 + 600)
    assert w.submit([("tx", pay)], host=2, now=T0 + 600) == (first[0], False)  # same bytes
    w.submit([("tx", pay)], host=0, now=T0 + 601)  # same input, another entry
    w.close(2, T0 + 900)
    w.step()
    before = w.balance(w.keepers[0], 0)
    org = w.keepers[0].open()
    assert bytes(org.db.epoch(2)["root"]) == bytes(w.keepers[1].open().db.epoch(2)["root"])
    w.submit([("tx", pay)], host=1, now=T0 + 950)  # replayed after it settled: nonce used
    w.close(3, T0 + 1000)
    w.step()
    assert w.balance(w.keepers[0], 0) == before
    # A bookkeeper's books made again from the log alone land on the same roots.
    fresh = bk.Bookkeeper(w.tmp / "rebuilt", BK_SEEDS[1], bk.log_for(w.books))
    while fresh.step():
        pass
    try:
        for n in (1, 2, 3):
            assert bytes(fresh.open().db.epoch(n)["root"]) == bytes(org.db.epoch(n)["root"])
        assert int(fresh.open().db.get_meta("final_epoch")) == 3
    finally:
        fresh.close()


def test_no_etcd_quorum_stalls_then_resumes(world, cluster):
    w = world
    _fund(w)
    w.step()
    cluster.stop(1)
    cluster.stop(2)
    try:
        with pytest.raises(LogUnavailable):
            w.close(2, T0 + 900)
        for k in w.keepers:
            with pytest.raises(LogUnavailable):
                k.step()
            assert k.open().db.last_epoch()["epoch"] == 1  # no fork: nothing settled
    finally:
        cluster.start(1)
        cluster.start(2)
        cluster.wait_ready()
    w.close(2, T0 + 900)
    w.step()
    assert len({bytes(k.open().db.epoch(2)["root"]) for k in w.keepers}) == 1
    assert all(int(k.open().db.get_meta("final_epoch")) == 2 for k in w.keepers)


def test_cli_story(tmp_path, cluster, capsys):
    import json

    from leither_host.cli import main
    from leither_host.ledger.home import Home

    home = tmp_path / "home"

    def run(*argv):
        code = main([*argv, "--home", str(home), "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        return json.loads(out)

    run("org", "create", "coop")
    h = Home.resolve(str(home))
    eps = ",".join(cluster.endpoints)
    for i in range(3):
        h.key(f"bk{i}")  # each bookkeeper's key (on its own host, in life)
        got = run("org", "bookkeepers", "add", f"bk{i}", "--bk-key", f"bk{i}", "--etcd", eps)
        assert got["quorum"] == [1, 2, 2][i]  # a majority
    assert [b["name"] for b in run("org", "bookkeepers", "ls")["bookkeepers"]] == [
        "bk0", "bk1", "bk2"]
    assert run("org", "bookkeepers", "publish")["published"] is True
    code = main(["settle", "--home", str(home)])
    assert code == 1 and "bookkeepers" in capsys.readouterr()[1]
    org_id = run("org", "show")["id"]
    keepers = [bk.Bookkeeper(tmp_path / f"b{i}", h.key(f"bk{i}")[0],
                             EtcdLog(cluster.endpoints, bk.PREFIX + org_id)) for i in range(3)]
    app = tmp_path / "alice.app"
    assert main(["org", "apply", "--to", org_id, "--key", "alice", "--out", str(app),
                 "--home", str(home)]) == 0
    capsys.readouterr()
    assert run("books", "submit", str(app))["inputs"] == ["application"]
    assert main(["org", "approve", str(app), "--home", str(home)]) == 1  # not on one host
    assert "books approve" in capsys.readouterr()[1]
    assert run("books", "approve", str(app))["role"] == "member"
    (tmp_path / "c.toml").write_text(CONTRACT)
    assert run("books", "deploy", str(tmp_path / "c.toml"))["name"] == "test-coop"
    closed = run("books", "close")
    assert closed["epoch"] == 1
    try:
        for _ in range(2):
            for k in keepers:
                k.step()
        st = run("books", "status")
        assert st["agree"] and st["epochs"][-1] == {
            "epoch": 1, "final": True, "root": st["epochs"][-1]["root"], "signed": 3}
        assert all(r["lag"] == 0 for r in st["bookkeepers"])
        assert keepers[0].open().db.conn.execute(
            "SELECT count(*) FROM members").fetchone()[0] == 2
        assert keepers[0].open().db.conn.execute(
            "SELECT count(*) FROM contracts").fetchone()[0] == 1
        assert [k.rejected for k in keepers] == [[], [], []]
        # A proof from a bookkeeper's books carries the quorum; host and board check it.
        proof = tmp_path / "alice.proof"
        alice = ids.make_id(h.key("alice")[1])
        run("ledger", "proof", alice, "--books", str(tmp_path / "b0"), "--out", str(proof))
        checked = run("ledger", "verify", "--proof", str(proof))
        assert checked["role"] == "member" and checked["epoch"] == 1
        org_key = keepers[0].open().public
        assert smtverify.check_bundle(proof.read_bytes(), org_key)["role"] == "member"
    finally:
        for k in keepers:
            k.close()
    # `books serve` on a fresh directory rebuilds the books from the log, to the same root.
    served = run("books", "serve", "--key", "bk1", "--dir", str(tmp_path / "served"), "--for",
                 "1.5")
    assert served["applied"] == st["head"]
    again = bk.Bookkeeper(tmp_path / "served", h.key("bk1")[0],
                          EtcdLog(cluster.endpoints, bk.PREFIX + org_id))
    try:
        assert bytes(again.open().db.epoch(1)["root"]).hex() == st["epochs"][-1]["root"]
    finally:
        again.close()


def test_local_books_for_the_demo(tmp_path):
    # The demo's helper: its own cluster and bookkeepers, each in a thread.
    from leither_host.ledger.books_local import LocalBooks

    founder = b"\x51" * 32
    org = Organization.create(tmp_path / "org", "demo", founder, now_ms=T0)
    try:
        with LocalBooks(org, tmp_path / "local", etcd_members=1) as local:
            local.serve_in_threads()
            local.submit([("close", bk.make_close(founder, org.id, 1, T0 + 100))], T0 + 100)
            deadline = time.monotonic() + 60
            while not local.status()["epochs"] or not local.status()["epochs"][-1]["final"]:
                assert time.monotonic() < deadline, local.status()
                time.sleep(0.1)
            assert local.status()["agree"]
    finally:
        org.close()


def test_close_cannot_end_after_it_was_signed(world):
    from leither_host.errors import CliError
    from leither_host.ledger.records import sign_record

    w = world
    with pytest.raises(CliError, match="future"):
        bk.make_close(w.founder, w.home.id, 1, T0 + 500, now_ms=T0 + 400)
    public = crypto.sign_public(w.founder)
    early = sign_record(w.founder, bk.CLOSE, {  # made by hand, past make_close's check
        "type": "close", "org": w.home.id, "epoch": 1, "until": T0 + 500, "time": T0 + 400,
        "by": ids.make_id(public), "by_key": public})
    w.submit([("close", early)])
    w.step()
    for k in w.keepers:
        assert k.open().db.last_epoch() is None
        assert "after it was signed" in k.rejected[-1]["reason"]
