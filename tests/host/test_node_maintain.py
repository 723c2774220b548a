# The running node applies the retention policy and collects unreferenced blocks on its own.
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest


def test_node_thins_versions_on_schedule(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from leither.node import Node

    async def scenario() -> tuple[list[dict], str]:
        node = Node(str(tmp_path), port=0, addr="127.0.0.1", mdns=False,
                    config={"maintain_ms": 300})
        await node.start()
        try:
            mid = node.store.create("maint")
            for i in range(15):  # all within one hour: retention keeps the last 10 (+ 1/hour)
                node.store.set_data(mid, 0, b"version %d " % i * 500)
                node.store.backup(mid)
            assert len(node.store.versions(mid)) == 15
            # Until a run has thinned the versions and said so (its log line comes after the
            # thinning): a deadline, not a count of periods, for a loaded machine.
            said = ""
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                said += capsys.readouterr().out
                if len(node.store.versions(mid)) < 15 and "maintenance:" in said:
                    break
            return node.store.versions(mid), said
        finally:
            await node.stop()

    versions, said = asyncio.run(scenario())
    assert 10 <= len(versions) <= 11
    assert versions[-1]["n"] == 15  # the newest are kept
    assert "maintenance:" in said


def test_maintenance_short_of_heap_runs_again_next_period(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    # A board's maintenance that runs out of heap (its live-set filter is one block of up to
    # 16 KiB) is tried again the next period: the housekeeping loop must not end with it.
    from leither.node import Node

    async def scenario() -> int:
        node = Node(str(tmp_path), port=0, addr="127.0.0.1", mdns=False,
                    config={"maintain_ms": 200})
        runs = [0]
        await node.start()
        real = node.store.maintain_steps

        def short_once():  # type: ignore[no-untyped-def]
            runs[0] += 1
            if runs[0] == 1:
                raise MemoryError("memory allocation failed, allocating 8192 bytes")
            return real()

        node.store.maintain_steps = short_once
        try:
            for _ in range(50):
                await asyncio.sleep(0.1)
                if runs[0] >= 3:
                    break
            return runs[0]
        finally:
            await node.stop()

    assert asyncio.run(scenario()) >= 3
    out = capsys.readouterr().out
    assert "maintenance failed: MemoryError" in out and "maintenance:" in out
