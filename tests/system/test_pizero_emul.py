# The Pi Zero bundle on a Pi's own userland, under ARM emulation: `leither flash --board
# pizero` makes the bundle; a fresh Debian armel rootfs (tests/system/pirootfs.py) runs its
# install.sh as root, as the owner would; the node starts as the unit's ExecStart says (user,
# environment; systemd does not run in a chroot) under qemu-arm; and from this host we claim
# it, put and get 1 MB and read its status over loopback. Then an upgrade with a new bundle:
# install.sh again, and the node keeps its key, owner and data; and with Debian's
# pycryptodome removed, the node still serves, on its pure-Python crypto.
#
# The chroot shares this host's network namespace, so the node serves 127.0.0.1 only (the
# config's "bind") on a free port, without mDNS: nothing leaves the machine.
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pirootfs  # noqa: E402

pytestmark = pytest.mark.root

READY_TIMEOUT_S = 300  # node start under qemu on a loaded 2-core box (~10 s when idle)
CLI_TIMEOUT_S = 180  # one CLI call against the emulated node (1 MB put: a few seconds)
NAME = "pzemu"
MIB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def leither(home: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "leither_host", *args],
                          env=dict(os.environ, LEITHER_HOME=str(home)), capture_output=True,
                          text=True, timeout=CLI_TIMEOUT_S)
    assert proc.returncode == 0, f"leither {' '.join(args)}: {proc.stderr}{proc.stdout}"
    return proc.stdout


def make_bundle(home: Path, out: Path, port: int) -> tuple[Path, str]:
    made = json.loads(leither(home, "flash", "--board", "pizero", "--name", NAME,
                              "--rpc-port", str(port), "--out", str(out), "--json"))
    return Path(made["target"]), made["claim_token"]


def unpack_into(pi: pirootfs.Pi, bundle: Path) -> str:
    """Copy the bundle to the Pi's /root and untar it there, as the owner does with scp."""
    with tarfile.open(bundle) as tar:
        tar.extractall(pi.path("/root"), filter="data")
    return f"/root/leither-{NAME}"


def install(pi: pirootfs.Pi, where: str) -> str:
    done = pi.run(["/bin/sh", f"{where}/install.sh"], timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def start_node(pi: pirootfs.Pi, log: Path) -> subprocess.Popen[bytes]:
    """The unit's ExecStart as its user; --no-mdns keeps multicast off the host's network."""
    try:
        proc, _seconds = pi.start_service(log, timeout=READY_TIMEOUT_S)
    except RuntimeError as err:
        raise AssertionError(str(err)) from None
    return proc


def test_pizero_install_claim_put_get_upgrade(tmp_path: Path) -> None:
    reason = pirootfs.unavailable()
    if reason is not None:
        pytest.skip(reason)
    tarball, built = pirootfs.cached_rootfs()
    if built is not None:
        print(f"built the armel rootfs in {built:.0f} s")
    home = tmp_path / "home"
    port = free_port()
    bundle, token = make_bundle(home, tmp_path / "dist1", port)
    data = os.urandom(MIB)
    (tmp_path / "in.bin").write_bytes(data)
    with pirootfs.Pi(tarball, tmp_path / "pi") as pi:
        where = unpack_into(pi, bundle)
        said = install(pi, where)
        assert f"leither claim {NAME}" in said, said
        # What install.sh left: a system user in the gpio group, private state, the node alone.
        uid, gid, groups = pi.ids("leither")
        gpio = [int(f[2]) for f in (x.split(":") for x in
                                    pi.path("/etc/group").read_text().splitlines())
                if f[0] == "gpio"]
        assert uid < 1000 and gpio and gpio[0] in groups
        state = pi.path("/var/lib/leither").stat()
        assert state.st_mode & 0o777 == 0o700 and state.st_uid == uid
        config = pi.path("/var/lib/leither/config.json")
        assert config.stat().st_mode & 0o777 == 0o600 and config.stat().st_uid == uid
        assert (pi.path("/opt/leither/lib/leither/node.py")).exists()
        assert not pi.path("/opt/leither/lib/leither_host").exists()
        assert not pi.path("/opt/leither/deps").exists()  # Debian had all: no pip
        unit = pi.path("/etc/systemd/system/leither.service").read_text()
        assert "NoNewPrivileges=yes" in unit and "ProtectSystem=strict" in unit
        # The owner's one edit for this test: serve loopback only (the chroot is the host's
        # network namespace).
        settings = json.loads(config.read_text())
        settings["bind"] = "127.0.0.1"
        config.write_text(json.dumps(settings))
        node = start_node(pi, tmp_path / "node1.log")
        # Debian's own pycryptodome served (as `Cryptodome`); at most a piece it lacks is pure.
        notes = [line for line in (tmp_path / "node1.log").read_text().splitlines()
                 if line.startswith("leither: crypto:")]
        assert len(notes) <= 1 and all("(Cryptodome)" in n for n in notes), notes
        addr = f"127.0.0.1:{port}"
        # Without mDNS the owner names the node by address and the ID it printed at boot (its
        # journal on a Pi): "leither: node ID name NAME board pizero port P ready".
        ready = re.search(r"leither: node (\S+) name", (tmp_path / "node1.log").read_text())
        assert ready, (tmp_path / "node1.log").read_text()
        claimed = json.loads(leither(home, "claim", addr, "--token", token, "--id",
                                     ready.group(1), "--json"))
        assert claimed["role"] == "owner" and claimed["node"] == ready.group(1)
        mid = leither(home, "mm", "create", addr, "--app", "pi", "--ext", "bin").strip()
        put = json.loads(leither(home, "mm", "put", addr, mid, str(tmp_path / "in.bin"),
                                 "--json"))
        assert put["written"] == MIB and put["size"] == MIB
        leither(home, "mm", "get", addr, mid, "-o", str(tmp_path / "out1.bin"))
        assert (tmp_path / "out1.bin").read_bytes() == data
        status = json.loads(leither(home, "status", addr, "--json"))
        assert status["board"] == "pizero" and status["role"] == "owner"
        assert status["name"] == NAME and status["id"] == claimed["node"]
        key = pi.path("/var/lib/leither/node.key").read_bytes()
        assert pi.stop(node) == 0
        assert "leither: stopped" in (tmp_path / "node1.log").read_text()

        # Upgrade with a new bundle (new claim token): install.sh runs again over the first
        # install (idempotent) and key, owner, config and data stay.
        bundle2, _token2 = make_bundle(home, tmp_path / "dist2", port)
        where = unpack_into(pi, bundle2)
        said = install(pi, where)
        assert "keeping" in said and "keeps its owner" in said, said
        assert pi.path("/var/lib/leither/node.key").read_bytes() == key
        assert json.loads(config.read_text())["bind"] == "127.0.0.1"
        node = start_node(pi, tmp_path / "node2.log")
        again = json.loads(leither(home, "status", addr, "--json"))
        assert again["id"] == claimed["node"] and again["role"] == "owner"
        leither(home, "mm", "get", addr, mid, "-o", str(tmp_path / "out2.bin"))
        assert (tmp_path / "out2.bin").read_bytes() == data
        assert pi.stop(node) == 0

        # A Pi without pycryptodome: the same node on its pure-Python crypto, saying so once.
        gone = pi.run(["dpkg", "--purge", "python3-pycryptodome"], timeout=600)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        start_node(pi, tmp_path / "node3.log")
        notes = [line for line in (tmp_path / "node3.log").read_text().splitlines()
                 if line.startswith("leither: crypto:")]
        assert len(notes) == 1 and "no pycryptodome" in notes[0], notes
        pure = json.loads(leither(home, "status", addr, "--json"))
        assert pure["id"] == claimed["node"] and pure["role"] == "owner"
        listing = json.loads(leither(home, "mm", "ls", addr, "--json"))
        assert [m["size"] for m in listing if m["mid"] == mid] == [MIB]
