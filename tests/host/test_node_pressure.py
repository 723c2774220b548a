# A node whose store grows fast collects before its maintenance period is over.
from __future__ import annotations

import asyncio
from pathlib import Path


def test_packs_sealed_since_the_last_run_start_maintenance_early(tmp_path: Path) -> None:
    from leither.node import Node

    async def scenario() -> tuple[int, int, int]:
        node = Node(str(tmp_path), port=0, addr="127.0.0.1", mdns=False,
                    config={"maintain_ms": 3600000, "maintain_packs": 3})
        await node.start()
        runs = [0]
        blocks = node.open_store().blocks
        real = node.store.maintain_steps

        def counted():  # type: ignore[no-untyped-def]
            runs[0] += 1
            return real()

        node.store.maintain_steps = counted
        try:
            await asyncio.sleep(1.5)
            quiet = runs[0]  # an hour's period, nothing written: no run
            for p in range(3):  # three packs of garbage: nothing references them
                for i in range(4):
                    blocks.put(b"garbage %d %d " % (p, i) * 300)
                blocks.seal_open()
            for _ in range(100):  # deadline 10 s on a loaded machine
                await asyncio.sleep(0.1)
                if runs[0] and blocks.sealed() == 0:
                    break
            return quiet, runs[0], blocks.sealed()
        finally:
            await node.stop()

    quiet, runs, left = asyncio.run(scenario())
    assert quiet == 0
    assert runs == 1 and left == 0  # the garbage packs went in one early run
