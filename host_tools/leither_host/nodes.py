# How a verb reaches a node: resolve the name the user gave (fleet inventory, or an address),
# open an authenticated session with the host key, pin the node's ID, remember where it was.
# When the node is offline and its backups are escrowed here, reads go to its partner instead
# (FailoverSession: the partner hands out sealed blocks, this host opens them).
"""Connecting to a node named on the command line."""

from __future__ import annotations

import sys
from typing import Any

from leither.errors import AuthError, DecodeError, LeitherError, RPCError
from leither_host import escrow, keys
from leither_host.client import CALL_TIMEOUT, ConnectError, SyncSession, connect_sync
from leither_host.errors import CliError
from leither_host.fleet import Fleet


def open_node(ref: str, fleet: Fleet | None = None, timeout: float = 10.0,
              failover: bool = True, expect_id: str | None = None
              ) -> tuple[SyncSession, dict[str, Any]]:
    """A session to the node `ref` (name, ID prefix or host:port) and its inventory record.

    If the node is offline, its backups are escrowed here and its partner answers, the
    session is a FailoverSession serving reads of its backed-up versions (failover=False: no).
    expect_id pins the node ID when the inventory has none for `ref` (an address).
    """
    own_fleet = fleet is None
    fleet = fleet or Fleet()
    try:
        record = fleet.resolve(ref)
        host, port = record.get("host"), record.get("port") or 4800
        if not host:
            raise CliError(f"no address known for {ref!r}: run `leither discover`")
        key = keys.load_or_create()
        try:
            session = connect_sync(host, int(port), key,
                                   expected_node_id=record.get("id") or expect_id,
                                   timeout=timeout)
        except ConnectError as err:
            backup = _failover(record, fleet, key, timeout) if failover else None
            if backup is not None:
                return backup, record
            raise CliError(f"node {record.get('name') or ref} is offline: {err}"
                           + lan_hint(str(host))) from None
        except AuthError as err:
            raise CliError(f"node {record.get('name') or ref} at {host}:{port} failed "
                           f"authentication ({err}): is it the node you claimed?") from None
        except DecodeError:
            # The answer is no Leither handshake at all (e.g. an HTTP server on the port).
            raise CliError(f"{host}:{port} is not a Leither node (its answer is no Leither "
                           f"handshake); check the address and port") from None
        if not record.get("id"):
            record = _learn(fleet, session, host, int(port))
        else:
            fleet.remember({"id": session.node_id})  # it answered: last seen now
        return session, record
    finally:
        if own_fleet:
            fleet.close()


def lan_hint(host: str) -> str:
    """A simulated LAN's boards live in network namespaces this shell cannot reach (`sim up
    --lan` blackholes their /24 here, leither_host.lan.guard_subnet): say how to reach them."""
    import ipaddress
    import os
    import subprocess

    try:
        inside = subprocess.run(["ip", "netns", "identify", str(os.getpid())],
                                capture_output=True, text=True, timeout=5).stdout.strip()
        if inside:
            return ""  # already inside a namespace (`sim exec`): the hint would not help
        address = ipaddress.ip_address(host)
        routes = subprocess.run(["ip", "route", "show", "type", "blackhole"],
                                capture_output=True, text=True, timeout=5).stdout
        nets = [ipaddress.ip_network(line.split()[1], strict=False)
                for line in routes.splitlines() if len(line.split()) > 1]
    except (OSError, ValueError, subprocess.SubprocessError):
        return ""
    if not any(address in net for net in nets):
        return ""
    return (f"; {host} is on the simulated LAN, which only its namespaces reach: run the "
            f"command as `leither sim exec -- leither ...`")


def _learn(fleet: Fleet, session: SyncSession, host: str, port: int) -> dict[str, Any]:
    """The record of a node first reached by its address. A node the inventory knows at
    another address is not re-pointed here: two boards answering as one ID (an old board back
    after its restore) are said, never silently merged."""
    known = fleet.get(session.node_id)
    if known is not None and warn_elsewhere(known, host, port):
        return known
    try:
        own_name = session.call("GetVar", {"name": "name"}, 10.0)
    except (RPCError, ConnectError):
        own_name = None
    record = fleet.remember({"id": session.node_id, "host": host, "port": port,
                             "name": own_name if isinstance(own_name, str) else None})
    flush_notices(fleet)
    return record


def warn_elsewhere(known: dict[str, Any], host: str, port: int) -> bool:
    """Say so when `host:port` answered as a node the inventory keeps at another address (the
    inventory is not re-pointed: the newest board, e.g. a restore's, keeps the ID's address).
    True if it did."""
    if not known.get("host") or (known.get("host"), int(known.get("port") or 4800)) == (
            host, port):
        return False
    print(f"leither: warning: {host}:{port} answers as {known.get('name')} ({known['id']}), "
          f"which this host knows at {known['host']}:{known.get('port')}; if both answer, two "
          f"boards hold one identity (a board replaced by a restore?); the inventory keeps "
          f"{known['host']}:{known.get('port')}", file=sys.stderr)
    return True


def flush_notices(fleet: Fleet) -> None:
    """Tell the user what the inventory changed on its own (a name moved, ...)."""
    for line in fleet.notices:
        print(f"leither: note: {line}", file=sys.stderr)
    fleet.notices.clear()


def call(session: SyncSession, method: str, params: Any = None, timeout: float = 30.0) -> Any:
    """session.call with node-side errors turned into one CLI line."""
    try:
        return session.call(method, params, timeout)
    except RPCError as err:
        raise CliError(f"{method}: {err.msg} ({err.code})") from None
    except ConnectError as err:
        raise CliError(f"{method}: {err}") from None


_FAILOVER_READ = 262144  # bytes per MFGetData answered from a backup (the caller loops)


def _failover(record: dict[str, Any], fleet: Fleet, key: keys.HostKey, timeout: float
              ) -> FailoverSession | None:
    """A session reading an offline node's backups through its partner, or None."""
    node_id = record.get("id")
    entry = escrow.load(node_id) if node_id else None
    if entry is None:
        return None
    partner = entry.partner or (record.get("txt") or {}).get("peer")
    if not partner:
        return None
    try:
        prec = fleet.resolve(partner)
    except CliError:
        return None
    if not prec.get("host"):
        return None
    try:
        session = connect_sync(prec["host"], int(prec.get("port") or 4800), key,
                               expected_node_id=partner, timeout=timeout)
    except (ConnectError, AuthError):
        return None
    try:
        reader = escrow.BackupReader(session, entry)
    except (CliError, LeitherError):
        session.close()
        return None
    name = record.get("name") or node_id
    print(f"leither: {name} is offline; reading its backups from its partner "
          f"{prec.get('name') or partner}", file=sys.stderr)
    return FailoverSession(session, reader, str(node_id), str(name))


class FailoverSession(SyncSession):
    """Stands in for an offline node's session: MiMei reads answered from its backup on its
    partner (MMList, MMInfo, MMVersions, MFGetSize, MFGetData of numbered, last or release
    versions); anything else fails with a clear error."""

    def __init__(self, partner: SyncSession, reader: escrow.BackupReader, node_id: str,
                 name: str) -> None:
        super().__init__(partner._loop, partner.session)
        self.partner = partner
        self.reader = reader
        self.dead_id = node_id
        self.name = name

    @property
    def node_id(self) -> str:
        return self.dead_id

    @property
    def role(self) -> str:
        return "owner"

    def call(self, method: str, params: Any = None, timeout: float | None = CALL_TIMEOUT
             ) -> Any:
        p = params if isinstance(params, dict) else {}
        r = self.reader
        if method == "MFGetSize":
            return r.record(p["mid"], p.get("version", "cur"))["size"]
        if method == "MFGetData":
            length = min(int(p.get("length", _FAILOVER_READ)), _FAILOVER_READ)
            return r.read(p["mid"], p.get("version", "cur"), int(p.get("offset", 0)), length)
        if method == "MMVersions":
            return r.versions_of(p["mid"])
        if method == "MMInfo":
            return self._info(p["mid"])
        if method == "MMList":
            return [self._info(mid) for mid in r.mimei_ids()]
        if method == "GetVar" and p.get("name") == "id":
            return self.dead_id
        raise ConnectError(f"{self.name} is offline; its partner serves reads of its backed-up "
                           f"versions only ({method} needs the node itself)")

    def _info(self, mid: str) -> dict[str, Any]:
        meta = self.reader.meta(mid)
        numbers = sorted(self.reader.numbers(mid))
        last = self.reader.record(mid, numbers[-1])
        return {"id": mid, "type": meta["type"], "app": meta["app"], "ext": meta["ext"],
                "mark": meta["mark"], "author": self.dead_id, "ctime": meta["ctime"],
                "mtime": last["time"], "size": last["size"], "last": numbers[-1],
                "release": meta["release"], "versions": len(numbers),
                "refs": len(meta["refs"]), "backup": True}

    def close(self) -> None:
        self.partner.close()
