# `leither restore` asks a fresh board again while it answers busy (nothing done) for a while
# longer than the client's own retries; any other error, or busy past the limit, is the answer.
from __future__ import annotations

from typing import Any

import pytest

from leither.errors import RPCError
from leither_host.commands import restore
from leither_host.errors import CliError


class _Board:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.calls = 0

    def call(self, method: str, params: Any, timeout: float) -> Any:
        assert method == "BackupRestore"
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_busy_is_asked_again_then_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restore.time, "sleep", lambda s: None)
    board = _Board([RPCError("busy", "short of memory")] * 3 + [{"versions": 2}])
    assert restore._restore_call(board, {}) == {"versions": 2}
    assert board.calls == 4


def test_other_errors_and_busy_past_the_limit_end_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restore.time, "sleep", lambda s: None)
    board = _Board([RPCError("busy", "x"), RPCError("forbidden", "not the owner")])
    with pytest.raises(CliError, match="forbidden"):
        restore._restore_call(board, {})
    assert board.calls == 2
    monkeypatch.setattr(restore, "_BUSY_S", -1.0)
    board = _Board([RPCError("busy", "short of memory"), {"versions": 1}])
    with pytest.raises(CliError, match="busy"):
        restore._restore_call(board, {})
    assert board.calls == 1


def test_a_board_without_backup_says_so_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # The ESP32's ROMFS bundle leaves pairing and backup out (leither.parts): one plain line.
    from leither import parts

    monkeypatch.setattr(restore.time, "sleep", lambda s: None)
    board = _Board([parts.MissingPart("backup")])
    with pytest.raises(CliError, match="has no pairing and backup; flash the frozen firmware"):
        restore._restore_call(board, {})
    assert board.calls == 1
