# `leither restore`: bring a dead node back on a fresh board. The host hands the fresh board the
# dead node's identity and backup key from its escrow; the board pulls every MiMei and version
# from the dead node's partner, checks every block, and restarts as the dead node, which its
# partner then treats as its partner again. The restore advances the node's incarnation
# (leither.fence): should the old board come back, its partner refuses it and it stops.
"""The restore verb."""

from __future__ import annotations

import argparse
import time
from typing import Any

from leither.errors import RPCError
from leither_host import escrow
from leither_host.client import ConnectError
from leither_host.errors import CliError
from leither_host.fleet import Fleet
from leither_host.nodes import call, open_node
from leither_host.output import human_bytes, print_json
from leither_host.watch import node_activity

EXAMPLES = """examples:
  leither restore board1 --onto board3          # board3: a fresh board you claimed
  leither restore 4RPC2UKa --onto 10.0.0.9:4800 --partner 10.0.0.7:4800
"""
_RESTART_S = 30.0  # seconds for the restored board to come back as the dead node
_BUSY_S = 30.0  # seconds a restore is asked again while the fresh board answers busy


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("restore", help="restore a dead node onto a fresh board from its partner",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dead", help="the dead node: name or ID (its escrow must be on this host)")
    p.add_argument("--onto", required=True, help="the fresh board (claimed by you)")
    p.add_argument("--partner", help="the partner's host:port if the inventory lacks it")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _partner_address(fleet: Fleet, partner_id: str, given: str | None) -> tuple[str, int]:
    if given:
        host, _, port = given.rpartition(":")
        if not host or not port.isdigit():
            raise CliError("--partner takes host:port")
        return host, int(port)
    try:
        rec = fleet.resolve(partner_id)
    except CliError:
        rec = {}
    if not rec.get("host"):
        raise CliError(f"no address known for the partner {partner_id}: run `leither discover` "
                       f"or give --partner host:port")
    return str(rec["host"]), int(rec.get("port") or 4800)


def run(args: argparse.Namespace) -> int:
    fleet = Fleet()
    try:
        dead_rec: dict[str, Any] = {}
        try:
            dead_rec = fleet.resolve(args.dead)
        except CliError:
            pass
        entry = escrow.find(dead_rec.get("id") or args.dead) if dead_rec.get("id") else \
            escrow.find(args.dead)
        if entry is None:
            raise CliError(f"no escrow for {args.dead} on this host: only a node claimed here "
                           f"(or escrowed with `leither backup key`) can be restored")
        if not entry.partner:
            raise CliError(f"{args.dead} had no partner known to this host: nothing to restore "
                           f"from")
        host, port = _partner_address(fleet, entry.partner, args.partner)
        session, onto = open_node(args.onto, fleet, failover=False)
        started = time.monotonic()
        with session:
            if session.node_id == entry.id:
                raise CliError(f"{args.onto} already is {entry.id}")
            with node_activity(args.onto, f"restoring {args.dead} onto {args.onto}"):
                result = _restore_call(session, {
                    "seed": entry.seed, "key": entry.key,
                    "partner": {"id": entry.partner, "addr": host, "port": port}})
        fresh_id = session.node_id
        _restart(onto)
        # The board is now the dead node: its inventory record moves to the board's address.
        fleet.forget(fresh_id)
        if dead_rec.get("id"):
            fleet.forget(entry.id)
        fleet.remember({"id": entry.id,
                        "name": dead_rec.get("name") or entry.name or onto.get("name"),
                        "host": onto.get("host"), "port": onto.get("port"), "claimed": True})
        check, _ = open_node(entry.id, fleet, timeout=_RESTART_S, failover=False)
        with check:
            came_back = call(check, "GetVar", {"name": "id"})
        if came_back != entry.id:
            raise CliError(f"{args.onto} came back as {came_back}, not {entry.id}")
    finally:
        fleet.close()
    result["seconds"] = round(time.monotonic() - started, 3)
    result["onto"] = onto.get("name") or args.onto
    if args.json:
        print_json(result)
    else:
        print(f"restored {result['versions']} versions of {result['mimei']} MiMei "
              f"({result['blocks']} blocks, {human_bytes(result['bytes'])} from the partner) "
              f"onto {result['onto']}; it now runs as {entry.id} in {result['seconds']:.1f} s")
        if result.get("incarnation"):
            print(f"incarnation {result['incarnation']}: should the old board come back, its "
                  f"partner refuses it and it stops, saying it was replaced")
    return 0


def _restore_call(session: Any, params: dict[str, Any]) -> Any:
    """BackupRestore, asked again while the board answers busy for up to _BUSY_S: a fresh
    board just claimed may be short of heap for a few seconds (its claim session's buffers,
    mDNS), longer than the client's own busy retries; busy means nothing was done."""
    deadline = time.monotonic() + _BUSY_S
    while True:
        try:
            return session.call("BackupRestore", params, 1800)
        except RPCError as err:
            if err.code != "busy" or time.monotonic() > deadline:
                raise CliError(f"BackupRestore: {err.msg} ({err.code})") from None
        except ConnectError as err:
            raise CliError(f"BackupRestore: {err}") from None
        time.sleep(1.0)


def _restart(onto: dict[str, Any]) -> None:
    """The board restarts itself as the dead node; a simulated one is started again here."""
    from leither_host.sim import Sim

    sim = Sim()
    board = next((b for b in sim.boards if b.name == onto.get("name") or
                  (b.ip == onto.get("host") and b.port == onto.get("port"))), None)
    if board is None:
        time.sleep(2)  # a real board's main() starts the node again
        return
    deadline = time.monotonic() + 10
    while sim.alive(board) and time.monotonic() < deadline:
        time.sleep(0.1)
    if sim.alive(board):
        sim.kill(board.name)
    sim.start(board.name)
