# `leither mm put` when the node drops the unsynced pieces it had taken (short of memory it
# refuses the resent piece with "were lost"): a staged put from a file starts over from byte
# 0 and commits the whole file; a put that keeps losing stops with one clear error.
from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from leither.errors import RPCError
from leither_host.commands import mm
from leither_host.errors import CliError


class FakeNode:
    """Keeps a staged put as the node does; loses the unsynced pieces when told to."""

    def __init__(self, lose_at: list[int]) -> None:
        self.session = SimpleNamespace(max_data=2048)
        self.lose_at = lose_at  # piece offsets whose first sending fails with "were lost"
        self.stage = bytearray()
        self.cur = b""
        self.calls: list[tuple[str, int]] = []

    def call(self, method: str, params: Any = None, timeout: float | None = None) -> Any:
        if method == "MFSetData":
            off = params["offset"]
            self.calls.append((method, off))
            if off == 0:
                self.stage = bytearray()
            if self.lose_at and off == self.lose_at[0]:
                self.lose_at.pop(0)
                raise RPCError("store", "writes of MiMei m after byte 0 were lost (the node "
                                        "ran short of memory): write again from there")
            assert off == len(self.stage), "a gap in a staged put"
            self.stage += params["data"]
            return len(self.stage)
        if method == "MFCommit":
            assert params["size"] == len(self.stage)
            self.cur = bytes(self.stage)
            return len(self.cur)
        raise AssertionError(method)


def _args(path: Path) -> argparse.Namespace:
    return argparse.Namespace(file=str(path), offset=None, mid="m" * 27)


def test_a_lost_staged_put_starts_over(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes: six pieces of 1,792
    path = tmp_path / "f"
    path.write_bytes(data)
    node = FakeNode(lose_at=[1792 * 3])
    result, _show = mm._put(node, _args(path))  # type: ignore[arg-type]
    assert node.cur == data and result["written"] == len(data) == result["size"]
    offsets = [off for _m, off in node.calls]
    assert offsets.count(0) == 2 and offsets[:5] == [0, 1792, 3584, 5376, 0]


def test_a_put_that_keeps_losing_stops_clearly(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 5000)
    node = FakeNode(lose_at=[1792] * 10)
    with pytest.raises(CliError, match="were lost"):
        mm._put(node, _args(path))  # type: ignore[arg-type]
    assert [off for _m, off in node.calls].count(0) == 1 + mm._PUT_RESTARTS
