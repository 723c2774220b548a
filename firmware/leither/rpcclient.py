# The node's own RPC client: how one node calls another (pairing, backup, audits). Same
# protocol as the host client (leither_host.client) over leither.rpc's ClientHandshake and
# Channel, written for both interpreters: asyncio streams only, timeouts in milliseconds,
# calls one at a time per connection (or pipelined: send/receive), every reply
# bounded before it is read.
"""Async RPC client for node-to-node calls (MicroPython and CPython).

Use::

    client = await rpcclient.connect(host, 4800, node.identity.seed,
                                     expected_node_id=partner_id, timeout_ms=5000)
    try:
        free = await client.call("GetVar", {"name": "free"})
    finally:
        await client.close()

``call`` raises ``RPCError(code, msg)`` when the node answers with an error, ``ConnectError``
when the connection cannot be made, times out or breaks (the client is then closed), and
``AuthError`` / ``DecodeError`` when the node's frames do not check out. A "busy" answer
(the node is short of heap or slots; nothing was done) is retried a few times with back-off.
"""

import asyncio

from . import cbor, rpc
from .compat import IS_MICROPYTHON, const
from .errors import AuthError, DecodeError, LeitherError, RPCError

CONNECT_MS = const(10000)  # TCP connect + handshake: a board signs in ~0.1-3 s
CALL_MS = const(30000)  # one call's reply: a big store write on a slow flash
# Largest reply frame we accept (bytes). A board keeps this low: a reply is held whole while it
# is opened, so this bounds the client's heap. rpc.MAX_FRAME (64 KiB) for bulk transfers.
DEFAULT_MAX_REPLY = const(16384)
# A node short of heap answers "busy" (nothing was done): retried this many times in all,
# waiting BUSY_FIRST_MS, then twice as long each time (0.1 + 0.2 + 0.4 s).
BUSY_TRIES = const(4)
BUSY_FIRST_MS = const(100)


class ConnectError(LeitherError):
    """The node could not be reached in time, or the connection broke."""


_read = rpc.read_exact


async def _read_frame(reader, limit):
    return await _read(reader, rpc.parse_header(await _read(reader, rpc.HEADER_LEN), limit))


async def _close(writer):
    try:
        writer.close()
        await writer.wait_closed()
    except (OSError, asyncio.CancelledError):
        pass
    except Exception:  # noqa: BLE001 - CPython raises assorted errors on a reset socket
        pass


class _Into:
    """cbor.dump's stream into buf from the frame header on, up to end (ValueError past it)."""

    def __init__(self, buf, end):
        self.buf = buf
        self.at = rpc.HEADER_LEN
        self.end = end

    def write(self, data):
        n = len(data)
        if self.at + n > self.end:
            raise ValueError("over the kept frame")
        self.buf[self.at:self.at + n] = data
        self.at += n


def _encode_into(buf, msg):
    """The size of msg's CBOR written into buf after the header, room left for the tag; None
    if it does not fit (the caller encodes it apart)."""
    into = _Into(buf, len(buf) - rpc.TAG_LEN)
    try:
        cbor.dump(msg, into)
    except ValueError:
        return None
    return into.at - rpc.HEADER_LEN


class Client:
    """An authenticated, sealed session to one node; calls go one at a time, in order."""

    def __init__(self, reader, writer, shake, host, port, max_reply=DEFAULT_MAX_REPLY):
        self._reader = reader
        self._writer = writer
        self._channel = shake.channel
        self.lock = asyncio.Lock()
        self._next_id = 1
        self.closed = False
        self.host = host
        self.port = port
        self.node_key = shake.node_key
        self.node_id = shake.node_id
        self.role = shake.role
        self.max_frame = shake.max_frame  # the node's inbound limit for our requests
        self.max_reply = max_reply
        self._frame = None  # the kept frame buffer (keep_frame), or None: one per call

    def keep_frame(self, limit=None, buf=None):
        """From now on seal requests and read replies in one buffer kept by this session:
        a bulk client on a board (a restore: thousands of calls) then allocates no frame per
        call, which a fragmented heap could fail half-way. Its body room is the node's frame
        limit (the node's replies keep to it too), at most ``limit`` and max_reply bytes;
        bigger frames still get their own buffer. ``buf``: a buffer to use if big enough (a
        reconnecting client hands on its old one). Returns the body room in bytes."""
        room = min(self.max_frame, self.max_reply, limit or self.max_frame)
        if buf is None or len(buf) < rpc.HEADER_LEN + room:
            buf = bytearray(rpc.HEADER_LEN + room)
        self._frame = buf
        return room

    @property
    def kept_frame(self):
        """The buffer keep_frame made (or None)."""
        return self._frame

    async def call(self, method, params=None, timeout_ms=CALL_MS, views=False):
        """The result of ``method(params)`` on the node (see the module docstring).

        views=True (with keep_frame): byte strings in the result come as memoryviews into the
        kept buffer, no copy; they are valid only until this session's next call."""
        await self.lock.acquire()
        try:
            wait = BUSY_FIRST_MS
            for _ in range(BUSY_TRIES - 1):
                try:
                    return await self._call(method, params, timeout_ms, views)
                except RPCError as err:
                    if err.code != "busy":
                        raise
                await asyncio.sleep(wait / 1000)  # the node is short of heap: let it recover
                wait *= 2
            return await self._call(method, params, timeout_ms, views)
        finally:
            self.lock.release()

    async def _call(self, method, params, timeout_ms, views=False):
        return await self.receive(await self.send(method, params), method, timeout_ms, views)

    async def send(self, method, params=None):
        """Seal and write one request; its msgid. The node answers a session's requests in
        order, so several may be sent before the first ``receive`` (a pipeline; the caller
        holds ``lock`` meanwhile, so no ``call`` comes between)."""
        if self.closed:
            raise ConnectError("session to %s:%d is closed" % (self.host, self.port))
        msgid = self._next_id
        self._next_id = 1 if msgid >= rpc.MAX_MSGID else msgid + 1
        # Sealed in place in the frame it is sent as (header, ciphertext, tag): one copy of
        # the request instead of four (seal, slices, join), each a block of a board's heap.
        # With a kept frame the request is encoded straight into it: no request-sized object
        # at all (a board's push sends thousands). One write per frame: MicroPython sets no
        # TCP_NODELAY, and a frame split over writes meets Nagle + delayed ACK (~40 ms a call
        # on Linux).
        frame = self._frame
        size = None if frame is None else _encode_into(frame, [msgid, method, params])
        if size is None:
            request = rpc.encode_request(msgid, method, params)
            size = len(request)
            if size + rpc.TAG_LEN > self.max_frame:
                # Checked before sealing: the send counter must advance only for frames sent.
                raise RPCError("too_big", "request of %d bytes; the node takes %d"
                               % (size, self.max_frame))
            frame = bytearray(rpc.HEADER_LEN + size + rpc.TAG_LEN)
            frame[rpc.HEADER_LEN:rpc.HEADER_LEN + size] = request
            request = None
        kept = self._frame
        size = self._channel.seal_into(frame, size)
        try:
            # MicroPython's writer sends at once and copies only what the socket did not
            # take, so the kept buffer is free again when write returns; CPython's transport
            # may hold on to what it is given, so it gets bytes of its own.
            self._writer.write(memoryview(frame)[:size] if frame is not kept or IS_MICROPYTHON
                               else bytes(frame[:size]))
            frame = None
            await self._writer.drain()
        except OSError as err:
            await self._lost(method, err)
        return msgid

    async def receive(self, msgid, method="", timeout_ms=CALL_MS, views=False):
        """The answer to request msgid, the oldest sent and not yet received (views: see
        call; they are valid until the next receive)."""
        try:
            body = await asyncio.wait_for(self._read_reply(), timeout_ms / 1000)
        except asyncio.TimeoutError:
            await self.close()
            raise ConnectError("%s:%d did not answer %s in %d ms"
                               % (self.host, self.port, method, timeout_ms)) from None
        except (OSError, EOFError) as err:
            await self._lost(method, err)
        except DecodeError:  # a reply over max_reply: the stream is out of step now
            await self.close()
            raise
        try:
            if not isinstance(body, (bytearray, memoryview)):
                body = bytearray(body)
            # Opened where it lies (decoding copies out what it keeps, unless views): no
            # plaintext copy.
            got_id, ok, value = rpc.decode_reply(self._channel.open_inplace(body), views)
        except (AuthError, DecodeError):
            await self.close()
            raise
        if got_id != msgid:
            await self.close()
            raise DecodeError("reply to msgid %d, expected %d" % (got_id, msgid))
        if not ok:
            raise RPCError(value["code"], value["msg"])
        return value

    async def _read_reply(self):
        """The next reply frame's body: in the kept buffer (a memoryview) when it fits."""
        n = rpc.parse_header(await _read(self._reader, rpc.HEADER_LEN), self.max_reply)
        kept = self._frame
        if kept is None or n > len(kept):
            return await _read(self._reader, n)
        view = memoryview(kept)[:n]
        await rpc.read_into(self._reader, view)
        return view

    async def _lost(self, method, err):
        await self.close()
        raise ConnectError("connection to %s:%d lost during %s: %s"
                           % (self.host, self.port, method, err)) from err

    async def close(self, abort=False):
        """Close the session; abort=True for a session given up on (a dead link): its unsent
        requests are dropped instead of reaching the node late (see net.reset_on_close)."""
        if not self.closed:
            self.closed = True
            if abort:
                from .port import net

                net.reset_on_close(self._writer)
            await _close(self._writer)


async def _handshake(reader, writer, shake):
    writer.write(rpc.encode_frame(shake.hello()))
    await writer.drain()
    msg3 = shake.reply(await _read_frame(reader, rpc.HANDSHAKE_MAX_FRAME))
    writer.write(rpc.encode_frame(msg3))
    await writer.drain()
    shake.finish(await _read_frame(reader, rpc.HANDSHAKE_MAX_FRAME))


async def connect(host, port, seed, expected_node_id=None, timeout_ms=CONNECT_MS,
                  max_reply=DEFAULT_MAX_REPLY):
    """Open an authenticated session to ``host:port`` as the key with Ed25519 ``seed``.

    With ``expected_node_id`` a node holding another key is refused (AuthError). Raises
    ConnectError if the node is unreachable or the handshake does not finish in time.
    """
    wait = BUSY_FIRST_MS
    for _ in range(BUSY_TRIES - 1):
        try:
            return await _connect(host, port, seed, expected_node_id, timeout_ms, max_reply)
        except RPCError as err:  # refused for now (no slot or no heap): retry a few times
            if err.code != "busy":
                raise
        await asyncio.sleep(wait / 1000)
        wait *= 2
    return await _connect(host, port, seed, expected_node_id, timeout_ms, max_reply)


async def _connect(host, port, seed, expected_node_id, timeout_ms, max_reply):
    shake = rpc.ClientHandshake(seed, expected_node_id)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                timeout_ms / 1000)
    except asyncio.TimeoutError:
        raise ConnectError("no answer from %s:%d in %d ms" % (host, port, timeout_ms)) from None
    except OSError as err:
        raise ConnectError("cannot connect to %s:%d: %s" % (host, port, err)) from err
    try:
        await asyncio.wait_for(_handshake(reader, writer, shake), timeout_ms / 1000)
    except asyncio.TimeoutError:
        await _close(writer)
        raise ConnectError("%s:%d did not finish the handshake in %d ms"
                           % (host, port, timeout_ms)) from None
    except (OSError, EOFError) as err:
        await _close(writer)
        raise ConnectError("%s:%d closed the connection during the handshake (%s)"
                           % (host, port, err)) from err
    except BaseException:
        await _close(writer)
        raise
    return Client(reader, writer, shake, host, port, max_reply)
