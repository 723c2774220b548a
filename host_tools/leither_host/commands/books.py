# `leither books`: an organization's books kept by bookkeepers on etcd (ledger/bookkeepers.py):
# run a bookkeeper, see how they agree, submit inputs and close epochs through the log.
"""The books verb."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from leither import cbor
from leither.compat import time_ms
from leither.errors import DecodeError
from leither_host.errors import CliError
from leither_host.ledger import bookkeepers as bk
from leither_host.ledger.records import decode_record
from leither_host.ledger.verbs import add_common, emit, home, open_org, parser, read_input

EXAMPLES = """examples:
  leither books serve --org coop --key bk1          # this host keeps coop's books (a loop)
  leither books serve --org-id 2dpq… --etcd 10.0.0.5:2379 --key bk1   # org not on this host
  leither books status --org coop                  # each bookkeeper's epoch, root, lag
  leither books submit pay.tx alice.app            # inputs into the ordered log
  leither books approve alice.app --org coop       # the application and its approval
  leither books deploy coop.toml --org coop        # a contract, signed by a supervisor
  leither books close --org coop                   # close the next epoch (a supervisor)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = parser(sub, "books", "books kept by bookkeepers on etcd: serve, status, submit, close",
               EXAMPLES)
    verbs = p.add_subparsers(dest="books_verb", metavar="ACTION")
    verbs.required = True

    def sub_parser(name: str, help: str) -> argparse.ArgumentParser:
        q = verbs.add_parser(name, help=help, epilog=EXAMPLES,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        q.add_argument("--org-id", metavar="ID", help="an organization not kept on this host "
                       "(with --etcd)")
        q.add_argument("--etcd", metavar="HOST:PORT,…", help="etcd endpoints (default: the "
                       "ones in the organization's bookkeeper record)")
        return q

    s = sub_parser("serve", "keep the books: replay the log, sign epochs (runs until stopped)")
    s.add_argument("--dir", metavar="DIR", help="the books (default: DATA/books/ORG_ID)")
    s.add_argument("--for", dest="seconds", type=float, metavar="S",
                   help="stop after S seconds (default: run until interrupted)")
    add_common(s, key=True)
    s.set_defaults(func=run_serve)

    st = sub_parser("status", "each bookkeeper's epoch and root, agreement, lag")
    add_common(st)
    st.set_defaults(func=run_status)

    sm = sub_parser("submit", "append signed inputs to the log (one entry)")
    sm.add_argument("files", nargs="+", metavar="FILE",
                    help="transactions, receipts, applications, approvals, credit grants")
    add_common(sm)
    sm.set_defaults(func=run_submit)

    a = sub_parser("approve", "admit an applicant through the log (signed by you, a "
                              "supervisor)")
    a.add_argument("file", help="the application (leither org apply --out FILE)")
    a.add_argument("--role", choices=("supervisor", "member", "guest"),
                   help="grant this role instead of the one applied for")
    add_common(a, key=True)
    a.set_defaults(func=run_approve)

    d = sub_parser("deploy", "deploy a contract through the log (signed by you, a supervisor)")
    d.add_argument("file", help="contract file (TOML)")
    add_common(d, key=True)
    d.set_defaults(func=run_deploy)

    c = sub_parser("close", "close the next epoch (signed by you, a supervisor)")
    c.add_argument("--until", type=int, metavar="MS", help="its end (default: now)")
    c.add_argument("--epoch", type=int, help="its number (default: the next after the "
                   "bookkeepers' latest)")
    add_common(c, key=True)
    c.set_defaults(func=run_close)


def _target(args: argparse.Namespace) -> tuple[str, bk.EtcdLog, dict[str, Any] | None]:
    """(org ID, its log, its opened bookkeeper set if this host has the organization)."""
    endpoints = [e for e in (args.etcd or "").split(",") if e]
    if args.org_id:
        if not endpoints:
            raise CliError("--org-id needs --etcd HOST:PORT,…")
        return args.org_id, bk.EtcdLog(endpoints, bk.PREFIX + args.org_id), None
    org = open_org(args)
    try:
        books = org.books()
        if books is None:
            raise CliError(f"{org.name} is kept on this host alone (leither org bookkeepers "
                           f"add NAME …)")
        return org.id, bk.log_for(books, endpoints or None), books
    finally:
        org.close()


def _books(log: bk.EtcdLog) -> dict[str, Any]:
    data = log.get(log.key("genesis"))
    if data is None:
        raise CliError("no genesis in etcd: run `leither org bookkeepers publish` first")
    g = cbor.loads(data)
    return bk.open_books(g["books"], g["org_key"])


def run_serve(args: argparse.Namespace) -> int:
    org_id, log, _books_rec = _target(args)
    seed, _public = home(args).key(args.key, create=False)
    directory = Path(args.dir) if args.dir else home(args).data / "books" / org_id
    keeper = bk.Bookkeeper(directory, seed, log)
    print(f"bookkeeper {keeper.id} keeps {org_id} in {directory} (etcd "
          f"{','.join(log.endpoints)}); Ctrl-C stops", file=sys.stderr)
    try:
        keeper.serve(stop_after=args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        applied = keeper.applied() if keeper.org is not None else 0
        keeper.close()
    emit(args, {"bookkeeper": keeper.id, "applied": applied},
         text=lambda: print(f"stopped at log entry {applied}"))
    return 0


def run_status(args: argparse.Namespace) -> int:
    _org_id, log, books = _target(args)
    result = bk.status(log, books or _books(log))

    def text() -> None:
        final = [e for e in result["epochs"] if e["final"]]
        print(f"log head {result['head']}; quorum {result['quorum']} of "
              f"{len(result['bookkeepers'])}; latest final epoch "
              f"{final[-1]['epoch'] if final else 0}"
              + ("" if result["agree"] else "; DISAGREEMENT"))
        for d in result["dissent"]:
            print(f"  epoch {d['epoch']}: {d['bookkeeper']} signed root {d['root'][:16]}…, the "
                  f"quorum {d['quorum_root'][:16]}… (its signed record: --json)")

    emit(args, result, ["name", "id", "epoch", "final", "root", "lag"],
         [(r["name"], r["id"][:12], r["epoch"], r["final"], r["root"][:16], r["lag"])
          for r in result["bookkeepers"]], text=text)
    return 0


def kind_of(data: bytes) -> str:
    """The log kind of a signed input file."""
    try:
        body = decode_record(data)
    except DecodeError as err:
        raise CliError(f"not a signed record: {err}") from None
    kind = body.get("type")
    if kind in ("transfer", "burn", "income", "reward"):
        return "tx"
    if kind in ("application", "approval", "close", "contract"):
        return str(kind)
    if kind == "credit":
        return "credit"
    if "issuer" in body and "partner" in body:
        return "receipt"
    raise CliError(f"cannot tell what kind of input this is (type {kind!r})")


def run_submit(args: argparse.Namespace) -> int:
    _org_id, log, _books_rec = _target(args)
    inputs = [(kind_of(d), d) for d in (read_input(f) for f in args.files)]
    n, new = bk.submit(log, inputs)
    emit(args, {"entry": n, "new": new, "inputs": [k for k, _d in inputs]}, text=lambda: print(
        f"log entry {n}: {len(inputs)} inputs" + ("" if new else " (already in the log)")))
    return 0


def run_close(args: argparse.Namespace) -> int:
    org_id, log, books = _target(args)
    seed, _public = home(args).key(args.key, create=False)
    number = args.epoch
    if number is None:
        found = bk.status(log, books or _books(log))
        number = max([r["epoch"] for r in found["bookkeepers"]] + [0]) + 1
    until = args.until if args.until is not None else time_ms()
    if until > time_ms():
        raise CliError(f"--until {until} is in the future")
    n, _new = bk.submit(log, [("close", bk.make_close(seed, org_id, number, until))])
    emit(args, {"entry": n, "epoch": number, "until": until}, text=lambda: print(
        f"close of epoch {number} at {until} is log entry {n}; bookkeepers settle it as they "
        f"reach it (leither books status)"))
    return 0


def run_approve(args: argparse.Namespace) -> int:
    from leither_host.ledger.org import make_approval, open_application

    org_id, log, _books_rec = _target(args)
    seed, _public = home(args).key(args.key, create=False)
    data = read_input(args.file)
    app = open_application(data)
    if app["org"] != org_id:
        raise CliError(f"application is for organization {app['org']}, not {org_id}")
    approval = make_approval(seed, org_id, data, args.role or app["role"], time_ms())
    # One entry: the application (a duplicate of one already logged is refused by the
    # bookkeepers, harmlessly) and then its approval.
    n, _new = bk.submit(log, [("application", data), ("approval", approval)])
    emit(args, {"entry": n, "member": app["member"], "role": args.role or app["role"]},
         text=lambda: print(f"approval of {app['member']} is log entry {n}"))
    return 0


def run_deploy(args: argparse.Namespace) -> int:
    from leither_host.ledger import contract as contract_mod

    org_id, log, _books_rec = _target(args)
    seed, _public = home(args).key(args.key, create=False)
    text = read_input(args.file).decode("utf-8", "replace")
    parsed = contract_mod.parse(text)  # a bad file is named here, before it reaches the log
    n, _new = bk.submit(log, [("contract", bk.make_deploy(seed, org_id, text))])
    emit(args, {"entry": n, "name": parsed.name, "digest": parsed.digest().hex()},
         text=lambda: print(f"contract {parsed.name!r} is log entry {n}: it governs the epochs "
                            f"the bookkeepers settle after it"))
    return 0
