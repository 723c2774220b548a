# `sim down` stops the boards as the simulation's state file has them now: a board restarted
# by another process (`leither sim start`, a restore, a dashboard job) has a new PID there.
from __future__ import annotations

import os
from pathlib import Path

import pytest

from leither_host.sim import Sim


def test_down_stops_a_board_another_process_restarted(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEITHER_HOME", str(tmp_path / "home"))
    first = Sim(tmp_path / "sim")
    first.up(1, "cpython", use_lan=False, prefix=f"sdown{os.getpid() % 10000}b")
    try:
        other = Sim(tmp_path / "sim")  # as a CLI verb in another process would
        name = other.boards[0].name
        other.stop(name)
        board = other.start(name)
        assert board.pid != first.boards[0].pid and other.alive(board)
        first.down()  # holds the old PID in memory
        assert not other.alive(board), "the restarted board was left running"
    finally:
        Sim(tmp_path / "sim").down()
