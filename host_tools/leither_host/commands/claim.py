# `leither claim`: become the owner of an unclaimed node with its one-time claim token.
"""The claim verb."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from leither import ids
from leither.errors import LeitherError, RPCError
from leither_host.client import SyncSession
from leither_host.errors import CliError
from leither_host.fleet import Fleet
from leither_host.nodes import call, flush_notices, open_node
from leither_host.output import print_json

EXAMPLES = """examples:
  leither claim board1 --token 3f9a0c2e1b7d4a65     # token printed at first boot or set at flash
  leither claim 10.0.0.7:4800 --token 3f9a0c2e1b7d4a65   # pins the ID announced there
  leither claim 10.0.0.7:4800 --id 3xK9Qz... --token 3f9a0c2e1b7d4a65   # no mDNS
  leither claim board1                              # a simulated board: token from `leither sim`
"""


CLAIM_RETRY_S = 20.0  # seconds of "busy" (the node's back-off after a wrong token) we wait out
BUSY_PAUSE_S = 1.0  # seconds between tries while busy
PIN_BROWSE_S = 3.0  # seconds of mDNS browsing to learn the ID announced at an address


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("claim", help="become the owner of an unclaimed node",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("node", help="node name, ID prefix or host:port")
    p.add_argument("--token", help="the node's one-time claim token")
    p.add_argument("--id", dest="node_id", metavar="NODE_ID",
                   help="the node ID you expect (printed at first boot): claim by address "
                        "then refuses any other node answering there")
    p.add_argument("--retry", type=float, default=CLAIM_RETRY_S,
                   help=f"seconds to keep retrying while the node says busy "
                        f"(default {CLAIM_RETRY_S:g})")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def known_token(name: str) -> str | None:
    """The token of a board this host flashed or simulates, if it knows one."""
    from leither_host.flash import flashed_token
    from leither_host.sim import Sim

    try:
        return Sim().board(name).claim_token
    except CliError:
        return flashed_token(name)


def run(args: argparse.Namespace) -> int:
    token = args.token or known_token(args.node)
    if not token:
        raise CliError("a claim token is needed: --token TOKEN (printed by the node at first "
                       "boot, or written by `leither flash`)")
    fleet = Fleet()
    try:
        pinned = _pin(args, fleet)
        session, record = open_node(args.node, fleet, expect_id=pinned)
        with session:
            result = _claim(session, token, args.retry)
            name = call(session, "GetVar", {"name": "name"})
            escrowed = _escrow(session, record.get("name") or name)  # the name used here
        fleet.remember({"id": session.node_id, "name": name, "claimed": True})
        here = fleet.get(session.node_id) or {}
        flush_notices(fleet)
    finally:
        fleet.close()
    if args.json:
        print_json(dict(result, escrow=escrowed, name=here.get("name") or name))
    else:
        print(f"claimed {here.get('name') or name} ({result['node']}); you "
              f"({result['owner']}) are its owner")
        if escrowed:
            print(f"its identity and backup key are escrowed in {escrowed} (for restore)")
    return 0


def _claim(session: SyncSession, token: str, retry_s: float) -> dict[str, Any]:
    """Claim, waiting out "busy" (the node's pause after someone's wrong token) for up to
    retry_s seconds: a stranger guessing tokens must not keep the owner out."""
    deadline = time.monotonic() + max(0.0, retry_s)
    waited = False
    while True:
        try:
            result: dict[str, Any] = session.call("Claim", {"token": token}, 30.0)
            return result
        except RPCError as err:
            if err.code != "busy" or time.monotonic() + BUSY_PAUSE_S > deadline:
                if err.code == "busy":
                    raise CliError(f"Claim: the node stayed busy for {retry_s:g} s (someone "
                                   f"keeps trying wrong tokens?); try again") from None
                raise CliError(f"Claim: {err.msg} ({err.code})") from None
            if not waited:
                print("leither: the node is busy (a wrong token was tried); retrying",
                      file=sys.stderr)
                waited = True
            time.sleep(BUSY_PAUSE_S)


def _pin(args: argparse.Namespace, fleet: Fleet) -> str | None:
    """Claiming by host:port hands the token to whatever answers there: pin the node ID the
    inventory or mDNS says is at that address (or --id), so another node cannot take it.
    The ID to pin when the inventory has none for args.node, else None."""
    record = fleet.resolve(args.node)
    if record.get("id"):
        if args.node_id and not str(record["id"]).startswith(args.node_id):
            raise CliError(f"{args.node} is {record['id']} in the inventory, not {args.node_id}")
        return None  # the inventory pins it
    if args.node_id:
        try:
            ids.id_raw(args.node_id)
        except LeitherError:
            raise CliError(f"--id {args.node_id!r} is not a whole node ID") from None
        return str(args.node_id)
    host, port = str(record["host"]), int(record.get("port") or 4800)
    from leither_host.discovery import discover

    def here(nodes: list[Any]) -> bool:
        return any(n.id and n.port == port and host in n.addresses for n in nodes)

    found = [n for n in discover(PIN_BROWSE_S, until=here) if n.id and n.port == port
             and host in n.addresses]
    announced = {n.id for n in found}
    if len(announced) != 1:
        why = ("no node announces itself" if not announced
               else "several nodes announce themselves")
        raise CliError(f"{why} at {host}:{port} (mDNS), so the token could go to anything "
                       f"answering there: give --id NODE_ID (the ID the node prints at first "
                       f"boot), or run `leither discover` and claim it by name")
    return str(found[0].id)


def _escrow(session: SyncSession, name: str) -> str | None:
    """Install a backup key on the node just claimed and escrow it with the node's identity
    (what `leither restore` needs when the board dies). A node without backup: None."""
    from leither_host import escrow

    try:
        entry = escrow.take(session, name=name)
    except (CliError, RPCError) as err:
        if isinstance(err, RPCError) and err.code == "no_part":  # this board cannot back up
            print(f"leither: {name} has no backup, so no backup key to escrow ({err.msg})")
        else:
            print(f"leither: warning: no backup escrow for {name}: {err}")
        return None
    return str(escrow.escrow_dir() / f"{entry.id}.json")
