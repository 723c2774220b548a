# The fleet inventory: every node this host has seen or claimed, with its last address, so a
# known node stays reachable by name when multicast is blocked. Kept in tinydb, whose every
# write goes to a temp file, is fsynced and renamed over the old one (a crash keeps the old
# inventory or the new, never a torn JSON file).
"""Fleet inventory and node-name resolution."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from tinydb import Query, TinyDB
from tinydb.storages import Storage

from leither_host.errors import CliError
from leither_host.paths import data_dir


class AtomicJSONStorage(Storage):
    """tinydb storage: whole-file JSON, replaced atomically on each write."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            with self.path.open() as f:
                data: dict[str, dict[str, Any]] = json.load(f)
                return data
        except FileNotFoundError:
            return None
        except ValueError as err:
            raise CliError(f"inventory {self.path} is corrupt ({err}); move it aside") from err

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        # A temp file of its own per writer: two `leither` processes sharing one temp name
        # renamed each other's half-written file (or found it gone).
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def close(self) -> None:
        pass


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _exclusive(method: _Method) -> _Method:
    """Run a Fleet method that writes under the inventory's lock: tinydb reads, changes and
    writes the whole file, so two processes updating at once (three claims clicked together
    in the dashboard) lost one update without it. Re-entrant within a process."""
    @functools.wraps(method)
    def locked(self: Fleet, *args: Any, **kwargs: Any) -> Any:
        with self.locked():
            return method(self, *args, **kwargs)
    return locked  # type: ignore[return-value]


NAME_MAX = 63  # characters in a node name: one DNS label, as mDNS announces it


def check_name(name: str) -> str:
    """A node name people type and mDNS announces: letters, digits, '-' and '_', not an
    address, at most one DNS label long."""
    if not name or len(name) > NAME_MAX:
        raise CliError(f"a node name has 1 to {NAME_MAX} characters (got {len(name)})")
    if not all(c.isascii() and (c.isalnum() or c in "-_") for c in name) or name[0] == "-":
        raise CliError(f"node name {name!r}: use letters, digits, '-' and '_' (not first '-')")
    if split_address(name)[0] is not None:
        raise CliError(f"node name {name!r} reads as an address; pick another")
    return name


class Fleet:
    """Nodes known to this host, one row per node ID: {id, name, node_name, host, port, board,
    fw, txt, seen, claimed, sim}. ``name`` is this host's name for the node (unique in the
    inventory, kept across restarts and restores; `leither rename` changes it); ``node_name``
    is what the node calls itself; ``seen`` the last time (s) the node answered or announced."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or data_dir() / "fleet.json"
        self.db = TinyDB(str(self.path), storage=AtomicJSONStorage)
        self.nodes = self.db.table("nodes")
        self.notices: list[str] = []  # things a verb should tell its user (names moved, ...)
        self._lock_depth = 0

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the inventory's lock file (flock) for a read-change-write."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # Another process may have written since this one last looked: drop tinydb's
            # cached next document ID and query results, so they are read afresh.
            self.nodes._next_id = None
            self.nodes.clear_cache()
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0

    def all(self) -> list[dict[str, Any]]:
        return sorted((dict(n) for n in self.nodes.all()),
                      key=lambda n: (n.get("name") or "", n.get("id") or ""))

    def get(self, node_id: str) -> dict[str, Any] | None:
        found = self.nodes.get(Query().id == node_id)
        return dict(found) if isinstance(found, dict) else None

    @_exclusive
    def remember(self, node: dict[str, Any], seen: bool = True) -> dict[str, Any]:
        """Insert or update a node by ID; keeps fields the update does not carry.

        A known node keeps its name (the host's name for it) whatever the update says; the
        name given becomes its ``node_name``. A new node takes the name given (or its node
        name); a name another row holds moves to the newcomer (the newest board to answer to
        a name is the one people mean), and the old row is renamed NAME-IDPREFIX, said in
        ``notices``. An address change is said too when the old address was another board's.
        """
        node_id = node.get("id")
        if not node_id:
            raise CliError("a node record needs an id")
        record = {k: v for k, v in node.items() if v is not None}
        if seen:
            record["seen"] = int(time.time())
        q = Query()
        old = self.get(node_id)
        suggested = record.pop("name", None)
        if old is not None:
            if suggested and suggested != old.get("name"):
                record.setdefault("node_name", suggested)
                holder = self.by_name(suggested)
                if not old.get("name") and holder is None:
                    record["name"] = suggested  # a row without a name (older inventory)
            self.nodes.update(record, q.id == node_id)
        else:
            name = suggested or record.get("node_name") or node_id[:8]
            holder = self.by_name(name)
            if holder is not None and holder["id"] != node_id:
                moved = f"{name}-{holder['id'][:6]}"
                self.nodes.update({"name": moved}, q.id == holder["id"])
                self.notices.append(f"the name {name} now means {node_id}; the node that "
                                    f"had it ({holder['id']}) is now called {moved}")
            record["name"] = name
            if suggested:
                record.setdefault("node_name", suggested)
            self.nodes.insert(record)
        return self.get(node_id) or record

    def by_name(self, name: str) -> dict[str, Any] | None:
        rows = [n for n in self.all() if n.get("name") == name]
        return rows[0] if rows else None

    @_exclusive
    def rename(self, node_id: str, name: str) -> dict[str, Any]:
        """Give the node `node_id` this host's name `name` (unique in the inventory)."""
        check_name(name)
        holder = self.by_name(name)
        if holder is not None and holder["id"] != node_id:
            raise CliError(f"the name {name} is taken by {holder['id']}: `leither forget "
                           f"{holder['id'][:8]}` or rename it first")
        if self.get(node_id) is None:
            raise CliError(f"no node {node_id} in the inventory")
        self.nodes.update({"name": name}, Query().id == node_id)
        return self.get(node_id) or {}

    @_exclusive
    def forget(self, node_id: str) -> bool:
        """Drop a node's row; False if there was none."""
        return bool(self.nodes.remove(Query().id == node_id))

    @_exclusive
    def forget_roots(self, roots: Iterable[str | Path]) -> list[str]:
        """Forget the nodes whose state lives under these directories (simulated boards being
        removed); returns the IDs forgotten."""
        gone = []
        for root in roots:
            node_id = node_id_of_root(Path(root))
            if node_id and self.forget(node_id):
                gone.append(node_id)
        return gone

    def resolve(self, ref: str) -> dict[str, Any]:
        """A node by exact name, ID, ID prefix, or host[:port] address. A ref that fits
        several nodes is an error listing them."""
        nodes = self.all()
        if not ref:
            raise CliError("an empty node name: give a name, an ID prefix or host:port")
        for key in ("name", "id"):
            exact = [n for n in nodes if n.get(key) == ref]
            if len(exact) == 1:
                return exact[0]
            if len(exact) > 1:
                raise CliError(f"{ref!r} names {len(exact)} nodes: {_candidates(exact)}; use an "
                               f"ID prefix, or `leither forget`/`leither rename` one of them")
        prefix = [n for n in nodes if n.get("id", "").startswith(ref)]
        if len(prefix) == 1:
            return prefix[0]
        if len(prefix) > 1:
            raise CliError(f"{ref!r} matches {len(prefix)} nodes: {_candidates(prefix)}; "
                           f"give more of the ID")
        host, port = split_address(ref)
        if host is not None:
            by_addr = [n for n in nodes if n.get("host") == host and
                       (port is None or n.get("port") == port)]
            if len(by_addr) == 1:
                return by_addr[0]
            if len(by_addr) > 1:
                raise CliError(f"{ref!r} was the address of {len(by_addr)} nodes: "
                               f"{_candidates(by_addr)}; give host:port or an ID prefix")
            return {"id": None, "name": ref, "host": host, "port": port or 4800}
        calls = [n for n in nodes if n.get("node_name") == ref]
        hint = ""
        if calls:
            hint = (f"; {_candidates(calls)} calls itself {ref} (this host knows it by "
                    f"another name: `leither rename` to change that)")
        raise CliError(f"no node named {ref!r}"
                       + (hint or ": run `leither discover` or give host:port"))


def node_id_for(ref: str) -> str | None:
    """The full ID of the node `ref` names in this host's inventory (its name, or a prefix of
    its ID that cannot be a hex application/receipt ID), or None: lets verbs that take member
    IDs (`org approve`) take node names and prefixes too."""
    try:
        fleet = Fleet()
    except (CliError, OSError):
        return None
    try:
        rows = fleet.all()
    finally:
        fleet.close()
    named = [n for n in rows if n.get("name") == ref]
    if len(named) == 1:
        return str(named[0]["id"])
    if not ref or all(c in "0123456789abcdef" for c in ref):
        return None
    prefixed = [n for n in rows if str(n.get("id", "")).startswith(ref)]
    return str(prefixed[0]["id"]) if len(prefixed) == 1 else None


def forget_boards(roots: Iterable[str | Path]) -> None:
    """The inventory forgets simulated boards being removed (`leither sim down`): their IDs
    die with them, and a row left behind would hold a name the next `sim up` wants."""
    try:
        fleet = Fleet()
    except (CliError, OSError):
        return
    try:
        fleet.forget_roots(roots)
    except (CliError, OSError):
        pass
    finally:
        fleet.close()


def remember_boards(boards: Iterable[tuple[str, str, str, int, bool, str]]) -> list[str]:
    """Put simulated boards (name, root, host, port, running, kind) in the inventory, so
    verbs reach them by name without mDNS. Two boards holding one identity (an old board
    started again after its restore onto another) are said, and the ID keeps the running
    board's address (the inventory's if both run). Returns the warnings, also printed on stderr."""
    import sys

    by_id: dict[str, list[tuple[str, str, int, bool, str]]] = {}
    for name, root, host, port, running, kind in boards:
        node_id = node_id_of_root(Path(root))
        if node_id:
            by_id.setdefault(node_id, []).append((name, host, port, running, kind))
    warnings = []
    fleet = Fleet()
    try:
        for node_id, held in by_id.items():
            known = fleet.get(node_id)
            pick = held[-1]
            if len(held) > 1:
                live = [h for h in held if h[3]] or held
                pick = next((h for h in live if known and (h[1], h[2]) == (
                    known.get("host"), known.get("port"))), live[-1])
                if len([h for h in held if h[3]]) > 1:
                    warnings.append(
                        f"boards {', '.join(h[0] for h in held)} hold one identity "
                        f"{node_id}; it stays at {pick[1]}:{pick[2]} ({pick[0]}); the other "
                        f"was replaced by a restore: wipe it (`leither sim start NAME --wipe`)")
            fleet.remember({"id": node_id, "name": pick[0], "host": pick[1], "port": pick[2],
                            "board": pick[4], "sim": True}, seen=pick[3])
        warnings += fleet.notices
    finally:
        fleet.close()
    for line in warnings:
        print(f"leither: warning: {line}", file=sys.stderr)
    return warnings


def _candidates(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"{n.get('name') or '?'} ({n.get('id')})" for n in rows)


def node_id_of_root(root: Path) -> str | None:
    """The ID of the node whose state directory is `root` (its node.key), or None."""
    from leither import crypto, ids

    try:
        seed = (root / "node.key").read_bytes()
    except OSError:
        return None
    return ids.make_id(crypto.sign_public(seed)) if len(seed) == 32 else None


def split_address(ref: str) -> tuple[str | None, int | None]:
    """('10.0.0.2', 4800) from '10.0.0.2:4800'; (None, None) if ref is not an address."""
    host, sep, port_text = ref.rpartition(":")
    if not sep:
        host, port_text = ref, ""
    parts = host.split(".")
    if host == "localhost" or (len(parts) == 4
                               and all(p.isdigit() and int(p) < 256 for p in parts)):
        if port_text and not port_text.isdigit():
            return None, None
        return host, int(port_text) if port_text else None
    return None, None


def merge(found: Iterable[dict[str, Any]], fleet: Fleet) -> list[dict[str, Any]]:
    return [fleet.remember(n) for n in found]
