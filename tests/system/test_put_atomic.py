# A whole-file `leither mm put` cut off half way leaves cur as it was (issue 10 row 12): the
# CLI stages the pieces beside cur and one MFCommit swaps them in. The upload comes through a
# pipe that is never closed, so the kill lands after hundreds of KB reached the node and
# before the commit, whatever the machine's speed; Ctrl-C and SIGKILL both. A MicroPython
# board on loopback; the store's own crash cases are tests/system/test_powerloss.py's.
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from leither_host.sim import Sim


def leither(home: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, LEITHER_HOME=str(home))
    proc = subprocess.run([sys.executable, "-m", "leither_host", *args], env=env,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, f"leither {' '.join(args)}: {proc.stderr!r}"
    return proc


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    home = tmp_path_factory.mktemp("home")
    os.environ["LEITHER_HOME"] = str(home)
    sim = Sim()
    try:
        sim.up(1, "micropython", use_lan=False, prefix=f"put{os.getpid() % 10000}b")
        from leither_host.commands.sim import _remember

        _remember(sim)
        name = sim.boards[0].name
        leither(home, "claim", name)
        yield home, name
    finally:
        for b in sim.boards:
            print(f"--- {b.name} log ---\n{sim.log_tail(b, 40)}")
        sim.down()
        os.environ.pop("LEITHER_HOME", None)


def _cur(home: Path, name: str, mid: str, tmp: Path) -> bytes:
    out = tmp / "cur.bin"
    leither(home, "mm", "get", name, mid, "-o", str(out))
    return out.read_bytes()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_put_leaves_cur_whole(board: tuple[Path, str], tmp_path: Path,
                                          sig: signal.Signals) -> None:
    home, name = board
    mid = leither(home, "mm", "create", name, "--app", "atomic", "--mark",
                  sig.name).stdout.decode().strip()
    old = os.urandom(100000)
    (tmp_path / "old.bin").write_bytes(old)
    leither(home, "mm", "put", name, mid, str(tmp_path / "old.bin"))
    env = dict(os.environ, LEITHER_HOME=str(home))
    proc = subprocess.Popen([sys.executable, "-m", "leither_host", "mm", "put", name, mid, "-"],
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        # A pipe holds 64 KiB: once 400 KB are written, the CLI has read (and, one piece
        # behind, sent and had acknowledged) at least ~300 KB of new content.
        piece = os.urandom(50000)
        for _ in range(8):
            proc.stdin.write(piece)
            proc.stdin.flush()
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert _cur(home, name, mid, tmp_path) == old, "an interrupted put changed cur"
    # The next whole-file put starts afresh (the abandoned stage is dropped) and commits.
    new = os.urandom(70000)
    (tmp_path / "new.bin").write_bytes(new)
    leither(home, "mm", "put", name, mid, str(tmp_path / "new.bin"))
    assert _cur(home, name, mid, tmp_path) == new
    # An empty file is a whole-file put too: cur becomes empty, in one step.
    (tmp_path / "empty.bin").write_bytes(b"")
    leither(home, "mm", "put", name, mid, str(tmp_path / "empty.bin"))
    assert _cur(home, name, mid, tmp_path) == b""


def test_far_offset_is_a_hole_not_gigabytes_of_zeros(board: tuple[Path, str],
                                                     tmp_path: Path) -> None:
    # Issue 10 row 3: a write at 6 GiB froze a node while it zero-filled 1.5 M chunks; now
    # the hole is one block per tree level and the put returns like any other.
    import json

    home, name = board
    mid = leither(home, "mm", "create", name, "--app", "atomic", "--mark",
                  "far").stdout.decode().strip()
    (tmp_path / "far.bin").write_bytes(b"far")
    out = json.loads(leither(home, "mm", "put", name, mid, str(tmp_path / "far.bin"),
                             "--offset", str(6 << 30), "--json").stdout)
    assert out["size"] == (6 << 30) + 3
    backup = json.loads(leither(home, "mm", "backup", name, mid, "--json").stdout)
    assert backup["size"] == (6 << 30) + 3
