# `leither logs`: a node's recent log lines (the ring it keeps in RAM, leither.logring), like
# `esphome logs`; -f keeps following until Ctrl-C, saying when lines were missed (the ring
# dropped them before they were read) and waiting out a restart of the node.
"""The logs verb."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from leither.errors import RPCError
from leither_host.client import ConnectError, SyncSession
from leither_host.errors import CliError
from leither_host.fleet import Fleet
from leither_host.nodes import open_node
from leither_host.output import print_json

EXAMPLES = """examples:
  leither logs board1              # the lines the node still holds
  leither logs board1 -n 20        # the last 20
  leither logs board1 -f           # and keep following (Ctrl-C stops)
  leither logs board1 --json       # [seq, time_ms, text] per line
"""
FOLLOW_POLL_S = 0.5  # seconds between polls with -f
RECONNECT_S = 2.0  # seconds between reconnects while a followed node is away


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("logs", help="show (-f: follow) a node's recent log lines",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("node", help="node name, ID prefix or host:port")
    p.add_argument("-f", "--follow", action="store_true", help="keep following new lines")
    p.add_argument("-n", "--lines", type=int, help="only the last N lines")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def fetch(session: SyncSession, after: int, tail: int | None = None) -> dict[str, Any]:
    """Every line after `after` the node holds (paging through GetLog)."""
    params: dict[str, Any] = {"after": after}
    if tail:
        params["tail"] = tail
    try:
        reply = session.call("GetLog", params, 15.0)
    except RPCError as err:
        if err.code == "no_method":
            raise CliError("this node's firmware keeps no log (no GetLog): update it") from None
        if err.code == "forbidden":
            raise CliError("only the node's owner reads its log: `leither claim` it") from None
        raise CliError(f"GetLog: {err.msg} ({err.code})") from None
    lines = list(reply["lines"])
    dropped = int(reply.get("dropped") or 0)
    while lines and lines[-1][0] < reply["last"]:
        more = session.call("GetLog", {"after": lines[-1][0]}, 15.0)
        if not more["lines"]:
            break
        lines += more["lines"]
        reply = more
    return {"lines": lines, "dropped": dropped,
            "next": lines[-1][0] if lines else int(reply.get("next") or after)}


def _stamp(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000)) + f".{ms % 1000:03d}"


def _show(lines: list[list[Any]], dropped: int, as_json: bool) -> None:
    if dropped and not as_json:
        print(f"-- {dropped} earlier line(s) no longer held by the node --", flush=True)
    for seq, ms, text in lines:
        if as_json:
            print_json({"seq": seq, "time_ms": ms, "text": text})
        else:
            print(f"{_stamp(ms)}  {text}")
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    if args.lines is not None and args.lines < 1:
        raise CliError("-n takes a number of lines >= 1")
    fleet = Fleet()
    try:
        session, record = open_node(args.node, fleet, failover=False)
    finally:
        fleet.close()
    name = record.get("name") or args.node
    with session:
        got = fetch(session, 0, args.lines)
        if args.json and not args.follow:
            print_json([{"seq": s, "time_ms": t, "text": x} for s, t, x in got["lines"]])
            return 0
        _show(got["lines"], got["dropped"] if not args.lines else 0, args.json)
        if not args.follow:
            return 0
        after = got["next"]
    _follow(args, name, after)
    return 0


def _follow(args: argparse.Namespace, name: str, after: int) -> None:
    """Poll for new lines until Ctrl-C; a node that goes away is waited for (said once)."""
    session: SyncSession | None = None
    away = False
    while True:
        if session is None:
            try:
                fleet = Fleet()
                try:
                    session, _ = open_node(args.node, fleet, timeout=5.0, failover=False)
                finally:
                    fleet.close()
            except CliError as err:
                if not away:
                    print(f"-- {name} is not answering ({err}); waiting for it --", flush=True)
                    away = True
                time.sleep(RECONNECT_S)
                continue
            if away:
                print(f"-- {name} is back --", flush=True)
                away = False
        try:
            got = fetch(session, after)
        except (ConnectError, OSError):
            session.close()
            session = None
            continue
        if got["lines"] or got["dropped"]:
            _show(got["lines"], got["dropped"], args.json)
            after = got["next"]
        elif got["next"] < after:  # restarted and quiet so far
            after = 0
        time.sleep(FOLLOW_POLL_S)
