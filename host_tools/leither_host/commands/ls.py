# `leither ls`: the fleet at a glance, one line per node this host knows — name, ID prefix,
# online or last seen, board, firmware, partner, backup lag, free storage, free heap. Every node
# is asked at once (bounded in time: an offline node is a line, not a wait); --watch redraws.
"""The ls verb."""

from __future__ import annotations

import argparse
import time
from typing import Any

from leither_host import facts as factsmod
from leither_host.errors import CliError
from leither_host.fleet import Fleet
from leither_host.output import (
    console,
    human_ago,
    human_bytes,
    human_time,
    print_json,
    print_table,
)

EXAMPLES = """examples:
  leither ls                  # every known node, asked now
  leither ls --watch          # redraw every 5 s until Ctrl-C
  leither ls --json           # raw numbers: free_bytes, heap_bytes, uptime_s, last_seen (s)
"""
HEADERS = ("name", "id", "state", "board", "fw", "partner", "backup", "free", "heap")
ID_SHOWN = 8  # characters of the node ID shown: enough to type as a prefix


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="list the fleet: one line per node, asked now",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--watch", action="store_true", help="redraw until Ctrl-C")
    p.add_argument("--every", type=float, default=5.0, help="seconds between redraws (watch)")
    p.add_argument("--timeout", type=float, default=factsmod.PROBE_TIMEOUT_S,
                   help="seconds to wait for each node")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def collect(timeout: float) -> list[dict[str, Any]]:
    fleet = Fleet()
    try:
        rows = factsmod.probe_all(fleet.all(), timeout)
        factsmod.note_seen(fleet, rows)
        names = {n["id"]: n.get("name") for n in fleet.all()}
    finally:
        fleet.close()
    for row in rows:
        row["partner_name"] = names.get(row.get("peer")) if row.get("peer") else None
    return rows


def backup_lag(row: dict[str, Any]) -> str:
    """'in sync', '12.0 KiB pending', 'error: ...', or '-' (no partner / not the owner)."""
    b = row.get("backup")
    if not b or not b.get("partner"):
        return "-"
    if b.get("state") == "error":
        return f"error: {b.get('last_error')}"
    pending = b.get("pending_bytes") or 0
    if not pending:
        return "in sync"
    since = f", last ok {human_ago(b['last_ok_ms'] / 1000)}" if b.get("last_ok_ms") else ""
    return f"{human_bytes(pending)} pending{since}"


def state(row: dict[str, Any]) -> str:
    if row.get("replaced_ms") is not None:
        when = row["replaced_ms"]
        return "replaced by a restore" + (f" on {human_time(when)}" if when else "")
    if row["online"]:
        return "online"
    if row.get("wrong_node"):
        return "WRONG NODE at its address"
    return f"offline, seen {human_ago(row.get('last_seen'))}" if row.get("last_seen") \
        else "never seen"


def table_rows(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r.get("name"), (r.get("id") or "-")[:ID_SHOWN], state(r), r.get("board"),
             r.get("fw"), r.get("partner_name") or ((r.get("peer") or "")[:ID_SHOWN] or None),
             backup_lag(r), human_bytes(r.get("free_bytes")) if r["online"] else None,
             human_bytes(r.get("heap_bytes")) if r["online"] else None) for r in rows]


def show(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no nodes known: `leither discover` (or `leither sim up`) finds some")
        return
    print_table(HEADERS, table_rows(rows))


def run(args: argparse.Namespace) -> int:
    if args.every <= 0 or args.timeout <= 0:
        raise CliError("--every and --timeout take a positive number of seconds")
    if not args.watch:
        rows = collect(args.timeout)
        print_json(rows) if args.json else show(rows)
        return 0
    if args.json:
        raise CliError("--watch redraws a table; for JSON run `leither ls --json` in a loop")
    return _watch(args)


def _watch(args: argparse.Namespace) -> int:
    """Redraw in place on a terminal (rich Live); piped, print a fresh table each round."""
    from rich.live import Live
    from rich.table import Table

    con = console()
    if not con.is_terminal:
        while True:
            show(collect(args.timeout))
            print(flush=True)
            time.sleep(args.every)

    def render() -> Table:
        table = Table(*HEADERS, title=f"leither ls  ({time.strftime('%H:%M:%S')}, every "
                      f"{args.every:g} s, Ctrl-C stops)", header_style="bold")
        for r in table_rows(collect(args.timeout)):
            table.add_row(*("-" if c is None else str(c) for c in r))
        return table

    with Live(render(), console=con, auto_refresh=False) as live:
        while True:
            time.sleep(args.every)
            live.update(render(), refresh=True)
