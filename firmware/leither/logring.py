# The node's recent log lines, for `leither logs NODE [-f]`: every line the node prints (the
# node, RPC, mDNS, pairing and backup all log through print) is also kept in a ring in RAM,
# bounded in bytes, oldest dropped first. Each line gets a sequence number, so a follower asks
# for the lines after the last one it saw and learns how many it missed. Owner only: logs name
# peers, addresses and MiMei.
"""Bounded in-memory ring of the node's log lines, served over RPC (GetLog)."""

import builtins

from .compat import IS_MICROPYTHON, const, time_ms
from .errors import RPCError

# Bytes of log text kept: a few KiB on a board's ~110 KB heap (each line also costs a small
# object), more on a Pi/PC. Lines longer than LINE_MAX are cut.
RING_BYTES = const(3072) if IS_MICROPYTHON else const(65536)
LINE_MAX = const(240)  # characters per kept line
_LINE_COST = const(24)  # bytes of bookkeeping counted per line (entry list, ints)
REPLY_LINES = const(40)  # lines per GetLog reply: ~40 x 240 B fits a board's 8 KiB frame

_ring = None  # the Ring the print hook writes to (one per process)


class Ring:
    """Lines [seq, time_ms, text], bounded by `limit` bytes (text + _LINE_COST each)."""

    def __init__(self, limit=RING_BYTES):
        self.limit = limit
        self.lines = []
        self.size = 0
        self.next = 1  # sequence number of the next line

    def add(self, text):
        if len(text) > LINE_MAX:
            text = text[:LINE_MAX - 3] + "..."
        self.lines.append([self.next, time_ms(), text])
        self.next += 1
        self.size += len(text) + _LINE_COST
        while self.size > self.limit and len(self.lines) > 1:
            self.size -= len(self.lines.pop(0)[2]) + _LINE_COST

    def since(self, after, limit=REPLY_LINES):
        """Lines with seq > after (at most limit, oldest first), the next seq, and how many
        lines after `after` were already dropped from the ring."""
        out = []
        for line in self.lines:
            if line[0] > after:
                out.append(line)
                if len(out) >= limit:
                    break
        first = self.lines[0][0] if self.lines else self.next
        dropped = max(0, first - after - 1) if after < first else 0
        return {"lines": out, "next": out[-1][0] if out else self.next - 1,
                "dropped": dropped, "last": self.next - 1}


def install(limit=RING_BYTES):
    """Wrap print so every line printed also lands in the ring; returns the ring. Once per
    process: a second call returns the ring already installed."""
    global _ring
    if _ring is not None:
        return _ring
    ring = Ring(limit)
    original = builtins.print

    def print_and_keep(*args, **kwargs):
        original(*args, **kwargs)
        if kwargs.get("file") is None:
            try:
                text = " ".join(str(a) for a in args)
                for part in text.split("\n"):
                    if part:
                        ring.add(part)
            except Exception:  # a log line must never break the code that logs it
                pass

    try:
        builtins.print = print_and_keep
    except (AttributeError, TypeError):
        pass  # a port whose builtins cannot be overridden: the ring keeps what add() gets
    _ring = ring
    return ring


class Service:
    """The log ring on a running node (leither.node services hook): GetLog for the owner."""

    def __init__(self, node):
        self.node = node
        self.ring = install()

    def register(self, server):
        from .rpc import OWNER

        server.register("GetLog", self._get_log, (OWNER,))

    def _get_log(self, caller, params):
        p = params if isinstance(params, dict) else {}
        after = p.get("after", 0)
        limit = p.get("limit", REPLY_LINES)
        if not isinstance(after, int) or not isinstance(limit, int) or after < 0 or limit < 1:
            raise RPCError("bad_request", "GetLog takes after >= 0 and limit >= 1 (integers)")
        if after == 0 and p.get("tail"):
            tail = p.get("tail")
            if not isinstance(tail, int) or tail < 1:
                raise RPCError("bad_request", "GetLog tail takes an integer >= 1")
            after = max(0, self.ring.next - 1 - tail)
        return self.ring.since(after, min(limit, REPLY_LINES))

    async def start(self):
        pass

    async def stop(self):
        pass

    def on_press(self, kind):
        return False

    def fact(self, name):
        raise KeyError(name)

    def txt(self, txt):
        pass
