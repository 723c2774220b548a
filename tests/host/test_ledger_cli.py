# The ledger verbs through the real entry point (leither_host.cli.main): a whole story —
# create an org, admit members, deploy a contract, collect receipts, settle, prove and verify
# a balance offline, transfer — checking text output, --json shapes and exit codes.
import json
import os
import re
import stat

import pytest

from leither import cbor, crypto, ids, receipt, smtverify
from leither.compat import time_ms
from leither_host.cli import main


def run(capsys, home, *argv):
    code = main([*argv, "--home", str(home)])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, home, *argv):
    code, out, err = run(capsys, home, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def org(tmp_path, capsys):
    home = tmp_path / "home"
    created = run_json(capsys, home, "org", "create", "coop")
    assert set(created) >= {"id", "name", "supervisor", "key", "path"}
    for name in ("alice", "bob"):
        assert run(capsys, home, "org", "apply", "--key", name, "--name", name)[0] == 0
        approved = run_json(capsys, home, "org", "approve", name)
        assert approved["role"] == "member"
    return home


def _key(home, name):
    return (home / "data" / "keys" / f"{name}.key").read_bytes()


def _id(home, name):
    return ids.make_id(crypto.sign_public(_key(home, name)))


def test_keys_are_private_and_in_home(org):
    for name in ("alice", "bob"):
        mode = stat.S_IMODE(os.stat(org / "data" / "keys" / f"{name}.key").st_mode)
        assert mode == 0o600
    # "default" is the host's own key, the one that claims nodes
    assert stat.S_IMODE(os.stat(org / "config" / "host.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(org / "data" / "orgs" / "coop" / "org.key").st_mode) == 0o600


def test_full_story(org, tmp_path, capsys):
    members = run_json(capsys, org, "org", "members")
    assert sorted(m["role"] for m in members) == ["member", "member", "supervisor"]
    code, out, _ = run(capsys, org, "org", "members")
    assert "alice" in out and "supervisor" in out
    assert run_json(capsys, org, "contract", "deploy",
                    "examples/contracts/backup-coop.toml")["version"] == 1
    shown = run_json(capsys, org, "contract", "show")
    assert shown["contract"]["name"] == "backup-coop"
    # Receipts: alice vouches for bob's storage, from a directory of files.
    rdir = tmp_path / "receipts"
    rdir.mkdir()
    now = time_ms()  # the org was created a few commands ago: this period ends inside epoch 1
    good = receipt.make(_key(org, "alice"), _id(org, "bob"), now - 3_600_000, now,
                        stored=40 << 30, served=1 << 30, audits_ok=3)
    (rdir / "one.cbor").write_bytes(good)
    (rdir / "dup.cbor").write_bytes(cbor.dumps([good]))
    got = run_json(capsys, org, "receipts", "collect", "--dir", str(rdir))
    assert got["accepted"] == 1 and got["rejected"][0]["reason"].startswith("duplicate")
    assert [r["status"] for r in run_json(capsys, org, "receipts", "ls")] == ["pending"]
    code, table, _ = run(capsys, org, "receipts", "ls")  # people: a date, not end_ms
    assert code == 0 and "period end" in table and "end_ms" not in table
    assert re.search(r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d", table)
    sim = run_json(capsys, org, "contract", "simulate", "--income", "1000")
    assert sim["total"] == 1000
    summary = run_json(capsys, org, "settle", "--income", "1000000", "--income-id", "inv-1")
    assert summary["epoch"] == 1 and summary["supply"] == 1000000 and summary["receipts"] == 1
    assert os.path.exists(summary["report"])
    balances = run_json(capsys, org, "ledger", "balance")
    assert sum(a["balance"] for a in balances["accounts"]) == 1000000
    bob = run_json(capsys, org, "ledger", "balance", "bob")["accounts"][0]
    assert bob["balance"] > 900000
    # A proof bundle checks out offline, and fails when altered.
    proof_file = tmp_path / "bob.proof"
    proof = run_json(capsys, org, "ledger", "proof", "bob", "--out", str(proof_file))
    assert proof["included"] and proof["proof_bytes"] <= 1024
    checked = run_json(capsys, tmp_path / "elsewhere", "ledger", "verify", "--proof",
                       str(proof_file))
    assert checked["balance"] == bob["balance"] and checked["epoch"] == 1
    bundle = cbor.loads(proof_file.read_bytes())
    # The board's own check (leither.smtverify.check_bundle) agrees with the host's.
    on_board = smtverify.check_bundle(proof_file.read_bytes(), bundle["org_key"])
    assert on_board["balance"] == bob["balance"] and on_board["epoch"] == 1
    bundle["proof"] = bundle["proof"][:-1] + bytes([bundle["proof"][-1] ^ 1])
    proof_file.write_bytes(cbor.dumps(bundle))
    code, _, err = run(capsys, tmp_path / "elsewhere", "ledger", "verify", "--proof",
                       str(proof_file))
    assert code == 1 and "expected" in err
    assert run_json(capsys, org, "ledger", "verify")["ok"]
    # Transfer: signed by bob, countersigned by alice, applied by the next epoch.
    pay = tmp_path / "pay.tx"
    bob_before = bob["balance"]
    run_json(capsys, org, "ledger", "transfer", "alice", "10", "--key", "bob", "--out",
             str(pay))
    code, _, err = run(capsys, org, "settle", "--tx", str(pay))
    assert code == 1 and "countersigned" in err
    run_json(capsys, org, "ledger", "countersign", str(pay), "--key", "alice")
    assert run_json(capsys, org, "settle", "--tx", str(pay))["transactions"] == 1
    after = run_json(capsys, org, "ledger", "balance", "bob")["accounts"][0]
    assert after["balance"] == bob_before - 10 and after["nonce"] == 1
    # Replaying the same transfer is refused by its nonce.
    code, out, err = run(capsys, org, "settle", "--tx", str(pay), "--json")
    again = json.loads(out)  # the epoch settles, but the exit status says what was refused
    assert again["transactions"] == 0 and "replayed" in again["rejected"][0]["reason"]
    assert code == 1 and "1 input(s) were rejected for good" in err
    history = run_json(capsys, org, "ledger", "history")
    assert [h["epoch"] for h in history] == [1, 2, 3]
    per_member = run_json(capsys, org, "ledger", "history", "bob")
    assert [e["balance"] for e in per_member["epochs"]][:2] == [bob_before, bob_before - 10]
    report = run_json(capsys, org, "ledger", "history", "--epoch", "1")
    assert any(m["receipts"] == 1 for m in report["members"])


def test_errors_exit_1_with_one_line(org, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('format = "leither-contract/1"\nname = "x"\n[[share]]\n'
                   'millionths = 10\nbasis = "stake"\n')
    code, _, err = run(capsys, org, "contract", "deploy", str(bad))
    assert code == 1 and err.startswith("leither: contract: shares sum to 10 millionths")
    code, _, err = run(capsys, org, "org", "approve", "nobody")
    assert code == 1 and "no pending application" in err
    code, _, err = run(capsys, org, "org", "approve", "x", "--key", "alice")
    assert code == 1
    run(capsys, org, "org", "apply", "--key", "carol", "--name", "carol")
    code, _, err = run(capsys, org, "org", "approve", "carol", "--key", "alice")
    assert code == 1 and "not a supervisor" in err
    code, _, err = run(capsys, org, "ledger", "proof", "alice")
    assert code == 1 and "no epoch" in err
    code, _, err = run(capsys, tmp_path / "empty", "org", "show")
    assert code == 1 and "no organization" in err


def test_credit_line_refuses_past_limit(org, capsys):
    run_json(capsys, org, "ledger", "credit", "grant", "alice", "5", "--key", "bob")
    lines = run_json(capsys, org, "ledger", "credit", "ls")
    assert lines == [{"grantor": _id(org, "bob"), "grantee": _id(org, "alice"), "limit": 5,
                      "used": 0, "left": 5, "over": False}]
    assert run_json(capsys, org, "ledger", "credit", "check", "bob", "alice", "5")["left"] == 0
    code, _, err = run(capsys, org, "ledger", "credit", "check", "bob", "alice", "6")
    assert code == 1 and "credit line exhausted" in err


@pytest.mark.parametrize("verb", [["org"], ["contract"], ["receipts"], ["settle"], ["ledger"],
                                  ["ledger", "proof"], ["org", "apply"]])
def test_help_has_examples(verb, capsys):
    with pytest.raises(SystemExit) as done:
        main([*verb, "--help"])
    assert done.value.code == 0
    assert "examples:" in capsys.readouterr().out
