# `leither status`: a node's facts (ID, board, firmware, uptime, free storage and heap, pairing).
"""The status verb."""

from __future__ import annotations

import argparse
from typing import Any

from leither_host.fleet import Fleet
from leither_host.nodes import call, open_node
from leither_host.output import print_json, print_table

FACTS = ("id", "name", "board", "fw", "v", "uptime", "free", "heap", "claimed", "role", "pair",
         "peer")
EXAMPLES = """examples:
  leither status board1
  leither status 3xK9                 # by node ID prefix
  leither status board1 board2 --json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show a node's facts", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("nodes", nargs="+", help="node names, ID prefixes or host:port")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def node_status(ref: str, fleet: Fleet) -> dict[str, Any]:
    session, record = open_node(ref, fleet)
    with session:
        facts: dict[str, Any] = {}
        for fact in FACTS:
            facts[fact] = call(session, "GetVar", {"name": fact})
        facts["address"] = f"{record.get('host')}:{record.get('port')}"
    fleet.remember({"id": facts["id"], "name": facts["name"], "board": facts["board"],
                    "fw": facts["fw"]})
    return facts


def run(args: argparse.Namespace) -> int:
    fleet = Fleet()
    try:
        results = [node_status(ref, fleet) for ref in args.nodes]
    finally:
        fleet.close()
    if args.json:
        print_json(results if len(results) > 1 else results[0])
        return 0
    for facts in results:
        print_table(["fact", "value"], [(k, facts[k]) for k in ("address",) + FACTS])
        print()
    return 0
