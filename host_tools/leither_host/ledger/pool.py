# What waits for the next epoch: receipts (signature-checked as they enter, so settlement does
# not pay Ed25519 again for each), signed transactions, and the deployed contracts.
#
# Receipt import is where bad signatures, malformed records and exact duplicates are refused
# and reported; out-of-period, non-member and overlapping receipts are refused by the epoch
# that would pay them (settle.py), which knows the period and the member list.
"""The pending pool of an organization: receipts, transactions, contracts."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from leither import cbor
from leither import receipt as receipt_mod
from leither.compat import time_ms
from leither.errors import AuthError, DecodeError
from leither_host.ledger import contract as contract_mod
from leither_host.ledger import tx as tx_mod
from leither_host.ledger.db import LedgerDB
from leither_host.ledger.settle import ReceiptRow

PARALLEL_FROM = 4000  # receipts: below this, starting worker processes costs more than it saves
WORKERS = 2  # processes for Ed25519 checks of a big import (the machine's cores)


def row_of(rid: bytes, r: dict[str, Any]) -> ReceiptRow:
    return ReceiptRow(rid, r["issuer"], r["partner"], r["start"], r["end"], r["stored"],
                      r["served"], r["audits_ok"], r["audits_failed"])


def _check(data: bytes) -> tuple[str, Any]:
    """("ok", fields) or ("bad", reason) for one encoded receipt (runs in workers too)."""
    try:
        return "ok", receipt_mod.verify(data)
    except (DecodeError, AuthError) as err:
        return "bad", str(err)


def check_receipts(datas: Sequence[bytes], parallel: bool = True) -> list[tuple[str, Any]]:
    if parallel and len(datas) >= PARALLEL_FROM and WORKERS > 1:
        with ProcessPoolExecutor(WORKERS) as workers:
            return list(workers.map(_check, datas, chunksize=500))
    return [_check(d) for d in datas]


def import_receipts(db: LedgerDB, datas: Iterable[bytes], now_ms: int | None = None,
                    parallel: bool = True) -> dict[str, Any]:
    """Verify receipts and add the good ones to the pool, in one transaction.

    Returns {"accepted": n, "rejected": [{"id", "reason"}]}.
    """
    now = now_ms if now_ms is not None else time_ms()
    datas = [bytes(d) for d in datas]
    checked = check_receipts(datas, parallel)
    accepted = 0
    rejected: list[dict[str, Any]] = []
    seen: set[bytes] = set()
    with db.transaction() as conn:
        for data, (status, found) in zip(datas, checked):
            rid = receipt_mod.receipt_id(data)
            if status != "ok":
                rejected.append({"id": rid.hex(), "reason": found})
                continue
            if rid in seen or conn.execute("SELECT 1 FROM receipt_pool WHERE id=?",
                                           (rid,)).fetchone():
                rejected.append({"id": rid.hex(), "reason": "duplicate: already in the pool"})
                continue
            seen.add(rid)
            conn.execute("INSERT INTO receipt_pool VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                         (rid, data, found["issuer"], found["partner"], found["start"],
                          found["end"], found["stored"], found["served"], found["audits_ok"],
                          found["audits_failed"], "pending", None, None, now))
            accepted += 1
        conn.executemany("INSERT INTO rejections VALUES (NULL, 'receipt', ?, ?)",
                         [(r["id"], r["reason"]) for r in rejected])
    return {"accepted": accepted, "rejected": rejected}


def pending_receipts(db: LedgerDB) -> list[ReceiptRow]:
    return [ReceiptRow(bytes(r[0]), *r[1:]) for r in db.conn.execute(
        "SELECT id, issuer, partner, start_ms, end_ms, stored, served, audits_ok, "
        "audits_failed FROM receipt_pool WHERE status='pending'")]


def list_receipts(db: LedgerDB, status: str | None = None, limit: int = 1000
                  ) -> list[dict[str, Any]]:
    cols = ("id", "issuer", "partner", "start_ms", "end_ms", "stored", "served", "audits_ok",
            "audits_failed", "status", "epoch", "reason")
    where = "WHERE status=?" if status else ""
    rows = db.conn.execute(f"SELECT {','.join(cols)} FROM receipt_pool {where} "
                           f"ORDER BY added_ms, id LIMIT ?", ((status, limit) if status
                                                              else (limit,)))
    return [dict(zip(cols, (bytes(r[0]).hex(),) + tuple(r[1:]))) for r in rows]


def read_receipt_file(data: bytes) -> list[bytes]:
    """Receipts from a file: one encoded receipt, a CBOR array of them, or JSON hex list."""
    text = data.lstrip()[:1]
    if text in (b"[", b"{") and data.strip().endswith((b"]", b"}")):
        import json

        try:
            loaded = json.loads(data)
        except ValueError:
            loaded = None
        if isinstance(loaded, list):
            return [bytes.fromhex(x) for x in loaded if isinstance(x, str)]
    try:
        obj = cbor.loads(data, max_items=1 << 20, max_total=1 << 28)
    except DecodeError as err:
        raise DecodeError(f"not a receipt file (CBOR receipt, CBOR array or JSON hex list): "
                          f"{err}") from None
    if isinstance(obj, list):
        return [bytes(x) for x in obj if isinstance(x, (bytes, bytearray))]
    if isinstance(obj, dict):
        return [data]
    raise DecodeError("not a receipt file")


# -- transactions --------------------------------------------------------------------------------

def add_transaction(db: LedgerDB, data: bytes, org_id: str, supervisors: dict[str, bytes],
                    now_ms: int | None = None, check: bool = True) -> dict[str, Any]:
    """Check a signed transaction now (so the user hears at once) and queue it.

    check=False (a bookkeeper replaying the log: nobody waits for an answer) only reads its
    type; the epoch checks every signature anyway (settle.compute) and rejects what fails,
    so each signature is checked once per bookkeeper instead of twice.
    """
    if check:
        body = tx_mod.open_tx(data, org_id, supervisors)
    else:
        body = tx_mod.decode_record(data)
        if body.get("type") not in tx_mod.KINDS or type(body.get("amount")) is not int:
            raise DecodeError("not a ledger transaction")
    tid = tx_mod.tx_id(data)
    with db.transaction() as conn:
        if conn.execute("SELECT 1 FROM pending WHERE id=?", (tid,)).fetchone():
            raise DecodeError("this transaction is already queued")
        conn.execute("INSERT INTO pending VALUES (?,?,?,?)",
                     (tid, body["type"], data, now_ms if now_ms is not None else time_ms()))
    return {"id": tid.hex(), "type": body["type"], "amount": body["amount"]}


def list_pending(db: LedgerDB) -> list[dict[str, Any]]:
    """The queued transactions, oldest first: {id, type, amount, from, to, added_ms}."""
    out = []
    for tid, kind, data, added in db.conn.execute(
            "SELECT id, kind, data, added_ms FROM pending ORDER BY added_ms, id"):
        try:
            body = tx_mod.decode_record(bytes(data))
        except DecodeError as err:  # listed anyway, so that it can be dropped
            body = {"error": str(err)}
        out.append({"id": bytes(tid).hex(), "type": kind, "amount": body.get("amount"),
                    "from": body.get("from") or body.get("by"),
                    "to": body.get("to") or body.get("id"), "added_ms": added})
    return out


def drop_pending(db: LedgerDB, prefix: str) -> dict[str, Any]:
    """Remove one queued transaction, named by a prefix of its ID (hex)."""
    prefix = prefix.lower()
    if not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise DecodeError(f"{prefix!r} is not a transaction ID (hex) or a prefix of one")
    found = [p for p in list_pending(db) if p["id"].startswith(prefix)]
    if not found:
        raise DecodeError(f"no queued transaction {prefix}")
    if len(found) > 1:
        raise DecodeError(f"{prefix!r} matches {len(found)} queued transactions: give more")
    with db.transaction() as conn:
        conn.execute("DELETE FROM pending WHERE id=?", (bytes.fromhex(found[0]["id"]),))
    return found[0]


# -- contracts ------------------------------------------------------------------------------------

def deploy_contract(db: LedgerDB, text: str, member_ids: set[str],
                    now_ms: int | None = None) -> dict[str, Any]:
    """Validate and store a contract; it governs every epoch settled from now on."""
    parsed = contract_mod.parse(text)
    for share in parsed.shares:
        if share.basis == "member" and share.member not in member_ids:
            raise contract_mod.ContractError(
                f"contract: share {share.name!r}: {share.member} is not a member of this "
                f"organization")
    last = db.last_epoch()
    digest = parsed.digest()
    with db.transaction() as conn:
        row = conn.execute("SELECT max(version) FROM contracts").fetchone()
        version = (row[0] or 0) + 1
        conn.execute("INSERT INTO contracts VALUES (?,?,?,?,?,?)",
                     (version, digest, text, cbor.dumps(parsed.canonical()),
                      now_ms if now_ms is not None else time_ms(),
                      (last["epoch"] + 1) if last else 1))
    return {"version": version, "digest": digest.hex(), "name": parsed.name,
            "shares": len(parsed.shares)}


def active_contract(db: LedgerDB) -> contract_mod.Contract | None:
    row = db.conn.execute(
        "SELECT source FROM contracts ORDER BY version DESC LIMIT 1").fetchone()
    return contract_mod.parse(row[0]) if row else None


def contract_by_digest(db: LedgerDB, digest: bytes) -> contract_mod.Contract:
    row = db.conn.execute("SELECT source FROM contracts WHERE digest=? LIMIT 1",
                          (digest,)).fetchone()
    if row is None:
        raise DecodeError(f"no contract with digest {bytes(digest).hex()}")
    found = contract_mod.parse(row[0])
    if found.digest() != digest:
        raise DecodeError("stored contract does not match its digest")
    return found


def contract_info(db: LedgerDB) -> list[dict[str, Any]]:
    cols = ("version", "digest", "source", "deployed_ms", "from_epoch")
    return [dict(zip(cols, (r[0], bytes(r[1]).hex(), r[2], r[3], r[4]))) for r in
            db.conn.execute(f"SELECT {','.join(cols)} FROM contracts ORDER BY version")]


def hash_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
