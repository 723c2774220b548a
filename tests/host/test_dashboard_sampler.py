# The dashboard's sampler against a real node (the firmware on CPython, in this process): a new
# node is seen as a guest, a claim made since its session's handshake is noticed (a new session
# learns the owner's role), the owner's backup status becomes history points, logs come through
# the held session, a node with another key at the address is a wrong node, a stopped one goes
# offline and is retried later, not on every poll.
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from leither_host import keys
from leither_host.client import connect
from leither_host.dashboard.sampler import Sampler
from leither_host.errors import CliError
from leither_host.fleet import Fleet

TOKEN = "3f9a0c2e1b7d4a65"


def test_sampler_follows_a_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEITHER_HOME", str(tmp_path / "home"))
    from leither.node import Node

    async def scenario() -> None:
        node = Node(str(tmp_path / "node"), name="bench1", port=0, addr="127.0.0.1",
                    claim_token=TOKEN, mdns=False)
        await node.start()
        port = node.server.port
        fleet = Fleet()
        fleet.remember({"id": node.identity.id, "name": "bench1", "host": "127.0.0.1",
                        "port": port})
        fleet.close()
        sampler = Sampler(poll_s=0.2)
        try:
            await sampler.poll_once()
            [row] = sampler.rows()
            assert row["online"] and row["name"] == "bench1" and row["board"] == "unix"
            assert row["role"] == "guest" and row["claimed"] is False and row["backup"] is None
            with pytest.raises(CliError, match="owner"):
                await sampler.log("bench1", 0)
            # Claimed from elsewhere (another session of this host's key).
            owner = await connect("127.0.0.1", port, keys.load_or_create())
            await owner.call("Claim", {"token": TOKEN})
            await owner.close()
            await sampler.poll_once()
            [row] = sampler.rows()
            assert row["role"] == "owner" and row["claimed"] is True
            assert row["backup"] is not None and row["backup"]["state"] == "unpaired"
            assert row["free_bytes"] and row["free_bytes"] % 1024 == 0
            await sampler.poll_once()
            points = sampler.history(node.identity.id)
            assert len(points) == 2 and all(p[1] == 0 for p in points)  # nothing pushed yet
            got = await sampler.log(node.identity.id[:6], 0, tail=50)
            assert any("claimed by" in line[2] for line in got["lines"])
            again = await sampler.log("bench1", got["next"])
            assert again["lines"] == [] and again["next"] == got["next"]
            # Another node's ID for that address: refused, shown as a wrong node.
            fleet = Fleet()
            fleet.forget(node.identity.id)
            other = "2NDmpWDZFi9kTcJfQu1hLXikKVgc"
            fleet.remember({"id": other, "name": "bench1", "host": "127.0.0.1", "port": port})
            fleet.close()
            await sampler.poll_once()
            [row] = sampler.rows()
            assert row["id"] == other and not row["online"] and row["wrong_node"]
            assert "another node" in row["error"]
        finally:
            await node.stop()
        # Offline: one failed try, then a pause before the next (no connect on every poll).
        fleet = Fleet()
        fleet.forget("2NDmpWDZFi9kTcJfQu1hLXikKVgc")
        fleet.remember({"id": node.identity.id, "name": "bench1", "host": "127.0.0.1",
                        "port": port})
        fleet.close()
        await sampler.poll_once()
        [row] = sampler.rows()
        assert not row["online"] and row["error"] and not row["wrong_node"]
        state = sampler.nodes[node.identity.id]
        assert state.next_try > time.monotonic() and state.failures == 1
        await sampler.poll_once()
        assert state.failures == 1  # not tried again yet
        await sampler.stop()

    asyncio.run(scenario())
