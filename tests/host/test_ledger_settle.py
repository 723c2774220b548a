# Settlement end to end on a real SQLite store: receipts and income in, signed root out;
# every kind of bad input is rejected and reported; the books replay; history stays provable.
import sqlite3

import pytest

from leither import cbor, crypto, ids, smtverify
from leither.errors import AuthError, DecodeError, ProofError
from leither_host.ledger import credit, pool, settle, tx
from leither_host.ledger.db import NODE_BYTES
from leither_host.ledger.settle import SettlementError

from ledger_world import make_world


def _settle(world, end_ms, **kw):
    return settle.run_epoch(world.org, end_ms=end_ms, now_ms=end_ms, **kw)


def test_income_split_by_performance_and_conserved(tmp_path):
    w = make_world(tmp_path / "o")
    got = pool.import_receipts(w.org.db, [
        w.receipt(0, 1, 2000, 5000, stored=3000, audits_ok=2),
        w.receipt(1, 0, 2000, 5000, stored=1000, served=50, audits_ok=1),
    ])
    assert got == {"accepted": 2, "rejected": []}
    pool.add_transaction(w.org.db, tx.income(w.founder, w.org.id, "invoice-1", 1_000_003),
                         w.org.id, w.org.supervisors())
    summary = _settle(w, 10_000, reports_dir=tmp_path / "reports")
    assert summary["epoch"] == 1 and summary["minted"] == 1_000_003
    assert summary["supply"] == 1_000_003 and summary["rejected"] == []
    total = sum(b for _k, b, _n in w.org.db.tree().items())
    assert total == 1_000_003
    # Member 1 proved 3x the storage of member 0: it earns more of the performance share.
    assert w.balance(1) > w.balance(0) > 0
    assert (tmp_path / "reports" / "epoch-1.json").exists()
    assert settle.verify_all(w.org)["ok"]


def test_bad_receipts_rejected_and_reported(tmp_path):
    w = make_world(tmp_path / "o")
    good = w.receipt(0, 1, 2000, 5000, stored=10)
    body = cbor.loads(good)
    body["stored"] = 10_000  # a partner inflating its own receipt
    forged = cbor.dumps(body)
    got = pool.import_receipts(w.org.db, [good, good, forged, b"\xa0"])
    assert got["accepted"] == 1
    reasons = [r["reason"] for r in got["rejected"]]
    assert any("duplicate" in r for r in reasons)
    assert any("bad signature" in r for r in reasons)
    assert len(reasons) == 3
    outsider = crypto.sign_keypair(b"\x09" * 32)
    from leither import receipt
    pool.import_receipts(w.org.db, [
        w.receipt(0, 1, 500, 900, stored=1),  # before the epoch starts (org created at 1000)
        w.receipt(0, 1, 4000, 6000, stored=1),  # overlaps the accepted 2000..5000
        receipt.make(outsider[0], w.ids[1], 2000, 3000, stored=1),  # issuer not a member
        w.receipt(0, 2, 9000, 99_000, stored=1),  # ends after this epoch: deferred
    ])
    summary = _settle(w, 10_000)
    reasons = " | ".join(r["reason"] for r in summary["rejected"])
    assert "out of period" in reasons and "duplicate" in reasons and "not a member" in reasons
    assert summary["receipts"] == 1 and summary["deferred"] == 1
    # The deferred receipt is paid by the epoch that covers it.
    assert _settle(w, 100_000)["receipts"] == 1
    assert pool.import_receipts(w.org.db, [good])["rejected"][0]["reason"].startswith("duplicate")


def test_transfers_need_both_signatures_and_fresh_nonces(tmp_path):
    w = make_world(tmp_path / "o")
    pool.add_transaction(w.org.db, tx.income(w.founder, w.org.id, "i1", 1_000_000), w.org.id,
                         w.org.supervisors())
    pool.import_receipts(w.org.db, [w.receipt(1, 0, 2000, 3000, served=1 << 10)])  # no credit
    _settle(w, 10_000)
    before = w.balance(0)
    assert before > 100
    one_sided = tx.transfer(w.seeds[0], w.org.id, w.pub(1), 100, 1)
    with pytest.raises(AuthError, match="countersigned"):
        pool.add_transaction(w.org.db, one_sided, w.org.id, w.org.supervisors())
    with pytest.raises(AuthError):
        tx.countersign(w.seeds[2], one_sided)  # not the receiver
    body = cbor.loads(tx.countersign(w.seeds[1], one_sided))
    body["amount"] = 1000  # altered after signing
    with pytest.raises(AuthError):
        pool.add_transaction(w.org.db, cbor.dumps(body), w.org.id, w.org.supervisors())
    good = tx.countersign(w.seeds[1], one_sided)
    pool.add_transaction(w.org.db, good, w.org.id, w.org.supervisors())
    too_much = tx.countersign(w.seeds[1], tx.transfer(w.seeds[0], w.org.id, w.pub(1),
                                                      before * 2, 2))
    pool.add_transaction(w.org.db, too_much, w.org.id, w.org.supervisors())
    summary = _settle(w, 20_000)
    assert [r["reason"][:12] for r in summary["rejected"]] == ["insufficient"]
    assert w.balance(0) == before - 100
    pool.add_transaction(w.org.db, good, w.org.id, w.org.supervisors())  # replay
    summary = _settle(w, 30_000)
    assert "replayed" in summary["rejected"][0]["reason"]
    assert w.balance(0) == before - 100
    assert settle.verify_all(w.org)["ok"]


def test_income_and_rewards_only_from_supervisors_within_cap(tmp_path):
    w = make_world(tmp_path / "o")
    with pytest.raises(AuthError, match="not a supervisor"):
        pool.add_transaction(w.org.db, tx.income(w.seeds[0], w.org.id, "x", 5), w.org.id,
                             w.org.supervisors())
    event = tx.income(w.founder, w.org.id, "dup", 1000)
    pool.add_transaction(w.org.db, event, w.org.id, w.org.supervisors())
    for reason in ("a", "b"):  # the cap is 5000 per epoch: one of the two fits
        pool.add_transaction(w.org.db, tx.reward(w.founder, w.org.id, w.ids[0], 5000, 1,
                                                 reason), w.org.id, w.org.supervisors())
    pool.add_transaction(w.org.db, tx.reward(w.founder, w.org.id, w.ids[0], 7, 2, "later"),
                         w.org.id, w.org.supervisors())
    summary = _settle(w, 10_000)
    reasons = [r["reason"] for r in summary["rejected"]]
    assert summary["minted"] == 1000 + 5000
    assert any("cap" in r for r in reasons) and any("epoch 2" in r for r in reasons)
    pool.add_transaction(w.org.db, event, w.org.id, w.org.supervisors())  # same income again
    summary = _settle(w, 20_000)
    assert summary["minted"] == 0 and "duplicate" in summary["rejected"][0]["reason"]


def test_burn_reduces_supply(tmp_path):
    w = make_world(tmp_path / "o")
    pool.add_transaction(w.org.db, tx.reward(w.founder, w.org.id, w.ids[2], 500, 1),
                         w.org.id, w.org.supervisors())
    _settle(w, 10_000)
    pool.add_transaction(w.org.db, tx.burn(w.seeds[2], w.org.id, 200, 1), w.org.id,
                         w.org.supervisors())
    summary = _settle(w, 20_000)
    assert summary["burned"] == 200 and summary["supply"] == 300 and w.balance(2) == 300
    assert settle.verify_all(w.org)["supply"] == 300


def test_no_contract_no_income(tmp_path):
    w = make_world(tmp_path / "o", contract=None)
    pool.add_transaction(w.org.db, tx.income(w.founder, w.org.id, "i", 10), w.org.id,
                         w.org.supervisors())
    summary = _settle(w, 10_000)
    assert summary["minted"] == 0 and "no contract" in summary["rejected"][0]["reason"]


def test_credit_netting_pays_debtor_to_creditor_and_carries_the_rest(tmp_path):
    w = make_world(tmp_path / "o")
    pool.add_transaction(w.org.db, tx.reward(w.founder, w.org.id, w.ids[0], 5, 1), w.org.id,
                         w.org.supervisors())
    # Only paired nodes with a credit line net their service: member 1 grants member 0 one;
    # members 2 and 3 have none, so their receipts only earn through the contract.
    credit.store_grant(w.org.db, credit.grant(w.seeds[1], w.org.id, w.ids[0], 100), w.org.id)
    pool.import_receipts(w.org.db, [w.receipt(2, 3, 2000, 3000, stored=50)])
    # The price is 2^30 per GiB-hour: 1 token a byte-hour. Member 0 used 9 byte-hours of
    # member 1's storage, member 1 used 2 of member 0's: member 0 owes 7.
    pool.import_receipts(w.org.db, [w.receipt(0, 1, 2000, 3000, stored=9),
                                    w.receipt(1, 0, 2000, 3000, stored=2)])
    _settle(w, 10_000)
    debts = {(d, c): a for d, c, a in w.org.db.conn.execute("SELECT * FROM credit_debts")}
    assert debts == {(w.ids[0], w.ids[1]): 2}  # 5 paid from member 0's balance, 2 carried
    report = dict(w.org.db.conn.execute("SELECT member, report FROM reports WHERE epoch=1"))
    assert '"credit_out": 5' in report[w.ids[0]]
    assert '"credit_in": 0' in report[w.ids[3]] and '"receipts": 1' in report[w.ids[3]]
    assert '"credit_out": 0' in report.get(w.ids[2], '"credit_out": 0')
    lines = credit.lines(w.org.db)
    assert lines == [{"grantor": w.ids[1], "grantee": w.ids[0], "limit": 100, "used": 2,
                      "left": 98, "over": False}]
    assert settle.verify_all(w.org)["ok"]


def test_tampering_is_found_by_verify(tmp_path):
    w = make_world(tmp_path / "o")
    pool.add_transaction(w.org.db, tx.reward(w.founder, w.org.id, w.ids[1], 50, 1), w.org.id,
                         w.org.supervisors())
    _settle(w, 10_000)
    assert settle.verify_all(w.org)["ok"]
    # Someone edits the file: member 1's leaf now says 51 (its stored hash left as it was).
    conn = sqlite3.connect(w.org.db.path)
    changed = 0
    for page, data in conn.execute("SELECT page, data FROM node_pages").fetchall():
        data = bytearray(data)
        for off in range(0, len(data), NODE_BYTES):
            if data[off] == 2 and int.from_bytes(data[off + 53:off + 61], "big") == 50:
                data[off + 53:off + 61] = (51).to_bytes(8, "big")
                changed += 1
        conn.execute("UPDATE node_pages SET data=? WHERE page=?", (bytes(data), page))
    conn.commit()
    conn.close()
    assert changed == 1
    w.org.db._pages.clear()
    w.org.db._tree = None
    with pytest.raises(SettlementError, match="sum"):
        settle.verify_all(w.org)


def test_history_and_proofs_per_epoch(tmp_path):
    w = make_world(tmp_path / "o")
    roots = []
    for epoch, amount in ((1, 10), (2, 20), (3, 30)):
        pool.add_transaction(w.org.db, tx.reward(w.founder, w.org.id, w.ids[3], amount, epoch),
                             w.org.id, w.org.supervisors())
        roots.append(bytes.fromhex(_settle(w, epoch * 10_000)["root"]))
    key = w.raw(3)
    for epoch, root in enumerate(roots, 1):
        tree = w.org.db.tree(epoch)
        assert tree.root_hash() == root
        assert smtverify.verify(root, key, tree.prove(key)) == ([10, 30, 60][epoch - 1], 0)
        record = settle.open_epoch_record(bytes(w.org.db.epoch(epoch)["record"]), w.org.public)
        assert record["root"] == root
    with pytest.raises(ProofError):
        smtverify.verify(roots[0], key, w.org.db.tree(3).prove(key))
    absent = ids.raw_id(b"nobody")
    assert smtverify.verify(roots[2], absent, w.org.db.tree().prove(absent)) is None


def test_membership_needs_signed_application_and_supervisor(tmp_path):
    from leither_host.ledger.org import check_member, make_application, open_member_list
    w = make_world(tmp_path / "o", members=1)
    newcomer = b"\x33" * 32
    app = make_application(newcomer, w.org.id, "member", "late")
    bad = bytearray(app)
    bad[-5] ^= 1
    with pytest.raises((AuthError, DecodeError)):
        w.org.submit(bytes(bad))
    app_id = w.org.submit(app)
    with pytest.raises(AuthError, match="not a supervisor"):
        w.org.approve(app_id, w.seeds[0])
    w.org.approve(app_id, w.founder, role="guest")
    listing = open_member_list(w.org.member_list(), w.org.public)
    member_id = ids.make_id(crypto.sign_public(newcomer))
    _record, proof = w.org.prove_member(member_id)
    assert check_member(listing, member_id, proof) == ("guest", w.org.member(member_id)[
        "joined_ms"])
    outsider = ids.make_id(b"outsider")
    assert check_member(listing, outsider, w.org.prove_member(outsider)[1]) is None
    with pytest.raises(ProofError):  # one member's path does not prove another
        check_member(listing, w.ids[0], proof)
    assert (listing["version"], listing["count"]) == (3, 3)  # founder, member 0, newcomer
    with pytest.raises(AuthError):
        open_member_list(w.org.member_list(), crypto.sign_public(w.founder))


def test_big_epoch_replays(tmp_path):
    # More receipts than one CBOR string of default size holds as packed IDs (2048 x 32 bytes).
    w = make_world(tmp_path / "o", members=2)
    pool.import_receipts(w.org.db, [w.receipt(n % 2, 1 - n % 2, 2000 + n * 2, 2001 + n * 2,
                                              stored=1) for n in range(2100)], parallel=False)
    assert _settle(w, 10_000)["receipts"] == 2100
    assert settle.verify_all(w.org, check_receipt_signatures=False)["ok"]
