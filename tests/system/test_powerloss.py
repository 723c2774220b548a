# Power loss at any instant (DESIGN §4 "Storage"): a writer process (powerloss_writer.py) under
# MicroPython and under CPython is killed with SIGKILL at seeded random moments -- during file
# writes, backups, deletes of versions, db transactions and block collection, and during the
# recovery at open itself. After each kill the store is reopened here and checked: every
# committed version is present and verifies (signature, every block, its content), nothing
# uncommitted appears out of thin air, cur is the state before or after the interrupted write,
# a db transaction is all there or not at all. Writes made with sync=False may be lost, but only
# back to a state cur really had since the last durable one (never torn, never older).
from __future__ import annotations

import fcntl
import hashlib
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leither import mimei

REPO = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).with_name("powerloss_writer.py")
SIGNER_SEED = bytes(range(32))
KILLS = int(os.environ.get("POWERLOSS_KILLS", "150"))  # per interpreter


def _db_class():
    from leither.db import DB  # no fallback: a db that fails to import fails the test

    return DB


def _micropython() -> str | None:
    here = Path(sys.executable).parent / "micropython"
    return str(here) if here.exists() else shutil.which("micropython")


def _build() -> Path:
    from leither_host.build import build

    (REPO / "build").mkdir(exist_ok=True)
    with open(REPO / "build" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build("unix")
    return REPO / "build" / "unix"


def _sha(data: bytes) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()


class Expect:
    """What the store must hold, learnt from the writer's B/C lines over all runs."""

    def __init__(self) -> None:
        self.cur = {_sha(b"")}  # allowed content digests of cur
        self.versions: dict[int, str] = {}  # committed file versions -> content digest
        self.db_versions: set[int] = set()
        self.tx = 0  # last committed db transaction
        self.tx_len: dict[int, int] = {}  # bytes of the Hset value each transaction wrote
        self.pending: dict[str, object] = {}

    def read(self, lines: list[str]) -> None:
        self.pending = {}
        for line in lines:
            parts = line.split()
            if len(parts) < 2:
                continue
            kind, what = parts[0], parts[1]
            if kind == "B":
                self.pending[what] = parts[2] if len(parts) > 2 else True
                if what == "T":
                    self.tx_len[int(parts[2])] = int(parts[3])
            elif kind == "C":
                self.pending.pop(what, None)
                if what == "W":
                    self.cur = {parts[2]}
                elif what == "U":
                    # Not durable: cur may stay at any state since the last durable one.
                    self.cur.add(parts[2])
                elif what == "G" and len(parts) > 2:
                    self.cur = {parts[2]}  # collect made the pending writes durable
                elif what == "V":
                    self.versions[int(parts[2])] = parts[3]
                    self.cur = {parts[3]}  # a backup commits cur too
                elif what == "D":
                    self.versions.pop(int(parts[2]))
                elif what == "S":
                    if parts[2] != "-":  # "-": abandoned half way, cur untouched
                        self.cur = {parts[2]}
                elif what == "T":
                    self.tx = int(parts[2])
                    self.tx_len[self.tx] = int(parts[3])
                elif what == "DV":
                    self.db_versions.add(int(parts[2]))


def _check(root: str, fid: str, did: str | None, exp: Expect) -> None:
    s = mimei.Store(root, SIGNER_SEED, db_class=_db_class())
    try:
        size = s.size(fid)
        cur = _sha(s.get_data(fid, 0, size))
        allowed = set(exp.cur)
        for kind in ("W", "U", "S"):
            if kind in exp.pending:
                allowed.add(str(exp.pending[kind]))
        assert cur in allowed, "cur is torn: neither before nor after the interrupted write"
        exp.cur = {cur}
        present = {v["n"]: v for v in s.versions(fid)}
        deleting = int(str(exp.pending["D"])) if "D" in exp.pending else None
        for n, digest in list(exp.versions.items()):
            if n not in present:
                assert n == deleting, "committed version %d is missing" % n
                del exp.versions[n]
                continue
            s.verify(fid, n)
            assert _sha(s.get_data(fid, 0, present[n]["size"], n)) == digest
        for n in present:
            if n not in exp.versions:
                # Only the backup the kill interrupted may have appeared (and then it counts).
                assert "V" in exp.pending, "version %d appeared from nowhere" % n
                s.verify(fid, n)
                exp.versions[n] = _sha(s.get_data(fid, 0, present[n]["size"], n))
                exp.pending.pop("V")
        if did is not None:
            db = s.db(did)
            got = db.Get("tx")
            tx = int(got) if got is not None else 0
            allowed_tx = {exp.tx}
            if "T" in exp.pending:
                allowed_tx.add(int(str(exp.pending["T"])))
            assert tx in allowed_tx, "db transaction %d neither committed nor rolled back" % tx
            if tx:
                # All of the last transaction is there, as written; nothing of the next one.
                assert db.Hget("h", "tx%d" % tx) == "a" * exp.tx_len[tx], "db value differs"
                assert db.Zscore("z", "m%d" % tx) == tx
                assert db.Get("k%d" % (tx % 50)) == "v%d" % tx
            assert db.Hget("h", "tx%d" % (tx + 1)) is None
            exp.tx = tx
            dbv = {v["n"] for v in s.versions(did)}
            for n in exp.db_versions:
                assert n in dbv, "committed db version %d is missing" % n
                s.verify(did, n)
            exp.db_versions = dbv
    finally:
        s.close()


def _first_line(proc: subprocess.Popen) -> str:
    """The writer's first line, read byte by byte from the pipe itself: a buffered readline
    could swallow later lines that communicate() (reading the raw pipe) would then miss."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    line = b""
    deadline = time.monotonic() + 20
    while not line.endswith(b"\n"):
        ready = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]
        assert ready, "writer did not start"
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line.decode()


def _run(cmd: list[str], env: dict[str, str], tmp: Path, seed: int) -> dict[str, int]:
    root = str(tmp / "store")
    rng = random.Random(seed)
    exp = Expect()
    fid = did = None
    stats = {"kills": 0, "ops": 0, "early": 0}
    for k in range(KILLS):
        proc = subprocess.Popen(cmd + [root, str(seed * 1000 + k)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        assert proc.stdout is not None
        lines: list[str] = []
        if rng.random() < 0.15:
            time.sleep(rng.uniform(0, 0.06))  # often inside the recovery at open
            stats["early"] += 1
        else:
            lines.append(_first_line(proc))
            time.sleep(rng.uniform(0, 0.08))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, f"writer stopped by itself: {err.decode()}"
        lines += out.decode().splitlines()
        for line in lines:
            if line.startswith("READY"):
                _, fid, d = line.split()
                did = None if d == "-" else d
        exp.read([x for x in lines if not x.startswith("READY")])
        for x in lines:
            if x.startswith("C "):
                stats["ops"] += 1
                kind = "C" + x.split()[1]
                stats[kind] = stats.get(kind, 0) + 1
            elif x.startswith("B ") and x is lines[-1]:
                kind = "killed in " + x.split()[1]
                stats[kind] = stats.get(kind, 0) + 1
        stats["kills"] += 1
        if fid is not None:
            try:
                _check(root, fid, did, exp)
            except AssertionError as err:
                raise AssertionError("%s\nrun %d, writer's last lines: %r\nstderr: %s" % (
                    err, k, lines[-6:], "")) from err
    # The runs did the work they were meant to interrupt.
    assert stats["ops"] > KILLS and len(exp.versions) > 0 and stats.get("CU", 0) > 0
    return stats


def test_powerloss_cpython(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "firmware")
    stats = _run([sys.executable, "-u", str(WRITER)], env, tmp_path, seed=1)
    print("cpython", stats)


def test_powerloss_micropython(tmp_path: Path) -> None:
    binary = _micropython()
    if binary is None:
        pytest.skip("micropython not installed")
    env = dict(os.environ)
    env["MICROPYPATH"] = str(_build())
    stats = _run([binary, "-X", "heapsize=512K", str(WRITER)], env, tmp_path, seed=2)
    print("micropython", stats)
