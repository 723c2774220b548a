# One connection of the node's RPC server as the server and its admission see it: the
# authenticated caller handlers get, the connection's phase and deadline, its peer address.
"""Connection state for leither.server."""

import asyncio

from . import ids, rpc
from .admission import HELLO
from .compat import const, ticks_diff, ticks_ms

_DROP_LOGS_PER_S = const(5)  # log lines a second about dropped connections


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
