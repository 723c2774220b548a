# `leither discover`: browse mDNS for nodes and remember them in the fleet inventory. One line per
# node ID; an ID announced from two addresses (an old board back after its restore) is said, and
# a node whose facts say it was replaced by a restore is shown as such.
"""The discover verb."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from leither_host.facts import replaced_at
from leither_host.fleet import Fleet
from leither_host.nodes import flush_notices
from leither_host.output import human_ago, human_bytes, human_time, print_json, print_table

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


def _pick(nodes: list[Any], known: dict[str, Any] | None) -> Any:
    """Of several announcements of one ID, the one to remember: not replaced, else the
    inventory's address, else the first."""
    live = [n for n in nodes if replaced_at(n.txt.get("replaced")) is None] or nodes
    for n in live:
        if known and known.get("port") == n.port and known.get("host") in n.addresses:
            return n
    return live[0]


def browse(fleet: Fleet, timeout: float) -> set[str]:
    """Browse, remember what answered; the IDs seen."""
    from leither_host.discovery import discover

    by_id: dict[str, list[Any]] = {}
    for node in discover(timeout=timeout):
        if node.id:  # without an ID in its TXT it is not a Leither node
            by_id.setdefault(node.id, []).append(node)
    for node_id, nodes in by_id.items():
        known = fleet.get(node_id)
        node = _pick(nodes, known)
        if len(nodes) > 1:
            where = ", ".join(f"{n.addresses[0] if n.addresses else '?'}:{n.port} ({n.name})"
                              for n in nodes)
            print(f"leither: warning: {node_id} is announced from {len(nodes)} places: {where};"
                  f" two boards hold one identity (an old board back after its restore?); "
                  f"using {node.addresses[0] if node.addresses else '?'}:{node.port}",
                  file=sys.stderr)
        fleet.remember({"id": node_id, "name": node.name, "node_name": node.name,
                        "host": node.addresses[0] if node.addresses else None,
                        "port": node.port, "board": node.txt.get("board"),
                        "fw": node.txt.get("fw"), "txt": node.txt})
    flush_notices(fleet)
    return set(by_id)


def run(args: argparse.Namespace) -> int:
    fleet = Fleet()
    seen: set[str] = set()
    try:
        if not args.known:
            seen = browse(fleet, args.timeout)
        nodes = fleet.all()
    finally:
        fleet.close()
    for n in nodes:
        n["online"] = n.get("id") in seen if not args.known else None
        txt = n.get("txt") or {}
        free = txt.get("free")  # KiB in the TXT record (kept short)
        n["free_bytes"] = int(str(free)) * 1024 if str(free or "").isdigit() else None
        n["last_seen"] = n.pop("seen", None)
        replaced = replaced_at(txt.get("replaced"))
        if replaced is not None:
            n["replaced_ms"] = replaced
    if not args.known:
        nodes = [n for n in nodes if n["online"]] + [n for n in nodes if not n["online"]]
    if args.json:
        print_json(nodes)
        return 0
    if not nodes:
        print("no nodes found")
        return 0
    print_table(["name", "id", "address", "state", "board", "fw", "pairing", "partner", "free"],
                [(n.get("name"), n.get("id"), f"{n.get('host')}:{n.get('port')}", _state(n),
                  n.get("board"), n.get("fw"),
                  "window open" if (n.get("txt") or {}).get("pair") == "1" else None,
                  (n.get("txt") or {}).get("peer"), human_bytes(n["free_bytes"])
                  if n["free_bytes"] is not None else None)
                 for n in nodes])
    return 0


def _state(n: dict[str, Any]) -> str:
    if n.get("replaced_ms") is not None:
        when = n["replaced_ms"]
        return "replaced by a restore" + (f" on {human_time(when)}" if when else "")
    if n["online"] is None:
        return f"known, seen {human_ago(n.get('last_seen'))}"
    return "online" if n["online"] else f"not seen now (last {human_ago(n.get('last_seen'))})"
