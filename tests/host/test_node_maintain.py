# The running node applies the retention policy and collects unreferenced blocks on its own.
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest


def test_node_thins_versions_on_schedule(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from leither.node import Node

    async def scenario() -> list[dict]:
        node = Node(str(tmp_path), port=0, addr="127.0.0.1", mdns=False,
                    config={"maintain_ms": 300})
        await node.start()
        try:
            mid = node.store.create("maint")
            for i in range(15):  # all within one hour: retention keeps the last 10 (+ 1/hour)
                node.store.set_data(mid, 0, b"version %d " % i * 500)
                node.store.backup(mid)
            assert len(node.store.versions(mid)) == 15
            for _ in range(40):
                await asyncio.sleep(0.1)
                if len(node.store.versions(mid)) < 15:
                    break
            return node.store.versions(mid)
        finally:
            await node.stop()

    versions = asyncio.run(scenario())
    assert 10 <= len(versions) <= 11
    assert versions[-1]["n"] == 15  # the newest are kept
    assert "maintenance:" in capsys.readouterr().out
