"""mDNS on a simulated LAN (root): each node in its own network namespace on one bridge.

Checked against implementations nobody here wrote: python-zeroconf (browser, registrar) and
Avahi (avahi-daemon with a private D-Bus, in a namespace of its own).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from leither_host import lan as lanlib

REPO = Path(__file__).resolve().parents[2]
MICROPYTHON = str(Path(sys.executable).parent / "micropython")
ENV = dict(os.environ, PYTHONPATH=f"{REPO / 'firmware'}:{REPO / 'host_tools'}",
           MICROPYPATH=f"{REPO / 'build' / 'unix'}:.frozen")

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(lanlib.available() is not None,
                                 reason=f"simulated LAN: {lanlib.available()}")]


def _build() -> None:
    from leither_host.build import build

    (REPO / "build").mkdir(exist_ok=True)
    with open(REPO / "build" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build("unix")


@pytest.fixture(scope="module")
def lan() -> Iterator[lanlib.LAN]:
    _build()
    with lanlib.LAN(hosts=4) as net:
        yield net


def start_node(net: lanlib.LAN, host: lanlib.Host, name: str, *txt: str,
               port: int = 4800) -> lanlib.LineReader:
    argv = [MICROPYTHON, "-X", "heapsize=128K", "-m", "leither.mdns", "--name", name,
            "--port", str(port), "--addr", host.ip]
    for item in txt:
        argv += ["--txt", item]
    proc = net.popen(host, argv, stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True, env=ENV, cwd=str(REPO))
    return lanlib.LineReader(proc)


def stop_node(node: lanlib.LineReader) -> None:
    node.proc.send_signal(signal.SIGINT)
    try:
        node.proc.wait(5)
    except subprocess.TimeoutExpired:
        node.proc.kill()
        node.proc.wait()


def zc_browse(net: lanlib.LAN, host: lanlib.Host, *expect: str,
              timeout: float = 6) -> list[dict]:
    argv = [sys.executable, "-m", "leither_host.discovery", "browse", "--timeout", str(timeout)]
    for name in expect:
        argv += ["--expect", name]
    proc = net.run(host, argv, env=ENV, timeout=timeout + 10)
    assert proc.stdout.strip(), proc.stderr
    result: list[dict] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


TXT = ("id=8Jw3pZqHnXy7cV2bN4mK9tR5sD1", "v=1", "fw=0.1.0", "board=unix", "pair=0",
       "peer=", "free=1234")


def test_zeroconf_sees_micropython_node_and_txt_update(lan: lanlib.LAN) -> None:
    h1, h2 = lan.hosts[0], lan.hosts[1]
    node = start_node(lan, h1, "mp-node", *TXT, port=4811)
    try:
        assert node.wait_line("ANNOUNCED mp-node", 5), node.lines
        found = zc_browse(lan, h2, "mp-node")
        (rec,) = [n for n in found if n["name"] == "mp-node"]
        assert rec["port"] == 4811 and rec["addresses"] == [h1.ip]
        assert rec["host"] == "mp-node.local"
        assert rec["txt"] == {"id": "8Jw3pZqHnXy7cV2bN4mK9tR5sD1", "v": "1", "fw": "0.1.0",
                              "board": "unix", "pair": "0", "peer": "", "free": "1234"}
        assert rec["id"] == "8Jw3pZqHnXy7cV2bN4mK9tR5sD1"
        # The DNS-SD meta-query lists our service type.
        proc = lan.run(h2, [sys.executable, "-m", "leither_host.discovery", "types",
                            "--timeout", "1.5"], env=ENV, timeout=15)
        assert "_leither._tcp.local." in json.loads(proc.stdout.strip().splitlines()[-1])
        # A TXT change (pairing window opens) reaches a fresh browser.
        node.send("txt pair=1 free=1000\n")
        assert node.wait_line("TXT pair=1", 3)
        time.sleep(0.3)
        (rec,) = [n for n in zc_browse(lan, h2, "mp-node") if n["name"] == "mp-node"]
        assert rec["txt"]["pair"] == "1" and rec["txt"]["free"] == "1000"
    finally:
        stop_node(node)


def test_goodbye_removes_node_from_browser(lan: lanlib.LAN) -> None:
    h1, h2 = lan.hosts[0], lan.hosts[1]
    watch = lanlib.LineReader(lan.popen(
        h2, [sys.executable, "-m", "leither_host.discovery", "watch", "--timeout", "20"],
        stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True, env=ENV))
    node = start_node(lan, h1, "bye-node", "id=x")
    try:
        assert watch.wait_line('{"event": "ready"', 5)
        assert node.wait_line("ANNOUNCED bye-node", 5), node.lines
        assert watch.wait_line('{"event": "added", "instance": "bye-node.', 5), watch.lines
        stop_node(node)
        assert node.wait_line("GOODBYE bye-node", 1), node.lines
        # python-zeroconf drops a record one second after its TTL-0 goodbye.
        line = watch.wait_line('{"event": "removed", "instance": "bye-node.', 4)
        assert line, watch.lines
    finally:
        stop_node(node)
        watch.proc.stdin.close()  # type: ignore[union-attr]
        watch.proc.wait(5)


def test_querier_finds_zeroconf_service(lan: lanlib.LAN) -> None:
    h1, h3 = lan.hosts[0], lan.hosts[2]
    reg = lanlib.LineReader(lan.popen(
        h3, [sys.executable, "-m", "leither_host.discovery", "register", "--name", "zc-svc",
             "--port", "4999", "--addr", h3.ip, "--txt", "id=zz9", "--txt", "pair=1"],
        stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True, env=ENV))
    try:
        assert reg.wait_line('{"event": "registered"', 8), reg.lines
        proc = lan.run(h1, [MICROPYTHON, "-X", "heapsize=128K", "-m", "leither.mdns",
                            "--browse", "_leither._tcp.local", "--timeout", "2500"],
                       env=ENV, cwd=str(REPO), timeout=15)
        lines = [x for x in proc.stdout.splitlines() if x.startswith("BROWSE ")]
        assert lines, proc.stdout + proc.stderr
        found = json.loads(lines[0][len("BROWSE "):])
        (rec,) = [n for n in found if n["name"] == "zc-svc"]
        assert rec["port"] == 4999 and rec["addresses"] == [h3.ip]
        assert rec["txt"] == {"id": "zz9", "pair": "1"} and rec["host"] == "zc-svc.local"
    finally:
        reg.proc.stdin.close()  # type: ignore[union-attr]
        reg.proc.wait(5)


def test_same_name_nodes_end_with_different_names(lan: lanlib.LAN) -> None:
    h1, h2, h3 = lan.hosts[0], lan.hosts[1], lan.hosts[2]
    a = start_node(lan, h1, "twin", "id=a")
    b = start_node(lan, h3, "twin", "id=b")
    try:
        la = a.wait_line("ANNOUNCED", 8)
        lb = b.wait_line("ANNOUNCED", 8)
        assert la and lb, (a.lines, b.lines)
        names = {la.split()[1], lb.split()[1]}
        assert names == {"twin", "twin-2"}, (a.lines, b.lines)
        found = zc_browse(lan, h2, "twin", "twin-2")
        ids = {n["name"]: n["id"] for n in found}
        assert {ids["twin"], ids["twin-2"]} == {"a", "b"}
        # A latecomer meets both names already defended and takes the next free one.
        c = start_node(lan, lan.hosts[3], "twin", "id=c")
        try:
            lc = c.wait_line("ANNOUNCED", 8)
            assert lc and lc.split()[1] == "twin-3", c.lines
        finally:
            stop_node(c)
    finally:
        stop_node(a)
        stop_node(b)


def test_malformed_packets_do_not_stop_the_node(lan: lanlib.LAN) -> None:
    h1, h2 = lan.hosts[0], lan.hosts[1]
    node = start_node(lan, h1, "tough", "id=t")
    try:
        assert node.wait_line("ANNOUNCED tough", 5)
        junk = ("import socket,os\n"
                "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                "s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_TTL,255)\n"
                "for i in range(200):\n"
                "    s.sendto(os.urandom(12+i%300),('224.0.0.251',5353))\n"
                "s.sendto(bytes(12)[:4]+b'\\x00\\x01'+bytes(6)+b'\\xc0\\x0c\\x00\\x01\\x00\\x01',"
                "('224.0.0.251',5353))\n")
        lan.run(h2, [sys.executable, "-c", junk], timeout=10)
        assert node.wait_line("LOG dropped a bad packet", 3), node.lines
        assert node.proc.poll() is None
        assert any(n["name"] == "tough" for n in zc_browse(lan, h2, "tough"))
    finally:
        stop_node(node)


AVAHI_CONF = """[server]
use-ipv4=yes
use-ipv6=no
allow-interfaces=eth0
enable-dbus=yes
disallow-other-stacks=no
[publish]
publish-addresses=no
publish-hinfo=no
publish-workstation=no
publish-domain=no
[wide-area]
enable-wide-area=no
"""

DBUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


@pytest.mark.skipif(not (shutil.which("avahi-daemon") and shutil.which("avahi-browse")
                         and shutil.which("dbus-daemon")), reason="avahi or dbus not installed")
def test_avahi_sees_node(lan: lanlib.LAN, tmp_path: Path) -> None:
    h1, h4 = lan.hosts[0], lan.hosts[3]
    sock = tmp_path / "bus.sock"
    (tmp_path / "dbus.conf").write_text(DBUS_CONF.format(sock=sock))
    (tmp_path / "avahi.conf").write_text(AVAHI_CONF)
    env = dict(ENV, DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={sock}")
    dbus = lan.popen(h4, ["dbus-daemon", "--config-file", str(tmp_path / "dbus.conf"),
                          "--nofork", "--nopidfile"], env=env,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = start_node(lan, h1, "avahi-seen", "id=av1", "pair=0", port=4822)
    try:
        deadline = time.monotonic() + 5
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.exists(), "private dbus-daemon did not start"
        avahi = lan.popen(h4, ["avahi-daemon", "-f", str(tmp_path / "avahi.conf"),
                               "--no-drop-root", "--no-chroot", "--no-rlimits"],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
        alog = lanlib.LineReader(avahi)
        assert alog.wait_line("Server startup complete", 8), alog.lines
        assert node.wait_line("ANNOUNCED avahi-seen", 5)
        proc = lan.run(h4, ["avahi-browse", "-rpt", "_leither._tcp"], env=env, timeout=15)
        resolved = [x for x in proc.stdout.splitlines() if x.startswith("=")]
        assert resolved, proc.stdout + proc.stderr + "\n".join(alog.lines)
        fields = resolved[0].split(";")
        # =;iface;proto;name;type;domain;host;address;port;txt
        assert fields[3] == "avahi-seen" and fields[4] == "_leither._tcp"
        assert fields[6] == "avahi-seen.local" and fields[7] == h1.ip and fields[8] == "4822"
        assert '"id=av1"' in fields[9] and '"pair=0"' in fields[9]
        # A direct A query for the host name, through Avahi.
        proc = lan.run(h4, ["avahi-resolve-host-name", "-4", "avahi-seen.local"], env=env,
                       timeout=10)
        assert proc.stdout.split() == ["avahi-seen.local", h1.ip], proc.stdout + proc.stderr
    finally:
        stop_node(node)
        dbus.send_signal(signal.SIGTERM)
