# Bounded attackers on a node's RPC port, written from DESIGN.md §4 (the frame and handshake
# rules), not from the server's code: stalled handshakes, slow guests, wrong claim tokens.
# Shared by tests/system/test_rpc_attack.py and bench/attack.py. Loopback only.
"""Attack loops against a Leither node (each stops when its `stop` event is set)."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

from leither import rpc
from leither.errors import LeitherError
from leither_host import client
from leither_host.keys import HostKey


@dataclass
class Tally:
    opened: int = 0  # connections the attacker opened
    held: int = 0  # of them, how many reached the stalling point
    errors: list[str] = field(default_factory=list)


async def _read_frame(reader: asyncio.StreamReader, limit: int) -> bytes:
    n = rpc.parse_header(await reader.readexactly(4), limit)
    return await reader.readexactly(n)


async def _hold(reader: asyncio.StreamReader, stop: asyncio.Event) -> None:
    """Keep the socket open, sending nothing, until the node closes it or we are told."""
    while not stop.is_set():
        try:
            if await asyncio.wait_for(reader.read(1000), 0.5) == b"":
                return
        except asyncio.TimeoutError:
            continue


async def stalled_handshakes(host: str, port: int, count: int, stop: asyncio.Event,
                             tally: Tally, local: str | None = None) -> None:
    """``count`` sockets that each send a hello, read message 2 and stall; reopened when the
    node drops them (issue 10 row 1)."""
    seed = os.urandom(32)

    async def one() -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local, 0) if local else None)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            tally.opened += 1
            try:
                shake = rpc.ClientHandshake(seed)
                writer.write(rpc.encode_frame(shake.hello()))
                await writer.drain()
                await asyncio.wait_for(_read_frame(reader, rpc.HANDSHAKE_MAX_FRAME), 5)
                tally.held += 1
                await _hold(reader, stop)
            except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                    LeitherError):
                await asyncio.sleep(0.01)
            finally:
                writer.close()

    await asyncio.gather(*(one() for _ in range(count)))


async def slow_guests(host: str, port: int, count: int, stop: asyncio.Event, tally: Tally,
                      byte_every: float = 1.0) -> None:
    """``count`` guest sessions that each send a frame header and then one byte a second
    (issue 10 row 2); reconnected when the node drops them."""

    async def one() -> None:
        key = HostKey.from_seed(os.urandom(32))
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            tally.opened += 1
            try:
                shake = rpc.ClientHandshake(key.seed)
                writer.write(rpc.encode_frame(shake.hello()))
                writer.write(rpc.encode_frame(shake.reply(
                    await asyncio.wait_for(_read_frame(reader, rpc.HANDSHAKE_MAX_FRAME), 5))))
                shake.finish(await asyncio.wait_for(
                    _read_frame(reader, rpc.HANDSHAKE_MAX_FRAME), 5))
                tally.held += 1
                size = min(4000, (shake.max_frame or 4096) - 16)
                writer.write(rpc.frame_header(size))
                for _ in range(size):
                    if stop.is_set():
                        break
                    writer.write(b"\x00")
                    await writer.drain()
                    await asyncio.sleep(byte_every)
            except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                    LeitherError):
                await asyncio.sleep(0.05)
            finally:
                writer.close()

    await asyncio.gather(*(one() for _ in range(count)))


async def wrong_claims(host: str, port: int, stop: asyncio.Event, tally: Tally,
                       local: str | None = None, every: float = 0.005) -> None:
    """One guest session that sends a wrong claim token every few ms (issue 10 row 4),
    from ``local`` (another loopback address than the owner's)."""
    key = HostKey.from_seed(os.urandom(32))
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(
                host, port, local_addr=(local, 0) if local else None)
            shake = rpc.ClientHandshake(key.seed)
            writer.write(rpc.encode_frame(shake.hello()))
            writer.write(rpc.encode_frame(shake.reply(await _read_frame(reader, 256))))
            shake.finish(await _read_frame(reader, 256))
            session = client.Session(reader, writer, shake, host, port)
        except (OSError, EOFError, asyncio.IncompleteReadError, LeitherError):
            await asyncio.sleep(0.05)
            continue
        tally.opened += 1
        try:
            while not stop.is_set():
                try:
                    await session._call_once("Claim", {"token": "0000000000000000"}, 5)
                except LeitherError as err:
                    tally.held += getattr(err, "code", "") == "bad_token"
                await asyncio.sleep(every)
        except (OSError, client.ConnectError):
            pass
        finally:
            await session.close()


async def owner_connects(host: str, port: int, key: HostKey, node_id: str, tries: int,
                         within: float = 2.0, pause: float = 0.1
                         ) -> tuple[int, list[float]]:
    """How many of ``tries`` owner connections (handshake + one call) succeeded within
    ``within`` seconds each, and the latency of each success (seconds)."""
    ok = 0
    latencies: list[float] = []
    for _ in range(tries):
        started = time.monotonic()
        try:
            session = await asyncio.wait_for(
                client.connect(host, port, key, node_id, timeout=within), within)
            try:
                await asyncio.wait_for(session.call("GetVar", "id"), within)
            finally:
                await session.close()
            elapsed = time.monotonic() - started
            if elapsed <= within:
                ok += 1
                latencies.append(elapsed)
        except (asyncio.TimeoutError, LeitherError, OSError):
            pass
        await asyncio.sleep(pause)
    return ok, latencies
