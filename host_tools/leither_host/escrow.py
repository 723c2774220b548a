# The owner's copy of what it takes to bring a node back: the node's identity seed and the backup
# key its backups are sealed with (leither.seal), kept on the host under the XDG config dir with
# mode 0600. Made right after a claim (`leither claim`), used by `leither restore` (a fresh
# board becomes the dead one) and by failover reads (the partner serves sealed blocks, the host
# opens them with the backup key): leither_host.nodes falls back to BackupReader by itself.
"""Per-node identity and backup-key escrow, and reads of a node's backup through its partner."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leither import cbor, crypto, ids, mimei, seal, store
from leither.errors import AuthError, RPCError, StoreError
from leither_host.client import SyncSession
from leither_host.errors import CliError
from leither_host.paths import config_dir, write_private

_CACHE_BLOCKS = 256  # decoded blocks a BackupReader keeps (1 MiB): a file read walks forward
_GET_MAX = 49152  # bytes of blobs per BKGet reply asked of a partner
_LIST_PAGE = 64  # catalog entries per BKList (the partner's bound)


@dataclass
class Escrow:
    """What the owner keeps for one node."""

    id: str
    seed: bytes  # the node's Ed25519 identity seed
    key: bytes  # its backup key
    name: str | None = None
    partner: str | None = None  # the partner's node ID, as last seen

    @property
    def keys(self) -> seal.Keys:
        return seal.Keys(self.key)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "seed": self.seed.hex(), "key": self.key.hex(),
                "name": self.name, "partner": self.partner}


def escrow_dir() -> Path:
    path = config_dir() / "escrow"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass
    return path


def save(entry: Escrow) -> Path:
    if ids.make_id(crypto.sign_public(entry.seed)) != entry.id:
        raise CliError(f"escrow for {entry.id}: the seed is not that node's key")
    path = escrow_dir() / f"{entry.id}.json"
    write_private(path, json.dumps(entry.to_json(), indent=1).encode())
    return path


def load(node_id: str) -> Escrow | None:
    path = escrow_dir() / f"{node_id}.json"
    if not path.exists():
        return None
    if path.stat().st_mode & 0o077:
        raise CliError(f"escrow {path} is readable by others: run chmod 600 {path}")
    try:
        data = json.loads(path.read_text())
        return Escrow(id=data["id"], seed=bytes.fromhex(data["seed"]),
                      key=bytes.fromhex(data["key"]), name=data.get("name"),
                      partner=data.get("partner"))
    except (ValueError, KeyError) as err:
        raise CliError(f"escrow {path} is corrupt: {err}") from None


def find(ref: str) -> Escrow | None:
    """An escrow by node ID, ID prefix or the node name recorded with it."""
    found = load(ref) if len(ref) >= 27 else None
    if found:
        return found
    matches = []
    for path in sorted(escrow_dir().glob("*.json")):
        entry = load(path.stem)
        if entry and (entry.name == ref or entry.id.startswith(ref)):
            matches.append(entry)
    if len(matches) > 1:
        raise CliError(f"{ref!r} matches several escrowed nodes; give the node ID")
    return matches[0] if matches else None


def take(session: SyncSession, name: str | None = None, key: bytes | None = None) -> Escrow:
    """Install a backup key on the node this owner session reaches (a new random one, or the
    escrowed one) and keep the node's seed and key in escrow."""
    old = load(session.node_id)
    key = key or (old.key if old else crypto.random(32))
    try:
        got = session.call("BackupKey", {"key": key})
    except RPCError as err:
        if err.code == "no_part":
            raise  # a bundle without backup (leither.parts): there is no key to escrow
        if err.code == "forbidden" and old is None:
            raise CliError(f"the node refused its backup key ({err.msg})") from None
        if old is None:
            raise CliError(f"BackupKey: {err.msg} ({err.code})") from None
        got = session.call("BackupKey", {})  # the node keeps the key it sealed with
    entry = Escrow(id=session.node_id, seed=bytes(got["seed"]), key=bytes(got["key"]),
                   name=name or (old.name if old else None),
                   partner=got.get("partner") or (old.partner if old else None))
    save(entry)
    return entry


def note_partner(node_id: str, partner: str | None) -> None:
    """Remember a node's partner (failover reads need to know where its backups are)."""
    entry = load(node_id)
    if entry is not None and partner and entry.partner != partner:
        entry.partner = partner
        save(entry)


# ---- reading a node's backup through its partner ------------------------------------------------


class _PartnerBlocks:
    """A read-only block source for leither.store.TreeReader: blocks fetched sealed from the
    partner by their sealed names, opened and checked against their hashes here."""

    def __init__(self, reader: BackupReader) -> None:
        self.reader = reader
        self.cache: OrderedDict[bytes, bytes] = OrderedDict()

    def has(self, h: bytes) -> bool:
        return True

    def get(self, h: bytes, buf: bytearray | None = None) -> Any:
        h = bytes(h)
        data = self.cache.get(h)
        if data is None:
            data = self.reader.block(h)
            self.cache[h] = data
            if len(self.cache) > _CACHE_BLOCKS:
                self.cache.popitem(last=False)
        else:
            self.cache.move_to_end(h)
        if buf is not None:
            view = memoryview(buf)[:len(data)]
            view[:] = data
            return view
        return data

    def get_part(self, h: bytes, start: int, view: Any) -> tuple[int, int]:
        """Bytes of block h from start into view: (bytes copied, the block's length), as
        BlockStore.get_part gives them (the readers take manifests a window at a time)."""
        data = self.get(h)
        n = max(0, min(len(view), len(data) - start))
        if n:  # an empty view may be read-only (TreeReader.check_chunk asks a length so)
            memoryview(view)[:n] = data[start:start + n]
        return n, len(data)


class BackupReader:
    """A dead node's backed-up MiMei and versions, read from its partner with the escrow."""

    def __init__(self, partner: SyncSession, entry: Escrow) -> None:
        self.partner = partner
        self.entry = entry
        self.keys = entry.keys
        self.versions: dict[bytes, dict[int, bytes]] = {}  # MiMei tag -> n -> record name
        self.metas: dict[bytes, bytes] = {}  # MiMei tag -> metadata name
        self.served = 0
        offset = 0
        while True:
            page = self._call("BKList", {"offset": offset, "count": _LIST_PAGE})
            entries = page["entries"]
            if not entries:
                break
            offset += len(entries)
            for kind, tag, n, name in entries:
                if kind == 118:
                    self.versions.setdefault(bytes(tag), {})[n] = bytes(name)
                elif kind == 109:
                    self.metas[bytes(tag)] = bytes(name)
        self.blocks = _PartnerBlocks(self)
        self._records: dict[tuple[str, int], dict[str, Any]] = {}

    def _call(self, method: str, params: dict[str, Any]) -> Any:
        params = dict(params, node=self.entry.id)
        try:
            return self.partner.call(method, params)
        except RPCError as err:
            raise CliError(f"the partner refused {method}: {err.msg} ({err.code})") from None

    def fetch(self, names: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        while len(out) < len(names):
            got = self._call("BKGet", {"names": names[len(out):], "max": _GET_MAX})
            if not got or any(b is None for b in got):
                raise CliError("the partner lacks part of this backup")
            for b in got:
                blob = self._pieces(names[len(out)], b) if isinstance(b, int) else bytes(b)
                out.append(blob)
                self.served += len(blob)
        return out

    def _pieces(self, name: bytes, size: int) -> bytes:
        """A blob bigger than the partner's replies (a board's 4 KiB frames), in pieces."""
        blob = bytearray()
        while len(blob) < size:
            got = self._call("BKGet", {"names": [name], "offset": len(blob), "max": _GET_MAX})
            data = got.get("data") if isinstance(got, dict) else None
            if not data or got.get("size") != size or len(blob) + len(data) > size:
                raise CliError("the partner's pieces of a backup block do not add up")
            blob += data
        return bytes(blob)

    def open_named(self, name: bytes, h: bytes | None = None) -> bytes:
        try:
            return bytes(self.keys.open_blob(name, self.fetch([name])[0], h))
        except AuthError as err:
            raise CliError(f"backup block fails its check: {err}") from None

    def block(self, h: bytes) -> bytes:
        return self.open_named(self.keys.name(h), h)

    def mimei_ids(self) -> list[str]:
        out = []
        for tag, name in self.metas.items():
            if tag in self.versions:
                out.append(str(cbor.loads(self.open_named(name))["id"]))
        return out

    def meta(self, mid: str) -> dict[str, Any]:
        name = self.metas.get(self.keys.mtag(mid))
        if name is None:
            raise RPCError("store", f"no backup of MiMei {mid} on the partner")
        return dict(cbor.loads(self.open_named(name)))

    def numbers(self, mid: str) -> dict[int, bytes]:
        found = self.versions.get(self.keys.mtag(mid))
        if not found:
            raise RPCError("store", f"no backed-up versions of MiMei {mid} on the partner")
        return found

    def record(self, mid: str, version: Any) -> dict[str, Any]:
        numbers = self.numbers(mid)
        if version == "cur":
            raise RPCError("offline", "the node is down and cur is never backed up: read a "
                           "version (--version last)")
        if version == "last":
            n = max(numbers)
        elif version == "release":
            release = self.meta(mid).get("release")
            if release is None:
                raise RPCError("store", f"MiMei {mid} has no release")
            n = int(release)
        elif isinstance(version, int) or (isinstance(version, str) and version.isdigit()):
            n = int(version)
        else:
            raise RPCError("bad_request", f"version {version!r}: last, release or a number")
        if n not in numbers:
            raise RPCError("store", f"MiMei {mid} has no backed-up version {n}")
        key = (mid, n)
        if key not in self._records:
            try:
                rec = mimei.check_record(self.open_named(numbers[n]))
            except StoreError as err:
                raise CliError(f"backed-up record of {mid} v{n} is bad: {err}") from None
            if rec["mid"] != mid or rec["author"] != self.entry.id:
                raise CliError(f"backed-up record of {mid} v{n} is not that MiMei's")
            self._records[key] = rec
        return self._records[key]

    def read(self, mid: str, version: Any, offset: int, length: int) -> bytes:
        rec = self.record(mid, version)
        reader = store.TreeReader(self.blocks, rec["root"])
        try:
            return bytes(reader.read_at(offset, length))
        finally:
            reader.close()

    def versions_of(self, mid: str) -> list[dict[str, Any]]:
        out = []
        for n in sorted(self.numbers(mid)):
            rec = self.record(mid, n)
            out.append({"n": n, "hash": crypto.sha256(mimei_record_bytes(rec)),
                        "time": rec["time"], "size": rec["size"]})
        return out


def mimei_record_bytes(rec: dict[str, Any]) -> bytes:
    return cbor.dumps(rec)
