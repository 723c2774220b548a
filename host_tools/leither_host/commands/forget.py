# `leither forget`: drop a node from this host's inventory (a board given away, a simulation
# gone). Its escrowed keys stay: they are what `leither restore` needs if it was a real loss.
"""The forget verb."""

from __future__ import annotations

import argparse

from leither_host.errors import CliError
from leither_host.fleet import Fleet
from leither_host.output import print_json

EXAMPLES = """examples:
  leither forget board1
  leither forget 3xK9            # by ID prefix
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("forget", help="drop a node from this host's inventory",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("nodes", nargs="+", help="node names or ID prefixes")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    fleet = Fleet()
    gone = []
    try:
        for ref in args.nodes:
            record = fleet.resolve(ref)
            if not record.get("id"):
                raise CliError(f"{ref!r} is not a node this host knows")
            fleet.forget(record["id"])
            gone.append({"id": record["id"], "name": record.get("name")})
    finally:
        fleet.close()
    if args.json:
        print_json(gone)
    else:
        for g in gone:
            print(f"forgot {g['name']} ({g['id']})")
    return 0
