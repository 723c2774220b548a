# How a verb reaches a node: resolve the name the user gave (fleet inventory, or an address),
# open an authenticated session with the host key, pin the node's ID, remember where it was.
"""Connecting to a node named on the command line."""

from __future__ import annotations

from typing import Any

from leither.errors import AuthError, RPCError
from leither_host import keys
from leither_host.client import ConnectError, SyncSession, connect_sync
from leither_host.errors import CliError
from leither_host.fleet import Fleet


def open_node(ref: str, fleet: Fleet | None = None, timeout: float = 10.0
              ) -> tuple[SyncSession, dict[str, Any]]:
    """A session to the node `ref` (name, ID prefix or host:port) and its inventory record."""
    own_fleet = fleet is None
    fleet = fleet or Fleet()
    try:
        record = fleet.resolve(ref)
        host, port = record.get("host"), record.get("port") or 4800
        if not host:
            raise CliError(f"no address known for {ref!r}: run `leither discover`")
        key = keys.load_or_create()
        try:
            session = connect_sync(host, int(port), key, expected_node_id=record.get("id"),
                                   timeout=timeout)
        except ConnectError as err:
            raise CliError(f"node {record.get('name') or ref} is offline: {err}") from None
        except AuthError as err:
            raise CliError(f"node {record.get('name') or ref} at {host}:{port} failed "
                           f"authentication ({err}): is it the node you claimed?") from None
        if not record.get("id"):
            record = fleet.remember({"id": session.node_id, "name": record.get("name"),
                                     "host": host, "port": int(port)})
        return session, record
    finally:
        if own_fleet:
            fleet.close()


def call(session: SyncSession, method: str, params: Any = None, timeout: float = 30.0) -> Any:
    """session.call with node-side errors turned into one CLI line."""
    try:
        return session.call(method, params, timeout)
    except RPCError as err:
        raise CliError(f"{method}: {err.msg} ({err.code})") from None
    except ConnectError as err:
        raise CliError(f"{method}: {err}") from None
