# Credit lines between paired nodes (LEITHER.md "Credit"): each side grants the other a limit —
# how much service, in tokens, it gives before being paid. Usage comes from receipts: a receipt
# that issuer X signs for partner Y says Y served X, so X owes Y its value at the contract's
# prices:
#
#   value = floor((Σ stored byte-hours × price_stored + Σ served bytes × price_served) / 2^30)
#
# summed per (debtor, creditor) over one epoch before rounding (prices are per GiB-hour and per
# GiB). Debts in both directions cancel; what is left is netted at settlement as a transfer
# from debtor to creditor, as far as the debtor's balance goes; the rest stays as debt. A node
# whose debt to a partner passes the limit that partner granted is refused more service
# (leither.receipt.check_credit, a QuotaError saying so).
#
#   grant {type, org, grantor, grantor_key, grantee, limit, time}  signed by the grantor
"""Credit-line grants, usage valuation and netting."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from leither import receipt as receipt_mod
from leither.compat import time_ms
from leither.errors import AuthError, DecodeError
from leither_host.ledger.records import (
    check_signature,
    decode_record,
    key_id,
    require,
    sign_record,
)

GRANT = b"leither-credit/1"
GIB = 1 << 30
MAX_LIMIT = (1 << 63) - 1  # tokens: a limit is stored as a signed 64-bit integer


def grant(seed: bytes, org: str, grantee: str, limit: int, now_ms: int | None = None) -> bytes:
    from leither import crypto

    if type(limit) is not int or not 0 <= limit <= MAX_LIMIT:
        raise DecodeError(f"a credit limit is an integer of 0..{MAX_LIMIT} tokens")
    public = crypto.sign_public(seed)
    return sign_record(seed, GRANT, {
        "type": "credit", "org": org, "grantor": key_id(public), "grantor_key": public,
        "grantee": grantee, "limit": limit, "time": now_ms if now_ms is not None else time_ms()})


def open_grant(data: bytes, org: str) -> dict[str, Any]:
    body = decode_record(data)
    require(body, {"org": str, "grantor": str, "grantor_key": bytes, "grantee": str,
                   "limit": int, "time": int})
    if body.get("type") != "credit" or body["org"] != org:
        raise DecodeError(f"not a credit grant for organization {org}")
    if body["limit"] > MAX_LIMIT:
        raise DecodeError(f"credit limit {body['limit']} is over {MAX_LIMIT}")
    if key_id(body["grantor_key"]) != body["grantor"]:
        raise AuthError("credit grant: grantor ID is not the ID of its key")
    if body["grantor"] == body["grantee"]:
        raise DecodeError("credit grant to oneself")
    check_signature(body, GRANT, body["grantor_key"])
    return body


def usage_value(stored: int, served: int, price_stored: int, price_served: int) -> int:
    return (stored * price_stored + served * price_served) // GIB


def net(debts: dict[tuple[str, str], int],
        usage: Iterable[tuple[str, str, int]]) -> dict[tuple[str, str], int]:
    """Debts after adding usage (debtor, creditor, value), with opposite debts cancelled.

    Returns {(debtor, creditor): amount > 0}, at most one direction per pair.
    """
    total: dict[tuple[str, str], int] = {}
    for (debtor, creditor), amount in list(debts.items()) + [((d, c), v) for d, c, v in usage]:
        pair = (min(debtor, creditor), max(debtor, creditor))
        sign = 1 if debtor == pair[0] else -1
        total[pair] = total.get(pair, 0) + sign * amount
    out: dict[tuple[str, str], int] = {}
    for (low, high), amount in sorted(total.items()):
        if amount > 0:
            out[(low, high)] = amount
        elif amount < 0:
            out[(high, low)] = -amount
    return out


def check_service(limit: int, debt: int, requested: int, grantee: str) -> int:
    """What the grantee may still use; QuotaError when the request passes the granted limit."""
    return int(receipt_mod.check_credit(limit, debt, requested, grantee))


# -- the organization's record of lines ----------------------------------------------------------

def store_grant(db: Any, data: bytes, org: str) -> dict[str, Any]:
    """Record (or replace) a signed grant; the newest grant of a pair is the line's limit."""
    body = open_grant(data, org)
    with db.transaction() as conn:
        conn.execute("INSERT OR REPLACE INTO credit_lines VALUES (?,?,?,?)",
                     (body["grantor"], body["grantee"], body["limit"], data))
    return {"grantor": body["grantor"], "grantee": body["grantee"], "limit": body["limit"]}


def lines(db: Any) -> list[dict[str, Any]]:
    """Every line with the grantee's outstanding debt to the grantor and what is left."""
    debts = {(d, c): a for d, c, a in db.conn.execute("SELECT * FROM credit_debts")}
    out = []
    for grantor, grantee, limit in db.conn.execute(
            "SELECT grantor, grantee, lim FROM credit_lines ORDER BY grantor, grantee"):
        used = debts.get((grantee, grantor), 0)
        out.append({"grantor": grantor, "grantee": grantee, "limit": limit, "used": used,
                    "left": max(limit - used, 0), "over": used > limit})
    return out


def check(db: Any, grantor: str, grantee: str, requested: int) -> int:
    """What grantee may still use of grantor's service; QuotaError past the limit (no line is
    a limit of 0)."""
    row = db.conn.execute("SELECT lim FROM credit_lines WHERE grantor=? AND grantee=?",
                          (grantor, grantee)).fetchone()
    debt = db.conn.execute("SELECT amount FROM credit_debts WHERE debtor=? AND creditor=?",
                           (grantee, grantor)).fetchone()
    return check_service(row[0] if row else 0, debt[0] if debt else 0, requested, grantee)
