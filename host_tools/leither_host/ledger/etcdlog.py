# The bookkeepers' ordered log of inputs, kept by an etcd cluster (etcd 3.4+, its v3 API).
#
# Client: etcd3gw (PyPI, OpenStack's, maintained: 2.7.0 of 2026) speaks etcd's v3 JSON gRPC
# gateway over HTTP with requests. Why not the gRPC client `etcd3`: its last release is 0.12.0
# of 2020, its generated protobuf code does not load with protobuf >= 4 (it needs
# PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python) and it pulls grpcio, a large native wheel; the
# gateway is part of every etcd 3.4 server and is all a log needs (put/range/txn).
# etcd3gw talks to one endpoint; EtcdLog tries each of the cluster's endpoints in turn.
#
# Layout under PREFIX = /leither/books/ORG_ID/:
#   genesis            the organization's starting state (bookkeepers.py)
#   head               the number of the last log entry (a counter moved only by a txn)
#   log/%012d          entry N (N = 1, 2, …): gapless, so a bookkeeper reads [next, …) in order
#   seen/SHA256HEX     N of the entry with these bytes: a duplicate submission is not appended
#   sig/%012d/BKID     a bookkeeper's signed record of epoch N
#   status/BKID        a bookkeeper's progress {seq, epoch, root, time}
# An append is one txn: "head is still what I read and these bytes were never appended" ->
# head = N, log/N = entry, seen/H = N. Two submitters racing both read head = N-1; etcd lets one
# txn through and the other retries with head = N. Reads are linearizable (served through the
# raft leader), so a partition that leaves no quorum blocks appends and reads alike: the log
# cannot fork, it only stalls.
"""Ordered, deduplicated input log on etcd (v3 JSON gateway)."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import TYPE_CHECKING, Any

from leither.errors import StoreError

if TYPE_CHECKING:
    import etcd3gw

TIMEOUT_S = 2.0  # per request: a stopped member is skipped after this
ROUNDS = 2  # passes over the endpoints before a request is given up
ROUND_PAUSE_S = 0.5  # between passes: about one leader election (etcdcluster's timeout)
APPEND_TRIES = 50  # txn retries when other submitters keep winning the race for `head`


class LogUnavailable(StoreError):
    """No etcd endpoint could serve the request (down, or no quorum)."""


def _encode(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _decode(data: str) -> bytes:
    return base64.b64decode(data)


def _plus_one(key: bytes) -> bytes:
    """The end of the range of keys starting with key (etcd's prefix idiom)."""
    return key[:-1] + bytes([key[-1] + 1])


class EtcdLog:
    def __init__(self, endpoints: list[str], prefix: str, timeout: float = TIMEOUT_S) -> None:
        try:  # imported here: one-host organizations never need it
            import etcd3gw
            from etcd3gw import exceptions as etcd_errors
        except ImportError:
            raise StoreError("bookkeepers need the etcd3gw package (pip install etcd3gw)"
                             ) from None
        self._errors = (etcd_errors.Etcd3Exception, OSError, ValueError)
        if not endpoints:
            raise StoreError("no etcd endpoint given")
        self.endpoints = list(endpoints)
        self.prefix = prefix.rstrip("/").encode() + b"/"
        self.clients: list[etcd3gw.Etcd3Client] = []
        for ep in endpoints:
            host, _, port = ep.replace("http://", "").rstrip("/").rpartition(":")
            self.clients.append(etcd3gw.Etcd3Client(host=host or "127.0.0.1", port=int(port),
                                                    timeout=timeout, api_path="/v3/"))
        self._good = 0  # the endpoint that answered last: tried first

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, what: str, fn: Any) -> Any:
        errors: list[str] = []
        n = len(self.clients)
        for attempt in range(ROUNDS):
            if attempt:
                time.sleep(ROUND_PAUSE_S)  # e.g. the cluster is electing a new leader
            for i in range(n):
                index = (self._good + i) % n
                try:
                    result = fn(self.clients[index])
                except self._errors as err:
                    errors.append(f"{self.endpoints[index]}: {type(err).__name__}")
                    continue
                self._good = index
                return result
        raise LogUnavailable(f"etcd: {what} failed on every endpoint ({'; '.join(errors)})")

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call(path, lambda c: c.post(c.get_url(path), json=payload)))

    def key(self, *parts: str) -> bytes:
        return self.prefix + "/".join(parts).encode()

    # -- key-value --------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        kvs = self._post("/kv/range", {"key": _encode(key)}).get("kvs") or []
        return _decode(kvs[0].get("value", "")) if kvs else None

    def get_prefix(self, key: bytes, limit: int = 0) -> list[tuple[bytes, bytes]]:
        payload: dict[str, Any] = {"key": _encode(key), "range_end": _encode(_plus_one(key))}
        if limit:
            payload["limit"] = limit
        kvs = self._post("/kv/range", payload).get("kvs") or []
        return [(_decode(kv["key"]), _decode(kv.get("value", ""))) for kv in kvs]

    def put(self, key: bytes, value: bytes) -> None:
        self._post("/kv/put", {"key": _encode(key), "value": _encode(value)})

    def create(self, key: bytes, value: bytes) -> bool:
        """Put key only if it does not exist; True if this call created it."""
        result = self._post("/kv/txn", {
            "compare": [{"key": _encode(key), "result": "EQUAL", "target": "CREATE",
                         "create_revision": 0}],
            "success": [{"request_put": {"key": _encode(key), "value": _encode(value)}}]})
        return bool(result.get("succeeded"))

    # -- the log ----------------------------------------------------------------------------

    def head(self) -> int:
        found = self.get(self.key("head"))
        return int(found) if found else 0

    def append(self, entry: bytes) -> tuple[int, bool]:
        """Append entry; returns (its number, True), or (the number it already has, False)."""
        seen = self.key("seen", hashlib.sha256(entry).hexdigest())
        head_key = self.key("head")
        for _ in range(APPEND_TRIES):
            found = self._post("/kv/range", {"key": _encode(head_key)}).get("kvs") or []
            head = int(_decode(found[0]["value"])) if found else 0
            guard = ({"key": _encode(head_key), "result": "EQUAL", "target": "MOD",
                      "mod_revision": found[0]["mod_revision"]} if found else
                     {"key": _encode(head_key), "result": "EQUAL", "target": "CREATE",
                      "create_revision": 0})
            n = head + 1
            result = self._post("/kv/txn", {
                "compare": [guard, {"key": _encode(seen), "result": "EQUAL",
                                    "target": "CREATE", "create_revision": 0}],
                "success": [
                    {"request_put": {"key": _encode(head_key), "value": _encode(str(n))}},
                    {"request_put": {"key": _encode(self.key("log", "%012d" % n)),
                                     "value": _encode(entry)}},
                    {"request_put": {"key": _encode(seen), "value": _encode(str(n))}}],
                "failure": [{"request_range": {"key": _encode(seen)}}]})
            if result.get("succeeded"):
                return n, True
            dup = (result.get("responses") or [{}])[0].get("response_range", {}).get("kvs")
            if dup:
                return int(_decode(dup[0]["value"])), False
            time.sleep(0.002)  # another submitter won this round
        raise LogUnavailable(f"etcd: could not append after {APPEND_TRIES} tries (contention)")

    def read(self, after: int, limit: int = 200) -> list[tuple[int, bytes]]:
        """Entries after..after+limit, in order (fewer at the head of the log)."""
        start = self.key("log", "%012d" % (after + 1))
        end = _plus_one(self.key("log/"))
        kvs = self._post("/kv/range", {"key": _encode(start), "range_end": _encode(end),
                                       "limit": limit}).get("kvs") or []
        out: list[tuple[int, bytes]] = []
        for kv in kvs:
            n = int(_decode(kv["key"]).rsplit(b"/", 1)[1])
            if n != after + len(out) + 1:  # never happens: appends are gapless
                raise StoreError(f"etcd log has a gap before entry {n}")
            out.append((n, _decode(kv.get("value", ""))))
        return out
