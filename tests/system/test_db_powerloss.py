# Power loss during db work (DESIGN §4 "Storage"; issue 3): a writer (db_writer.py) under
# MicroPython and under CPython is SIGKILLed at seeded random moments, ~100 times each, while
# it runs transactions and single writes (and while it opens and recovers the db). After each
# kill the db is reopened here and compared with a reference db that replayed exactly the
# committed units: every acknowledged unit is there, the one in flight is all there or not at
# all, and the canonical export matches byte for byte (nothing torn, nothing extra).
# A second run kills the writer while it restores the db from one export or another: the db
# is then exactly one of them, never a mix.
from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from leither.db import DB

REPO = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).with_name("db_writer.py")
KILLS = int(os.environ.get("DB_POWERLOSS_KILLS", "100"))  # per interpreter


def _writer_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("db_writer", WRITER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _digest(db: DB) -> str:
    h = hashlib.sha256()
    for piece in db.export():
        h.update(piece)
    return h.hexdigest()


def _run(cmd: list[str], env: dict[str, str], tmp: Path, seed: int) -> dict[str, int]:
    writer = _writer_module()
    rnd = random.Random(seed)
    path = tmp / "db"
    ref = DB(str(tmp / "ref"))  # replays the committed units, never interrupted
    ref_u = 0
    acked = 0
    stats = {"kills": 0, "in_flight_committed": 0, "units": 0}
    try:
        for _ in range(KILLS):
            # Unbuffered: readline() below must not pull later "C" lines into a buffer that
            # communicate() (reading the pipe itself) never sees; acknowledged units were lost
            # to the count that way (acked 1584 while the db held 1590).
            proc = subprocess.Popen(cmd + [str(path)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env, bufsize=0)
            assert proc.stdout is not None
            # Kill while it opens (recovers) now and then, else once it runs its units: after
            # 0-3 acknowledged units (counted, not timed, so a loaded machine still kills
            # in the middle of real work) and a random moment more.
            seen = b""
            if rnd.random() < 0.1:
                time.sleep(rnd.random() * 0.05)
            else:
                ready = select.select([proc.stdout], [], [], 20)[0]
                assert ready, "writer did not start"
                for _ in range(1 + rnd.randrange(4)):  # the "R" line, then units
                    seen += proc.stdout.readline()
                time.sleep(rnd.random() * 0.08)
            proc.send_signal(signal.SIGKILL)
            out, err = proc.communicate(timeout=20)
            assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
            stats["kills"] += 1
            for line in (seen + out).decode().splitlines():
                if line.startswith("C "):
                    acked = max(acked, int(line[2:]))
            db = DB(str(path))
            try:
                u = writer.current(db)
                # every acknowledged unit is in; at most the one in flight got in as well
                assert acked <= u <= acked + 1, (acked, u)
                assert u >= ref_u, "a committed unit was lost"
                stats["in_flight_committed"] += u == acked + 1
                while ref_u < u:
                    ref_u += 1
                    writer.apply(ref, ref_u)
                assert _digest(db) == _digest(ref), "db differs from its committed units"
            finally:
                db.close()
            acked = u
        stats["units"] = ref_u
    finally:
        ref.close()
    # the kills landed in real work: many units ran, some were caught in flight
    assert stats["units"] > KILLS
    return stats


def _restore_cycle(cmd: list[str], env: dict[str, str]) -> float:
    """Seconds one uninterrupted pass over both exports takes here ("R 0" to "C 1")."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().startswith(b"R"), "writer did not start"
        start = time.monotonic()
        deadline = start + 120
        while time.monotonic() < deadline:  # the writer prints a line per restore, forever
            line = proc.stdout.readline()
            assert line, "writer exited: " + proc.stderr.read().decode()[-2000:]
            if line.strip() == b"C 1":
                return time.monotonic() - start
        raise AssertionError("two restores took over 120 s")
    finally:
        proc.kill()
        proc.communicate(timeout=20)


def _run_restores(cmd: list[str], env: dict[str, str], tmp: Path, seed: int) -> int:
    """Kill restores midway: the db must read back as one of the exports, whole."""
    writer = _writer_module()
    rnd = random.Random(seed)
    files = []
    digests = []
    for n, units in enumerate((25, 40)):  # two different contents, both several pages
        ref = DB(str(tmp / ("ref%d" % n)))
        for u in range(1, units + 1):
            writer.apply(ref, u)
        ref.Begin()  # enough pages that a restore spills some before its commit
        for i in range(400 + 200 * n):
            ref.Hset("wide", "field %d" % i, "value %d of %d" % (i, n))
        ref.Commit()
        name = tmp / ("export%d" % n)
        name.write_bytes(b"".join(ref.export()))
        files.append(str(name))
        digests.append(_digest(ref))
        ref.close()
    path = tmp / "restored"
    cycle = _restore_cycle(cmd + [str(tmp / "calibrate"), "restore"] + files, env)
    seen = set()
    for _ in range(KILLS // 4):
        proc = subprocess.Popen(cmd + [str(path), "restore"] + files, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        assert proc.stdout is not None
        assert select.select([proc.stdout], [], [], 20)[0], "writer did not start"
        # Kills spread over one and a half cycles of this machine's own pace (a fixed 0.5 s
        # window missed the second restore entirely on a loaded machine).
        time.sleep(rnd.random() * 1.5 * cycle)
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
        if not (path / "root").exists():
            continue  # killed before the first restore committed: no db yet
        db = DB(str(path))
        try:
            d = _digest(db)
        finally:
            db.close()
        assert d in digests, "a killed restore left a db that is neither old nor new"
        seen.add(d)
    assert len(seen) == 2  # both contents were reached: kills landed between and within
    return len(seen)


def test_db_powerloss_cpython(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "firmware")
    stats = _run([sys.executable, "-u", str(WRITER)], env, tmp_path, seed=11)
    _run_restores([sys.executable, "-u", str(WRITER)], env, tmp_path, seed=13)
    print("cpython", stats)


def _build() -> Path:
    from leither_host.build import build

    (REPO / "build").mkdir(exist_ok=True)
    with open(REPO / "build" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build("unix")
    return REPO / "build" / "unix"


def test_db_powerloss_micropython(tmp_path: Path) -> None:
    here = Path(sys.executable).parent / "micropython"
    binary = str(here) if here.exists() else shutil.which("micropython")
    if binary is None:
        pytest.skip("micropython not installed")
    env = dict(os.environ)
    env["MICROPYPATH"] = str(_build())
    # the writer runs from source (compiling it takes heap): 256K, not the board's 64K
    stats = _run([binary, "-X", "heapsize=256K", str(WRITER)], env, tmp_path, seed=12)
    _run_restores([binary, "-X", "heapsize=256K", str(WRITER)], env, tmp_path, seed=14)
    print("micropython", stats)
