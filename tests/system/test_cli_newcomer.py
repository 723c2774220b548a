# A newcomer's first hour, scripted through the real `leither` entry point on simulated
# MicroPython boards on loopback: sim up/down cycles, claim by name, put, pair, back up, lose a
# board, restore it onto a fresh one, rename, follow the logs, forget, ls. Every line printed is
# checked: no traceback, no asyncio leftovers, no raw errno, no row the inventory should have
# dropped, and each step's exit status.
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BAD = ("Traceback", "Task exception was never retrieved", "was never awaited", "[Errno",
       "Task was destroyed")


class Newcomer:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = dict(os.environ, LEITHER_HOME=str(home))
        self.env.pop("NO_COLOR", None)
        self.seen: list[str] = []

    def run(self, *args: str, code: int = 0, timeout: float = 120, live: bool = False
            ) -> subprocess.CompletedProcess[str]:
        """`leither ARGS`; live=True draws progress as on a terminal (LEITHER_PROGRESS=1)."""
        env = dict(self.env, LEITHER_PROGRESS="1", NO_COLOR="1") if live else self.env
        proc = subprocess.run([sys.executable, "-m", "leither_host", *args], env=env,
                              capture_output=True, text=True, timeout=timeout)
        out = proc.stdout + proc.stderr
        self.seen.append(f"$ leither {' '.join(args)}\n{out}")
        assert proc.returncode == code, f"leither {' '.join(args)} -> {proc.returncode}:\n{out}"
        for bad in BAD:
            assert bad not in out, f"leither {' '.join(args)} printed {bad!r}:\n{out}"
        return proc

    def json(self, *args: str) -> object:
        return json.loads(self.run(*args, "--json").stdout)


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def test_newcomer_journey(tmp_path: Path) -> None:
    me = Newcomer(tmp_path / "home")
    try:
        _journey(me, tmp_path)
        if os.environ.get("LEITHER_TRANSCRIPT"):
            Path(os.environ["LEITHER_TRANSCRIPT"]).write_text("\n".join(me.seen))
    except BaseException:
        print("\n".join(me.seen[-12:]))
        raise
    finally:
        subprocess.run([sys.executable, "-m", "leither_host", "sim", "down"], env=me.env,
                       capture_output=True, timeout=60)


def _journey(me: Newcomer, tmp_path: Path) -> None:
    assert "usage: leither" in me.run().stdout  # bare `leither` helps
    # Two up/down cycles leave no stale rows: names stay unique, one row per board.
    me.run("sim", "up", "2")
    assert len(me.json("ls")) == 2  # type: ignore[arg-type]
    me.run("sim", "down")
    assert "no nodes known" in me.run("ls").stdout
    me.run("sim", "up", "3")
    rows = me.json("ls")
    assert sorted(r["name"] for r in rows) == ["board1", "board2", "board3"]  # type: ignore
    assert all(r["online"] for r in rows)  # type: ignore[union-attr]
    for name in ("board1", "board2", "board3"):
        assert f"claimed {name}" in me.run("claim", name).stdout

    mid = me.run("mm", "create", "board1", "--app", "notes", "--ext", "txt").stdout.strip()
    data = os.urandom(30000)
    src = tmp_path / "note.bin"
    src.write_bytes(data)
    put = me.run("mm", "put", "board1", mid, str(src), live=True)
    assert "29.3/29.3 KiB" in put.stderr and "\x1b[3" not in put.stderr  # bytes; NO_COLOR
    made = me.json("mm", "backup", "board1", mid)
    listed = me.json("mm", "versions", "board1", mid)
    assert made["hash"] == listed[0]["hash"]  # type: ignore[index]  # one name for a version

    # Pair board1 and board2 by their buttons, back board1 up, lose it.
    pairing: dict[str, object] = {}

    def paired() -> bool:
        pairing.update(me.json("pair", "board1", "--status"))  # type: ignore[arg-type]
        return pairing["pair_state"] in ("paired", "overlap", "failed")

    # Loopback is shared with any other simulation on this machine: a window someone else
    # opened at the same moment makes both give up (as on a real LAN); press again then.
    for _attempt in range(3):
        me.run("sim", "press", "board1")
        me.run("sim", "press", "board2")
        wait_for(paired, 60, "board1's pairing window to end")
        if pairing["pair_state"] == "paired":
            break
        wait_for(lambda: me.json("pair", "board2", "--status")["pair_state"]  # type: ignore
                 not in ("open", "pairing"), 60, "board2's pairing window to end")
    assert pairing["pair_state"] == "paired", (
        f"board1 did not pair: {pairing}\n{me.run('logs', 'board1').stdout}")
    src.write_bytes(os.urandom(200000))
    me.run("mm", "put", "board1", mid, str(src))
    me.run("mm", "backup", "board1", mid)
    pushed = me.run("backup", "now", "board1", live=True)
    assert "/1 bytes" not in pushed.stderr  # no bar over a made-up total
    assert ("backup board1" in pushed.stderr and "KiB" in pushed.stderr) or \
        "nothing to push" in pushed.stderr
    me.run("sim", "kill", "board1")
    offline = me.run("status", "board1").stdout
    assert "offline, last seen" in offline

    # Restore it onto board3: it answers to its old name, with its data; board3's own ID is gone.
    restored = me.run("restore", "board1", "--onto", "board3", timeout=300, live=True)
    assert "restoring board1 onto board3: done in" in restored.stderr
    out = tmp_path / "back.bin"
    me.run("mm", "get", "board1", mid, "--version", "1", "-o", str(out))
    assert out.read_bytes() == data
    rows = me.json("ls")
    assert sorted(r["name"] for r in rows) == ["board1", "board2"]  # type: ignore
    assert [r["online"] for r in rows if r["name"] == "board1"] == [True]  # type: ignore
    table = me.run("ls").stdout.splitlines()
    assert table[0].split()[:3] == ["name", "id", "state"] and len(table) == 4  # head, rule, 2
    assert table[2].split()[0] == "board1" and "online" in table[2]
    assert "board2" in table[2].split()  # its partner, by name

    # The old board comes back (its plug put back in): the host says two boards hold one
    # identity, keeps the ID at the restored board, and the old one says it was replaced.
    sims = me.json("sim", "ls")
    old_addr = [b["address"] for b in sims if b["name"] == "board1"][0]  # type: ignore
    started = me.run("sim", "start", "board1")
    assert "hold one identity" in started.stderr
    shown = {"text": ""}

    def says_replaced() -> bool:
        proc = me.run("status", old_addr)
        shown["text"] = proc.stdout + proc.stderr
        return "replaced by a restore on" in proc.stdout

    wait_for(says_replaced, 60, "the old board to say it was replaced")
    assert "two boards hold one identity" in shown["text"]
    assert me.json("status", "board1")["address"] != old_addr  # type: ignore[index]
    me.run("sim", "kill", "board1")

    # Rename: here and on the node; its log says so, and `logs -f` follows new lines.
    assert "on the node" in me.run("rename", "board2", "kitchen").stdout
    assert me.json("status", "kitchen")["node_name"] == "kitchen"  # type: ignore[index]
    assert "renamed" in me.run("logs", "kitchen", "-n", "10").stdout
    follow = subprocess.Popen([sys.executable, "-m", "leither_host", "logs", "kitchen", "-f"],
                              env=me.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        assert follow.stdout is not None
        first = follow.stdout.readline()
        assert first.strip(), "logs -f printed nothing"
        me.run("rename", "kitchen", "pantry")
        deadline = time.monotonic() + 30
        line = ""
        while "renamed kitchen to pantry" not in line and time.monotonic() < deadline:
            line = follow.stdout.readline()
        assert "renamed kitchen to pantry" in line
    finally:
        follow.send_signal(signal.SIGINT)
        _out, err = follow.communicate(timeout=20)
    assert follow.returncode == 130 and err.strip() == "leither: interrupted", err
    # Forget: gone from ls, and its name is free.
    me.run("forget", "pantry")
    assert [r["name"] for r in me.json("ls")] == ["board1"]  # type: ignore
    gone = me.run("status", "pantry", code=1)
    assert gone.stderr.startswith("leither: no node named 'pantry'")
    me.run("sim", "down")
    assert "no nodes known" in me.run("ls").stdout


@pytest.fixture(autouse=True)
def _no_inherited_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEITHER_HOME", raising=False)
