# The fleet as the dashboard shows it, kept fresh in the background: one authenticated session
# per node, held open between polls (a board signs a handshake in 0.1-3 s, so reconnecting on
# every poll would keep it busy), polled every few seconds for its facts and, where we own it,
# its backup status. Each owned node's backup progress is kept as a bounded history for the plot.
"""Background sampling of the fleet and of backup progress."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from leither.errors import AuthError, DecodeError, LeitherError, RPCError
from leither_host import keys
from leither_host.client import Session, connect
from leither_host.errors import CliError
from leither_host.facts import replaced_at
from leither_host.fleet import Fleet

POLL_S = 3.0  # seconds between polls of the fleet (the page refreshes at the same pace)
CONNECT_S = 3.0  # seconds to connect and shake hands with a node before calling it offline
CALL_S = 5.0  # seconds for one poll call
BACKOFF_MAX_S = 30.0  # longest pause between connection attempts to an offline node
HISTORY_POINTS = 1200  # samples kept per node: an hour at the default 3 s poll
# Facts read on every poll (all public; GetVar, leither.servercalls.PUBLIC_FACTS).
# "replaced": set on a node that a restore replaced (fenced: it serves no more); not every
# firmware has it.
FACTS = ("name", "uptime", "free", "heap", "claimed", "role", "pair", "peer", "replaced",
         "pair_state", "pair_code", "pair_reason")  # pair_*: the owner's only
SESSION_FACTS = ("board", "fw")  # read once per session: they change only with a reflash
LOG_PAGES = 8  # GetLog replies gathered per request (each holds the node's REPLY_LINES)


@dataclass
class NodeState:
    """What the dashboard knows of one node between polls."""

    id: str
    record: dict[str, Any]
    session: Session | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    facts_session: Session | None = None  # the session SESSION_FACTS were read on
    backup: dict[str, Any] | None = None
    online: bool = False
    last_seen: float | None = None  # time.time() of the last answered poll
    error: str | None = None
    wrong_node: bool = False  # another node (another key) answers at the address
    failures: int = 0
    next_try: float = 0.0  # time.monotonic() before which no reconnect is tried
    # (time ms, bytes pushed to the partner as seen here, bytes pending, bytes on the partner)
    history: deque[tuple[int, int, int, int]] = field(
        default_factory=lambda: deque(maxlen=HISTORY_POINTS))
    pushed: int = 0  # bytes pushed since the dashboard started watching
    last_sent: int | None = None  # the node's own counter at the previous sample

    def row(self) -> dict[str, Any]:
        """The node as one line of the fleet table (raw numbers; the page formats them)."""
        f, b, r = self.facts, self.backup or {}, self.record
        free_kib = f.get("free")
        return {
            # The inventory's name first: the user's name for the node (a restored node
            # keeps the dead one's; the board itself may still call itself otherwise).
            "id": self.id, "name": r.get("name") or f.get("name") or "",
            "address": f"{r.get('host')}:{r.get('port') or 4800}",
            "online": self.online,
            "last_seen": self.last_seen or r.get("seen"),
            "board": f.get("board") or r.get("board"), "fw": f.get("fw") or r.get("fw"),
            "role": f.get("role"), "claimed": f.get("claimed"),
            "uptime_s": f.get("uptime"),
            "free_bytes": free_kib * 1024 if isinstance(free_kib, int) else None,
            "heap_bytes": f.get("heap"),
            "pair_window": f.get("pair"), "partner": f.get("peer"),
            "pair_state": f.get("pair_state"), "pair_code": f.get("pair_code"),
            "pair_reason": f.get("pair_reason"),
            "replaced_ms": replaced_at(f.get("replaced")), "wrong_node": self.wrong_node,
            "backup": {k: b.get(k) for k in ("state", "pending", "last_ok", "last_error",
                                             "sent", "used_on_partner", "quota", "audits",
                                             "count")} if b else None,
            "error": self.error,
        }

    def sample(self, status: dict[str, Any]) -> None:
        """Add a point to the history from a BackupStatus answer. The node's `sent` counter
        restarts at zero when the node does; the history counts on across that."""
        sent = int(status.get("sent") or 0)
        if self.last_sent is not None:
            self.pushed += sent - self.last_sent if sent >= self.last_sent else sent
        self.last_sent = sent
        self.history.append((int(time.time() * 1000), self.pushed,
                             int(status.get("pending") or 0),
                             int(status.get("used_on_partner") or 0)))


class Sampler:
    """Polls every node of the inventory; the server reads `rows()` and `history()`."""

    def __init__(self, poll_s: float = POLL_S) -> None:
        self.poll_s = poll_s
        self.nodes: dict[str, NodeState] = {}
        self.polled_at: float | None = None
        self.fleet_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._seed: bytes | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for node in self.nodes.values():
            await _close(node)

    def poke(self) -> None:
        """Poll now (after a job changed something), not at the next tick."""
        self._wake.set()

    def rows(self) -> list[dict[str, Any]]:
        return sorted((n.row() for n in self.nodes.values()),
                      key=lambda r: (r["name"] or "~", r["id"]))

    def history(self, node_id: str) -> list[tuple[int, int, int, int]]:
        node = self.nodes.get(node_id)
        return list(node.history) if node else []

    def find(self, ref: str) -> NodeState:
        """A node of the fleet by ID, name or ID prefix."""
        found = [n for i, n in self.nodes.items() if i == ref] or \
            [n for n in self.nodes.values() if n.row()["name"] == ref] or \
            [n for i, n in self.nodes.items() if i.startswith(ref)]
        if len(found) != 1:
            raise CliError(f"no node {ref!r} in the fleet" if not found else
                           f"{ref!r} matches several nodes: give more of the ID")
        return found[0]

    async def log(self, ref: str, after: int, tail: int | None = None) -> dict[str, Any]:
        """A node's log lines after seq `after` (the last `tail` when after is 0), through the
        session the sampler holds (a follower polls every few seconds: no new handshakes)."""
        node = self.find(ref)
        if node.session is None or not node.online:
            raise CliError(f"{node.row()['name'] or node.id} is offline")
        if node.facts.get("role") != "owner":
            raise CliError("only the node's owner reads its log: claim it")
        params: dict[str, Any] = {"after": after}
        if after == 0 and tail:
            params["tail"] = tail
        try:
            reply = await node.session.call("GetLog", params, CALL_S)
            lines = list(reply["lines"])
            dropped = int(reply.get("dropped") or 0)
            for _ in range(LOG_PAGES - 1):
                if not lines or lines[-1][0] >= reply["last"]:
                    break
                reply = await node.session.call("GetLog", {"after": lines[-1][0]}, CALL_S)
                if not reply["lines"]:
                    break
                lines += reply["lines"]
        except RPCError as err:
            if err.code == "no_method":
                raise CliError("this node's firmware keeps no log (no GetLog)") from None
            raise CliError(f"GetLog: {err.msg} ({err.code})") from None
        return {"id": node.id, "lines": lines, "dropped": dropped,
                "next": lines[-1][0] if lines else int(reply.get("next") or after),
                "last": reply.get("last")}

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except (CliError, OSError) as err:  # e.g. a corrupt inventory: say so, go on
                self.fleet_error = str(err)
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def poll_once(self) -> None:
        records = await asyncio.to_thread(_inventory)
        self.fleet_error = None
        if self._seed is None:
            self._seed = (await asyncio.to_thread(keys.load_or_create)).seed
        seen = set()
        for rec in records:
            node = self.nodes.get(rec["id"])
            if node is None:
                node = self.nodes[rec["id"]] = NodeState(rec["id"], rec)
            elif (rec.get("host"), rec.get("port")) != (node.record.get("host"),
                                                        node.record.get("port")):
                await _close(node)  # it moved (a restore, a new address): reconnect there
                node.next_try = 0.0
            node.record = rec
            seen.add(rec["id"])
        for gone in [i for i in self.nodes if i not in seen]:  # forgotten in the inventory
            await _close(self.nodes.pop(gone))
        await asyncio.gather(*(self._poll(n) for n in self.nodes.values()))
        self.polled_at = time.time()

    async def _poll(self, node: NodeState) -> None:
        try:
            await asyncio.wait_for(self._poll_node(node), CONNECT_S + 3 * CALL_S)
        except (asyncio.TimeoutError, LeitherError, OSError, EOFError) as err:
            await _close(node)
            node.online = False
            node.wrong_node = isinstance(err, (AuthError, DecodeError))
            node.error = _reason(err)
            node.failures += 1
            node.next_try = time.monotonic() + min(BACKOFF_MAX_S, 2.0 ** node.failures)

    async def _poll_node(self, node: NodeState, again: bool = False) -> None:
        if node.session is None:
            if time.monotonic() < node.next_try or not node.record.get("host"):
                node.online = False
                return
            assert self._seed is not None
            node.session = await connect(str(node.record["host"]),
                                         int(node.record.get("port") or 4800), self._seed,
                                         expected_node_id=node.id, timeout=CONNECT_S,
                                         attempts=2)
        session = node.session
        facts = {k: node.facts.get(k) for k in SESSION_FACTS} \
            if node.facts_session is session else {}
        for name in FACTS + tuple(k for k in SESSION_FACTS if k not in facts):
            try:
                facts[name] = await session.call("GetVar", {"name": name}, CALL_S)
            except RPCError:
                facts[name] = None  # a fact this node does not have
        if node.facts.get("claimed") is False and facts.get("claimed") and \
                facts.get("role") == "guest" and not again:
            # Claimed since this session shook hands (a role is fixed at the handshake):
            # a new session learns whether the claim was ours.
            await _close(node)
            return await self._poll_node(node, again=True)
        node.facts, node.facts_session = facts, session
        if facts.get("role") == "owner":
            try:
                status = await session.call("BackupStatus", {"offset": 0, "limit": 0}, CALL_S)
            except RPCError:
                status = None  # a node without the backup service
            node.backup = status if isinstance(status, dict) else None
            if node.backup is not None:
                node.sample(node.backup)
        else:
            node.backup = None
        node.online, node.error, node.failures, node.wrong_node = True, None, 0, False
        node.last_seen = time.time()


def _inventory() -> list[dict[str, Any]]:
    """The inventory's nodes with an ID, one per ID (the newest record wins)."""
    fleet = Fleet()
    try:
        found: dict[str, dict[str, Any]] = {}
        for rec in fleet.all():
            node_id = rec.get("id")
            if node_id and (node_id not in found or
                            (rec.get("seen") or 0) >= (found[node_id].get("seen") or 0)):
                found[node_id] = rec
        return list(found.values())
    finally:
        fleet.close()


async def _close(node: NodeState) -> None:
    if node.session is not None:
        session, node.session = node.session, None
        await session.close()


def _reason(err: BaseException) -> str:
    if isinstance(err, asyncio.TimeoutError):
        return "no answer in time"
    if isinstance(err, AuthError):
        return f"another node answers at this address ({err})"
    if isinstance(err, DecodeError):
        return f"not a Leither node at this address ({err})"
    return str(err) or type(err).__name__
