# `leither status`: a node's facts (ID, board, firmware, uptime, free storage and heap, pairing),
# in human units; --json gives raw numbers with their unit in the name. A node that does not
# answer is a status too (offline, last seen when and where), not an error.
"""The status verb."""

from __future__ import annotations

import argparse
from typing import Any

from leither_host import facts as factsmod
from leither_host import keys
from leither_host.errors import CliError
from leither_host.fleet import Fleet
from leither_host.nodes import flush_notices, warn_elsewhere
from leither_host.output import human_ago, human_bytes, human_duration, human_time, print_json

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
    """The probe of one node (offline included), its inventory updated."""
    record = fleet.resolve(ref)
    row = factsmod.probe(record, keys.load_or_create(), with_backup=False)
    if row.get("wrong_node"):  # something else answers at its address: never a "status"
        if row["error"].startswith("not a Leither"):
            raise CliError(f"{row.get('address')} is not a Leither node (its answer is no "
                           f"Leither handshake): check the address and port")
        raise CliError(f"node {record.get('name') or ref} at {row.get('address')} failed "
                       f"authentication: {row['error']}; is it the node you claimed?")
    if row["online"] and not record.get("id"):
        # First reached by its address: learn it (the node's own name becomes ours for it).
        known = fleet.get(row["id"])
        if known is not None:
            warn_elsewhere(known, str(record["host"]), int(record.get("port") or 4800))
        else:
            fleet.remember({"id": row["id"], "name": row.get("node_name"),
                            "host": record["host"], "port": record.get("port") or 4800})
            flush_notices(fleet)
        row["name"] = (fleet.get(row["id"]) or {}).get("name") or row.get("node_name")
    if row["online"]:
        factsmod.note_seen(fleet, [row])
    return row


def describe(row: dict[str, Any]) -> list[tuple[str, Any]]:
    """(label, human value) lines for one node."""
    lines: list[tuple[str, Any]] = [("name", row.get("name")), ("id", row.get("id")),
                                    ("address", row.get("address"))]
    if not row["online"]:
        lines.append(("state", f"offline, last seen {human_ago(row.get('last_seen'))}"))
        if row.get("error"):
            lines.append(("why", row["error"]))
        return lines
    replaced = row.get("replaced_ms")
    state = "online"
    if replaced is not None:
        state = "replaced by a restore" + (f" on {human_time(replaced)}" if replaced else "") \
            + ": this board no longer serves as this node (wipe or re-claim it)"
    lines.append(("state", state))
    if row.get("node_name") and row.get("node_name") != row.get("name"):
        lines.append(("calls itself", row["node_name"]))
    lines += [("board", row.get("board")), ("firmware", row.get("fw")),
              ("uptime", human_duration(row.get("uptime_s"))),
              ("free storage", human_bytes(row.get("free_bytes"))),
              ("free heap", human_bytes(row.get("heap_bytes"))),
              ("owner", "you" if row.get("role") == "owner" else
               ("someone else" if row.get("claimed") else "none: `leither claim` it")),
              ("your role", row.get("role")), ("pairing", pairing(row))]
    if isinstance(row.get("parts"), list):  # the owner's view (leither.parts)
        from leither.parts import PARTS

        missing = [what for part, (_modules, what) in PARTS.items() if part not in row["parts"]]
        lines.append(("optional parts", (", ".join(row["parts"]) or "none") + (
            f" (this board's bundle has no {', no '.join(missing)})" if missing else "")))
    return lines


def pairing(row: dict[str, Any]) -> str:
    """One phrase for the pairing facts: the state, the partner, whether the window is open."""
    if isinstance(row.get("parts"), list) and "backup" not in row["parts"]:
        return "none: this board's bundle has no pairing and backup"  # leither.parts
    peer = row.get("peer")
    state = row.get("pair_state") or ("paired" if peer else "unpaired")
    text = state + (f" with {peer}" if peer else "")
    if row.get("pair_window"):
        text += " (pairing window open)"
    return text


def run(args: argparse.Namespace) -> int:
    fleet = Fleet()
    try:
        results = [node_status(ref, fleet) for ref in args.nodes]
    finally:
        fleet.close()
    if args.json:
        print_json(results if len(results) > 1 else results[0])
        return 0
    for n, row in enumerate(results):
        if n:
            print()
        width = max(len(label) for label, _ in describe(row))
        for label, value in describe(row):
            print(f"{label:<{width}}  {'-' if value is None else value}")
    return 0
