# `leither contract`: deploy the organization's split rules, show them, try them on an amount.
"""The contract verb."""

from __future__ import annotations

import argparse
from typing import Any

from leither import ids
from leither.compat import time_ms
from leither_host.errors import CliError
from leither_host.ledger import contract as contract_mod
from leither_host.ledger import pool
from leither_host.ledger.verbs import add_common, emit, open_org, parser

EXAMPLES = """examples:
  leither contract deploy examples/contracts/backup-coop.toml
  leither contract show
  leither contract show --json
  leither contract simulate --income 1000000             # the deployed contract, pending receipts
  leither contract simulate my-draft.toml --income 5000 --json
Format and rules: host_tools/leither_host/ledger/CONTRACTS.md
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = parser(sub, "contract", "deploy, show and simulate the contract that splits income",
               EXAMPLES)
    verbs = p.add_subparsers(dest="contract_verb", metavar="ACTION")
    verbs.required = True
    d = verbs.add_parser("deploy", help="check a TOML contract and make it govern new epochs",
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("file", help="contract file (TOML)")
    add_common(d)
    d.set_defaults(func=run_deploy)
    s = verbs.add_parser("show", help="the deployed contract")
    s.add_argument("--version", type=int, help="an earlier version (default: the newest)")
    add_common(s)
    s.set_defaults(func=run_show)
    m = verbs.add_parser("simulate", help="split an amount now, without touching the books",
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("file", nargs="?", help="a contract file to try (default: the deployed one)")
    m.add_argument("--income", type=int, required=True, metavar="TOKENS",
                   help="the income event's amount")
    add_common(m)
    m.set_defaults(func=run_simulate)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as err:
        raise CliError(f"cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"{path} is not UTF-8 text (a contract is TOML)") from None


def run_deploy(args: argparse.Namespace) -> int:
    text = _read(args.file)
    org = open_org(args)
    try:
        if org.books() is not None:
            raise CliError(f"{org.name}'s books are kept by its bookkeepers: deploy through "
                           f"them (leither books deploy FILE)")
        result = pool.deploy_contract(org.db, text, {m.id for m in org.members()})
    finally:
        org.close()
    emit(args, result, text=lambda: print(
        f"contract {result['name']!r} v{result['version']} deployed "
        f"({result['shares']} shares, digest {result['digest'][:16]}…): it governs the next "
        f"epoch"))
    return 0


def run_show(args: argparse.Namespace) -> int:
    org = open_org(args)
    try:
        info = pool.contract_info(org.db)
    finally:
        org.close()
    if not info:
        raise CliError("no contract deployed: leither contract deploy FILE")
    chosen = info[-1] if args.version is None else next(
        (i for i in info if i["version"] == args.version), None)
    if chosen is None:
        raise CliError(f"no contract version {args.version} (have 1..{info[-1]['version']})")
    parsed = contract_mod.parse(chosen["source"])
    result = dict(chosen)
    result["contract"] = parsed.canonical()

    def text() -> None:
        print(f"contract {parsed.name!r} v{chosen['version']}, digest {chosen['digest']}, "
              f"from epoch {chosen['from_epoch']}")
        from leither_host.output import print_table
        print_table(["share", "millionths", "basis", "to", "weights", "vesting"], [
            (s.name, s.millionths, s.basis, s.member or s.role or "all members",
             ", ".join(f"{m}={w}" for m, w in s.weights),
             f"cliff {s.cliff_ms} ms, over {s.vesting_ms} ms" if s.vesting_ms else "")
            for s in parsed.shares])
        print(f"rewards: up to {parsed.reward_cap} per epoch; credit prices: "
              f"{parsed.price_stored}/GiB-hour stored, {parsed.price_served}/GiB served")

    emit(args, result, text=text)
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    if args.income <= 0:
        raise CliError("--income must be a positive number of tokens")
    org = open_org(args)
    try:
        if args.file:
            parsed = contract_mod.parse(_read(args.file))
        else:
            active = pool.active_contract(org.db)
            if active is None:
                raise CliError("no contract deployed: give a contract FILE to simulate")
            parsed = active
        members = org.members()
        tree = org.db.tree()
        stakes = {m.raw: (tree.get(m.raw) or (0, 0))[0] for m in members}
        perf: dict[bytes, contract_mod.Performance] = {}
        by_id = {m.id: m for m in members}
        for r in pool.pending_receipts(org.db):
            if r.partner in by_id:
                p = perf.setdefault(by_id[r.partner].raw, contract_mod.Performance())
                p.stored += r.stored
                p.served += r.served
                p.audits += r.audits_ok
        payout, lines = contract_mod.run(parsed, args.income, members, stakes, perf, org.raw,
                                         time_ms())
        names = {m.raw: m.id for m in members}
        names[org.raw] = "treasury"
        rows: list[dict[str, Any]] = [{"account": names.get(raw, ids.b58encode(raw)),
                                       "tokens": n} for raw, n in
                                      sorted(payout.items(), key=lambda x: (-x[1], x[0]))]
    finally:
        org.close()
    result = {"income": args.income, "payout": rows, "shares": lines,
              "total": sum(r["tokens"] for r in rows)}
    emit(args, result, ["account", "tokens"], [(r["account"], r["tokens"]) for r in rows],
         text=lambda: print(f"total {result['total']} of {args.income} (nothing was written)"))
    return 0
