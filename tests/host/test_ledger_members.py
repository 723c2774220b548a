# The member set at scale: a Merkle tree like the balances, so one member's membership and role
# are proven by a small path. 12,000 members (the signed list of every member stopped near 9,500:
# "record of 1106402 bytes is over the 1048576 limit" at 10,000) replay, prove and verify.
import time

import pytest

from leither import cbor, crypto, ids, smtverify
from leither.errors import ProofError
from leither_host.commands.ledger import verify_bundle
from leither_host.ledger import members, pool, settle, tx
from leither_host.ledger.org import Organization, check_member, open_member_list

N = 12_000


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    d = tmp_path_factory.mktemp("members")
    founder = b"\x01" * 32
    org = Organization.create(d / "o", "big", founder, now_ms=1000)
    # Members admitted the way approve_many does, minus 2 x 12,000 Ed25519 signatures (the
    # approval flow has its own tests): rows, then one new version of the member tree.
    seeds = [(1_000_000 + i).to_bytes(32, "big") for i in range(N)]
    changes = {}
    with org.db.transaction():
        for i, seed in enumerate(seeds):
            key = crypto.sign_public(seed)
            app = {"member": ids.make_id(key), "key": key, "name": "",
                   "role": "guest" if i % 7 == 0 else "member"}
            changes.update(org._admit(app, b"", b"", 2000))
        org._publish_member_list(org.seed(), 2000, changes)
    pool.deploy_contract(org.db, "format = \"leither-contract/1\"\nname = \"m\"\n[[share]]\n"
                         "millionths = 1000000\nbasis = \"role\"\nrole = \"member\"\n",
                         {m.id for m in org.members()}, now_ms=2500)
    pool.add_transaction(org.db, tx.income(founder, org.id, "i", 10 ** 9), org.id,
                         org.supervisors())
    settle.run_epoch(org, end_ms=5000, now_ms=5000)
    yield org, seeds
    org.close()


def _bundle(org, member_id):
    last = org.db.last_epoch()
    record = settle.open_epoch_record(bytes(last["record"]), org.public)
    raw = ids.id_raw(member_id)
    return {"org_key": org.public, "record": bytes(last["record"]), "member": member_id,
            "key": raw, "proof": org.db.tree().prove(raw),
            "mproof": members.prove(org.db, record["members"], raw)}


def test_member_set_record_stays_small(big):
    org, _seeds = big
    record = org.member_list()
    listing = open_member_list(record, org.public)
    assert listing["count"] == N + 1 and len(record) < 400


def test_replay_and_verify_at_scale(big):
    org, _seeds = big
    result = settle.verify_all(org, check_receipt_signatures=False)
    assert result["ok"] and result["supply"] == 10 ** 9
    assert result["accounts"] == N - len(range(0, N, 7))  # every "member" got a share


def test_one_member_proof_is_small_and_checks_on_host_and_board(big):
    org, seeds = big
    member_id = ids.make_id(crypto.sign_public(seeds[14]))  # i % 7 == 0: a guest
    bundle = _bundle(org, member_id)
    assert len(bundle["proof"]) + len(bundle["mproof"]) < 2048
    started = time.perf_counter()
    host = verify_bundle(cbor.dumps(bundle))
    board = smtverify.check_bundle(cbor.dumps(bundle), org.public)
    assert time.perf_counter() - started < 5  # generous: the target (50 ms) is a bench figure
    assert host["role"] == board["role"] == "guest"
    assert host["joined"] == board["joined"] == 2000
    assert board["included"] is False  # guests got no part of the role share
    member = ids.make_id(crypto.sign_public(seeds[15]))
    got = smtverify.check_bundle(cbor.dumps(_bundle(org, member)), org.public)
    assert got["role"] == "member" and got["balance"] > 0
    # A membership path of one member does not prove another; a missing one is refused.
    swapped = dict(bundle, mproof=_bundle(org, member)["mproof"])
    with pytest.raises(ProofError):
        smtverify.check_bundle(cbor.dumps(swapped), org.public)
    with pytest.raises(ProofError):
        verify_bundle(cbor.dumps(swapped))
    with pytest.raises(ProofError, match="no membership proof"):
        smtverify.check_bundle(cbor.dumps({k: v for k, v in bundle.items() if k != "mproof"}),
                               org.public)
    outsider = ids.make_id(b"not a member")
    assert smtverify.check_bundle(cbor.dumps(_bundle(org, outsider)), org.public)["role"] is None


def test_member_set_versions_follow_changes(big):
    org, _seeds = big
    first = open_member_list(org.member_list(1), org.public)
    assert first["count"] == 1  # the founder
    founder_id = ids.make_id(crypto.sign_public(b"\x01" * 32))
    assert check_member(first, founder_id, org.prove_member(founder_id, 1)[1])[0] == "supervisor"
