# The bookkeepers' records and the ways into their log (bookkeepers.py says how it all fits):
# the organization's signed bookkeeper set, the supervisor-signed close and contract inputs,
# log entries, the genesis, and naming the set on the supervisors' host.
"""Bookkeeper set, genesis, close and deploy records; submitting to the log."""

from __future__ import annotations

from typing import Any

from leither import cbor, crypto
from leither.compat import time_ms
from leither.errors import AuthError, DecodeError
from leither_host.errors import CliError
from leither_host.ledger.etcdlog import EtcdLog
from leither_host.ledger.records import (
    check_signature,
    decode_record,
    key_id,
    require,
    sign_record,
)

BOOKS = b"leither-bookkeepers/1"
CLOSE = b"leither-epoch-close/1"
DEPLOY = b"leither-contract-deploy/1"
KINDS = ("application", "approval", "receipt", "tx", "contract", "credit", "books", "close")
PREFIX = "/leither/books/"


def quorum_of(n: int) -> int:
    """A majority of n: two quorums always share a bookkeeper, so two roots cannot both be
    final for one epoch."""
    return n // 2 + 1


def log_for(books: dict[str, Any], endpoints: list[str] | None = None) -> EtcdLog:
    return EtcdLog(endpoints or list(books["etcd"]), PREFIX + books["org"])


# -- records ------------------------------------------------------------------------------------

def make_books(org_seed: bytes, org_id: str, version: int, members: list[tuple[str, bytes]],
               etcd: list[str], now_ms: int | None = None) -> bytes:
    """The organization's signed record of its bookkeepers [(name, key)]."""
    if not members:
        raise CliError("an organization kept by bookkeepers needs at least one")
    keys = [k for _n, k in members]
    if len(set(keys)) != len(keys):
        raise CliError("a bookkeeper is listed twice")
    return sign_record(org_seed, BOOKS, {
        "type": "bookkeepers", "org": org_id, "version": version, "keys": keys,
        "names": [n for n, _k in members], "quorum": quorum_of(len(keys)), "etcd": etcd,
        "time": now_ms if now_ms is not None else time_ms()})


def open_books(data: bytes, org_key: bytes) -> dict[str, Any]:
    body = decode_record(data)
    require(body, {"org": str, "version": int, "keys": list, "names": list, "quorum": int,
                   "etcd": list, "time": int})
    if body.get("type") != "bookkeepers" or body["org"] != key_id(org_key):
        raise AuthError("not a bookkeeper set record of this organization")
    check_signature(body, BOOKS, org_key)
    n = len(body["keys"])
    if not n or any(type(k) is not bytes or len(k) != 32 for k in body["keys"]) or \
            body["quorum"] != quorum_of(n):
        raise DecodeError(f"bookkeeper set: {n} keys need a quorum of a majority")
    return body


def make_close(seed: bytes, org_id: str, epoch: int, until_ms: int,
               now_ms: int | None = None) -> bytes:
    """A supervisor closes an epoch at until_ms; it signs when (now), and an epoch cannot end
    after its close was signed (a period not over yet would be paid early)."""
    now = now_ms if now_ms is not None else time_ms()
    if until_ms > now:
        raise CliError(f"an epoch cannot end in the future ({until_ms} > now {now})")
    public = crypto.sign_public(seed)
    return sign_record(seed, CLOSE, {"type": "close", "org": org_id, "epoch": epoch,
                                     "until": until_ms, "time": now, "by": key_id(public),
                                     "by_key": public})


def make_deploy(seed: bytes, org_id: str, source: str, now_ms: int | None = None) -> bytes:
    public = crypto.sign_public(seed)
    return sign_record(seed, DEPLOY, {"type": "contract", "org": org_id, "source": source,
                                      "time": now_ms if now_ms is not None else time_ms(),
                                      "by": key_id(public), "by_key": public})


def _by_supervisor(org: Any, data: bytes, domain: bytes, kind: str,
                   fields: dict[str, type]) -> dict[str, Any]:
    body = decode_record(data)
    require(body, {"org": str, "by": str, "by_key": bytes, **fields})
    if body.get("type") != kind or body["org"] != org.id:
        raise DecodeError(f"not a {kind} record of this organization")
    if org.supervisors().get(body["by"]) != body["by_key"]:
        raise AuthError(f"{kind} signed by {body['by']}, who is not a supervisor")
    check_signature(body, domain, body["by_key"])
    return body


def entry(inputs: list[tuple[str, bytes]], now_ms: int | None = None) -> bytes:
    for kind, data in inputs:
        if kind not in KINDS or not isinstance(data, bytes):
            raise CliError(f"unknown input kind {kind!r}")
    return bytes(cbor.dumps({"time": now_ms if now_ms is not None else time_ms(),
                             "inputs": [[k, d] for k, d in inputs]}))


def submit(log: EtcdLog, inputs: list[tuple[str, bytes]], now_ms: int | None = None
           ) -> tuple[int, bool]:
    """Append one entry of inputs to the organization's log: (its number, newly appended)."""
    return log.append(entry(inputs, now_ms))


def genesis(org: Any) -> bytes:
    """The starting state every bookkeeper's books begin from (the founder's host makes it)."""
    books = org.db.get_meta("books")
    founder = org.db.get_meta("founder_application")
    if books is None:
        raise CliError(f"{org.name} names no bookkeepers yet (leither org bookkeepers add)")
    if founder is None:
        raise CliError(f"{org.name} was created before bookkeepers existed (its founder's "
                       f"application was not kept): create a new organization for them")
    return bytes(cbor.dumps({"type": "genesis", "org": org.id, "org_key": org.public,
                             "name": org.name, "created_ms": int(org.db.get_meta("created_ms")),
                             "founder": bytes(founder), "books": bytes(books)}))


def publish_genesis(org: Any, log: EtcdLog) -> bool:
    """Put the genesis in etcd (once; True if this call did)."""
    if org.db.last_epoch() is not None or len(org.member_rows()) > 1:
        raise CliError("bookkeepers start from a new organization (only its founder, no epoch "
                       "settled): its applications and approvals then go through the log")
    return log.create(log.key("genesis"), genesis(org))


def set_bookkeepers(org: Any, members: list[tuple[str, bytes]], etcd: list[str] | None = None,
                    now_ms: int | None = None) -> dict[str, Any]:
    """Sign and keep the organization's new bookkeeper set (a supervisors' host: it needs the
    org key). Once the genesis is in etcd, a change reaches the bookkeepers through the log."""
    current = org.books()
    endpoints = etcd if etcd is not None else (list(current["etcd"]) if current else [])
    if not endpoints:
        raise CliError("give the etcd cluster's endpoints (--etcd HOST:PORT,…)")
    record = make_books(org.seed(), org.id, (current["version"] + 1) if current else 1,
                        members, endpoints, now_ms)
    opened = open_books(record, org.public)
    if current is not None:
        log = log_for(opened)
        if log.get(log.key("genesis")) is not None:
            submit(log, [("books", record)], now_ms)
    with org.db.transaction():
        org.set_books(record, opened["version"])
    return opened


def members_of(books: dict[str, Any] | None) -> list[tuple[str, bytes]]:
    return list(zip(books["names"], books["keys"])) if books else []
