# Ledger transactions: the only ways a balance changes.
#
#   transfer {type, org, from, from_key, to, to_key, amount, nonce, memo}
#            signed by both parties: "sig_from" and "sig_to" over the same body
#   burn     {type, org, from, from_key, amount, nonce, memo}       signed "sig_from"
#   income   {type, org, id, amount, time, source, by, by_key}      signed by a supervisor;
#            the contract splits it (the only way tokens enter besides rewards)
#   reward   {type, org, to, amount, epoch, reason, by, by_key}     signed by a supervisor,
#            minted only within the contract's [rewards] max_per_epoch, only in that epoch
#
# Replay: a transfer or burn carries the sender's next nonce (account nonce + 1) and the nonce
# is stored in the sender's leaf, so the same transaction can never apply twice; an income
# event's id and a reward's hash are recorded as spent.
"""Signed transfers, burns, income events and rewards."""

from __future__ import annotations

import hashlib
from typing import Any

from leither import crypto
from leither.compat import time_ms
from leither.errors import AuthError, DecodeError
from leither_host.ledger.records import (
    check_signature,
    decode_record,
    key_id,
    require,
    sign_record,
)

TRANSFER = b"leither-transfer/1"
BURN = b"leither-burn/1"
INCOME = b"leither-income/1"
REWARD = b"leither-reward/1"
MAX_AMOUNT = (1 << 63) - 1
KINDS = ("transfer", "burn", "income", "reward")
_DOMAINS = {"transfer": TRANSFER, "burn": BURN, "income": INCOME, "reward": REWARD}


def _amount(amount: int) -> int:
    if type(amount) is not int or not 0 < amount <= MAX_AMOUNT:
        raise DecodeError(f"amount must be a positive integer, got {amount!r}")
    return amount


def transfer(from_seed: bytes, org: str, to_key: bytes, amount: int, nonce: int,
             memo: str = "") -> bytes:
    """A transfer signed by the sender; the receiver adds "sig_to" with countersign()."""
    from_key = crypto.sign_public(from_seed)
    body = {"type": "transfer", "org": org, "from": key_id(from_key), "from_key": from_key,
            "to": key_id(to_key), "to_key": to_key, "amount": _amount(amount), "nonce": nonce,
            "memo": memo[:128]}
    return sign_record(from_seed, TRANSFER, body, "sig_from")


def countersign(to_seed: bytes, data: bytes) -> bytes:
    body = decode_record(data)
    if body.get("type") != "transfer" or body.get("to_key") != crypto.sign_public(to_seed):
        raise AuthError("only the receiver of a transfer can countersign it")
    return sign_record(to_seed, TRANSFER, body, "sig_to")


def burn(from_seed: bytes, org: str, amount: int, nonce: int, memo: str = "") -> bytes:
    from_key = crypto.sign_public(from_seed)
    body = {"type": "burn", "org": org, "from": key_id(from_key), "from_key": from_key,
            "amount": _amount(amount), "nonce": nonce, "memo": memo[:128]}
    return sign_record(from_seed, BURN, body, "sig_from")


def income(by_seed: bytes, org: str, event_id: str, amount: int, source: str = "",
           now_ms: int | None = None) -> bytes:
    by_key = crypto.sign_public(by_seed)
    body = {"type": "income", "org": org, "id": event_id[:128], "amount": _amount(amount),
            "time": now_ms if now_ms is not None else time_ms(), "source": source[:128],
            "by": key_id(by_key), "by_key": by_key}
    return sign_record(by_seed, INCOME, body)


def reward(by_seed: bytes, org: str, to_id: str, amount: int, epoch: int,
           reason: str = "") -> bytes:
    by_key = crypto.sign_public(by_seed)
    body = {"type": "reward", "org": org, "to": to_id, "amount": _amount(amount),
            "epoch": epoch, "reason": reason[:128], "by": key_id(by_key), "by_key": by_key}
    return sign_record(by_seed, REWARD, body)


def tx_id(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def open_tx(data: bytes, org: str, supervisors: dict[str, bytes]) -> dict[str, Any]:
    """A transaction whose shape and every signature check out.

    DecodeError if malformed or for another organization; AuthError if a signature is missing
    or wrong, an ID is not its key's, or an income/reward is not signed by a supervisor.
    """
    body = decode_record(data)
    kind = body.get("type")
    if kind not in KINDS:
        raise DecodeError(f"unknown transaction type {kind!r}")
    require(body, {"org": str, "amount": int})
    if body["org"] != org:
        raise DecodeError(f"{kind} is for organization {body['org']}, not {org}")
    _amount(body["amount"])
    domain = _DOMAINS[str(kind)]
    if kind in ("transfer", "burn"):
        require(body, {"from": str, "from_key": bytes, "nonce": int, "memo": str})
        if key_id(body["from_key"]) != body["from"]:
            raise AuthError(f"{kind}: sender ID is not the ID of its key")
        check_signature(body, domain, body["from_key"], "sig_from")
        if kind == "transfer":
            require(body, {"to": str, "to_key": bytes})
            if key_id(body["to_key"]) != body["to"]:
                raise AuthError("transfer: receiver ID is not the ID of its key")
            if body["to"] == body["from"]:
                raise DecodeError("transfer to oneself")
            if "sig_to" not in body:
                raise AuthError("transfer is not countersigned by its receiver")
            check_signature(body, domain, body["to_key"], "sig_to")
    else:
        require(body, {"by": str, "by_key": bytes})
        if supervisors.get(body["by"]) != body["by_key"]:
            raise AuthError(f"{kind} signed by {body['by']}, who is not a supervisor")
        check_signature(body, domain, body["by_key"])
        if kind == "income":
            require(body, {"id": str, "time": int, "source": str})
        else:
            require(body, {"to": str, "epoch": int, "reason": str})
    return body
