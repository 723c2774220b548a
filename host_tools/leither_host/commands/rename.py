# `leither rename`: give a node another name, here and on the node itself (what it announces on
# mDNS and keeps across restarts), so the name people type is the name the network shows.
"""The rename verb."""

from __future__ import annotations

import argparse
import sys

from leither.errors import RPCError
from leither_host.errors import CliError
from leither_host.fleet import Fleet, check_name
from leither_host.nodes import open_node
from leither_host.output import print_json

EXAMPLES = """examples:
  leither rename board1 kitchen
  leither rename 3xK9 garage --local     # this host's inventory only; the node keeps its name
"""
SET_NAME = "SetName"  # the node's owner-only method (leither.naming)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rename", help="rename a node (here and on the node)",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("node", help="node name, ID prefix or host:port")
    p.add_argument("name", help="the new name: letters, digits, '-', '_'")
    p.add_argument("--local", action="store_true",
                   help="rename in this host's inventory only")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_name(args.name)
    fleet = Fleet()
    try:
        record = fleet.resolve(args.node)
        node_id = record.get("id")
        on_node = None
        if not args.local:
            on_node = _rename_node(args.node, args.name, fleet)
            node_id = node_id or on_node or fleet.resolve(args.node).get("id")
        if not node_id:
            raise CliError(f"{args.node!r} is not a node this host knows")
        old = record.get("name")
        fleet.rename(node_id, args.name)
    finally:
        fleet.close()
    result = {"id": node_id, "name": args.name, "old_name": old, "node_renamed": bool(on_node)}
    if args.json:
        print_json(result)
    else:
        where = "here and on the node" if on_node else "in this host's inventory"
        print(f"renamed {old} ({node_id}) to {args.name} {where}")
    return 0


def _rename_node(ref: str, name: str, fleet: Fleet) -> str | None:
    """SetName on the node; its ID, or None (with a warning) if it is offline or too old."""
    try:
        session, _record = open_node(ref, fleet, failover=False)
    except CliError as err:
        print(f"leither: warning: {err}; renamed in this host's inventory only (the node "
              f"keeps its name until `leither rename` reaches it)", file=sys.stderr)
        return None
    with session:
        if session.role != "owner":
            raise CliError(f"you are not the owner of {ref}: only its owner renames it "
                           f"(--local renames it here only)")
        try:
            session.call(SET_NAME, {"name": name}, 30.0)
        except RPCError as err:
            if err.code == "no_method":
                print(f"leither: warning: {ref}'s firmware cannot rename itself (no {SET_NAME}); "
                      f"renamed here only", file=sys.stderr)
                return None
            raise CliError(f"{SET_NAME}: {err.msg} ({err.code})") from None
        return session.node_id
