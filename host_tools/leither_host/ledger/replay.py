# Checking an epoch after the fact: its record's signatures (the organization's, one
# bookkeeper's, or a quorum of bookkeepers'), and a replay of its stored inputs through the same
# compute() that settled it, which must land on the signed root (`leither ledger verify`).
"""Epoch records and replay."""

from __future__ import annotations

import hashlib
from typing import Any

from leither import cbor, ids
from leither import receipt as receipt_mod
from leither.errors import AuthError, DecodeError
from leither_host.ledger.records import check_signature, decode_record, key_id
from leither_host.ledger.settle import (
    EMPTY_ROOT,
    EPOCH,
    Context,
    SettlementError,
    compute,
)


def open_epoch_record(data: bytes, org_key: bytes, books: dict[str, Any] | None = None,
                      final: bool = False) -> dict[str, Any]:
    """An epoch record whose signatures check out: the organization's ("sig" by org_key), or
    kept by bookkeepers (books: their opened set record): "sigs" of a quorum of them (final),
    or — unless final is required — one bookkeeper's own "sig" (an epoch not final yet)."""
    body = decode_record(data)
    if body.get("type") != "epoch" or body.get("org") != key_id(org_key):
        raise AuthError("not an epoch record of this organization")
    if "books" not in body:
        check_signature(body, EPOCH, org_key)
        return body
    if books is None:
        raise AuthError("epoch record is kept by bookkeepers: their set record is needed")
    if body["books"] != books["version"]:
        raise AuthError(f"epoch record names bookkeeper set v{body['books']}, "
                        f"not v{books['version']}")
    if "sigs" in body:
        check_quorum(body, books)
        return body
    if final:
        raise AuthError("epoch record is signed by one bookkeeper, not yet by a quorum")
    for key in books["keys"]:
        try:
            check_signature(body, EPOCH, key)
            return body
        except AuthError:
            continue
    raise AuthError("epoch record is not signed by any of the bookkeepers")


def books_of(org: Any, record: bytes) -> dict[str, Any] | None:
    """The bookkeeper set (opened) that signs this stored epoch record, if any."""
    version = decode_record(bytes(record)).get("books")
    return org.books(version) if type(version) is int else None


def check_quorum(body: dict[str, Any], books: dict[str, Any]) -> int:
    """How many distinct bookkeepers signed body (its "sigs": [[index, sig], ...]);
    AuthError below the set's quorum."""
    from leither import crypto

    message = EPOCH + cbor.dumps({k: v for k, v in body.items() if not k.startswith("sig")})
    good = set()
    for item in body.get("sigs") or []:
        if type(item) is not list or len(item) != 2 or type(item[0]) is not int:
            raise DecodeError("epoch record: malformed signature entry")
        index, sig = item
        if 0 <= index < len(books["keys"]) and type(sig) is bytes and \
                crypto.verify(books["keys"][index], message, sig):
            good.add(index)
    if len(good) < books["quorum"]:
        raise AuthError(f"epoch {body.get('epoch')}: {len(good)} valid bookkeeper signatures, "
                        f"the quorum is {books['quorum']} of {len(books['keys'])}")
    return len(good)


def replay(org: Any, number: int, check_receipt_signatures: bool = True) -> dict[str, Any]:
    """Recompute epoch `number` from the stored previous state and inputs; SettlementError or
    AuthError if anything disagrees with what was committed and signed."""
    from leither_host.ledger import pool

    db = org.db
    row = db.epoch(number)
    if row is None:
        raise SettlementError(f"no epoch {number}")
    record = open_epoch_record(bytes(row["record"]), org.public, books_of(org, row["record"]))
    inputs = cbor.loads(bytes(row["inputs"]), max_len=1 << 30, max_items=1 << 24,
                        max_total=1 << 31)
    if hashlib.sha256(bytes(row["inputs"])).digest() != record["inputs"]:
        raise SettlementError(f"epoch {number}: stored inputs do not match the signed record")
    prev_tree = db.tree(number - 1) if number > 1 else None
    prev_row = db.epoch(number - 1) if number > 1 else None
    get = prev_tree.get if prev_tree is not None else (lambda _k: None)
    # The members this epoch settled with, from the member tree of its version, whose root
    # the epoch record signs.
    if "mroot" not in record:  # books from before the member tree: a signed list of all
        members, supervisors = _listed_members(org, inputs["members"])
    else:
        members, supervisors = _tree_members(org, number, inputs["members"], record["mroot"])
    active = pool.contract_by_digest(db, inputs["contract"]) if inputs["contract"] else None
    receipts = []
    packed = inputs["receipts"]
    # The receipts this epoch settled, in one query; each must hash to its listed ID.
    stored = {bytes(i): bytes(d) for i, d in db.conn.execute(
        "SELECT id, data FROM receipt_pool WHERE epoch=?", (number,))}
    for rid in (packed[i:i + 32] for i in range(0, len(packed), 32)):
        data = stored.get(rid)  # type: ignore[assignment]
        if data is None:
            raise SettlementError(f"epoch {number}: receipt {rid.hex()} is missing")
        if hashlib.sha256(data).digest() != rid:
            raise SettlementError(f"epoch {number}: receipt {rid.hex()} was altered")
        fields = receipt_mod.verify(data) if check_receipt_signatures else \
            receipt_mod.decode(data)
        receipts.append(pool.row_of(rid, fields))
    ctx = Context(org_id=org.id, treasury=org.raw, epoch=number, start_ms=row["start_ms"],
                  end_ms=row["end_ms"], members=members, supervisors=supervisors,
                  contract=active, get=get,
                  marks={(i, p): e for i, p, e in inputs["marks_before"]},
                  debts={(d, c): a for d, c, a in inputs["debts_before"]},
                  credit_pairs={(a, b) for a, b in inputs["credit_pairs"]},
                  supply=prev_row["supply"] if prev_row else 0)
    plan = compute(ctx, receipts, list(inputs["txs"]))
    if plan.rejected or len(plan.receipts) != len(receipts) or len(plan.txs) != len(
            inputs["txs"]):
        raise SettlementError(f"epoch {number}: replay rejects inputs the epoch accepted: "
                              f"{plan.rejected[:3]}")
    from leither_host.ledger.smt import SMT

    scratch = SMT(prev_row["root_id"] or None, db.load_node) if prev_row else SMT()
    root = scratch.apply(dict(plan.changes))
    for name, value in (("root", root), ("minted", plan.minted), ("burned", plan.burned)):
        if record[name] != value or (name != "root" and row[name] != value):
            raise SettlementError(f"epoch {number}: replay gives {name} {value!r}, "
                                  f"the signed record says {record[name]!r}")
    if row["root"] != root:
        raise SettlementError(f"epoch {number}: stored root differs from the signed one")
    prev_supply = prev_row["supply"] if prev_row else 0
    if record["supply"] != prev_supply + plan.minted - plan.burned:
        raise SettlementError(f"epoch {number}: supply {record['supply']} != previous "
                              f"{prev_supply} + minted - burned")
    return {"epoch": number, "root": root.hex(), "supply": record["supply"],
            "minted": plan.minted, "burned": plan.burned, "ok": True}


def _tree_members(org: Any, number: int, version: int, mroot: bytes
                  ) -> tuple[list[Any], dict[str, bytes]]:
    """Members of a member tree version whose root the record signs, and the supervisors'
    keys (a key never changes: an ID is its key's hash)."""
    from leither_host.ledger import members as members_mod

    db = org.db
    if members_mod.version_row(db, version)["root"] != mroot:
        raise SettlementError(f"epoch {number}: member set v{version} is not the one the "
                              f"record signs")
    members = members_mod.members_at(db, version)
    supervisors = {}
    for m in members:
        if m.role == "supervisor":
            found = db.conn.execute("SELECT pubkey FROM members WHERE id=?", (m.id,)).fetchone()
            if found is None or ids.raw_id(bytes(found[0])) != m.raw:
                raise SettlementError(f"epoch {number}: no key for supervisor {m.id}")
            supervisors[m.id] = bytes(found[0])
    return members, supervisors


def _listed_members(org: Any, version: int) -> tuple[list[Any], dict[str, bytes]]:
    """Members of a signed list of every member (books from before the member tree)."""
    from leither_host.ledger import contract as contract_mod
    from leither_host.ledger import org as org_mod

    body = decode_record(org.member_list(version))
    check_signature(body, org_mod.MEMBER_LIST, org.public)
    listed = body.get("members")
    if type(listed) is not list:
        raise DecodeError(f"member list v{version} lists no members")
    members = [contract_mod.Member(m["id"], ids.id_raw(m["id"]), m["role"], m["joined"])
               for m in listed]
    return members, {m["id"]: m["key"] for m in listed if m["role"] == "supervisor"}


def verify_all(org: Any, check_receipt_signatures: bool = True) -> dict[str, Any]:
    """Replay every epoch, then check the latest tree sums to the signed supply."""
    results = [replay(org, row["epoch"], check_receipt_signatures) for row in org.db.epochs()]
    last = org.db.last_epoch()
    total = 0
    accounts = 0
    for _key, balance, _nonce in org.db.tree().items():
        total += balance
        accounts += 1
    supply = last["supply"] if last else 0
    if total != supply:
        raise SettlementError(f"balances sum to {total}, the signed supply is {supply}")
    return {"epochs": len(results), "accounts": accounts, "supply": supply,
            "root": bytes(last["root"]).hex() if last else EMPTY_ROOT.hex(),
            "ok": True, "details": results}
