# Properties of contracts and settlement over random organizations: every income unit lands in
# exactly one account, no balance ever goes negative, the supply is always minted - burned, and
# replayed or forged transactions and receipts never move a token.
import hashlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leither import cbor, crypto, ids
from leither_host.ledger import contract as c
from leither_host.ledger import settle, tx
from leither_host.ledger.settle import Context, ReceiptRow

SEEDS = [bytes([i + 1]) * 32 for i in range(6)]
PUBS = [crypto.sign_public(s) for s in SEEDS]
IDS = [ids.make_id(p) for p in PUBS]
RAWS = [ids.raw_id(p) for p in PUBS]
ORG_SEED = b"\x77" * 32
ORG_ID = ids.make_id(crypto.sign_public(ORG_SEED))
TREASURY = ids.raw_id(crypto.sign_public(ORG_SEED))
ROLES = ("supervisor", "member", "guest")


@st.composite
def contracts(draw):
    n = draw(st.integers(1, 5))
    cuts = sorted(draw(st.lists(st.integers(1, c.MILLION - 1), min_size=n - 1, max_size=n - 1,
                                unique=True)))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, c.MILLION])]
    shares = []
    for i, size in enumerate(sizes):
        basis = draw(st.sampled_from(c.BASES))
        item = {"name": f"s{i}", "millionths": size, "basis": basis}
        if basis == "member":
            item["member"] = draw(st.sampled_from(IDS))
        elif basis == "role" or draw(st.booleans()):
            item["role"] = draw(st.sampled_from(ROLES))
        if basis == "performance":
            w = draw(st.integers(0, c.MILLION))
            item["weights"] = {"stored": w, "served": c.MILLION - w}
        if draw(st.booleans()):
            duration = draw(st.integers(1, 10_000))
            item["vesting"] = {"cliff_ms": draw(st.integers(0, duration)),
                               "duration_ms": duration}
        shares.append(item)
    return c.from_map({"format": c.FORMAT, "name": "p", "share": shares,
                       "rewards": {"max_per_epoch": draw(st.integers(0, 1000))}})


members_st = st.lists(st.tuples(st.sampled_from(ROLES), st.integers(0, 20_000)), min_size=1,
                      max_size=len(SEEDS))


def _members(spec):
    return [c.Member(IDS[i], RAWS[i], role, joined) for i, (role, joined) in enumerate(spec)]


@settings(max_examples=200, deadline=None)
@given(contracts(), members_st, st.integers(0, 10**12),
       st.lists(st.integers(0, 10**9), min_size=6, max_size=6),
       st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), min_size=6,
                max_size=6), st.integers(0, 40_000))
def test_split_conserves_every_unit(contract, spec, amount, stakes, perf, now):
    members = _members(spec)
    stake = {RAWS[i]: stakes[i] for i in range(len(members))}
    performance = {RAWS[i]: c.Performance(stored=s, served=v) for i, (s, v) in enumerate(perf)}
    payout, _ = c.run(contract, amount, members, stake, performance, TREASURY, now)
    assert sum(payout.values()) == amount
    assert all(v > 0 for v in payout.values())
    assert set(payout) <= {m.raw for m in members} | {TREASURY}


def _ctx(state, members, contract, epoch=1):
    return Context(org_id=ORG_ID, treasury=TREASURY, epoch=epoch, start_ms=0,
                   end_ms=100_000, members=members, supervisors={IDS[0]: PUBS[0]},
                   contract=contract, get=lambda raw: state.get(raw))


ops = st.lists(st.tuples(st.sampled_from(("transfer", "burn", "forge", "replay", "income",
                                          "one-sided", "reward")),
                         st.integers(0, len(SEEDS) - 1), st.integers(0, len(SEEDS) - 1),
                         st.integers(1, 5000)), max_size=14)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contracts(), st.lists(ops, min_size=1, max_size=3))
def test_epochs_conserve_and_refuse_replays_and_forgeries(contract, epochs):
    members = _members([("supervisor", 0)] + [("member", 0)] * (len(SEEDS) - 1))
    state: dict = {}
    supply = 0
    spent: set = set()
    sent: list = []
    for number, epoch_ops in enumerate(epochs, 1):
        nonces = {raw: (state.get(raw) or (0, 0))[1] for raw in RAWS}
        txs, bad = [], []
        for n, (kind, a, b, amount) in enumerate(epoch_ops):
            if kind in ("transfer", "forge", "one-sided") and a != b:
                nonces[RAWS[a]] += 1
                data = tx.transfer(SEEDS[a], ORG_ID, PUBS[b], amount, nonces[RAWS[a]])
                if kind != "one-sided":
                    data = tx.countersign(SEEDS[b], data)
                if kind == "forge":
                    body = cbor.loads(data)
                    body["amount"] += 1
                    data = cbor.dumps(body)
                    nonces[RAWS[a]] -= 1
                if kind != "transfer":
                    bad.append(tx.tx_id(data))
                txs.append(data)
            elif kind == "burn":
                nonces[RAWS[a]] += 1
                txs.append(tx.burn(SEEDS[a], ORG_ID, amount, nonces[RAWS[a]]))
            elif kind == "income":
                txs.append(tx.income(SEEDS[0], ORG_ID, f"e{number}-{n}", amount * 1000))
            elif kind == "reward":
                # Signed by a non-supervisor: must be refused.
                data = tx.reward(SEEDS[a or 1], ORG_ID, IDS[b], amount, number)
                bad.append(tx.tx_id(data))
                txs.append(data)
            elif kind == "replay" and sent:
                txs.append(sent[a % len(sent)])
        ctx = _ctx(state, members, contract, number)
        ctx.spent = lambda i: i in spent
        plan = settle.compute(ctx, [], txs)
        rejected = {r["id"] for r in plan.rejected}
        assert {b.hex() for b in bad} <= rejected
        for raw, value in plan.changes.items():
            assert value[0] >= 0
            state[raw] = value
        spent.update(plan.spent)
        sent.extend(d for d in plan.txs if cbor.loads(d)["type"] == "transfer")
        supply += plan.minted - plan.burned
        assert sum(v[0] for v in state.values()) == supply
    # No transfer accepted earlier can be accepted again.
    ctx = _ctx(state, members, contract, len(epochs) + 1)
    ctx.spent = lambda i: i in spent
    again = settle.compute(ctx, [], sent)
    assert again.changes == {} and len(again.rejected) == len(sent)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 200_000),
                          st.integers(1, 50_000), st.integers(0, 10**6)), max_size=25))
def test_receipts_never_paid_twice(rows):
    members = _members([("member", 0)] * len(SEEDS))
    receipts = [ReceiptRow(bytes([n]) * 32, IDS[i], IDS[p], start, start + length, stored, 0,
                           0, 0) for n, (i, p, start, length, stored) in enumerate(rows)
                if i != p]
    ctx = _ctx({}, members, None)
    ctx.start_ms, ctx.end_ms = 10_000, 150_000
    plan = settle.compute(ctx, receipts, [])
    accepted = [r for r in receipts if r.id in set(plan.receipts)]
    # Per issuer and partner, paid periods never overlap and all lie in the epoch.
    for r in accepted:
        assert ctx.start_ms < r.end <= ctx.end_ms
        for other in accepted:
            if other is not r and (other.issuer, other.partner) == (r.issuer, r.partner):
                assert other.end <= r.start or r.end <= other.start
    assert len(plan.receipts) + len(plan.rejected) + len(plan.deferred) == len(receipts)
    # The same receipts again over the same period, with the marks the epoch left: refused.
    ctx2 = _ctx({}, members, None)
    ctx2.start_ms, ctx2.end_ms, ctx2.marks = 10_000, 150_000, plan.marks
    again = settle.compute(ctx2, accepted, [])
    assert not again.receipts
    assert all("duplicate" in r["reason"] for r in again.rejected)


# -- the member set --------------------------------------------------------------------------

def _definition_root(items, depth):
    # The tree's root from its definition: empty, one (collapsed) leaf, or left/right halves.
    from leither import smtverify

    if not items:
        return smtverify.EMPTY
    if len(items) == 1:
        key, (a, b) = items[0]
        return smtverify.leaf_hash(key, a, b)
    left = [i for i in items if not smtverify.bit(i[0], depth)]
    right = [i for i in items if smtverify.bit(i[0], depth)]
    return smtverify.node_hash(_definition_root(left, depth + 1),
                               _definition_root(right, depth + 1))


member_ops = st.lists(st.tuples(st.integers(0, 15), st.sampled_from(
    ["guest", "member", "supervisor", None]), st.integers(0, 10**12)), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(member_ops, min_size=1, max_size=4))
def test_member_set_versions_prove_each_member(tmp_path_factory, versions):
    # Versions of admissions, role changes and departures (None): each version's root is the
    # definition's root of its members, and every key proves exactly its role and join time.
    from leither.errors import ProofError
    from leither_host.ledger import members
    from leither_host.ledger.db import LedgerDB

    keys = [hashlib.sha256(b"m%d" % i).digest()[:20] for i in range(16)]
    db = LedgerDB(tmp_path_factory.mktemp("mset") / "m.sqlite")
    state: dict = {}
    roots = []
    for ops in versions:
        changes = {}
        for i, role, joined in ops:
            changes[keys[i]] = members.leaf_value(role, joined) if role else None
        with db.transaction():
            members.publish(db, changes)
        for k, v in changes.items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
        roots.append((dict(state), _definition_root(sorted(state.items()), 0)))
    for version, (expect, root) in enumerate(roots, 1):
        assert bytes(members.version_row(db, version)["root"]) == root
        assert members.version_row(db, version)["count"] == len(expect)
        for k in keys:
            proof = members.prove(db, version, k)
            got = members.check(root, k, proof)
            assert got == (members.decode_leaf(expect[k]) if k in expect else None)
            other = keys[(keys.index(k) + 1) % 16]
            if expect.get(other) != expect.get(k):
                try:
                    members.check(root, other, proof)
                    raise AssertionError("one member's proof proved another")
                except ProofError:
                    pass
    db.close()
