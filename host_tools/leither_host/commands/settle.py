# `leither settle`: close an epoch — pay the pooled receipts and income by the contract, apply
# the queued transactions, sign the new ledger root, write the per-member report.
"""The settle verb."""

from __future__ import annotations

import argparse

from leither.compat import time_ms
from leither_host.errors import CliError
from leither_host.ledger import pool, settle
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


def run(args: argparse.Namespace) -> int:
    org = open_org(args)
    try:
        supervisors = org.supervisors()
        signer = None
        if args.income is not None or args.reward:
            signer, _ = home(args).key(args.key, create=False)
        for path in args.tx:
            pool.add_transaction(org.db, read_input(path), org.id, supervisors)
        if args.income is not None:
            if args.income <= 0:
                raise CliError("--income must be a positive number of tokens")
            assert signer is not None
            event = tx_mod.income(signer, org.id, args.income_id or f"income-{time_ms()}",
                                  args.income, args.source)
            pool.add_transaction(org.db, event, org.id, supervisors)
        last = org.db.last_epoch()
        number = (last["epoch"] + 1) if last else 1
        for item in args.reward:
            who, _, amount = item.rpartition(":")
            if not who or not amount.isdigit():
                raise CliError(f"--reward wants MEMBER:TOKENS, got {item!r}")
            member_id, _raw = member_key(org, who)
            assert signer is not None
            pool.add_transaction(org.db, tx_mod.reward(signer, org.id, member_id, int(amount),
                                                       number, args.reason),
                                 org.id, supervisors)
        summary = settle.run_epoch(org, end_ms=args.until, reports_dir=org.dir / "reports")
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
    return 0
