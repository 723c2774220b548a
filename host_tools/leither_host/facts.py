# What the host learns by asking a node how it is: one probe per node (connect, GetVar facts,
# backup totals for its owner), many in parallel for `leither ls`, each bounded in time, an
# offline node being an answer (online False, last seen) rather than an error. Facts come back
# under one name per field with their unit in the name (uptime_s, free_bytes, heap_bytes), so
# `status`, `ls` and `discover` agree; people see them in human units (output.human_*).
"""Probing nodes for their facts."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

from leither.errors import AuthError, DecodeError, RPCError
from leither_host import keys
from leither_host.client import ConnectError, SyncSession, connect_sync
from leither_host.errors import CliError
from leither_host.fleet import Fleet

PROBE_TIMEOUT_S = 5.0  # connect + handshake budget per node in `ls` (a board signs in 0.1-3 s)
PARALLEL = 8  # nodes probed at once
# Facts every role may read, then the owner's. A fact the node lacks (older firmware) or keeps
# from this caller is left out, never an error.
PUBLIC = ("id", "name", "board", "fw", "v", "uptime", "free", "heap", "claimed", "role",
          "peer", "pair")
OWNER = ("pair_state", "pair_code", "peer_addr", "replaced", "parts")


def read_facts(session: SyncSession) -> dict[str, Any]:
    """The node's facts under CLI names: raw numbers, units in the names."""
    raw: dict[str, Any] = {}
    for name in PUBLIC + (OWNER if session.role == "owner" else ("replaced",)):
        try:
            raw[name] = session.call("GetVar", {"name": name}, 15.0)
        except RPCError:
            continue
    facts: dict[str, Any] = {k: raw.get(k) for k in ("id", "name", "board", "fw", "role",
                                                      "claimed", "peer")}
    facts["protocol"] = raw.get("v")
    facts["uptime_s"] = raw.get("uptime")
    free = raw.get("free")  # the node says KiB (its mDNS TXT is kept short)
    facts["free_bytes"] = free * 1024 if isinstance(free, int) else None
    facts["heap_bytes"] = raw.get("heap")
    facts["pair_window"] = bool(raw.get("pair"))
    for k in ("pair_state", "pair_code", "peer_addr", "parts"):
        if k in raw:
            facts[k] = raw[k]
    replaced = replaced_at(raw.get("replaced"))
    if replaced is not None:
        facts["replaced_ms"] = replaced
    return facts


def replaced_at(value: Any) -> int | None:
    """When a node was replaced by a restore, in ms since the epoch, from its `replaced` fact
    (a time in ms or s, or a dict holding one); None if not replaced or unreadable."""
    if isinstance(value, dict):
        for key in ("ms", "at", "time", "when", "t"):
            if isinstance(value.get(key), (int, float)):
                value = value[key]
                break
        else:
            return 0 if value else None
    if isinstance(value, bool):
        return 0 if value else None
    if isinstance(value, (int, float)) and value > 0:
        return int(value if value > 1e11 else value * 1000)
    if isinstance(value, str) and value:
        return 0
    return None


def backup_totals(session: SyncSession) -> dict[str, Any] | None:
    """Backup totals (no per-MiMei detail) for the owner; None if the node has no backup."""
    try:
        st = session.call("BackupStatus", {"offset": 0, "limit": 0}, 15.0)
    except RPCError:
        return None
    if not isinstance(st, dict):
        return None
    return {"partner": st.get("partner"), "state": st.get("state"),
            "pending_bytes": st.get("pending"), "last_ok_ms": st.get("last_ok"),
            "last_error": st.get("last_error")}


def probe(record: dict[str, Any], key: keys.HostKey, timeout: float = PROBE_TIMEOUT_S,
          with_backup: bool = True) -> dict[str, Any]:
    """One node's row: the inventory's record overlaid with what the node says now."""
    row: dict[str, Any] = {"id": record.get("id"), "name": record.get("name"),
                           "address": _address(record), "board": record.get("board"),
                           "fw": record.get("fw"), "online": False,
                           "last_seen": record.get("seen")}
    host = record.get("host")
    if not host:
        row["error"] = "no address known"
        return row
    try:
        session = connect_sync(str(host), int(record.get("port") or 4800), key,
                               expected_node_id=record.get("id"), timeout=timeout)
    except AuthError as err:
        row["error"] = f"another node answers there ({err})"
        row["wrong_node"] = True
        return row
    except DecodeError:
        row["error"] = "not a Leither node at that address"
        row["wrong_node"] = True
        return row
    except (ConnectError, CliError, OSError) as err:
        text = str(err)
        if "Connect call failed" in text or "refused" in text:
            text = f"nothing answers at {row['address']} (connection refused)"
        from leither_host.nodes import lan_hint

        row["error"] = text + lan_hint(str(host))
        return row
    with session:
        try:
            facts = read_facts(session)
            if with_backup and session.role == "owner":
                row["backup"] = backup_totals(session)
        except (ConnectError, CliError, DecodeError, AuthError) as err:
            row["error"] = str(err)
            return row
    node_name = facts.pop("name", None)
    row.update({k: v for k, v in facts.items() if v is not None})
    row["node_name"] = node_name
    row["online"] = True
    row["last_seen"] = int(time.time())
    return row


def probe_all(records: list[dict[str, Any]], timeout: float = PROBE_TIMEOUT_S
              ) -> list[dict[str, Any]]:
    """Every record probed, PARALLEL at a time, in the order given."""
    if not records:
        return []
    key = keys.load_or_create()
    with concurrent.futures.ThreadPoolExecutor(min(PARALLEL, len(records))) as pool:
        return list(pool.map(lambda r: probe(r, key, timeout), records))


def note_seen(fleet: Fleet, rows: list[dict[str, Any]]) -> None:
    """Record what the probes learnt (last seen, board, firmware, the node's own name)."""
    for row in rows:
        if row.get("online") and row.get("id"):
            fleet.remember({"id": row["id"], "board": row.get("board"), "fw": row.get("fw"),
                            "node_name": row.get("node_name")})


def _address(record: dict[str, Any]) -> str | None:
    if not record.get("host"):
        return None
    return f"{record['host']}:{record.get('port') or 4800}"
