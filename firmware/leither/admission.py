# Who gets a connection slot, and who loses one, when a node is flooded. The owner and the
# partner must always get in (they are known only after the handshake, so capacity is kept
# that a handshake can always take from a stalled handshake or a guest); guests get a small
# quota of sessions and of bytes in flight; wrong claim tokens slow down their own address.
"""Admission control for the node's RPC server (see SECURITY.md, "Lockout")."""

from .compat import const, ticks_diff, ticks_ms
from .rpc import GUEST

# Connection phases: waiting for the hello, handshaking, serving.
HELLO = const(0)
KEYED = const(1)
READY = const(2)

_CLAIM_ADDRS = const(8)  # source addresses whose last wrong claim token is remembered


class Admission:
    """Slots of one server. ``conns`` are its connections in arrival order; each has
    ``phase``, ``waiting`` (the node waits for that client, not the other way round),
    ``since`` (ticks_ms the current wait began), ``busy`` (mid-request), ``caller``."""

    def __init__(self, max_conns, max_shakes, guest_sessions, guest_bytes, claim_backoff_ms):
        self.max_conns = max_conns
        # At most this many connections handshake at once; a newcomer beyond it takes the
        # slot of the handshake that has kept the node waiting longest.
        self.max_shakes = max(1, min(max_shakes, max_conns))
        # Guest sessions: the rest of the slots stay free for the owner's and partner's
        # handshakes, which evict guests if they must.
        self.guest_sessions = max(1, min(guest_sessions, max_conns - 1))
        self.guest_bytes = guest_bytes  # bytes of guest frames being received, all guests
        self.guest_inflight = 0
        self.claim_backoff_ms = claim_backoff_ms
        self.conns = []
        self._claims = []  # [host, ticks_ms of its last wrong token], oldest first
        self.evicted = 0

    def shakes(self):
        return sum(1 for c in self.conns if c.phase != READY)

    def guests(self):
        return sum(1 for c in self.conns if c.phase == READY and c.caller.role == GUEST)

    def _stalled_shake(self):
        """The handshake to drop: one that has not sent a valid hello yet (junk, slowloris)
        before one that has; among those, the one that kept the node waiting longest. One
        the node is computing for is never taken: the owner's handshake waits on the node
        only for moments, so a flood of newcomers displaces the stalled ones first."""
        victim = None
        for c in self.conns:
            if c.phase == READY or not c.waiting or c.why is not None:
                continue
            if (victim is None or c.phase < victim.phase
                    or (c.phase == victim.phase and ticks_diff(victim.since, c.since) > 0)):
                victim = c
        return victim

    def _guest(self, idle_only):
        """The guest session idle longest (or, failing idle ones, the oldest busy one)."""
        victim = None
        for c in self.conns:
            if c.phase != READY or c.caller.role != GUEST or c.why is not None:
                continue
            if idle_only and c.busy:
                continue
            if victim is None or ticks_diff(victim.since, c.since) > 0:
                victim = c
        return victim

    def admit(self, conn):
        """Make room for a new connection; False if it must be refused. Returns the connection
        cancelled to make room through ``evict`` (the server's hook)."""
        full = len(self.conns) >= self.max_conns
        if not full and self.shakes() < self.max_shakes:
            self.conns.append(conn)
            return True
        victim = None
        if not full:
            victim = self._stalled_shake()  # too many handshakes: the most stalled goes
        if victim is None and full:
            victim = self._stalled_shake() or self._guest(True) or self._guest(False)
        if victim is None:
            return False
        self.evict(victim, "evicted")
        self.conns.append(conn)
        return True

    def ready(self, conn):
        """A handshake finished (role known). Owner and peer always stay; a guest stays if
        the guest quota has room, made by evicting the longest-idle guest. False: refuse."""
        if conn.caller.role != GUEST:
            return True
        if self.guests() < self.guest_sessions:
            return True
        victim = self._guest(True)
        if victim is None:
            return False
        self.evict(victim, "evicted for a newer guest")
        return True

    def evict(self, victim, why):
        victim.why = why
        self.evicted += 1
        if victim in self.conns:
            self.conns.remove(victim)
        victim.task.cancel()

    def remove(self, conn):
        if conn in self.conns:
            self.conns.remove(conn)

    # ---- guest bytes in flight ---------------------------------------------------------------

    def take_guest_bytes(self, n):
        if self.guest_inflight + n > self.guest_bytes:
            return False
        self.guest_inflight += n
        return True

    def give_guest_bytes(self, n):
        self.guest_inflight = max(0, self.guest_inflight - n)

    # ---- claim back-off per source address -------------------------------------------------

    def claim_blocked(self, host):
        """True while ``host`` must wait after its last wrong claim token."""
        now = ticks_ms()
        for entry in self._claims:
            if entry[0] == host:
                return ticks_diff(now, entry[1]) < self.claim_backoff_ms
        return False

    def claim_failed(self, host):
        now = ticks_ms()
        for entry in self._claims:
            if entry[0] == host:
                entry[1] = now
                return
        if len(self._claims) >= _CLAIM_ADDRS:
            self._claims.pop(0)
        self._claims.append([host, now])
