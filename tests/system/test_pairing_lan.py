"""Button pairing between real MicroPython nodes on a simulated LAN (root: network namespaces).

Each board runs as its own process in its own namespace (leither_host.sim); buttons are
pressed through the sim's GPIO files; what the user would see is read where the user would
see it: the node's log, the LED mirror, `leither pair --status` (GetVar through the real CLI in
the LAN's CLI namespace) and the pairing file on the node's storage.

Loopback mode is not used: every node on this machine (other test runs included) would share
one mDNS segment there, and a stranger's open window is an overlap.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from leither import crypto, ids
from leither_host import lan as lanlib
from leither_host.sim import Sim

REPO = Path(__file__).resolve().parents[2]
PAIRED = re.compile(r"leither: paired with (\S+) at (\S+); code (\d{6})")

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(lanlib.available() is not None,
                       reason=f"simulated LAN: {lanlib.available()}"),
]


@pytest.fixture
def lan_sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], Sim]]:
    """up(n) -> a Sim of n MicroPython boards on a fresh LAN, started by the real
    `leither sim up --lan` (so the CLI's inventory knows them); taken down afterwards."""
    monkeypatch.setenv("LEITHER_HOME", str(tmp_path / "home"))
    started = []

    def up(count: int) -> Sim:
        (REPO / "build").mkdir(exist_ok=True)
        with open(REPO / "build" / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the .mpy build is shared with parallel tests
            started.append(True)
            proc = subprocess.run([sys.executable, "-m", "leither_host", "sim", "up",
                                   str(count), "--lan"], capture_output=True, text=True,
                                  timeout=120, env=os.environ)
        assert proc.returncode == 0, proc.stderr
        return Sim()

    yield up
    if started:
        Sim().down()


def cli(sim: Sim, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `leither` entry point, run on the LAN's CLI host."""
    argv = sim.cli_argv([sys.executable, "-m", "leither_host", *args])
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=os.environ)


def cli_json(sim: Sim, *args: str) -> dict:
    proc = cli(sim, *args, "--json")
    assert proc.returncode == 0, proc.stderr
    result: dict = json.loads(proc.stdout)
    return result


def log_of(sim: Sim, name: str) -> str:
    return (Path(sim.board(name).root) / "node.log").read_text(errors="replace")


def wait_log(sim: Sim, name: str, pattern: str | re.Pattern[str], timeout: float = 10.0,
             since: int = 0) -> re.Match[str]:
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    deadline = time.monotonic() + timeout
    while True:
        found = regex.search(log_of(sim, name)[since:])
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: no {regex.pattern!r} in {timeout} s:\n"
                                 f"{log_of(sim, name)[-2000:]}")
        time.sleep(0.1)


def node_id(sim: Sim, name: str) -> str:
    return wait_log(sim, name, r"leither: node (\S+) name").group(1)


def pair_file(sim: Sim, name: str) -> Path:
    return Path(sim.board(name).root) / "pair.cbor"


def test_pair_survive_restart_replace_and_unpair(lan_sim: Callable[[int], Sim]) -> None:
    sim = lan_sim(3)
    one, two, three = (node_id(sim, b) for b in ("board1", "board2", "board3"))
    for board in ("board1", "board2", "board3"):
        assert cli(sim, "claim", board).returncode == 0

    # board1's window opened from the host (`leither pair --wait`), board2's by its button.
    waiter = subprocess.Popen(sim.cli_argv([sys.executable, "-m", "leither_host", "pair",
                                            "board1", "--wait", "--json"]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=os.environ)
    wait_log(sim, "board1", "pairing window open")
    sim.press("board2")
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    waited = json.loads(out)
    peer_of_1, addr_of_2, code_1 = wait_log(sim, "board1", PAIRED).groups()
    peer_of_2, addr_of_1, code_2 = wait_log(sim, "board2", PAIRED).groups()
    assert (peer_of_1, peer_of_2) == (two, one)
    assert (addr_of_1, addr_of_2) == (f"{sim.board('board1').ip}:4800",
                                      f"{sim.board('board2').ip}:4800")
    assert code_1 == code_2
    assert waited["pair_state"] == "paired" and waited["pair_code"] == code_1
    # What the owner compares: GetVar through `leither pair --status`, and the LED blinking.
    for board, peer, other in (("board1", two, "board2"), ("board2", one, "board1")):
        status = cli_json(sim, "pair", board, "--status")
        assert status["pair_state"] == "paired" and status["pair"] is False
        assert status["peer"] == peer and status["pair_code"] == code_1
        assert status["quota_to_peer"] > 0 and status["quota_from_peer"] > 0
        assert status["peer_addr"] == f"{sim.board(other).ip}:4800"
        assert sim.led(board) == f"code:{code_1}"
        assert pair_file(sim, board).exists()
    # board3 was never pressed: never in a window, never paired.
    assert "pairing" not in log_of(sim, "board3") and not pair_file(sim, "board3").exists()
    assert three not in (peer_of_1, peer_of_2)

    # Power cut and reboot: the pairing is still there, and the partner's key is a peer key
    # again (board2 below only accepts PairDrop from its partner's key).
    sim.kill("board2")
    sim.start("board2")
    status = cli_json(sim, "pair", "board2", "--status")
    assert status["pair_state"] == "paired" and status["peer"] == one
    assert status["pair_code"] == code_1
    assert f"leither: paired with {one} (since" in log_of(sim, "board2")

    # Pairing anew replaces the old partner on both ends: board2 is told and lets go.
    since = {b: len(log_of(sim, b)) for b in ("board1", "board3")}
    sim.press("board1")
    sim.press("board3")
    peer, _addr, code = wait_log(sim, "board1", PAIRED, since=since["board1"]).groups()
    assert peer == three
    assert wait_log(sim, "board3", PAIRED, since=since["board3"]).group(3) == code
    wait_log(sim, "board2", f"partner {one} unpaired; no partner now")
    status = cli_json(sim, "pair", "board2", "--status")
    assert status["pair_state"] == "idle" and status["peer"] is None
    assert not pair_file(sim, "board2").exists()

    # Unpair from the owner: both ends drop it.
    result = cli_json(sim, "pair", "board1", "--unpair")
    assert result == {"unpaired": three, "told": True}
    for board in ("board1", "board3"):
        status = cli_json(sim, "pair", board, "--status")
        assert status["pair_state"] == "idle" and status["peer"] is None
        assert not pair_file(sim, board).exists()


def test_three_pressed_together_all_abort(lan_sim: Callable[[int], Sim]) -> None:
    sim = lan_sim(3)
    names = ("board1", "board2", "board3")
    assert cli(sim, "claim", "board1").returncode == 0
    for board in names:
        sim.press(board)
    for board in names:
        line = wait_log(sim, board, r"leither: pairing aborted: session overlap.*")
        assert "2 nodes in the window" in line.group(0)
        assert sim.led(board) == "error"
    status = cli_json(sim, "pair", "board1", "--status")
    assert status["pair_state"] == "overlap" and "session overlap" in status["pair_reason"]
    # The overlap lingers a moment on mDNS, then nobody pairs with anybody.
    time.sleep(1.5)
    for board in names:
        assert not pair_file(sim, board).exists()
        assert not PAIRED.search(log_of(sim, board))


# A rogue node on the LAN (the CLI host's namespace): a real node whose mDNS TXT carries a
# forged node ID while its RPC key is its own. It opens its window at once.
ROGUE = textwrap.dedent("""
    import asyncio, sys
    from leither import node as nodemod

    async def main(root, ip, fake):
        node = nodemod.Node(root, board="unix", name="rogue", port=4900, addr=ip,
                            config={"name": "rogue"})
        node.identity.id = fake  # what it claims on mDNS and in its window
        await node.start()
        node.on_press("short")
        await asyncio.sleep(30)

    asyncio.run(main(*sys.argv[1:]))
""")


def start_rogue(sim: Sim, root: Path, fake: str) -> subprocess.Popen[str]:
    assert sim.lan is not None
    ip = sim.lan_host(sim.lan["cli"]).ip
    env = dict(os.environ, PYTHONPATH=str(REPO / "firmware"))
    argv = sim.cli_argv([sys.executable, "-c", ROGUE, str(root), ip, fake])
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)


def stop_rogue(proc: subprocess.Popen[str]) -> str:
    proc.kill()
    out, _ = proc.communicate(timeout=10)
    return out


def fake_id(than: str, lower: bool) -> str:
    """A node ID (of a key nobody holds) that sorts below or above `than`."""
    while True:
        candidate = ids.make_id(crypto.random(32))
        if (ids.id_raw(candidate) < ids.id_raw(than)) == lower:
            return candidate


def test_forged_key_cannot_pair(lan_sim: Callable[[int], Sim], tmp_path: Path) -> None:
    sim = lan_sim(1)
    honest = node_id(sim, "board1")
    assert cli(sim, "claim", "board1").returncode == 0

    # 1. The rogue's forged ID sorts lower: it initiates, with its real key. board1 refuses
    #    every hello: the caller's key is not the key of the ID in its window.
    rogue = start_rogue(sim, tmp_path / "rogue1", fake_id(honest, lower=True))
    try:
        sim.press("board1")
        wait_log(sim, "board1", r"pairing hello from \S+ rejected: the node in my window is",
                 timeout=10)
        time.sleep(1)
    finally:
        out = stop_rogue(rogue)
    assert "pairing with " + honest in out, out
    assert not PAIRED.search(out) and not PAIRED.search(log_of(sim, "board1"))
    status = cli_json(sim, "pair", "board1", "--status")
    assert status["peer"] is None and status["pair_state"] == "open"

    # 2. The forged ID sorts higher: board1 initiates and pins that ID in the RPC handshake;
    #    the rogue cannot prove it, so board1 fails the window (LED "error").
    since = len(log_of(sim, "board1"))
    rogue = start_rogue(sim, tmp_path / "rogue2", fake_id(honest, lower=False))
    try:
        sim.press("board1")
        line = wait_log(sim, "board1", r"pairing aborted: pairing with \S+ failed: .*",
                        since=since).group(0)
    finally:
        out = stop_rogue(rogue)
    assert "is not the expected" in line
    assert sim.led("board1") == "error"
    status = cli_json(sim, "pair", "board1", "--status")
    assert status["pair_state"] == "failed" and status["peer"] is None
    assert not pair_file(sim, "board1").exists() and not PAIRED.search(out)


def test_closed_window_refuses_a_hello(lan_sim: Callable[[int], Sim]) -> None:
    """A node whose window is closed refuses pairing messages outright (the firmware's own
    RPC client, on CPython, speaking to a MicroPython node)."""
    sim = lan_sim(1)
    board = sim.board("board1")
    script = textwrap.dedent("""
        import asyncio, sys
        from leither import crypto, pairproto, rpcclient
        from leither.errors import RPCError

        async def main(host):
            seed = crypto.random(32)
            client = await rpcclient.connect(host, 4800, seed, timeout_ms=5000)
            try:
                print("ROLE", client.role)
                hello = pairproto.Initiator(seed, 1).hello()
                try:
                    await client.call("PairHello", hello)
                    print("ACCEPTED")
                except RPCError as err:
                    print("REFUSED", err.code)
                try:
                    await client.call("PairOpen", {})
                except RPCError as err:
                    print("OPEN", err.code)
            finally:
                await client.close()

        asyncio.run(main(sys.argv[1]))
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO / "firmware"))
    proc = subprocess.run(sim.cli_argv([sys.executable, "-c", script, board.ip]),
                          capture_output=True, text=True, timeout=30, env=env)
    assert proc.stdout.split("\n")[:3] == ["ROLE guest", "REFUSED closed", "OPEN forbidden"], (
        proc.stdout + proc.stderr)
    assert not pair_file(sim, "board1").exists()
