# The fleet inventory: every node this host has seen or claimed, with its last address, so a
# known node stays reachable by name when multicast is blocked. Kept in tinydb, whose every
# write goes to a temp file, is fsynced and renamed over the old one (a crash keeps the old
# inventory or the new, never a torn JSON file).
"""Fleet inventory and node-name resolution."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable

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
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def close(self) -> None:
        pass


class Fleet:
    """Nodes known to this host: {id, name, host, port, board, fw, txt, seen, claimed}."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or data_dir() / "fleet.json"
        self.db = TinyDB(str(self.path), storage=AtomicJSONStorage)
        self.nodes = self.db.table("nodes")

    def close(self) -> None:
        self.db.close()

    def all(self) -> list[dict[str, Any]]:
        return sorted((dict(n) for n in self.nodes.all()), key=lambda n: n.get("name", ""))

    def remember(self, node: dict[str, Any]) -> dict[str, Any]:
        """Insert or update a node by ID; keeps fields the update does not carry."""
        if not node.get("id"):
            raise CliError("a node record needs an id")
        record = {k: v for k, v in node.items() if v is not None}
        record["seen"] = int(time.time())
        q = Query()
        if self.nodes.contains(q.id == node["id"]):
            self.nodes.update(record, q.id == node["id"])
        else:
            self.nodes.insert(record)
        found = self.nodes.get(q.id == node["id"])
        return dict(found) if found else record

    def forget(self, node_id: str) -> None:
        self.nodes.remove(Query().id == node_id)

    def resolve(self, ref: str) -> dict[str, Any]:
        """A node by exact name, ID, ID prefix, or host[:port] address."""
        nodes = self.all()
        for key in ("name", "id"):
            exact = [n for n in nodes if n.get(key) == ref]
            if len(exact) == 1:
                return exact[0]
        prefix = [n for n in nodes if n.get("id", "").startswith(ref)]
        if len(prefix) == 1:
            return prefix[0]
        if len(prefix) > 1:
            names = ", ".join(n.get("name", n["id"]) for n in prefix)
            raise CliError(f"{ref!r} matches several nodes ({names}); give more of the ID")
        host, port = split_address(ref)
        if host is not None:
            by_addr = [n for n in nodes if n.get("host") == host and
                       (port is None or n.get("port") == port)]
            if len(by_addr) == 1:
                return by_addr[0]
            return {"id": None, "name": ref, "host": host, "port": port or 4800}
        raise CliError(f"no node named {ref!r}: run `leither discover` or give host:port")


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
