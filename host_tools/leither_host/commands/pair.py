# `leither pair`: open a node's pairing window from the host (boards without a button), watch it
# pair, show its partner and the 6-digit code, or unpair it (both sides).
"""The pair verb."""

from __future__ import annotations

import argparse
import time
from typing import Any

from leither_host.errors import CliError
from leither_host.fleet import Fleet
from leither_host.nodes import call, open_node
from leither_host.output import human_bytes, print_json, print_table

EXAMPLES = """examples:
  leither pair board1                 # open board1's 120 s pairing window (like a button press)
  leither pair board1 --wait          # ... and wait until it pairs or the window ends
  leither pair board1 --status        # show the pairing state, partner and code; open nothing
  leither pair board1 --unpair        # drop the partner (the partner is told if reachable)
  leither pair board1 --status --json

Press the button on (or run `leither pair` for) the other node within the window; both nodes
then show the same 6-digit code (log, `leither pair NODE --status`, LED blinks): compare them.
"""
WAIT_POLL_S = 0.25  # seconds between state polls with --wait
WAIT_SLACK_S = 10.0  # seconds past the window's end before --wait gives up
_ACTIVE = ("open", "pairing")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pair", help="open a node's pairing window, show or drop its partner",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("node", help="node name, ID prefix or host:port")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--status", action="store_true", help="only show the pairing state")
    what.add_argument("--unpair", action="store_true", help="drop the node's partner")
    p.add_argument("--wait", action="store_true",
                   help="after opening, wait until the node pairs or its window ends")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _rows(status: dict[str, Any]) -> list[tuple[str, Any]]:
    def quota(n: Any) -> Any:
        return human_bytes(n) if isinstance(n, int) else n

    return [("state", status.get("pair_state")),
            ("window open", "yes, %s s left" % status.get("window_left")
             if status.get("pair") else "no"),
            ("code", status.get("pair_code")), ("partner", status.get("peer")),
            ("partner address", status.get("peer_addr")),
            ("we grant it", quota(status.get("quota_to_peer"))),
            ("it grants us", quota(status.get("quota_from_peer"))),
            ("why", status.get("pair_reason"))]


def _wait(session: Any, status: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + float(status.get("window_left") or 0) + WAIT_SLACK_S
    while status.get("pair_state") in _ACTIVE:
        if time.monotonic() > deadline:
            raise CliError("the pairing window did not end in time")
        time.sleep(WAIT_POLL_S)
        status = call(session, "PairStatus")
    return status


def run(args: argparse.Namespace) -> int:
    if args.wait and (args.status or args.unpair):
        raise CliError("--wait goes with opening the window, not with --status or --unpair")
    fleet = Fleet()
    try:
        session, record = open_node(args.node, fleet)
        with session:
            if session.role != "owner":
                raise CliError(f"you are not the owner of {record.get('name') or args.node}: "
                               "`leither claim` it first")
            if args.unpair:
                result = call(session, "Unpair")
            else:
                result = call(session, "PairStatus" if args.status else "PairOpen")
                if args.wait:
                    if not args.json:
                        print(f"pairing window open on {record.get('name') or args.node}; "
                              "press the other node's button now")
                    result = _wait(session, result)
    finally:
        fleet.close()
    if args.json:
        print_json(result)
        return 0
    name = record.get("name") or args.node
    if args.unpair:
        if result.get("unpaired") is None:
            print(f"{name} had no partner")
        else:
            told = "told" if result.get("told") else "could not be told (offline?)"
            print(f"{name} unpaired from {result['unpaired']}; the partner {told}")
        return 0
    print_table(["pairing", "value"], _rows(result))
    if result.get("pair_code") and result.get("pair_state") == "paired":
        print(f"\ncode {result['pair_code']}: the partner must show the same code")
    if args.wait and result.get("pair_state") != "paired":
        raise CliError(f"not paired ({result.get('pair_state')}): {result.get('pair_reason')}")
    return 0
