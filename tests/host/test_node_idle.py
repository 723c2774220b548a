# What a node hands back when its last session ends (leither.node: Node._idle): the store's
# caches and pools, but not while a service works in the background (a backup push takes its
# chunk buffers from that pool); then the housekeeping hands them back once the work is done.
from __future__ import annotations

import asyncio
import time
from pathlib import Path

from leither_host import keys
from leither_host.client import connect


class _Worker:
    """A service busy in the background until told otherwise (as leither.backup's push)."""

    busy: str | None = "pushing"

    def register(self, server: object) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def on_press(self, kind: str) -> bool:
        return False

    def fact(self, name: str) -> object:
        raise KeyError(name)

    def txt(self, txt: dict) -> None:
        pass


def test_the_idle_trim_waits_for_background_work(tmp_path: Path) -> None:
    from leither.node import Node

    async def until(cond, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 10
        while not cond():
            assert time.monotonic() < deadline, "still waiting for " + what
            await asyncio.sleep(0.05)

    async def scenario() -> None:
        node = Node(str(tmp_path), port=0, addr="127.0.0.1", mdns=False)
        await node.start()
        worker = _Worker()
        node.services.append(worker)
        trims: list[bool] = []
        try:
            store = node.open_store()
            store.trim = lambda unload=False: trims.append(unload)  # type: ignore[method-assign]
            session = await connect("127.0.0.1", node.port, keys.HostKey.generate())
            assert await session.call("GetVar", "id")
            await session.close()
            await until(lambda: node.server.connections == 0, "the session to end")
            await asyncio.sleep(1.5)  # a housekeeping round or more, the worker still busy
            assert trims == [], "the store was trimmed under a busy service"
            worker.busy = None
            await until(lambda: trims == [True], "the trim once the work is done")
            session = await connect("127.0.0.1", node.port, keys.HostKey.generate())
            await session.close()
            await until(lambda: trims == [True, True], "the trim after the next session")
        finally:
            await node.stop()

    asyncio.run(scenario())
