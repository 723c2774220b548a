# One connection of the node's RPC server as the server and its admission see it: the
# authenticated caller handlers get, the connection's phase and deadline, its peer address,
# and the connection's side of the wire: the handshake and reading request frames.
"""Connection state and frame I/O for leither.server (loaded by the first connection)."""

import asyncio
import gc

from . import cbor, ids, memory, rpc
from .admission import HELLO, KEYED, READY
from .compat import IS_MICROPYTHON, const, ticks_diff, ticks_ms
from .errors import DecodeError
from .rpc import GUEST

_DROP_LOGS_PER_S = const(5)  # log lines a second about dropped connections
_SMALL_FRAME = const(2048)  # bytes: larger owner/peer frames go into the inbound buffer
_GUEST_WAIT_MS = const(20)  # poll for guest bytes in flight (deadline still running)
# A frame that meets a MemoryError opening is tried again (see _open): 0, 25, 50, 75 ms apart
# after the first retry, well inside the frame deadline.
_OPEN_TRIES = const(5)
_OPEN_PAUSE_MS = const(25)


class Refused(Exception):
    """A connection the node will not serve now (slots, quota or heap): it was told why."""


class Caller:
    """The authenticated client of one connection, as handlers see it."""

    def __init__(self, key, role, addr):
        self.key = key
        self.id = ids.make_id(key)
        self.role = role
        self.addr = addr


class Conn:
    def __init__(self, reader, writer, task):
        self.reader = reader
        self.writer = writer
        self.task = task
        self.phase = HELLO
        self.since = ticks_ms()  # start of the current deadline (or of idleness)
        self.limit = None  # ms allowed from `since`; None while the node works
        self.waiting = True  # the node waits for this client (not computing for it)
        self.busy = False
        self.channel = None
        self.caller = None
        self.max_frame = rpc.HANDSHAKE_MAX_FRAME
        self.why = None  # reason the connection was cancelled by the node
        self.header = None  # the session's frame header buffer (made at its first request)
        self.buffers = False  # holds the server's shared frame buffers (Server._take_buffers)

    def deadline(self, ms):
        """Wait for the client at most ``ms`` from now."""
        self.since = ticks_ms()
        self.limit = ms
        self.waiting = True

    def work(self):
        """The node computes for this client: no deadline, not evictable as stalled."""
        self.limit = None
        self.waiting = False

    async def read_into(self, view):
        """Fill a memoryview from the connection, or EOFError."""
        n = len(view)
        if IS_MICROPYTHON:
            got = 0
            while got < n:
                k = await self.reader.readinto(view[got:] if got else view)
                if not k:
                    raise EOFError("EOF")
                got += k
        else:
            view[:] = await self.reader.readexactly(n)

    async def _read_frame(self, limit):
        n = rpc.parse_header(await rpc.read_exact(self.reader, 4), limit)
        return await rpc.read_exact(self.reader, n)

    async def _write(self, body, frame_ms):
        # One write per frame: MicroPython does not set TCP_NODELAY, and a frame split over
        # writes meets Nagle + delayed ACK (40 ms a reply on Linux).
        self.deadline(frame_ms)
        self.writer.write(rpc.encode_frame(body))
        await self.writer.drain()

    async def handshake(self, server, addr):
        """Run the server side of leither.rpc's handshake; the session is READY after it
        (or Refused: no guest session free, or no heap to finish: the client is told busy)."""
        self.deadline(server.handshake_ms)
        try:
            msg1 = await self._read_frame(rpc.HANDSHAKE_MAX_FRAME)
            self.work()
            shake = rpc.ServerHandshake(server._seed, server.node_key)
            msg2 = shake.respond(msg1)
        except DecodeError as err:
            # Tell a confused client (wrong port, old version) why, in one plain frame.
            try:
                self.writer.write(rpc.encode_frame(
                    cbor.dumps(["error", "bad_hello", str(err)[:80]])))
            except OSError:
                pass
            raise
        except MemoryError:
            _short(server, self)  # raises Refused
        self.phase = KEYED
        await self._write(msg2, server.frame_ms)
        self.deadline(server.handshake_ms)
        msg3 = await self._read_frame(rpc.HANDSHAKE_MAX_FRAME)
        self.work()
        try:
            key = shake.verify(msg3)
            if IS_MICROPYTHON:
                # The session's lasting objects (keys, MAC pads, caller) come next: collect
                # the handshake's big-int garbage first so they pack low in the heap instead
                # of landing between the holes, which would leave no frame-sized gap later.
                gc.collect()
            role = server.role_of(key)
            self.caller = Caller(key, role, addr)
            if not server.admission.ready(self):
                raise Refused("%d guest sessions busy" % server.admission.guest_sessions)
            self.max_frame = server.guest_max_frame if role == GUEST else server.max_frame
            self.channel, msg4 = shake.accept(role, self.max_frame)
        except MemoryError:
            _short(server, self)  # raises Refused
        self.phase = READY
        await self._write(msg4, server.frame_ms)
        server.stats["sessions"] += 1

    async def receive(self, server, n):
        """The opened plaintext of a request frame of n bytes (memoryview), and a release
        function for its buffer. Guests draw on their shared bytes in flight; owner and
        peer frames too big (or with no heap) for a small buffer wait for the server's
        inbound one. Every wait runs against the frame deadline set at the header."""
        shed = server._shed
        if self.caller.role == GUEST:
            admission = server.admission
            while not admission.take_guest_bytes(n):
                await asyncio.sleep(_GUEST_WAIT_MS / 1000)
            try:
                body = memoryview(bytearray(n))
                await self.read_into(body)
            finally:
                admission.give_guest_bytes(n)
            return await _open(self.channel, body, shed), None
        body = None
        if n <= _SMALL_FRAME:
            try:
                body = memoryview(bytearray(n))
            except MemoryError:
                gc.collect()
        if body is not None:
            await self.read_into(body)
            return await _open(self.channel, body, shed), None
        big = server._big
        await big.acquire()
        try:
            body = memoryview(server._in)[:n]
            await self.read_into(body)
            return await _open(self.channel, body, shed), big.release
        except BaseException:
            big.release()
            raise


def _short(server, conn):
    """Out of heap half-way through a handshake: the client is told "busy" in place of the
    message it waits for (leither.rpc), and retries; the node hands back what it can."""
    gc.collect()
    server.stats["busy"] += 1
    memory.note_busy()
    server._refuse(conn, "node is short of memory for a handshake; retry")


async def _open(channel, body, shed):
    """Open a received frame in place; short of heap, shed and try again after a pause in
    which the other sessions' requests end and give their heap back, up to _OPEN_TRIES in all
    (the counter moves only once the frame is open; a try goes on where the last one
    stopped). A frame that cannot be opened ends the session: its msgid is sealed in it."""
    for attempt in range(_OPEN_TRIES):
        try:
            return channel.open_inplace(body)
        except MemoryError:
            if attempt == _OPEN_TRIES - 1:
                raise
            shed()
            if attempt:
                await asyncio.sleep(_OPEN_PAUSE_MS * attempt / 1000)
    return None



def peer_addr(writer):
    try:
        peer = writer.get_extra_info("peername")
    except (AttributeError, OSError, KeyError):
        return "?"
    if isinstance(peer, tuple):
        return "%s:%s" % (peer[0], peer[1])
    if isinstance(peer, (bytes, bytearray)):  # the unix MicroPython port: raw struct sockaddr
        from .port import net

        try:
            ip, port = net.parse_addr(peer)
            return "%s:%d" % (ip, port)
        except (ValueError, IndexError, TypeError):
            return "?"
    return str(peer)


async def close(writer):
    try:
        writer.close()
        await writer.wait_closed()
    except (OSError, asyncio.CancelledError):
        pass
    except Exception:
        pass


class DropLog:
    """Log dropped connections, at most _DROP_LOGS_PER_S lines a second: under a flood, a line
    per connection would itself stall a board (a UART console prints ~11 KB/s) or fill a
    pipe nobody reads. Suppressed lines are counted in the next one."""

    def __init__(self):
        self.window = None  # ticks_ms the current 1 s window started
        self.lines = 0  # lines logged in it
        self.quiet = 0  # drops not logged since the last line

    def log(self, log, addr, why):
        now = ticks_ms()
        if self.window is None or ticks_diff(now, self.window) >= 1000:
            self.window = now
            self.lines = 0
        if self.lines < _DROP_LOGS_PER_S:
            self.lines += 1
            extra = " (%d more not logged)" % self.quiet if self.quiet else ""
            self.quiet = 0
            log("%s: %s%s" % (addr, why, extra))
        else:
            self.quiet += 1
