# A node this host has seen stays reachable by name when multicast is blocked: the fleet
# inventory keeps its last address. On a namespaced LAN (root): discover, then drop every
# mDNS frame on the bridge, and the verbs still reach the node by name.
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from leither_host import lan as lanmod
from leither_host.sim import Sim


def leither(sim: Sim, home: Path, *args: str, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
    argv = sim.cli_argv([sys.executable, "-m", "leither_host", *args])
    proc = subprocess.run(argv, env=dict(os.environ, LEITHER_HOME=str(home)),
                          capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, f"leither {' '.join(args)}: {proc.stderr}"
    return proc


@pytest.mark.skipif(lanmod.available() is not None, reason=f"{lanmod.available()}")
def test_known_node_reachable_when_multicast_is_blocked(tmp_path: Path) -> None:
    home = tmp_path / "home"
    sim = Sim(tmp_path / "sim")
    try:
        sim.up(1, "micropython", use_lan=True, prefix="inv")
        board = sim.boards[0]
        found = []
        for _attempt in range(3):
            found = json.loads(leither(sim, home, "discover", "--timeout", "2", "--json").stdout)
            if found:
                break
        assert [n["name"] for n in found] == ["inv1"] and found[0]["online"] is True
        assert found[0]["host"] == board.ip
        # Block mDNS on the bridge: nothing on UDP 5353 crosses the LAN any more.
        assert sim.lan is not None
        rules = ("table bridge leither_nomdns {\n chain forward {\n"
                 "  type filter hook forward priority -1; policy accept;\n"
                 "  udp dport 5353 drop\n }\n}\n")
        subprocess.run(["ip", "netns", "exec", f"{sim.lan['prefix']}-br", "nft", "-f", "-"],
                       input=rules, text=True, check=True, timeout=20)
        again = json.loads(leither(sim, home, "discover", "--timeout", "2", "--json").stdout)
        assert [(n["name"], n["online"]) for n in again] == [("inv1", False)]
        claimed = json.loads(leither(sim, home, "claim", "inv1", "--token", board.claim_token,
                                     "--json").stdout)
        assert claimed["node"] == found[0]["id"]
        status = json.loads(leither(sim, home, "status", "inv1", "--json").stdout)
        assert status["role"] == "owner" and status["address"] == f"{board.ip}:4800"
        # From the normal shell the LAN is out of reach: the CLI says how to get there.
        outside = subprocess.run([sys.executable, "-m", "leither_host", "mm", "ls", "inv1"],
                                 env=dict(os.environ, LEITHER_HOME=str(home)),
                                 capture_output=True, text=True, timeout=60)
        assert outside.returncode == 1 and "leither sim exec" in outside.stderr
        assert "Traceback" not in outside.stderr
    finally:
        sim.down()
