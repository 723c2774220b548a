# The pairing window (DESIGN §5) as a state machine without I/O: fed mDNS views and the clock
# by leither.pairrun (the pairing service at work), it says when to start the exchange
# (leither.pairproto), when to wait for the other node, and when two or more pressed nodes
# make the window abort.
"""Button pairing: the window state machine.

Window rules: a node pairs only while its own window is open, only with the single node it
has seen with ``pair=1`` since its window opened (that node still showing ``pair=1``), and
only once its own window has been open ``SETTLE_MS``: by then it has heard every node pressed
within a second of it (their announcements, or their answers to its first query), and both
sides must be ready, so the later of two presses sets the pace. Two or more nodes seen with
``pair=1`` during the window abort it (state ``overlap``, LED "error"); the aborting node
keeps ``pair=1`` for a while more (leither.pairrun) so that the others see the overlap too.
The node with the lower raw node ID initiates; the responder refuses a PairHello from any
key but the one of the node in its view (``not_ready``), and answers ``overlap`` once it saw
one (which aborts the initiator too).
"""

from . import ids
from .compat import const, ticks_diff
from .errors import LeitherError, PairingError

WINDOW_MS = const(120000)  # DESIGN §5: a press opens a 120 s window
# ms a window is open before it pairs: past the first view and through a second one, since one
# view can miss a node pressed at the same moment (its answer rate-limited, or late on a busy
# host: three boards pressed together once saw two of them pair with 1 s here).
SETTLE_MS = const(2200)
FRESH_MS = const(3500)  # a candidate unseen this long is not paired with (3 views missed)
STEP_MS = const(8000)  # one pairing call; R forgets a half-done exchange after this
_SEEN_MAX = const(16)  # nodes remembered in one window: a home LAN (mdns._RESULTS_MAX)

# Window states (GetVar "pair_state").
IDLE = "idle"
OPEN = "open"
PAIRING = "pairing"
PAIRED = "paired"
OVERLAP = "overlap"
FAILED = "failed"
# What Machine.observe asks the service to do.
INITIATE = "initiate"
WAIT = "wait"


def _raw(node_id):
    try:
        return ids.id_raw(node_id)
    except (ValueError, LeitherError):
        return None


class Machine:
    """One node's pairing window, without I/O: press(), observe() with each mDNS view, and
    the service's begin()/done()/abort() as an exchange runs. ``now`` is ticks_ms()."""

    def __init__(self, my_id, paired=False, window_ms=WINDOW_MS, settle_ms=SETTLE_MS,
                 fresh_ms=FRESH_MS):
        self.my_id = my_id
        self._my_raw = ids.id_raw(my_id)
        self.paired = paired
        self.window_ms = window_ms
        self.settle_ms = settle_ms
        self.fresh_ms = fresh_ms
        self.state = PAIRED if paired else IDLE
        self.reason = None  # why the last window ended badly (overlap, failed)
        self.until = None  # ticks when the window closes
        self.opened = None  # ticks when the window opened
        self.since = None  # ticks when the exchange began (PAIRING)
        self.candidate = None  # the mDNS node dict of the single candidate, or None
        self.ready = None  # its ID once our window has been open settle_ms
        # node ID -> [node dict, ticks last seen, pair=1 now, pair=1 seen in this window];
        # at most _SEEN_MAX entries
        self.seen = {}

    def window_open(self, now):
        return self.state in (OPEN, PAIRING) and ticks_diff(self.until, now) > 0

    def window_left_ms(self, now):
        return max(0, ticks_diff(self.until, now)) if self.state in (OPEN, PAIRING) else 0

    def press(self, now):
        """Open (or restart) the window; False while an exchange is running."""
        if self.state == PAIRING:
            return False
        self.state = OPEN
        self.until = now + self.window_ms
        self.opened = now
        self.reason = None
        self.since = None
        self.candidate = None
        self.ready = None
        self.seen = {}
        return True

    def _rest(self):
        self.state = PAIRED if self.paired else IDLE
        self.until = None
        self.candidate = None
        self.ready = None
        self.seen = {}

    def expire(self, now):
        """Close a window whose time is up (not mid-exchange); True if it just closed."""
        if self.state == OPEN and ticks_diff(self.until, now) <= 0:
            self._rest()
            self.reason = "timeout"
            return True
        return False

    def candidates(self):
        """Nodes seen with pair=1 at any time in this window (sticky: a node that aborted
        its own window for an overlap still counts in ours)."""
        return [entry[0] for entry in self.seen.values() if entry[3]]

    def observe(self, nodes, now):
        """Feed one mDNS view (mdns.browse results); returns OVERLAP, INITIATE, WAIT or None."""
        if self.state != OPEN:
            return None
        for node in nodes:
            node_id = node.get("id") if isinstance(node, dict) else None
            if not isinstance(node_id, str) or node_id == self.my_id or _raw(node_id) is None:
                continue
            txt = node.get("txt") or {}
            if node_id not in self.seen and len(self.seen) >= _SEEN_MAX:
                continue  # a flood of names: the ones seen first are what counts
            flag = txt.get("pair") == "1"
            old = self.seen.get(node_id)
            if old is not None and not node.get("addresses") and old[0].get("addresses"):
                # This view missed its A record: keep the address an earlier view resolved.
                node = dict(node)
                node["addresses"] = old[0]["addresses"]
            self.seen[node_id] = [node, now, flag, flag or (old is not None and old[3])]
        cands = self.candidates()
        if len(cands) >= 2:
            named = sorted(c["id"] for c in cands)[:3]  # bound the log line and GetVar text
            self.abort(OVERLAP, "session overlap: %d nodes in the window (%s%s)"
                       % (len(cands), ", ".join(named), ", ..." if len(cands) > 3 else ""))
            return OVERLAP
        if not cands:
            self.candidate = self.since = self.ready = None
            return None
        cand = cands[0]
        entry = self.seen[cand["id"]]
        if not entry[2] or ticks_diff(now, entry[1]) > self.fresh_ms:
            # It left its window (or the network) before we could pair: nobody to pair with.
            self.candidate = self.since = self.ready = None
            return None
        self.candidate = cand
        if ticks_diff(now, self.opened) < self.settle_ms:
            # Too early to know we are alone with it: a node pressed together with us (its
            # announcement, or its answer to our first query) may still be on its way.
            self.ready = None
            return None
        self.ready = cand["id"]
        return INITIATE if self._my_raw < _raw(cand["id"]) else WAIT

    def ready_for(self, node_id):
        return self.state == OPEN and self.ready is not None and self.ready == node_id

    def begin(self, now):
        if self.state != OPEN:
            raise PairingError("pairing window is not open")
        self.state = PAIRING
        self.since = now

    def resume(self, now):
        """An exchange fell through (R not ready, unreachable): back to the open window."""
        if self.state == PAIRING:
            self.state = OPEN
            self.since = now
            self.expire(now)

    def stale(self, now, limit_ms=STEP_MS):
        return self.state == PAIRING and ticks_diff(now, self.since) > limit_ms

    def done(self):
        self.paired = True
        self._rest()
        self.reason = None

    def abort(self, state, reason):
        """End the window badly: OVERLAP or FAILED, with a reason for the log and GetVar."""
        self._rest()
        self.state = state
        self.reason = reason

    def unpaired(self):
        self.paired = False
        if self.state == PAIRED:
            self.state = IDLE
