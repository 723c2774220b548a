# Settlement: one epoch turns the receipts, income events, rewards and transactions received
# since the last epoch into balance changes, applies them to the tree and signs the new root.
#
# compute() is a pure function of the previous state and the epoch's inputs, so `ledger verify`
# can run it again from the stored inputs and must land on the same root. The order inside an
# epoch is fixed:
#   1. receipts (already signature-checked when they entered the pool): a receipt belongs to the
#      epoch in which its period ends; one that ended before the epoch began is out of period
#      (collected too late), one ending after the epoch is deferred to a later epoch;
#      non-member and duplicate/overlapping ones (same issuer and partner, a period starting
#      before the last one paid ended) are rejected;
#   2. income events, each split by the contract (tokens are minted here);
#   3. supervisor-signed rewards, within the contract's per-epoch cap (minted);
#   4. credit lines: receipt usage valued at the contract's prices, netted between partners and
#      paid debtor -> creditor as far as the debtor's balance goes;
#   5. transfers and burns, by (sender, nonce): a nonce must be the sender's next one and no
#      balance may go below zero.
# Then the epoch is checked: every balance >= 0 and the change in supply = minted - burned.
# run_epoch() commits all of it in one SQLite transaction (db.py says why that is atomic).
"""Settlement epochs: compute, check, commit, replay."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

from leither import cbor, ids, smtverify
from leither.compat import time_ms
from leither.errors import AuthError, DecodeError, LeitherError, StoreError
from leither_host.ledger import contract as contract_mod
from leither_host.ledger import credit as credit_mod
from leither_host.ledger import tx as tx_mod
from leither_host.ledger.records import (
    sign_record,
)

EPOCH = smtverify.EPOCH_DOMAIN  # b"leither-epoch/1": boards check these records too
EMPTY_ROOT = bytes(32)  # the root of a ledger with no accounts
MAX_BALANCE = (1 << 64) - 1
# The supply is stored as a signed 64-bit SQLite integer: no income or reward may take it past
# this. It also bounds every balance (each is part of the supply), far below MAX_BALANCE.
MAX_SUPPLY = (1 << 63) - 1


class SettlementError(StoreError):
    """An epoch broke an invariant (a bug, or tampered inputs on replay)."""


@dataclass(frozen=True)
class ReceiptRow:
    id: bytes
    issuer: str
    partner: str
    start: int
    end: int
    stored: int
    served: int
    audits_ok: int
    audits_failed: int


@dataclass
class Context:
    """What an epoch is computed from, besides its inputs."""

    org_id: str
    treasury: bytes
    epoch: int
    start_ms: int
    end_ms: int
    members: list[contract_mod.Member]
    supervisors: dict[str, bytes]
    contract: contract_mod.Contract | None
    get: Callable[[bytes], tuple[int, int] | None]
    spent: Callable[[bytes], bool] = lambda _id: False
    marks: dict[tuple[str, str], int] = field(default_factory=dict)
    debts: dict[tuple[str, str], int] = field(default_factory=dict)
    # Pairs (lower ID, higher ID) with a credit line in either direction: only their receipts
    # are valued and netted; other receipts only earn through the contract.
    credit_pairs: set[tuple[str, str]] = field(default_factory=set)
    supply: int = 0  # the supply at the start of the epoch (minting may not pass MAX_SUPPLY)


@dataclass
class Plan:
    """The outcome of an epoch before it is committed."""

    changes: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    minted: int = 0
    burned: int = 0
    receipts: list[bytes] = field(default_factory=list)  # accepted receipt IDs
    txs: list[bytes] = field(default_factory=list)  # accepted encoded transactions
    spent: list[bytes] = field(default_factory=list)  # income/reward IDs used up
    rejected: list[dict[str, Any]] = field(default_factory=list)
    deferred: list[bytes] = field(default_factory=list)
    marks: dict[tuple[str, str], int] = field(default_factory=dict)  # updated marks
    debts: dict[tuple[str, str], int] = field(default_factory=dict)  # debts after netting
    reports: dict[bytes, dict[str, Any]] = field(default_factory=dict)
    lines: list[dict[str, Any]] = field(default_factory=list)


def _reject(plan: Plan, kind: str, ident: bytes | str, reason: str) -> None:
    plan.rejected.append({"kind": kind, "id": ident.hex() if isinstance(ident, bytes) else ident,
                          "reason": reason})


def income_spent_id(org: str, event_id: str) -> bytes:
    return hashlib.sha256(b"income:" + org.encode() + b":" + event_id.encode()).digest()


def compute(ctx: Context, receipts: list[ReceiptRow], txs: list[bytes]) -> Plan:
    """Run one epoch over its inputs without touching any store."""
    plan = Plan()
    by_id = {m.id: m for m in ctx.members}
    raws = {m.id: m.raw for m in ctx.members}  # ID text -> raw key; base58 is slow to decode
    balances: dict[bytes, list[int]] = {}

    def raw_of(member_id: str) -> bytes:
        raw = raws.get(member_id)
        if raw is None:
            raw = raws[member_id] = ids.id_raw(member_id)
        return raw
    reports = plan.reports

    def account(raw: bytes) -> list[int]:
        acc = balances.get(raw)
        if acc is None:
            found = ctx.get(raw)
            acc = balances[raw] = [found[0], found[1], found[0]] if found else [0, 0, 0]
        return acc

    def report(raw: bytes) -> dict[str, Any]:
        r = reports.get(raw)
        if r is None:
            r = reports[raw] = {"earned": 0, "rewards": 0, "received": 0, "sent": 0,
                                "burned": 0, "credit_in": 0, "credit_out": 0, "receipts": 0,
                                "stored": 0, "served": 0, "audits_ok": 0, "audits_failed": 0}
        return r

    # 1. receipts ---------------------------------------------------------------------------
    # Hot loop (100,000 receipts an epoch): plain lists and local names, reports filled after.
    totals: dict[str, list[int]] = {}  # partner ID -> [receipts, stored, served, ok, failed]
    usage: dict[tuple[str, str], list[int]] = {}
    marks = dict(ctx.marks)
    start_ms, end_ms = ctx.start_ms, ctx.end_ms
    accepted = plan.receipts
    for r in sorted(receipts, key=attrgetter("issuer", "partner", "start", "id")):
        if r.end <= start_ms:
            _reject(plan, "receipt", r.id, f"out of period: ended at {r.end}, before this "
                                           f"epoch began at {start_ms}")
            continue
        if r.end > end_ms:
            plan.deferred.append(r.id)
            continue
        if r.issuer not in by_id or r.partner not in by_id:
            who = r.issuer if r.issuer not in by_id else r.partner
            _reject(plan, "receipt", r.id, f"{who} is not a member")
            continue
        pair = (r.issuer, r.partner)
        mark = marks.get(pair, 0)
        if r.start < mark:
            _reject(plan, "receipt", r.id, f"duplicate: {r.issuer} already receipted "
                                           f"{r.partner} up to {mark}")
            continue
        marks[pair] = r.end
        accepted.append(r.id)
        t = totals.get(r.partner)
        if t is None:
            t = totals[r.partner] = [0, 0, 0, 0, 0]
        t[0] += 1
        t[1] += r.stored
        t[2] += r.served
        t[3] += r.audits_ok
        t[4] += r.audits_failed
        u = usage.get(pair)
        if u is None:
            u = usage[pair] = [0, 0]
        u[0] += r.stored
        u[1] += r.served
    for pair in usage:
        plan.marks[pair] = marks[pair]
    performance: dict[bytes, contract_mod.Performance] = {}
    for partner, (count, stored, served, ok, failed) in totals.items():
        raw = by_id[partner].raw
        performance[raw] = contract_mod.Performance(stored, served, ok, failed)
        rep = report(raw)
        rep["receipts"] += count
        rep["stored"] += stored
        rep["served"] += served
        rep["audits_ok"] += ok
        rep["audits_failed"] += failed

    # 2.-5. transactions, decoded and checked once ---------------------------------------------
    opened: dict[str, list[tuple[bytes, dict[str, Any], bytes]]] = {k: [] for k in tx_mod.KINDS}
    for data in txs:
        tid = tx_mod.tx_id(data)
        try:
            body = tx_mod.open_tx(data, ctx.org_id, ctx.supervisors)
        except (DecodeError, AuthError) as err:
            _reject(plan, "transaction", tid, str(err))
            continue
        opened[body["type"]].append((tid, body, data))

    # 2. income, split by the contract
    stakes: dict[bytes, int] | None = None
    seen: set[bytes] = set()
    for _tid, body, data in sorted(opened["income"], key=lambda t: (t[1]["time"], t[0])):
        sid = income_spent_id(ctx.org_id, body["id"])
        if sid in seen or ctx.spent(sid):
            _reject(plan, "income", body["id"], "duplicate: this income event was settled")
            continue
        if ctx.supply + plan.minted + body["amount"] > MAX_SUPPLY:
            _reject(plan, "income", body["id"], f"would take the supply past {MAX_SUPPLY} "
                                                f"(2^63-1): it is {ctx.supply + plan.minted}")
            continue
        if ctx.contract is None:
            _reject(plan, "income", body["id"], "no contract deployed: nothing says how to "
                                                "split it (leither contract deploy FILE)")
            continue
        if stakes is None:
            stakes = {m.raw: account(m.raw)[2] for m in ctx.members}
        payout, lines = contract_mod.run(ctx.contract, body["amount"], ctx.members, stakes,
                                         performance, ctx.treasury, ctx.end_ms)
        seen.add(sid)
        plan.spent.append(sid)
        plan.txs.append(data)
        plan.minted += body["amount"]
        plan.lines.append({"income": body["id"], "amount": body["amount"], "shares": lines})
        for raw, n in sorted(payout.items()):
            account(raw)[0] += n
            report(raw)["earned"] += n

    # 3. rewards
    cap = ctx.contract.reward_cap if ctx.contract else 0
    rewarded = 0
    for tid, body, data in sorted(opened["reward"], key=lambda t: t[0]):
        if body["epoch"] != ctx.epoch:
            _reject(plan, "reward", tid, f"reward is for epoch {body['epoch']}, "
                                         f"this is epoch {ctx.epoch}")
            continue
        if tid in seen or ctx.spent(tid):
            _reject(plan, "reward", tid, "duplicate reward")
            continue
        if rewarded + body["amount"] > cap:
            _reject(plan, "reward", tid, f"over the contract's reward cap of {cap} per epoch "
                                         f"({rewarded} already given)")
            continue
        if ctx.supply + plan.minted + body["amount"] > MAX_SUPPLY:
            _reject(plan, "reward", tid, f"would take the supply past {MAX_SUPPLY} (2^63-1)")
            continue
        try:
            raw = raw_of(body["to"])
        except DecodeError as err:
            _reject(plan, "reward", tid, str(err))
            continue
        seen.add(tid)
        plan.spent.append(tid)
        plan.txs.append(data)
        rewarded += body["amount"]
        plan.minted += body["amount"]
        account(raw)[0] += body["amount"]
        report(raw)["rewards"] += body["amount"]

    # 4. credit lines: value this epoch's usage and net it with earlier debts
    price_stored = ctx.contract.price_stored if ctx.contract else 0
    price_served = ctx.contract.price_served if ctx.contract else 0
    pairs = ctx.credit_pairs
    valued = [(issuer, partner, credit_mod.usage_value(s, v, price_stored, price_served))
              for (issuer, partner), (s, v) in sorted(usage.items())
              if (min(issuer, partner), max(issuer, partner)) in pairs]
    debts = credit_mod.net(ctx.debts, [u for u in valued if u[2]])
    # A debt is stored as a signed 64-bit integer: receipts may claim up to 2^63 byte-hours
    # each, so usage can value far past every token that can exist; cap it there (never more
    # than the supply can pay) rather than fail every later epoch.
    debts = {pair: min(amount, MAX_SUPPLY) for pair, amount in debts.items()}
    for (debtor, creditor), amount in sorted(debts.items()):
        d_raw, c_raw = raw_of(debtor), raw_of(creditor)
        pay = min(amount, account(d_raw)[0])
        if pay:
            account(d_raw)[0] -= pay
            account(c_raw)[0] += pay
            report(d_raw)["credit_out"] += pay
            report(c_raw)["credit_in"] += pay
        if amount - pay:
            plan.debts[(debtor, creditor)] = amount - pay
    for pair in ctx.debts:
        plan.debts.setdefault(pair, 0)  # a debt paid off is written as 0 (deleted)

    # 5. transfers and burns, by sender then nonce
    moves = sorted(opened["transfer"] + opened["burn"],
                   key=lambda t: (raw_of(t[1]["from"]), t[1]["nonce"], t[0]))
    for tid, body, data in moves:
        sender = raw_of(body["from"])
        acc = account(sender)
        if body["nonce"] != acc[1] + 1:
            _reject(plan, body["type"], tid, f"nonce {body['nonce']}, expected {acc[1] + 1} "
                                             f"(replayed or out of order)")
            continue
        if acc[0] < body["amount"]:
            _reject(plan, body["type"], tid, f"insufficient balance: {acc[0]} < "
                                             f"{body['amount']}")
            continue
        acc[0] -= body["amount"]
        acc[1] += 1
        report(sender)["burned" if body["type"] == "burn" else "sent"] += body["amount"]
        if body["type"] == "burn":
            plan.burned += body["amount"]
        else:
            receiver = raw_of(body["to"])
            account(receiver)[0] += body["amount"]
            report(receiver)["received"] += body["amount"]
        plan.txs.append(data)

    # The epoch's own check: no negative balance, supply moved by exactly minted - burned.
    delta = 0
    for raw, (balance, nonce, before) in balances.items():
        if balance < 0 or balance > MAX_BALANCE:
            raise SettlementError(f"balance of {ids.b58encode(raw)} would be {balance}")
        delta += balance - before
        if (balance, nonce) != (ctx.get(raw) or (0, 0)):
            plan.changes[raw] = (balance, nonce)
    if delta != plan.minted - plan.burned:
        raise SettlementError(f"supply moved by {delta}, but minted - burned = "
                              f"{plan.minted - plan.burned}")
    for raw, rep in reports.items():
        acc = account(raw)
        rep["balance_before"] = acc[2]
        rep["balance"] = acc[0]
    return plan


# -- committing ------------------------------------------------------------------------------

def encode_inputs(ctx: Context, plan: Plan, members_version: int) -> bytes:
    """Everything a replay needs besides stored receipts, member lists and contracts."""
    involved = set(plan.marks) | set(ctx.debts)
    return bytes(cbor.dumps({
        "receipts": b"".join(plan.receipts),  # 32-byte IDs back to back: cheap at 100k
        "txs": plan.txs,
        "marks_before": [[i, p, ctx.marks[(i, p)]] for (i, p) in sorted(plan.marks)
                         if (i, p) in ctx.marks],
        "debts_before": [[d, c, ctx.debts[(d, c)]] for (d, c) in sorted(involved)
                         if (d, c) in ctx.debts],
        "members": members_version,
        "contract": ctx.contract.digest() if ctx.contract else b"",
        "credit_pairs": [list(p) for p in sorted(ctx.credit_pairs)],
    }))


def run_epoch(org: Any, end_ms: int | None = None, now_ms: int | None = None,
              reports_dir: Path | None = None, extra_txs: Sequence[bytes] = (),
              signer: bytes | None = None) -> dict[str, Any]:
    """Settle the next epoch of org (an Organization): compute, check, commit, sign.

    extra_txs are transactions given with this settlement (`settle --income/--tx/--reward`):
    they are settled with the queued ones but never queued themselves, so an epoch that fails
    leaves nothing behind it (all or nothing). signer: a bookkeeper's key, which signs the
    record instead of the organization's (the record then names the bookkeeper set version;
    its "time" is the epoch's end, so every bookkeeper signs the same bytes).
    """
    from leither_host.ledger.smt import gc_paused

    with gc_paused():  # an epoch makes ~10 objects per receipt, none in cycles
        return _run_epoch(org, end_ms, now_ms, reports_dir, list(extra_txs), signer)


def _run_epoch(org: Any, end_ms: int | None, now_ms: int | None,
               reports_dir: Path | None, extra_txs: list[bytes],
               signer: bytes | None) -> dict[str, Any]:
    from leither_host.ledger import pool

    db = org.db
    now = now_ms if now_ms is not None else time_ms()
    end = end_ms if end_ms is not None else now
    last = db.last_epoch()
    number = (last["epoch"] + 1) if last else 1
    start = last["end_ms"] if last else int(db.get_meta("created_ms", 0))
    if end <= start:
        raise SettlementError(f"epoch {number} would end at {end}, not after its start {start}")
    if end > now:
        # Receipts of a period not over yet would be paid early, and the next epoch could
        # never start before that future time.
        raise SettlementError(f"epoch {number} would end at {end}, in the future (now {now})")
    tree = db.tree()
    members = org.members()
    active = pool.active_contract(db)
    marks = {(i, p): e for i, p, e in db.conn.execute("SELECT * FROM receipt_marks")}
    debts = {(d, c): a for d, c, a in db.conn.execute("SELECT * FROM credit_debts")}
    credit_pairs = {(min(g, e), max(g, e)) for g, e in db.conn.execute(
        "SELECT grantor, grantee FROM credit_lines")}
    ctx = Context(org_id=org.id, treasury=org.raw, epoch=number, start_ms=start, end_ms=end,
                  members=members, supervisors=org.supervisors(), contract=active,
                  get=tree.get, marks=marks, debts=debts, credit_pairs=credit_pairs,
                  supply=last["supply"] if last else 0,
                  spent=lambda i: db.conn.execute("SELECT 1 FROM spent WHERE id=?",
                                                  (i,)).fetchone() is not None)
    receipts = pool.pending_receipts(db)
    txs = [bytes(r[0]) for r in db.conn.execute("SELECT data FROM pending ORDER BY id")]
    queued = {tx_mod.tx_id(t) for t in txs}
    for data in extra_txs:
        if tx_mod.tx_id(data) not in queued:  # given twice, or queued already: settled once
            queued.add(tx_mod.tx_id(data))
            txs.append(data)
    plan = compute(ctx, receipts, txs)
    from leither_host.ledger import members as members_mod

    member_set = members_mod.latest(db)
    members_version = member_set["version"] if member_set else 0
    members_root = bytes(member_set["root"]) if member_set else EMPTY_ROOT
    inputs = encode_inputs(ctx, plan, members_version)
    names = {m.raw: m.id for m in members}
    names[org.raw] = org.id
    named = {names.get(raw) or ids.b58encode(raw): rep for raw, rep in plan.reports.items()}
    org_seed = signer if signer is not None else org.seed()
    extra: dict[str, Any] = {}
    if signer is not None:
        extra["books"] = org.books_version()
    prev_root = tree.root_hash()
    supply = (last["supply"] if last else 0) + plan.minted - plan.burned
    with db.transaction() as conn:
        root = tree.apply(dict(plan.changes))
        root_id = db.write_nodes(tree)
        record = sign_record(org_seed, EPOCH, {
            "type": "epoch", "org": org.id, "epoch": number, "root": root, "prev": prev_root,
            "start": start, "end": end, "supply": supply, "minted": plan.minted,
            "burned": plan.burned, "contract": active.digest() if active else b"",
            "members": members_version, "mroot": members_root,
            "inputs": hashlib.sha256(inputs).digest(),
            "time": now, **extra})
        db.add_epoch({"epoch": number, "root_id": root_id, "root": root, "start_ms": start,
                      "end_ms": end, "supply": supply, "minted": plan.minted,
                      "burned": plan.burned, "record": record, "inputs": inputs})
        # Every pending receipt was accepted, rejected or deferred: mark all settled in one
        # statement, then put back the few deferred ones and mark the rejected ones.
        conn.execute("UPDATE receipt_pool SET status='settled', epoch=? WHERE status='pending'",
                     (number,))
        conn.executemany("UPDATE receipt_pool SET status='pending', epoch=NULL WHERE id=?",
                         [(rid,) for rid in plan.deferred])
        conn.executemany("UPDATE receipt_pool SET status='rejected', epoch=?, reason=? "
                         "WHERE id=?", [(number, r["reason"], bytes.fromhex(r["id"]))
                                        for r in plan.rejected if r["kind"] == "receipt"])
        conn.execute("DELETE FROM pending")  # every pending tx was accepted or rejected
        conn.executemany("INSERT INTO spent VALUES (?, ?)", [(s, number) for s in plan.spent])
        conn.executemany("INSERT OR REPLACE INTO receipt_marks VALUES (?,?,?)",
                         [(i, p, e) for (i, p), e in plan.marks.items()])
        conn.executemany("DELETE FROM credit_debts WHERE debtor=? AND creditor=?",
                         [pair for pair, a in plan.debts.items() if a == 0])
        conn.executemany("INSERT OR REPLACE INTO credit_debts VALUES (?,?,?)",
                         [(d, c, a) for (d, c), a in plan.debts.items() if a])
        conn.executemany("INSERT INTO reports VALUES (?,?,?)", [
            (number, name, json.dumps(rep, sort_keys=True)) for name, rep in named.items()])
        conn.executemany("INSERT INTO rejections VALUES (?,?,?,?)", [
            (number, r["kind"], r["id"], r["reason"]) for r in plan.rejected])
    summary = {"epoch": number, "root": root.hex(), "prev_root": prev_root.hex(),
               "start_ms": start, "end_ms": end, "supply": supply, "minted": plan.minted,
               "burned": plan.burned, "receipts": len(plan.receipts),
               "transactions": len(plan.txs), "deferred": len(plan.deferred),
               "rejected": plan.rejected, "members": len(plan.reports), "lines": plan.lines}
    if reports_dir is not None:
        export_report(reports_dir, summary, named)
    return summary


def export_report(directory: Path, summary: dict[str, Any], members: dict[str, Any]) -> Path:
    """The per-member report as JSON (an export: the database holds the same rows)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"epoch-{summary['epoch']}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"epoch": summary, "members": members}, indent=1,
                              sort_keys=True))
    os.replace(tmp, path)
    return path


# Checking and replaying epochs lives in replay.py; these names stay importable from here.
from leither_host.ledger.replay import (  # noqa: E402 (replay.py imports this module's names)
    books_of,
    check_quorum,
    open_epoch_record,
    replay,
    verify_all,
)

__all__ = ["LeitherError", "SettlementError", "books_of", "check_quorum", "compute",
           "open_epoch_record", "replay", "run_epoch", "verify_all"]
