"""A simulated home LAN made of Linux network namespaces (root only).

Layout: one namespace holds a bridge ``br0`` (the "switch"); every host gets a namespace of its
own with a veth ``eth0`` plugged into that bridge, an address in 10.<n>.<m>.0/24, and a route
for 224.0.0.0/4 so multicast (mDNS) leaves through eth0. Links can be shaped with ``tc tbf``
(rate) and made lossy with an nftables rule on the bridge (``numgen random mod 100 < N drop``;
this project's kernels may lack netem). Processes run inside a host's namespace through
``ip netns exec``.

Every name this module creates starts with a per-LAN prefix, so LANs of parallel tests do not
collide, and ``down()`` (also run by the context manager and on any failure in ``up()``)
removes every process, namespace and link it made.

    with LAN(hosts=2) as lan:
        proc = lan.popen(lan.hosts[0], ["micropython", "-m", "leither.mdns", "--name", "a"])
        lan.run(lan.hosts[1], ["ping", "-c1", lan.hosts[0].ip])
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from leither_host.errors import CliError

_IP = "ip"
# Linux interface names: at most 15 bytes (IFNAMSIZ - 1). Prefix "lz" + 5 hex = 7, leaving
# room for "b" / "h<n>a" / "h<n>b" suffixes.
_PREFIX_HEX = 5


@dataclass
class Host:
    """One machine on the LAN: its namespace, address and veth names."""

    name: str
    netns: str
    ip: str
    index: int
    veth_host: str
    veth_bridge: str
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)


def _sh(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=False)
    if check and proc.returncode != 0:
        raise CliError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def available() -> str | None:
    """None when LANs can be built here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    for tool in ("ip", "tc", "nft"):
        if _sh(["which", tool], check=False).returncode != 0:
            return f"{tool} not installed"
    return None


class LAN:
    """A bridge namespace plus host namespaces; see the module docstring."""

    def __init__(self, hosts: int = 0, prefix: str | None = None, subnet: str | None = None):
        self.prefix = prefix or "lz" + os.urandom(4).hex()[:_PREFIX_HEX]
        # A /24 per LAN, picked from the prefix, so logs of parallel LANs are told apart;
        # namespaces keep the LANs apart anyway.
        seed = int(self.prefix[-4:], 16) if prefix is None else os.getpid()
        self.subnet = subnet or f"10.{100 + seed % 100}.{(seed // 100) % 250}"
        self.bridge_ns = f"{self.prefix}-br"
        self.hosts: list[Host] = []
        self._initial = hosts
        self._made_ns: list[str] = []
        self._loss = 0
        self._up = False

    # ---- life cycle -------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> LAN:
        """Create the bridge and the initial hosts; on any failure undo everything."""
        reason = available()
        if reason:
            raise CliError(f"cannot build a simulated LAN: {reason}")
        try:
            self._add_ns(self.bridge_ns)
            _sh([_IP, "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge"])
            # No STP forwarding delay: ports forward at once (a home switch does too).
            _sh([_IP, "-n", self.bridge_ns, "link", "set", "br0", "type", "bridge",
                 "forward_delay", "0", "mcast_snooping", "0"], check=False)
            _sh([_IP, "-n", self.bridge_ns, "link", "set", "br0", "up"])
            self._up = True
            guard_subnet(self.subnet)
            for _ in range(self._initial):
                self.add_host()
        except BaseException:
            self.down()
            raise
        return self

    def _add_ns(self, name: str) -> None:
        _sh([_IP, "netns", "add", name])
        self._made_ns.append(name)
        _sh([_IP, "-n", name, "link", "set", "lo", "up"])

    def add_host(self, name: str | None = None) -> Host:
        """Plug a new host into the bridge; returns it with its address."""
        index = len(self.hosts) + 1
        if index > 250:
            raise CliError("a simulated LAN holds at most 250 hosts")
        host = Host(name=name or f"h{index}", netns=f"{self.prefix}-h{index}",
                    ip=f"{self.subnet}.{index}", index=index,
                    veth_host=f"{self.prefix}h{index}a", veth_bridge=f"{self.prefix}h{index}b")
        self._add_ns(host.netns)
        self.hosts.append(host)
        _sh([_IP, "link", "add", host.veth_host, "type", "veth", "peer", "name",
             host.veth_bridge])
        try:
            _sh([_IP, "link", "set", host.veth_host, "netns", host.netns])
            _sh([_IP, "link", "set", host.veth_bridge, "netns", self.bridge_ns])
        except CliError:
            _sh([_IP, "link", "del", host.veth_host], check=False)
            raise
        n = [_IP, "-n", host.netns]
        _sh(n + ["link", "set", host.veth_host, "name", "eth0"])
        _sh(n + ["addr", "add", f"{host.ip}/24", "dev", "eth0"])
        _sh(n + ["link", "set", "eth0", "up"])
        _sh(n + ["route", "add", "224.0.0.0/4", "dev", "eth0"])
        b = [_IP, "-n", self.bridge_ns]
        _sh(b + ["link", "set", host.veth_bridge, "master", "br0"])
        _sh(b + ["link", "set", host.veth_bridge, "up"])
        return host

    def down(self) -> None:
        """Stop every process started here and delete every namespace and link made.

        Every step runs whatever the ones before it did (a process that would not die, a
        command that timed out): a test's cleanup must not leave namespaces or routes behind.
        A namespace whose deletion fails (busy while its last process exits) is tried again."""
        try:
            for host in self.hosts:
                for proc in host.procs:
                    try:
                        _stop(proc)
                    except (OSError, subprocess.SubprocessError):
                        pass
                host.procs = []
            for host in self.hosts:
                # Veths normally die with their namespace; one left in the root namespace by a
                # failure half-way through add_host is removed here.
                try:
                    if _sh([_IP, "link", "show", host.veth_host], check=False).returncode == 0:
                        _sh([_IP, "link", "del", host.veth_host], check=False)
                except subprocess.SubprocessError:
                    pass
            left = []
            for ns in reversed(self._made_ns):
                try:
                    _kill_ns_pids(ns)
                    if _sh([_IP, "netns", "del", ns], check=False).returncode != 0:
                        left.append(ns)
                except subprocess.SubprocessError:
                    left.append(ns)
            for ns in left:
                time.sleep(0.2)
                try:
                    _kill_ns_pids(ns)
                    _sh([_IP, "netns", "del", ns], check=False)
                except subprocess.SubprocessError:
                    pass
            self._made_ns = []
        finally:
            unguard_subnet(self.subnet)
            self._up = False

    # ---- running things ---------------------------------------------------------------

    def netns_argv(self, host: Host, argv: Sequence[str]) -> list[str]:
        return [_IP, "netns", "exec", host.netns] + list(argv)

    def popen(self, host: Host, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start argv inside host's namespace; down() stops it if nobody else did."""
        kwargs.setdefault("start_new_session", True)
        proc: subprocess.Popen[Any] = subprocess.Popen(self.netns_argv(host, argv), **kwargs)
        host.procs.append(proc)
        return proc

    def run(self, host: Host, argv: Sequence[str], timeout: float = 30,
            **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run argv inside host's namespace to completion (text output captured)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        check = bool(kwargs.pop("check", False))
        return subprocess.run(self.netns_argv(host, argv), timeout=timeout, check=check,
                              **kwargs)

    # ---- link conditions --------------------------------------------------------------

    def shape(self, host: Host, rate: str = "1mbit", burst: str = "32kbit",
              latency: str = "50ms") -> None:
        """Limit host's outgoing rate with a token bucket (tc tbf) on its eth0."""
        _sh([_IP, "netns", "exec", host.netns, "tc", "qdisc", "replace", "dev", "eth0", "root",
             "tbf", "rate", rate, "burst", burst, "latency", latency])

    def unshape(self, host: Host) -> None:
        _sh([_IP, "netns", "exec", host.netns, "tc", "qdisc", "del", "dev", "eth0", "root"],
            check=False)

    def set_loss(self, percent: int) -> None:
        """Drop percent% of the frames the bridge forwards (0 removes the rule)."""
        if not 0 <= percent <= 100:
            raise CliError("loss must be 0..100 percent")
        nft = [_IP, "netns", "exec", self.bridge_ns, "nft"]
        _sh(nft + ["delete", "table", "bridge", "leither_loss"], check=False)
        self._loss = percent
        if percent == 0:
            return
        # numgen values are 0..99, so "< 100" is out of range: 100% is a plain drop.
        rule = "drop" if percent == 100 else f"numgen random mod 100 < {percent} drop"
        rules = ("table bridge leither_loss {\n"
                 " chain forward {\n"
                 "  type filter hook forward priority 0; policy accept;\n"
                 f"  {rule}\n"
                 " }\n"
                 "}\n")
        proc = subprocess.run(nft + ["-f", "-"], input=rules, capture_output=True, text=True,
                              timeout=20, check=False)
        if proc.returncode != 0:
            raise CliError(f"nft: {proc.stderr.strip()}")

    @property
    def loss(self) -> int:
        return self._loss


def _stop(proc: subprocess.Popen[Any], grace: float = 2.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait(5)


def _kill_ns_pids(ns: str) -> None:
    """Kill what still runs in a namespace we made (started by hand, or a stray child)."""
    pids = _sh([_IP, "netns", "pids", ns], check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    deadline = time.monotonic() + 2
    while pids and time.monotonic() < deadline:
        if not _sh([_IP, "netns", "pids", ns], check=False).stdout.split():
            break
        time.sleep(0.05)


def guard_subnet(subnet: str) -> None:
    """Blackhole the LAN's /24 in the root namespace while the LAN is up.

    The hosts' addresses exist only inside their namespaces; from the root namespace the same
    private range would follow the default route off this machine. A blackhole route makes
    any such mistake (a CLI run outside the LAN, a stale inventory entry) fail at once, here,
    instead of sending a packet anywhere."""
    _sh([_IP, "route", "replace", "blackhole", f"{subnet}.0/24"], check=False)


def unguard_subnet(subnet: str) -> None:
    _sh([_IP, "route", "del", "blackhole", f"{subnet}.0/24"], check=False)


def cleanup_prefix(prefix: str) -> int:
    """Delete namespaces left by a crashed run whose names start with prefix; returns count.
    A namespace still busy while its last process exits is tried again once."""
    names = [line.split()[0] for line in _sh([_IP, "netns", "list"], check=False)
             .stdout.splitlines() if line.strip()]
    count = 0
    for _attempt in range(2):
        left = []
        for ns in names:
            if not ns.startswith(prefix):
                continue
            try:
                _kill_ns_pids(ns)
                if _sh([_IP, "netns", "del", ns], check=False).returncode == 0:
                    count += 1
                else:
                    left.append(ns)
            except subprocess.SubprocessError:
                left.append(ns)
        if not left:
            break
        names = left
        time.sleep(0.2)
    return count


class LineReader:
    """Collects a process's stdout lines on a thread; wait_line() finds one by prefix."""

    def __init__(self, proc: subprocess.Popen[Any]):
        import queue
        import threading

        self.proc = proc
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_line(self, prefix: str, timeout: float) -> str | None:
        """The first line (seen so far or arriving within timeout) starting with prefix."""
        import queue

        for line in self.lines:
            if line.startswith(prefix):
                return line
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                item = self._queue.get(timeout=left)
            except queue.Empty:
                return None
            if item is None:
                self._queue.put(None)  # keep reporting EOF to later waits
                time.sleep(min(left, 0.05))
                return None
            self.lines.append(item)
            if item.startswith(prefix):
                return item

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()
