# `leither claim`: become the owner of an unclaimed node with its one-time claim token.
"""The claim verb."""

from __future__ import annotations

import argparse

from leither_host.client import SyncSession
from leither_host.errors import CliError
from leither_host.fleet import Fleet
from leither_host.nodes import call, open_node
from leither_host.output import print_json

EXAMPLES = """examples:
  leither claim board1 --token 3f9a0c2e1b7d4a65     # token printed at first boot or set at flash
  leither claim 10.0.0.7:4800 --token 3f9a0c2e1b7d4a65
  leither claim board1                              # a simulated board: token from `leither sim`
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("claim", help="become the owner of an unclaimed node",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("node", help="node name, ID prefix or host:port")
    p.add_argument("--token", help="the node's one-time claim token")
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
        session, record = open_node(args.node, fleet)
        with session:
            result = call(session, "Claim", {"token": token})
            name = call(session, "GetVar", {"name": "name"})
            escrowed = _escrow(session, name)
        fleet.remember({"id": session.node_id, "name": name, "claimed": True})
    finally:
        fleet.close()
    if args.json:
        print_json(dict(result, escrow=escrowed))
    else:
        print(f"claimed {name} ({result['node']}); you ({result['owner']}) are its owner")
        if escrowed:
            print(f"its identity and backup key are escrowed in {escrowed} (for restore)")
    return 0


def _escrow(session: SyncSession, name: str) -> str | None:
    """Install a backup key on the node just claimed and escrow it with the node's identity
    (what `leither restore` needs when the board dies). A node without backup: None."""
    from leither.errors import RPCError
    from leither_host import escrow

    try:
        entry = escrow.take(session, name=name)
    except (CliError, RPCError) as err:
        print(f"leither: warning: no backup escrow for {name}: {err}")
        return None
    return str(escrow.escrow_dir() / f"{entry.id}.json")
