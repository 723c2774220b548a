# `leither settle`: close an epoch — pay the pooled receipts and income by the contract, apply
# the queued transactions, sign the new ledger root, write the per-member report.
"""The settle verb."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from leither.compat import time_ms
from leither_host.errors import CliError
from leither_host.ledger import settle
from leither_host.ledger import tx as tx_mod
from leither_host.ledger.verbs import (
    add_common,
    emit,
    home,
    member_key,
    open_org,
    parser,
    read_input,
)

EXAMPLES = """examples:
  leither settle --income 1000000 --income-id invoice-42   # split an income, pay receipts
  leither settle --tx alice-to-bob.tx                      # apply a countersigned transfer
  leither settle --reward bob:500 --reason "ran the demo"  # within the contract's reward cap
  leither settle --until 1764115200000 --json
Reports: DATA/orgs/ORG/reports/epoch-N.json (and `leither ledger history --epoch N`).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = parser(sub, "settle", "settle the next epoch and sign the new ledger root", EXAMPLES)
    p.add_argument("--income", type=int, metavar="TOKENS",
                   help="an income event to split by the contract (signed with --key)")
    p.add_argument("--income-id", metavar="ID", help="the income event's unique ID "
                   "(default: income-<time>)")
    p.add_argument("--source", default="", help="where the income came from")
    p.add_argument("--reward", action="append", default=[], metavar="MEMBER:TOKENS",
                   help="a supervisor-signed reward (repeatable)")
    p.add_argument("--reason", default="", help="why the rewards are given")
    p.add_argument("--tx", action="append", default=[], metavar="FILE",
                   help="a signed transaction file to queue first (repeatable)")
    p.add_argument("--until", type=int, metavar="MS",
                   help="end of the epoch, ms since the Unix epoch (default: now)")
    add_common(p, key=True)
    p.set_defaults(func=run)


def _inputs(args: argparse.Namespace, org: Any, number: int) -> list[bytes]:
    """The transactions this settlement brings, each checked; nothing is written."""
    supervisors = org.supervisors()
    out: list[bytes] = []
    signer = None
    if args.income is not None or args.reward:
        signer, _ = home(args).key(args.key, create=False)
    for path in args.tx:
        out.append(read_input(path))
    last = org.db.last_epoch()
    minting = 0
    if args.income is not None:
        if not 0 < args.income <= tx_mod.MAX_AMOUNT:
            raise CliError(f"--income must be 1..{tx_mod.MAX_AMOUNT} tokens, not {args.income}")
        minting += args.income
        assert signer is not None
        out.append(tx_mod.income(signer, org.id, args.income_id or f"income-{time_ms()}",
                                 args.income, args.source))
    for item in args.reward:
        who, _, amount = item.rpartition(":")
        if not who or not amount.isdigit() or not 0 < int(amount) <= tx_mod.MAX_AMOUNT:
            raise CliError(f"--reward wants MEMBER:TOKENS (1..{tx_mod.MAX_AMOUNT}), got {item!r}")
        member_id, _raw = member_key(org, who)
        if org.member(member_id) is None:
            raise CliError(f"--reward: {who!r} is not a member of {org.name}")
        minting += int(amount)
        assert signer is not None
        out.append(tx_mod.reward(signer, org.id, member_id, int(amount), number, args.reason))
    supply = last["supply"] if last else 0
    if supply + minting > settle.MAX_SUPPLY:
        raise CliError(f"minting {minting} would take the supply {supply} past "
                       f"{settle.MAX_SUPPLY} (2^63-1): nothing was settled or queued")
    for data in out:
        tx_mod.open_tx(data, org.id, supervisors)  # a bad file is named before anything runs
    return out


def run(args: argparse.Namespace) -> int:
    org = open_org(args)
    try:
        if org.books() is not None:
            raise CliError(f"{org.name}'s books are kept by its bookkeepers: submit inputs and "
                           f"close epochs through them (leither books submit / books close)")
        last = org.db.last_epoch()
        number = (last["epoch"] + 1) if last else 1
        if args.until is not None and args.until > time_ms():
            raise CliError(f"--until {args.until} is in the future: an epoch can only close "
                           f"a period that is over")
        extra = _inputs(args, org, number)
        # All or nothing: the inputs given here are settled with this epoch or not at all
        # (run_epoch never queues them; on any error nothing is written).
        summary = settle.run_epoch(org, end_ms=args.until, reports_dir=org.dir / "reports",
                                   extra_txs=extra)
    finally:
        org.close()
    summary["report"] = str(org.dir / "reports" / f"epoch-{summary['epoch']}.json")

    def text() -> None:
        print(f"epoch {summary['epoch']} settled: root {summary['root'][:16]}…, supply "
              f"{summary['supply']} (+{summary['minted']} minted, -{summary['burned']} burned)")
        print(f"{summary['receipts']} receipts paid, {summary['transactions']} transactions, "
              f"{summary['deferred']} receipts deferred, {len(summary['rejected'])} rejected")
        for r in summary["rejected"][:20]:
            print(f"  rejected {r['kind']} {r['id'][:16]}: {r['reason']}")
        print(f"report: {summary['report']}")

    emit(args, summary, text=text)
    if summary["rejected"]:
        # The epoch is final, but inputs someone meant to be paid were refused for good:
        # a script that checks only the exit status must not take that for success.
        print(f"leither: epoch {summary['epoch']} settled, but {len(summary['rejected'])} "
              f"input(s) were rejected for good (see {summary['report']})", file=sys.stderr)
        return 1
    return 0
