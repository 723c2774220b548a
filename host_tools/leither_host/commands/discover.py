# `leither discover`: browse mDNS for nodes and remember them in the fleet inventory.
"""The discover verb."""

from __future__ import annotations

import argparse

from leither_host.fleet import Fleet
from leither_host.output import print_json, print_table

EXAMPLES = """examples:
  leither discover                 # browse 3 s, list nodes, remember them
  leither discover --timeout 10
  leither discover --known         # the inventory only: last address of every known node
  leither discover --json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("discover", help="find nodes on the LAN (mDNS) and remember them",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to browse (default 3)")
    p.add_argument("--known", action="store_true", help="list the inventory without browsing")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    fleet = Fleet()
    seen: set[str] = set()
    try:
        if not args.known:
            from leither_host.discovery import discover

            for node in discover(timeout=args.timeout):
                if not node.id:
                    continue  # not a Leither node's TXT: nothing to remember it by
                seen.add(node.id)
                fleet.remember({"id": node.id, "name": node.name,
                                "host": node.addresses[0] if node.addresses else None,
                                "port": node.port, "board": node.txt.get("board"),
                                "fw": node.txt.get("fw"), "txt": node.txt})
        nodes = fleet.all()
    finally:
        fleet.close()
    for n in nodes:
        n["online"] = n.get("id") in seen if not args.known else None
    if not args.known:
        nodes = [n for n in nodes if n["online"]] + [n for n in nodes if not n["online"]]
    if args.json:
        print_json(nodes)
        return 0
    if not nodes:
        print("no nodes found")
        return 0
    print_table(["name", "id", "address", "state", "board", "fw", "pair", "peer", "free KiB"],
                [(n.get("name"), n.get("id"), f"{n.get('host')}:{n.get('port')}",
                  {True: "online", False: "not seen", None: "known"}[n["online"]],
                  n.get("board"), n.get("fw"), (n.get("txt") or {}).get("pair"),
                  (n.get("txt") or {}).get("peer", ""), (n.get("txt") or {}).get("free"))
                 for n in nodes])
    return 0
