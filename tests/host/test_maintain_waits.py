# The node's maintenance (retention and collection: a live-set filter, manifests read whole)
# waits while a service works in the background: beside a board's restore it took the heap the
# restore needed (bench/backup_heap.py on the ESP32 stand-in: MemoryErrors, lowest free 9.5 KB
# instead of 18.5 KB), and beside a push after boot likewise.
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any


def _count_calls(obj: Any, name: str) -> list[int]:
    """Replace method name of obj by one counting its calls (in [0] of the list returned):
    a store's maintain_steps is called once per maintenance run, a node's free_kib once per
    round of its housekeeping loop. obj is the object the node calls: its opened store, not
    the _Unopened that node.store gives before (set on that, nothing is counted)."""
    calls = [0]
    real = getattr(obj, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    setattr(obj, name, counted)
    return calls


class _Working:
    """A service at work in the background (as leither.backup's is while pushing/restoring)."""

    busy: str | None = "restoring"

    async def stop(self) -> None:
        pass


def test_maintenance_waits_while_a_service_works(tmp_path: Path) -> None:
    from leither.node import Node

    async def scenario() -> tuple[int, int, int]:
        node = Node(str(tmp_path), port=0, addr="127.0.0.1", mdns=False,
                    config={"maintain_ms": 100})
        await node.start()
        try:
            work = _Working()
            node.services.append(work)
            runs = _count_calls(node.open_store(), "maintain_steps")
            loops = _count_calls(node, "free_kib")
            # Rounds of the loop (not a fixed sleep: a loaded machine runs fewer), each well
            # past the 100 ms period, while the service works: no maintenance.
            deadline = time.monotonic() + 60
            while loops[0] < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            during = runs[0]
            rounds = loops[0]
            work.busy = None  # the work is done: the maintenance owed runs now
            while runs[0] == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return during, rounds, runs[0]
        finally:
            await node.stop()

    during, rounds, after = asyncio.run(scenario())
    assert rounds >= 4
    assert during == 0
    assert after >= 1


def test_packs_found_when_the_store_opens_do_not_start_maintenance(tmp_path: Path) -> None:
    """A node opens its store at the first call that needs it (a push after boot): the packs
    already there were not sealed since the last run, so they start no maintenance beside
    that call; packs sealed after the open still do (maintain_packs)."""
    import os

    from leither.node import Node

    config = {"maintain_ms": 10_000_000, "maintain_packs": 2}

    async def fill() -> None:
        node = Node(str(tmp_path), port=0, addr="127.0.0.1", mdns=False, config=config)
        await node.start()
        try:
            for _ in range(4):
                node.store.blocks.put(os.urandom(4096))
                node.store.blocks.seal_open()
        finally:
            await node.stop()

    async def reopen() -> tuple[int, int, int]:
        node = Node(str(tmp_path), port=0, addr="127.0.0.1", mdns=False, config=config)
        await node.start()
        try:
            loops = _count_calls(node, "free_kib")
            deadline = time.monotonic() + 60
            while loops[0] < 2 and time.monotonic() < deadline:  # the node runs a while...
                await asyncio.sleep(0.05)
            assert node._store is None  # ... then a call opens its store
            store = node.open_store()
            sealed = store.blocks.sealed()
            runs = _count_calls(store, "maintain_steps")
            while loops[0] < 5 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            during = runs[0]
            for _ in range(2):  # two packs sealed since the open: that starts a run
                store.blocks.put(os.urandom(4096))
                store.blocks.seal_open()
            while runs[0] == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return sealed, during, runs[0]
        finally:
            await node.stop()

    asyncio.run(fill())
    sealed, during, after = asyncio.run(reopen())
    assert sealed >= 4
    assert during == 0
    assert after >= 1
