# The host end of the node RPC (protocol in leither.rpc): connect, run the mutual handshake,
# then sealed calls. Async for the fleet code; SyncSession for a CLI verb that makes a few calls.
"""Async RPC client for Leither nodes, plus a small synchronous wrapper."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

from leither import rpc
from leither.errors import AuthError, DecodeError, RPCError
from leither_host.errors import CliError
from leither_host.keys import HostKey

CONNECT_TIMEOUT = 10.0  # seconds for TCP connect + handshake (a board signs in ~0.1-3 s)
CALL_TIMEOUT = 30.0  # seconds for one call's reply
# A node short of heap or slots answers "busy" and did nothing: the call (or the handshake)
# is retried up to BUSY_TRIES times in all, pausing BUSY_FIRST s, doubling, at most BUSY_MAX s.
BUSY_TRIES = 8
BUSY_FIRST = 0.05
BUSY_MAX = 1.0
PAGE = 100  # MiMei per MMList page (the node may answer fewer; see Session.pages)
_REPLY_OVERHEAD = 64  # bytes of CBOR and tag around a bulk result in a reply frame


class ConnectError(CliError):
    """The node could not be reached, or the connection broke."""


def _seed_of(key: HostKey | bytes) -> bytes:
    seed = key.seed if isinstance(key, HostKey) else bytes(key)
    if len(seed) != 32:
        raise ValueError("host key seed must be 32 bytes")
    return seed


class Session:
    """An authenticated, sealed connection to one node. Calls go one at a time, in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 shake: rpc.ClientHandshake, host: str, port: int) -> None:
        if shake.channel is None or shake.node_key is None:
            raise AuthError("handshake not finished")
        self._reader = reader
        self._writer = writer
        self._channel: rpc.Channel = shake.channel
        self._lock = asyncio.Lock()
        self._next_id = 1
        self._closed = False
        self.host = host
        self.port = port
        self.node_key: bytes = shake.node_key
        self.node_id: str = shake.node_id or ""
        self.role: str = shake.role or rpc.GUEST
        # The node's inbound frame limit for us: a request must seal to at most this.
        self.max_frame: int = shake.max_frame or rpc.HANDSHAKE_MAX_FRAME

    @property
    def max_data(self) -> int:
        """Bytes of bulk data one request may carry (e.g. MFSetData) to fit the node's limit."""
        return self.max_frame - rpc.TAG_LEN - _REPLY_OVERHEAD

    async def call(self, method: str, params: Any = None, timeout: float | None = CALL_TIMEOUT
                   ) -> Any:
        """The result of ``method(params)`` on the node; RPCError(code, msg) if it fails.
        A "busy" answer is retried with back-off (see BUSY_TRIES) before it is raised."""
        pause = BUSY_FIRST
        for attempt in range(1, BUSY_TRIES + 1):
            try:
                return await self._call_once(method, params, timeout)
            except RPCError as err:
                if err.code != "busy" or attempt == BUSY_TRIES:
                    raise
            await asyncio.sleep(pause)
            pause = min(BUSY_MAX, pause * 2)
        raise AssertionError("unreachable")

    async def pages(self, method: str = "MMList", params: dict[str, Any] | None = None,
                    limit: int = PAGE) -> AsyncIterator[Any]:
        """Every item of a paged listing (MMList): asks for ``limit`` items after a cursor
        and follows the node's ``next`` cursor until it is None. A node that answers a plain
        list (before paging) is taken as one page."""
        cursor: Any = None
        while True:
            page = await self.call(method, dict(params or {}, cursor=cursor, limit=limit))
            if isinstance(page, list):
                for item in page:
                    yield item
                return
            if not isinstance(page, dict) or not isinstance(page.get("items"), list):
                raise DecodeError(f"{method} returned {type(page).__name__}, not a page")
            for item in page["items"]:
                yield item
            cursor = page.get("next")
            if cursor is None:
                return

    async def _call_once(self, method: str, params: Any, timeout: float | None) -> Any:
        async with self._lock:
            if self._closed:
                raise ConnectError(f"session to {self.host}:{self.port} is closed")
            msgid = self._next_id
            self._next_id = 1 if msgid >= rpc.MAX_MSGID else msgid + 1
            request = rpc.encode_request(msgid, method, params)
            if len(request) + rpc.TAG_LEN > self.max_frame:  # check before sealing: the
                # counter must only advance for frames that are sent
                raise RPCError("too_big", f"request of {len(request)} bytes; the node takes "
                               f"{self.max_frame} (send at most {self.max_data} bytes of data)")
            body = self._channel.seal(request)
            try:
                self._writer.write(rpc.frame_header(len(body)) + body)
                await self._writer.drain()
                reply = await asyncio.wait_for(self._read_frame(rpc.MAX_FRAME), timeout)
            except asyncio.TimeoutError:
                await self._abort()
                raise ConnectError(f"{self.host}:{self.port} did not answer {method} in "
                                   f"{timeout:.0f} s") from None
            except (OSError, EOFError) as err:
                await self._abort()
                raise ConnectError(f"connection to {self.host}:{self.port} lost during "
                                   f"{method}: {err or 'closed by the node'}") from None
            try:
                got_id, ok, value = rpc.decode_reply(self._channel.open(reply))
            except (AuthError, DecodeError):
                await self._abort()
                raise
            if got_id != msgid:
                await self._abort()
                if not ok and got_id == 0:  # the node could not read our msgid: its reason
                    raise RPCError(value["code"], value["msg"])
                raise DecodeError(f"reply to msgid {got_id}, expected {msgid}")
        if not ok:
            raise RPCError(value["code"], value["msg"])
        if method == "Claim" and isinstance(value, dict):
            # A claim upgrades this very session: the node now takes owner-sized frames.
            self.role = str(value.get("role", self.role))
            self.max_frame = int(value.get("max_frame", self.max_frame))
        return value

    async def read_chunks(self, method: str, params: dict[str, Any], chunk: int | None = None
                          ) -> AsyncIterator[bytes]:
        """Stream a bulk read: call ``method`` with ``offset``/``length`` added until the node
        returns empty bytes (e.g. MFGetData). Each result stays within one frame."""
        size = chunk or (rpc.MAX_FRAME - rpc.TAG_LEN - _REPLY_OVERHEAD)
        offset = int(params.get("offset", 0))
        while True:
            data = await self.call(method, dict(params, offset=offset, length=size))
            if not isinstance(data, (bytes, bytearray)):
                raise DecodeError(f"{method} returned {type(data).__name__}, not bytes")
            if not data:
                return
            yield bytes(data)
            offset += len(data)

    async def _read_frame(self, limit: int) -> bytes:
        length = rpc.parse_header(await self._reader.readexactly(rpc.HEADER_LEN), limit)
        return await self._reader.readexactly(length)

    async def _abort(self) -> None:
        self._closed = True
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (OSError, asyncio.CancelledError):
            pass

    async def close(self) -> None:
        if not self._closed:
            await self._abort()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     shake: rpc.ClientHandshake) -> None:
    async def read(limit: int) -> bytes:
        length = rpc.parse_header(await reader.readexactly(rpc.HEADER_LEN), limit)
        return await reader.readexactly(length)

    writer.write(rpc.encode_frame(shake.hello()))
    await writer.drain()
    msg3 = shake.reply(await read(rpc.HANDSHAKE_MAX_FRAME))
    writer.write(rpc.encode_frame(msg3))
    await writer.drain()
    shake.finish(await read(rpc.HANDSHAKE_MAX_FRAME))


async def connect(host: str, port: int, my_key: HostKey | bytes,
                  expected_node_id: str | None = None,
                  timeout: float = CONNECT_TIMEOUT, attempts: int = 20) -> Session:
    """Open an authenticated session. With ``expected_node_id`` a node with another key is
    refused (AuthError); without it, read ``session.node_id`` to learn (and pin) the node.

    A node under a flood may refuse or drop ours during the handshake (it sheds stalled
    handshakes, refuses newcomers when none is, answers "busy" when short of heap): such a
    connection is retried, with a growing pause (50 ms to 0.5 s), up to ``attempts`` times in
    all, within ``timeout``.
    """
    seed = _seed_of(my_key)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for attempt in range(1, attempts + 1):
        shake = rpc.ClientHandshake(seed, expected_node_id)
        left = max(0.1, deadline - loop.time())
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), left)
        except asyncio.TimeoutError:
            raise ConnectError(f"no answer from {host}:{port} in {timeout:.0f} s") from None
        except OSError as err:
            raise ConnectError(f"cannot connect to {host}:{port}: {err.strerror or err}"
                               ) from None
        try:
            await asyncio.wait_for(_handshake(reader, writer, shake),
                                   max(0.1, deadline - loop.time()))
        except BaseException as err:
            writer.close()
            if isinstance(err, asyncio.TimeoutError):
                raise ConnectError(f"{host}:{port} did not complete the handshake in "
                                   f"{timeout:.0f} s") from None
            if isinstance(err, RPCError) and err.code == "busy":  # no slot or heap now
                if attempt < attempts and loop.time() < deadline:
                    await asyncio.sleep(min(BUSY_MAX, BUSY_FIRST * 2 ** (attempt - 1)))
                    continue
                raise ConnectError(f"{host}:{port} is busy: {err.msg}") from None
            if isinstance(err, (OSError, EOFError)):
                # Dropped before or after the node's answer: slots, quota or heap (a board
                # short of heap mid-handshake closes): try again while time is left.
                if attempt < attempts and loop.time() < deadline:
                    await asyncio.sleep(min(0.5, 0.05 * 2 ** (attempt - 1)))
                    continue
                raise ConnectError(f"{host}:{port} closed the connection during the "
                                   f"handshake") from None
            raise
        return Session(reader, writer, shake, host, port)
    raise ConnectError(f"{host}:{port} closed the connection during the handshake")


class SyncSession:
    """A Session driven from synchronous code (one private event loop per session)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, session: Session) -> None:
        self._loop = loop
        self.session = session

    @property
    def node_id(self) -> str:
        return self.session.node_id

    @property
    def role(self) -> str:
        return self.session.role

    def call(self, method: str, params: Any = None, timeout: float | None = CALL_TIMEOUT) -> Any:
        return self._loop.run_until_complete(self.session.call(method, params, timeout))

    def pages(self, method: str = "MMList", params: dict[str, Any] | None = None,
              limit: int = PAGE) -> list[Any]:
        """All items of a paged listing (see Session.pages), through ``self.call`` so that a
        session standing in for another (nodes.FailoverSession) answers its own way."""
        return collect_pages(self.call, method, params, limit)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self.session.close())
            self._loop.close()

    def __enter__(self) -> SyncSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def collect_pages(call: Callable[[str, Any], Any], method: str = "MMList",
                  params: dict[str, Any] | None = None, limit: int = PAGE) -> list[Any]:
    """All items of a paged listing, fetched with a synchronous ``call(method, params)``:
    follows the ``next`` cursor of each {"items", "next"} page; a plain list (a node from
    before paging, or a stand-in session) is the whole listing."""
    items: list[Any] = []
    cursor: Any = None
    while True:
        page = call(method, dict(params or {}, cursor=cursor, limit=limit))
        if isinstance(page, list):
            return items + page
        if not isinstance(page, dict) or not isinstance(page.get("items"), list):
            raise DecodeError(f"{method} returned {type(page).__name__}, not a page")
        items.extend(page["items"])
        cursor = page.get("next")
        if cursor is None:
            return items


def connect_sync(host: str, port: int, my_key: HostKey | bytes,
                 expected_node_id: str | None = None,
                 timeout: float = CONNECT_TIMEOUT) -> SyncSession:
    """Blocking ``connect`` for CLI verbs: ``with connect_sync(...) as s: s.call(...)``."""
    loop = asyncio.new_event_loop()
    try:
        session = loop.run_until_complete(connect(host, port, my_key, expected_node_id, timeout))
    except BaseException:
        loop.close()
        raise
    return SyncSession(loop, session)
