"""Find Leither nodes on the LAN with python-zeroconf (`_leither._tcp.local.`).

* ``discover(timeout)`` browses for a while and returns the nodes seen, resolved.
* ``Discovery`` keeps a browser running: ``nodes()``, ``wait_for(predicate, timeout)`` and the
  times each instance was first added / last removed (benchmarks, goodbye tests).
* ``python -m leither_host.discovery browse|watch|register|types`` runs the same from a shell, e.g.
  inside a simulated LAN's namespace, printing JSON.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Self

from zeroconf import (
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)

SERVICE_TYPE = "_leither._tcp.local."


@dataclass
class NodeRecord:
    """One node as mDNS shows it."""

    name: str
    id: str | None
    addresses: list[str]
    port: int
    txt: dict[str, str] = field(default_factory=dict)
    host: str = ""
    instance: str = ""


def _txt_dict(properties: dict[bytes, bytes | None]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in properties.items():
        k = key.decode("utf-8", "replace").lower()
        out[k] = "" if value is None else value.decode("utf-8", "replace")
    return out


def record_from_info(info: ServiceInfo, service: str = SERVICE_TYPE) -> NodeRecord:
    name = info.name[:-len(service) - 1] if info.name.endswith("." + service) else info.name
    txt = _txt_dict(info.properties or {})
    return NodeRecord(name=name, id=txt.get("id"), port=info.port or 0, txt=txt,
                      addresses=info.parsed_addresses(IPVersion.V4Only),
                      host=(info.server or "").rstrip("."), instance=info.name)


class Discovery:
    """A running python-zeroconf ServiceBrowser for Leither nodes."""

    def __init__(self, service: str = SERVICE_TYPE, interfaces: list[str] | None = None):
        self.service = service
        self._interfaces = interfaces
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._present: dict[str, float] = {}  # instance -> time first added (monotonic)
        self.added_at: dict[str, float] = {}
        self.removed_at: dict[str, float] = {}
        self.updated_at: dict[str, float] = {}
        self.zc: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if self._interfaces:
            self.zc = Zeroconf(interfaces=self._interfaces, ip_version=IPVersion.V4Only)
        else:
            self.zc = Zeroconf(ip_version=IPVersion.V4Only)
        self._browser = ServiceBrowser(self.zc, self.service, handlers=[self._on_change])

    def close(self) -> None:
        if self._browser is not None:
            self._browser.cancel()
            self._browser = None
        if self.zc is not None:
            self.zc.close()
            self.zc = None

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str,
                   state_change: ServiceStateChange) -> None:
        now = time.monotonic()
        with self._changed:
            if state_change is ServiceStateChange.Removed:
                self._present.pop(name, None)
                self.removed_at[name] = now
            elif state_change is ServiceStateChange.Added:
                self._present.setdefault(name, now)
                self.added_at.setdefault(name, now)
            else:
                self.updated_at[name] = now
            self._changed.notify_all()

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._present)

    def nodes(self, resolve_ms: int = 1500) -> list[NodeRecord]:
        """The nodes present now, resolved (SRV, TXT, A) from the cache or by asking."""
        assert self.zc is not None, "Discovery not started"
        out = []
        for name in self.names():
            info = ServiceInfo(self.service, name)
            if info.request(self.zc, resolve_ms):
                out.append(record_from_info(info, self.service))
        return out

    def wait_for(self, predicate: Callable[[list[NodeRecord]], bool], timeout: float,
                 resolve_ms: int = 1000) -> list[NodeRecord] | None:
        """Poll nodes() until predicate(nodes) holds; None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            nodes = self.nodes(resolve_ms)
            if predicate(nodes):
                return nodes
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with self._changed:
                self._changed.wait(min(left, 0.2))


def discover(timeout: float = 3.0, service: str = SERVICE_TYPE,
             interfaces: list[str] | None = None,
             until: Callable[[list[NodeRecord]], bool] | None = None) -> list[NodeRecord]:
    """Browse for timeout seconds (or until until(nodes) holds) and return the nodes seen."""
    with Discovery(service, interfaces) as d:
        if until is not None:
            found = d.wait_for(until, timeout)
            return found if found is not None else d.nodes()
        time.sleep(timeout)
        return d.nodes()


# ---- shell entry: python -m leither_host.discovery ----------------------------------------


def _cmd_browse(args: argparse.Namespace) -> int:
    def wanted(nodes: list[NodeRecord]) -> bool:
        names = {n.name for n in nodes}
        return all(e in names for e in args.expect)

    nodes = discover(args.timeout, until=wanted if args.expect else None)
    print(json.dumps([asdict(n) for n in nodes]), flush=True)
    return 0 if not args.expect or wanted(nodes) else 1


def _wait_stdin_eof(done: threading.Event) -> None:
    sys.stdin.read()
    done.set()


def _cmd_watch(args: argparse.Namespace) -> int:
    """Print one JSON line per change until stdin closes or --timeout passes."""
    start = time.monotonic()
    done = threading.Event()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str,
                  state_change: ServiceStateChange) -> None:
        print(json.dumps({"event": state_change.name.lower(), "instance": name,
                          "t": round(time.monotonic() - start, 3),
                          "wall": time.time()}), flush=True)

    zc = Zeroconf(ip_version=IPVersion.V4Only)
    browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[on_change])
    print(json.dumps({"event": "ready", "wall": time.time()}), flush=True)
    threading.Thread(target=_wait_stdin_eof, args=(done,), daemon=True).start()
    done.wait(args.timeout)
    browser.cancel()
    zc.close()
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    """Register a service with python-zeroconf until stdin closes or --timeout passes."""
    txt = dict(item.split("=", 1) for item in args.txt)
    zc = Zeroconf(ip_version=IPVersion.V4Only)
    info = ServiceInfo(SERVICE_TYPE, f"{args.name}.{SERVICE_TYPE}", port=args.port,
                       properties=txt, server=f"{args.name}.local.",
                       addresses=[socket.inet_aton(a) for a in args.addr])
    zc.register_service(info)
    print(json.dumps({"event": "registered", "name": info.name}), flush=True)
    done = threading.Event()
    threading.Thread(target=_wait_stdin_eof, args=(done,), daemon=True).start()
    done.wait(args.timeout)
    zc.unregister_service(info)
    zc.close()
    return 0


def _cmd_types(args: argparse.Namespace) -> int:
    """Ask `_services._dns-sd._udp.local.` (RFC 6763 §9) and print the service types."""
    from zeroconf import ZeroconfServiceTypes

    found = ZeroconfServiceTypes.find(timeout=args.timeout, ip_version=IPVersion.V4Only)
    print(json.dumps(sorted(found)), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leither_host.discovery",
                                     description="Browse or register _leither._tcp services.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("browse", help="print the nodes seen as one JSON list")
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--expect", action="append", default=[],
                   help="return as soon as a node of this name is seen (repeatable)")
    p.set_defaults(func=_cmd_browse)
    p = sub.add_parser("watch", help="print add/update/remove events as JSON lines")
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(func=_cmd_watch)
    p = sub.add_parser("register", help="advertise a service until stdin closes")
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--addr", action="append", required=True)
    p.add_argument("--txt", action="append", default=[])
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(func=_cmd_register)
    p = sub.add_parser("types", help="list the service types on the LAN (DNS-SD meta-query)")
    p.add_argument("--timeout", type=float, default=2.0)
    p.set_defaults(func=_cmd_types)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
