# Issue 13's bugs, each pinned by an example: a settlement is all or nothing, minting past the
# 64-bit supply is refused up front (the org is never wedged), queued inputs can be listed and
# dropped, a member's record is not silently replaced, an overdraw by exactly 1 is refused,
# and an epoch cannot end in the future.
import json

import pytest

from leither import crypto
from leither.compat import time_ms
from leither_host.cli import main
from leither_host.errors import CliError
from leither_host.ledger import pool, settle, tx
from leither_host.ledger.org import make_application

from ledger_world import CONTRACT, make_world


def run(capsys, home, *argv):
    code = main([*argv, "--home", str(home)])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, home, *argv):
    code, out, err = run(capsys, home, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def home(tmp_path, capsys):
    home = tmp_path / "home"
    run_json(capsys, home, "org", "create", "coop")
    assert run(capsys, home, "org", "apply", "--key", "alice", "--name", "alice")[0] == 0
    run_json(capsys, home, "org", "approve", "alice")
    (tmp_path / "c.toml").write_text(CONTRACT)
    assert run(capsys, home, "contract", "deploy", str(tmp_path / "c.toml"))[0] == 0
    return home


def test_failed_settle_queues_nothing(home, capsys):
    code, _out, err = run(capsys, home, "settle", "--income", "7", "--reward", "nobody:1")
    assert code == 1 and "nobody" in err
    assert run_json(capsys, home, "ledger", "queue") == []
    summary = run_json(capsys, home, "settle")
    assert summary["minted"] == 0 and summary["supply"] == 0
    # The same inputs, given correctly, settle in one go.
    summary = run_json(capsys, home, "settle", "--income", "7", "--reward", "alice:1")
    assert (summary["minted"], summary["supply"]) == (8, 8)


def test_supply_overflow_is_a_clear_error_and_never_wedges(home, capsys):
    top = settle.MAX_SUPPLY
    assert run_json(capsys, home, "settle", "--income", str(top))["supply"] == top
    code, _out, err = run(capsys, home, "settle", "--income", "1")
    assert code == 1 and "past" in err and "Traceback" not in err
    assert err.count("\n") == 1  # one line
    code, _out, err = run(capsys, home, "settle", "--income", str(1 << 64))
    assert code == 1 and "--income must be" in err
    assert run_json(capsys, home, "settle")["supply"] == top  # the org still settles
    assert run_json(capsys, home, "ledger", "verify")["ok"]


def test_queued_overflow_is_rejected_by_the_epoch(tmp_path):
    w = make_world(tmp_path / "o", members=2)
    sup = w.org.supervisors()
    pool.add_transaction(w.org.db, tx.income(w.founder, w.org.id, "big", settle.MAX_SUPPLY),
                         w.org.id, sup)
    settle.run_epoch(w.org, end_ms=5000, now_ms=5000)
    pool.add_transaction(w.org.db, tx.income(w.founder, w.org.id, "one", 1), w.org.id, sup)
    summary = settle.run_epoch(w.org, end_ms=6000, now_ms=6000)
    assert summary["minted"] == 0 and summary["supply"] == settle.MAX_SUPPLY
    assert "past" in summary["rejected"][0]["reason"]
    assert settle.run_epoch(w.org, end_ms=7000, now_ms=7000)["rejected"] == []
    assert settle.verify_all(w.org)["ok"]


def test_list_and_drop_a_queued_input(home, tmp_path, capsys):
    from leither_host.ledger.home import Home
    from leither_host.ledger.org import Organization

    h = Home.resolve(str(home))
    seed, _ = h.key("default")
    org = Organization(h.org_dir("coop"))
    try:
        stuck = tx.income(seed, org.id, "stuck", 5)
        pool.add_transaction(org.db, stuck, org.id, org.supervisors())
    finally:
        org.close()
    queued = run_json(capsys, home, "ledger", "queue")
    assert [(q["type"], q["amount"]) for q in queued] == [("income", 5)]
    code, _out, err = run(capsys, home, "ledger", "drop", "zz")
    assert code == 1 and "not a transaction ID" in err
    dropped = run_json(capsys, home, "ledger", "drop", queued[0]["id"][:10])
    assert dropped["id"] == queued[0]["id"]
    assert run_json(capsys, home, "ledger", "queue") == []
    assert run_json(capsys, home, "settle")["minted"] == 0
    (tmp_path / "i.tx").write_bytes(stuck)
    assert run_json(capsys, home, "ledger", "submit", str(tmp_path / "i.tx"))[0]["amount"] == 5
    assert run_json(capsys, home, "settle")["minted"] == 5


def test_until_in_the_future_is_refused(home, capsys):
    code, _out, err = run(capsys, home, "settle", "--until", str(time_ms() + 3_600_000))
    assert code == 1 and "future" in err
    w_end = time_ms() - 1
    assert run_json(capsys, home, "settle", "--until", str(w_end))["end_ms"] == w_end


def test_until_in_the_future_is_refused_by_the_epoch(tmp_path):
    w = make_world(tmp_path / "o", members=1)
    with pytest.raises(settle.SettlementError, match="future"):
        settle.run_epoch(w.org, end_ms=10_000, now_ms=9_999)


def test_overdraw_by_exactly_one_is_rejected(tmp_path):
    w = make_world(tmp_path / "o", members=2)
    sup = w.org.supervisors()
    pool.add_transaction(w.org.db, tx.reward(w.founder, w.org.id, w.ids[0], 4321, 1), w.org.id,
                         sup)
    settle.run_epoch(w.org, end_ms=5000, now_ms=5000)
    have = w.balance(0)
    assert have == 4321
    over = tx.countersign(w.seeds[1], tx.transfer(w.seeds[0], w.org.id, w.pub(1), have + 1, 1))
    summary = settle.run_epoch(w.org, end_ms=6000, now_ms=6000, extra_txs=[over])
    assert [r["reason"] for r in summary["rejected"]] == [
        f"insufficient balance: {have} < {have + 1}"]
    assert w.balance(0) == have
    exact = tx.countersign(w.seeds[1], tx.transfer(w.seeds[0], w.org.id, w.pub(1), have, 1))
    summary = settle.run_epoch(w.org, end_ms=7000, now_ms=7000, extra_txs=[exact])
    assert summary["rejected"] == [] and w.balance(0) == 0


def test_second_application_does_not_replace_a_member(tmp_path):
    w = make_world(tmp_path / "o", members=1, contract=None)
    seed = w.seeds[0]
    member_id = w.ids[0]
    before = w.org.member(member_id)
    # An application queued before the first was approved (or sent twice, as supervisor).
    second = make_application(seed, w.org.id, "supervisor", "again", 2600)
    app_id = w.org.db.conn.execute("SELECT count(*) FROM applications").fetchone()[0]
    with w.org.db.transaction() as conn:  # queued while it was not a member yet
        conn.execute("INSERT INTO applications VALUES (?,?,?,?)",
                     ("second", member_id, second, "pending"))
    assert app_id
    with pytest.raises(CliError, match="already a member"):
        w.org.approve("second", w.founder, now_ms=9000)
    with pytest.raises(CliError, match="already a member"):
        w.org.approve_many(["second"], w.founder, now_ms=9000)
    assert w.org.member(member_id) == before
    # A role change is explicit, and keeps the join time (the vesting clock).
    changed = w.org.set_role(member_id, "supervisor", w.founder, now_ms=9000)
    assert changed["was"] == "member"
    after = w.org.member(member_id)
    assert after["role"] == "supervisor" and after["joined_ms"] == before["joined_ms"]
    with pytest.raises(CliError, match="already a member"):
        w.org.submit_many([make_application(seed, w.org.id, "member", "x", 9100)])
    fresh = make_application(b"\x42" * 32, w.org.id, "member", "new", 9100)
    with pytest.raises(CliError, match="already a member"):  # the whole batch is refused
        w.org.submit_many([fresh, make_application(seed, w.org.id, "member", "x", 9100)])
    assert [p["application"] for p in w.org.pending()] == ["second"]  # nothing new queued


def test_role_change_cli(home, capsys):
    changed = run_json(capsys, home, "org", "role", "alice", "guest")
    assert (changed["role"], changed["was"]) == ("guest", "member")
    code, _out, err = run(capsys, home, "org", "role", "alice", "guest")
    assert code == 1 and "already has role" in err
    assert crypto  # the module is used by the fixtures' keys


def test_huge_usage_caps_the_debt_instead_of_wedging(tmp_path):
    from leither_host.ledger import credit

    w = make_world(tmp_path / "o", members=2)
    credit.store_grant(w.org.db, credit.grant(w.seeds[1], w.org.id, w.ids[0], 100), w.org.id)
    top = (1 << 63) - 1  # the largest a receipt may claim: valued at 2^30 per GiB-hour
    pool.import_receipts(w.org.db, [w.receipt(0, 1, 2000, 3000, stored=top),
                                    w.receipt(0, 1, 3000, 4000, stored=top)], parallel=False)
    summary = settle.run_epoch(w.org, end_ms=5000, now_ms=5000)
    assert summary["receipts"] == 2
    debts = list(w.org.db.conn.execute("SELECT amount FROM credit_debts"))
    assert debts == [(settle.MAX_SUPPLY,)]
    assert settle.run_epoch(w.org, end_ms=6000, now_ms=6000)["epoch"] == 2  # not wedged
    assert settle.verify_all(w.org)["ok"]


def test_credit_limit_past_64_bits_is_one_line(home, capsys):
    code, _out, err = run(capsys, home, "ledger", "credit", "grant", "alice", str(1 << 63))
    assert code == 1 and "credit limit" in err and err.count("\n") == 1
