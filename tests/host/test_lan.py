"""The simulated LAN library: namespaces, bridge, multicast route, shaping, loss, cleanup."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from leither_host import lan as lanlib
from leither_host.errors import CliError

needs_lan = pytest.mark.skipif(lanlib.available() is not None,
                               reason=f"simulated LAN: {lanlib.available()}")

# Receives UDP datagrams on port 9999 until argv[1] arrived or none came for 1.5 s; prints
# how many arrived.
RECEIVER = ("import socket,sys\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "s.bind(('0.0.0.0',9999)); s.settimeout(1.5); n=0; want=int(sys.argv[1])\n"
            "print('ready', flush=True)\n"
            "try:\n"
            "    while n < want: s.recv(2000); n+=1\n"
            "except socket.timeout: pass\n"
            "print(n, flush=True)\n")


def _sender(ip: str, count: int) -> str:
    return ("import socket,time\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            f"for i in range({count}): s.sendto(b'x'*100,('{ip}',9999)); time.sleep(0.001)\n")


def _count_received(net: lanlib.LAN, src: lanlib.Host, dst: lanlib.Host, count: int) -> int:
    recv = net.popen(dst, [sys.executable, "-c", RECEIVER, str(count)], stdout=subprocess.PIPE,
                     text=True)
    assert recv.stdout is not None
    assert recv.stdout.readline().strip() == "ready"
    net.run(src, [sys.executable, "-c", _sender(dst.ip, count)], check=True)
    out, _ = recv.communicate(timeout=10)
    return int(out.strip())


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_not_root_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert lanlib.available() == "needs root for network namespaces"
    with pytest.raises(CliError, match="needs root"):
        lanlib.LAN(hosts=1).up()


@needs_lan
def test_hosts_reach_each_other_and_multicast_routes() -> None:
    with lanlib.LAN(hosts=2) as net:
        a, b = net.hosts
        assert a.ip != b.ip and a.netns != b.netns
        assert _count_received(net, a, b, 20) == 20
        routes = net.run(a, ["ip", "route", "show", "224.0.0.0/4"]).stdout
        assert "dev eth0" in routes
        # Multicast to the mDNS group crosses the bridge.
        recv = ("import socket,struct\n"
                "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                "s.bind(('',5399)); s.settimeout(3)\n"
                "s.setsockopt(socket.IPPROTO_IP,socket.IP_ADD_MEMBERSHIP,"
                "socket.inet_aton('224.0.0.251')+bytes(4))\n"
                "print('ready',flush=True); print(s.recvfrom(100)[1][0],flush=True)\n")
        proc = net.popen(b, [sys.executable, "-c", recv], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        net.run(a, [sys.executable, "-c", ("import socket; socket.socket(socket.AF_INET,"
                    "socket.SOCK_DGRAM).sendto(b'hi',('224.0.0.251',5399))")], check=True)
        out, _ = proc.communicate(timeout=5)
        assert out.strip() == a.ip


@needs_lan
def test_loss_rule_drops_and_lifts() -> None:
    with lanlib.LAN(hosts=2) as net:
        a, b = net.hosts
        # Resolve ARP first: with loss on, ARP itself would be dropped and stall the test.
        assert _count_received(net, a, b, 5) == 5
        net.set_loss(50)
        ruleset = subprocess.run(["ip", "netns", "exec", net.bridge_ns, "nft", "list",
                                  "ruleset"], capture_output=True, text=True, check=False).stdout
        assert "numgen random mod 100 < 50" in ruleset and net.loss == 50
        got = _count_received(net, a, b, 200)
        assert 40 < got < 160  # about half, far from none and from all
        net.set_loss(100)
        assert _count_received(net, a, b, 20) == 0
        net.set_loss(0)
        assert _count_received(net, a, b, 20) == 20
        with pytest.raises(CliError):
            net.set_loss(101)


@needs_lan
def test_shaping_installs_tbf() -> None:
    with lanlib.LAN(hosts=1) as net:
        (a,) = net.hosts
        net.shape(a, rate="1mbit")
        qdisc = net.run(a, ["tc", "qdisc", "show", "dev", "eth0"]).stdout
        assert "tbf" in qdisc and "1Mbit" in qdisc
        net.unshape(a)
        assert "tbf" not in net.run(a, ["tc", "qdisc", "show", "dev", "eth0"]).stdout


@needs_lan
def test_cleanup_on_failure_and_parallel_prefixes() -> None:
    first = lanlib.LAN(hosts=1)
    second = lanlib.LAN(hosts=1)
    assert first.prefix != second.prefix
    with pytest.raises(RuntimeError), first, second:
        sleeper = first.popen(first.hosts[0], ["sleep", "60"])
        assert {first.bridge_ns, second.bridge_ns} <= _namespaces()
        raise RuntimeError("test body failed")
    assert sleeper.poll() is not None  # the process started in the LAN was stopped
    # Only these two LANs' names: tests on the other worker make and drop LANs meanwhile.
    assert not {ns for ns in _namespaces()
                if ns.startswith((first.prefix + "-", second.prefix + "-"))}
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                           check=False).stdout
    assert first.prefix not in links and second.prefix not in links
