# `leither receipts`: gather the receipts nodes signed for each other into the organization's
# pool (signatures checked on the way in) and list them.
"""The receipts verb."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from leither_host.errors import CliError
from leither_host.ledger import pool
from leither_host.ledger.verbs import add_common, emit, open_org, parser, read_input
from leither_host.output import human_bytes, human_time

EXAMPLES = """examples:
  leither receipts import r1.cbor batch.cbor      # one receipt, or a CBOR array of them
  leither receipts collect --dir /mnt/board1/receipts
  leither receipts collect board1 board2          # over RPC (GetReceipts) from claimed nodes
  leither receipts ls
  leither receipts ls --status rejected --json
"""

RPC_METHOD = "GetReceipts"  # node method: params {"since": ms} -> list of encoded receipts
FILE_SUFFIXES = (".cbor", ".json", ".receipt")


def register(sub: argparse._SubParsersAction) -> None:
    p = parser(sub, "receipts", "collect proof-of-performance receipts and list them", EXAMPLES)
    verbs = p.add_subparsers(dest="receipts_verb", metavar="ACTION")
    verbs.required = True
    i = verbs.add_parser("import", help="add receipts from files to the pool",
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("files", nargs="+", help="CBOR receipt, CBOR array, or JSON list of hex")
    add_common(i)
    i.set_defaults(func=run_import)
    c = verbs.add_parser("collect", help="fetch receipts from nodes (RPC) or a directory",
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("nodes", nargs="*", help="node names, ID prefixes or host:port")
    c.add_argument("--dir", metavar="DIR", help="read every *.cbor/*.json/*.receipt file here")
    c.add_argument("--since", type=int, default=0, metavar="MS",
                   help="only receipts whose period ends after this time (RPC)")
    add_common(c)
    c.set_defaults(func=run_collect)
    ls = verbs.add_parser("ls", help="list the pool")
    ls.add_argument("--status", choices=("pending", "settled", "rejected"))
    ls.add_argument("--limit", type=int, default=1000)
    add_common(ls)
    ls.set_defaults(func=run_ls)


def _report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    def text() -> None:
        print(f"{result['accepted']} receipts added to the pool, "
              f"{len(result['rejected'])} rejected")
        for r in result["rejected"][:20]:
            print(f"  rejected {r['id'][:16]}…: {r['reason']}")
        if len(result["rejected"]) > 20:
            print(f"  … and {len(result['rejected']) - 20} more (--json lists them all)")

    emit(args, result, text=text)


def _import(args: argparse.Namespace, datas: list[bytes], sources: int) -> int:
    org = open_org(args)
    try:
        result = pool.import_receipts(org.db, datas)
    finally:
        org.close()
    result["sources"] = sources
    _report(args, result)
    return 0


def run_import(args: argparse.Namespace) -> int:
    datas: list[bytes] = []
    for path in args.files:
        datas.extend(pool.read_receipt_file(read_input(path)))
    return _import(args, datas, len(args.files))


def run_collect(args: argparse.Namespace) -> int:
    if not args.nodes and not args.dir:
        raise CliError("name nodes to collect from, or --dir DIR with receipt files")
    datas: list[bytes] = []
    sources = 0
    if args.dir:
        directory = Path(args.dir)
        if not directory.is_dir():
            raise CliError(f"no such directory: {args.dir}")
        for path in sorted(directory.iterdir()):
            if path.is_file() and path.suffix in FILE_SUFFIXES:
                datas.extend(pool.read_receipt_file(path.read_bytes()))
                sources += 1
    for ref in args.nodes:
        datas.extend(_from_node(ref, args.since))
        sources += 1
    return _import(args, datas, sources)


def _from_node(ref: str, since: int) -> list[bytes]:
    from leither_host.nodes import call, open_node

    session, _record = open_node(ref)
    with session:
        got = call(session, RPC_METHOD, {"since": since})
    if not isinstance(got, list) or not all(isinstance(x, bytes) for x in got):
        raise CliError(f"{ref}: {RPC_METHOD} did not return a list of receipts")
    return list(got)


def run_ls(args: argparse.Namespace) -> int:
    org = open_org(args)
    try:
        rows = pool.list_receipts(org.db, args.status, args.limit)
    finally:
        org.close()
    # People get times and sizes in their units; --json keeps the raw fields (end_ms, ...).
    emit(args, rows, ["id", "issuer", "partner", "period end", "stored", "served", "status",
                      "epoch"],
         [(r["id"][:12], r["issuer"][:10], r["partner"][:10], human_time(r["end_ms"]),
           human_bytes(r["stored"]) + "·h", human_bytes(r["served"]), r["status"],
           r["epoch"] or "") for r in rows])
    return 0
