# Push-button pairing (DESIGN §5), like WPS push-button configuration: a press opens a 120 s
# window; two nodes that each see exactly the other in their window run a signed X25519
# exchange over RPC and keep the result (partner's key, a shared secret, quotas) in
# <root>/pair.cbor. Three layers, from pure to I/O:
#   * messages and key schedule (Initiator, Responder): bytes in, bytes out;
#   * the window state machine (Machine): fed mDNS views and the clock, says what to do;
#   * Service: the node service that runs both (browse, RPC methods, LED, TXT, the file).
"""Button pairing: protocol, window state machine and the node service.

Protocol (version 1; I = initiator, the node with the lower raw node ID; R = responder)
-------------------------------------------------------------------------------------
Both nodes have pressed their button (window open, TXT ``pair=1``) and each sees exactly one
other node with ``pair=1`` in its window, steadily for ``SETTLE_MS``. I opens an RPC session
to R (the RPC handshake pins R's node ID as seen on mDNS) and calls::

    PairHello   I -> R  {"v": 1, "key": P_i, "eph": E_i, "commit": SHA-256(n_i), "quota": q_i}
                R -> I  {"key": P_r, "eph": E_r, "nonce": n_r, "quota": q_r, "sig": sig_r}
    PairConfirm I -> R  {"nonce": n_i, "sig": sig_i}
                R -> I  {"mac": mac_r}

    P: static Ed25519 keys (P_i must be the RPC caller's key, P_r the RPC node's key);
    E: fresh X25519 keys; n: 16 random bytes; q: bytes of storage granted to the other.
    h1 = SHA-256("leither-pair/1" || cbor(hello))
    h2 = SHA-256(h1 || cbor([P_r, E_r, n_r, q_r]))
    sig_r = Ed25519(R, "leither-pair/1 responder" || h2)
    h3 = SHA-256(h2 || n_i)                      (R checks SHA-256(n_i) == commit first)
    sig_i = Ed25519(I, "leither-pair/1 initiator" || h3)
    secret || mac_key = HKDF-SHA256(X25519(e_i, E_r), salt=h3, info="leither-pair/1", 48)
    mac_r = HMAC-SHA256(mac_key, "leither-pair/1 done" || h3)[:16]   (key confirmation)
    code  = uint32_be(SHA-256("leither-pair/1 code" || h3)[:4]) mod 10**6, six digits
    tag   = SHA-256("leither-pair/1 tag" || h3)[:16]   (names this pairing; kept by both)

R saves the pairing before it answers PairConfirm, so a reply lost on the way (a dropped
link, a reset) would leave R paired and I not. I then asks R, over a new session pinned to
R's key::

    PairCheck   I -> R  {"tag": tag}
                R -> I  {"paired": true | false}

true only if R's saved partner is the caller's key with this tag: only R, having checked I's
nonce and signature, knows h3, so a true answer confirms the key as well as mac_r does, and
I saves the pairing too. false: R did not keep this exchange and I's window carries on.

I commits to n_i before it sees n_r and R fixes n_r before it sees n_i, so neither side can
steer the 6-digit code: a man in the middle matches both users' codes with chance 1e-6.

Window rules (Machine): a node pairs only while its own window is open, only with the single
node it has seen with ``pair=1`` since its window opened (that node still showing ``pair=1``),
and only once its own window has been open ``SETTLE_MS``: by then it has heard every node
pressed within a second of it (their announcements, or their answers to its first query), and
both sides must be ready, so the later of two presses sets the pace. Two or more nodes seen
with ``pair=1`` during the window abort it (state ``overlap``, LED "error"); the aborting node
keeps ``pair=1`` for ``LINGER_MS`` more so that the others see the overlap too. R refuses a
PairHello from any key but the one of the node in its view (``not_ready``), and answers
``overlap`` once it saw one (which aborts I too).

Quota: each node grants its partner ``config["pair_quota"]`` bytes if set, else half of its
free storage at pairing time, capped at ``QUOTA_CAP`` (1 GiB).
"""

import asyncio
import os

from . import ids
from .compat import const, ticks_diff, ticks_ms, time_ms
from .errors import AuthError, DecodeError, LeitherError, PairingError, RPCError

VERSION = const(1)
WINDOW_MS = const(120000)  # DESIGN §5: a press opens a 120 s window
VIEW_MS = const(1000)  # one mDNS browse: one PTR query, answers within ~0.1-1 s (RFC 6762 §6)
# The first view of a window is longer than one query period of the nodes already browsing:
# a browsing node answers its own queries, so its PTR goes out once a period and the 1 s rate
# limit (RFC 6762 §6) swallows its answer to our first query; we then hear its next one (ms).
FIRST_VIEW_MS = const(1300)
# ms a window is open before it pairs: past the first view and through a second one, since one
# view can miss a node pressed at the same moment (its answer rate-limited, or late on a busy
# host: three boards pressed together once saw two of them pair with 1 s here).
SETTLE_MS = const(2200)
FRESH_MS = const(3500)  # a candidate unseen this long is not paired with (3 views missed)
# After an overlap a node keeps TXT pair=1 this long (ms) while refusing to pair, so that every
# node in the window sees two or more candidates too and aborts (a view takes VIEW_MS, and
# the single candidate must hold SETTLE_MS before anyone acts).
LINGER_MS = const(3000)
STEP_MS = const(8000)  # one pairing call; R forgets a half-done exchange after this
RETRY_MS = const(250)  # I retries PairHello this often while R is not ready yet
HELLO_TRIES = const(12)  # ... this many times (3 s) before browsing again
TELL_MS = const(3000)  # telling an old partner it was dropped: best effort, bounded
CHECK_TRIES = const(3)  # sessions I tries to ask R whether it kept a pairing (PairCheck)
CODE_SHOW_MS = const(60000)  # the LED blinks the code this long after pairing
ERROR_SHOW_MS = const(30000)  # the LED blinks "error" this long after an abort
QUOTA_CAP = 1 << 30  # bytes: default grant cap (1 GiB)
_SEEN_MAX = const(16)  # nodes remembered in one window: a home LAN (mdns._RESULTS_MAX)
PAIR_FILE = "pair.cbor"

_LABEL = b"leither-pair/1"
_RESP_SIG = b"leither-pair/1 responder"
_INIT_SIG = b"leither-pair/1 initiator"
_DONE = b"leither-pair/1 done"
_CODE = b"leither-pair/1 code"
_TAG = b"leither-pair/1 tag"
_TAG_LEN = const(16)
_NONCE_LEN = const(16)
_MAC_LEN = const(16)
_MAX_QUOTA = const(0x7FFFFFFFFFFFFFFF)

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


# ---- messages and key schedule ------------------------------------------------------------


def _hash(*parts):
    import hashlib

    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.digest()


def _field(msg, name, size=None):
    value = msg.get(name) if isinstance(msg, dict) else None
    if size is None:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_QUOTA:
            raise DecodeError("pairing field %s must be a count of bytes" % name)
    elif not isinstance(value, bytes) or len(value) != size:
        raise DecodeError("pairing field %s must be %d bytes" % (name, size))
    return value


def _only(msg, names):
    if not isinstance(msg, dict) or len(msg) != len(names):
        raise DecodeError("pairing message must be a map of %s" % ", ".join(names))
    for name in names:
        if name not in msg:
            raise DecodeError("pairing message lacks %s" % name)


def sas_code(h3):
    """The 6-digit short authentication code of a finished transcript."""
    n = int.from_bytes(_hash(_CODE, h3)[:4], "big") % 1000000
    return "%06d" % n


def pair_tag(h3):
    """The 16 bytes that name one finished exchange (PairCheck)."""
    return _hash(_TAG, h3)[:_TAG_LEN]


def _keys(dh, h3):
    from . import crypto

    okm = crypto.hkdf(dh, h3, _LABEL, 48)
    return okm[:32], okm[32:]


def _result(peer_key, secret, h3, quota_to_peer, quota_from_peer):
    return {"peer_id": ids.make_id(peer_key), "peer_key": peer_key, "secret": bytes(secret),
            "code": sas_code(h3), "tag": pair_tag(h3), "quota_to_peer": quota_to_peer,
            "quota_from_peer": quota_from_peer}


class Initiator:
    """I's side: ``hello()``, then ``confirm(reply)``, then ``finish(done)`` -> result dict
    (peer_id, peer_key, secret, code, quota_to_peer, quota_from_peer)."""

    def __init__(self, seed, quota, expected_key=None):
        self._seed = seed
        self._quota = quota
        self._expected = expected_key  # the RPC node's key: R must sign with that one
        self._eph = None
        self._nonce = None
        self._h = None
        self._pending = None

    def hello(self):
        from . import cbor, crypto

        if self._eph is not None:
            raise PairingError("hello already sent")
        self._eph = crypto.dh_keypair()
        self._nonce = crypto.random(_NONCE_LEN)
        msg = {"v": VERSION, "key": crypto.sign_public(self._seed), "eph": self._eph[1],
               "commit": _hash(self._nonce), "quota": self._quota}
        self._h = _hash(_LABEL, cbor.dumps(msg))
        return msg

    def confirm(self, reply):
        """Check R's signed reply; return the confirm message."""
        from . import cbor, crypto

        if self._h is None or self._pending is not None:
            raise PairingError("pairing messages out of order")
        _only(reply, ("key", "eph", "nonce", "quota", "sig"))
        key = _field(reply, "key", 32)
        eph = _field(reply, "eph", 32)
        nonce = _field(reply, "nonce", _NONCE_LEN)
        quota = _field(reply, "quota")
        sig = _field(reply, "sig", 64)
        if self._expected is not None and not crypto.equal(key, self._expected):
            raise AuthError("pairing reply signed by another key than the node's")
        h2 = _hash(self._h, cbor.dumps([key, eph, nonce, quota]))
        if not crypto.verify(key, _RESP_SIG + h2, sig):
            raise AuthError("responder's pairing signature does not verify")
        h3 = _hash(h2, self._nonce)
        secret, mac_key = _keys(crypto.dh(self._eph[0], eph), h3)
        self._eph = None
        self._pending = (key, secret, mac_key, h3, quota)
        return {"nonce": self._nonce, "sig": crypto.sign(self._seed, _INIT_SIG + h3)}

    def finish(self, done):
        """Check R's key confirmation; return the result."""
        from . import crypto

        if self._pending is None:
            raise PairingError("pairing messages out of order")
        key, secret, mac_key, h3, quota = self._pending
        self._pending = None
        _only(done, ("mac",))
        mac = _field(done, "mac", _MAC_LEN)
        if not crypto.equal(mac, crypto.hmac_sha256(mac_key, _DONE + h3)[:_MAC_LEN]):
            raise AuthError("responder did not derive the same pairing secret")
        return _result(key, secret, h3, self._quota, quota)

    def tag(self):
        """After confirm(): the tag R saved if it accepted the confirm (PairCheck)."""
        if self._pending is None:
            raise PairingError("pairing messages out of order")
        return pair_tag(self._pending[3])

    def finish_checked(self):
        """The result, when R's PairCheck (on a session pinned to R's key) said it saved this
        exchange: the check stands in for the lost key confirmation."""
        if self._pending is None:
            raise PairingError("pairing messages out of order")
        key, secret, _mac_key, h3, quota = self._pending
        self._pending = None
        return _result(key, secret, h3, self._quota, quota)


class Responder:
    """R's side: ``reply(hello, caller_key)``, then ``finish(confirm)`` -> (result, done)."""

    def __init__(self, seed, quota):
        self._seed = seed
        self._quota = quota
        self._state = None
        self.peer_key = None

    def reply(self, hello, caller_key=None):
        from . import cbor, crypto

        if self._state is not None:
            raise PairingError("pairing messages out of order")
        _only(hello, ("v", "key", "eph", "commit", "quota"))
        if hello["v"] != VERSION or isinstance(hello["v"], bool):
            raise DecodeError("unsupported pairing version %r" % (hello["v"],))
        key = _field(hello, "key", 32)
        eph = _field(hello, "eph", 32)
        commit = _field(hello, "commit", 32)
        quota = _field(hello, "quota")
        if caller_key is not None and not crypto.equal(key, caller_key):
            raise AuthError("pairing hello names another key than the caller's")
        own = crypto.dh_keypair()
        nonce = crypto.random(_NONCE_LEN)
        pub = crypto.sign_public(self._seed)
        h2 = _hash(_hash(_LABEL, cbor.dumps(hello)), cbor.dumps([pub, own[1], nonce,
                                                                   self._quota]))
        self._state = (key, crypto.dh(own[0], eph), commit, h2, quota)
        self.peer_key = key
        return {"key": pub, "eph": own[1], "nonce": nonce, "quota": self._quota,
                "sig": crypto.sign(self._seed, _RESP_SIG + h2)}

    def finish(self, confirm):
        from . import crypto

        if self._state is None:
            raise PairingError("pairing messages out of order")
        key, dh, commit, h2, quota = self._state
        self._state = None  # single use: a bad confirm ends this exchange
        _only(confirm, ("nonce", "sig"))
        nonce = _field(confirm, "nonce", _NONCE_LEN)
        sig = _field(confirm, "sig", 64)
        if not crypto.equal(_hash(nonce), commit):
            raise AuthError("initiator's nonce does not match its commitment")
        h3 = _hash(h2, nonce)
        if not crypto.verify(key, _INIT_SIG + h3, sig):
            raise AuthError("initiator's pairing signature does not verify")
        secret, mac_key = _keys(dh, h3)
        done = {"mac": crypto.hmac_sha256(mac_key, _DONE + h3)[:_MAC_LEN]}
        return _result(key, secret, h3, self._quota, quota), done


# ---- the partner record on disk -----------------------------------------------------------

_RECORD_BYTES = ("peer_key", "secret")
_RECORD_KEYS = ("peer_id", "peer_key", "secret", "code", "tag", "quota_to_peer",
                "quota_from_peer", "addr", "port", "since")


def encode_partner(record):
    from . import cbor

    return cbor.dumps({k: record.get(k) for k in _RECORD_KEYS})


def decode_partner(data):
    """The partner record in pair.cbor; DecodeError if it is not one."""
    from . import cbor

    rec = cbor.loads(data)
    if not isinstance(rec, dict):
        raise DecodeError("pair record is not a map")
    for name in _RECORD_BYTES:
        _field(rec, name, 32)
    for name in ("quota_to_peer", "quota_from_peer", "since"):
        _field(rec, name)
    if rec.get("peer_id") != ids.make_id(rec["peer_key"]):
        raise DecodeError("pair record's peer_id does not match its key")
    for name in ("addr", "code"):
        if rec.get(name) is not None and not isinstance(rec[name], str):
            raise DecodeError("pair record's %s must be text" % name)
    if rec.get("port") is not None and not isinstance(rec["port"], int):
        raise DecodeError("pair record's port must be a number")
    if rec.get("tag") is not None:  # absent in records saved before PairCheck existed
        _field(rec, "tag", _TAG_LEN)
    return rec


def load_partner(root, log=print):
    """The saved partner record under root, or None (absent or unreadable, logged)."""
    path = root + "/" + PAIR_FILE
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        return decode_partner(data)
    except DecodeError as err:
        log("leither: ignoring unreadable %s: %s" % (path, err))
        return None


def save_partner(root, record):
    from .identity import write_atomic

    write_atomic(root + "/" + PAIR_FILE, encode_partner(record), private=True)


def remove_partner(root):
    try:
        os.remove(root + "/" + PAIR_FILE)
    except OSError:
        pass


def quota_default(free_bytes, config=None):
    """Bytes this node grants its partner (see the module docstring)."""
    fixed = config.get("pair_quota") if config else None
    if isinstance(fixed, int) and not isinstance(fixed, bool) and fixed >= 0:
        return min(fixed, _MAX_QUOTA)
    return min(max(free_bytes, 0) // 2, QUOTA_CAP)


# ---- the window state machine -------------------------------------------------------------


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


# ---- the node service ---------------------------------------------------------------------


def _log(line):
    print("leither: " + line)


def _ipv4_of(addr):
    """The IPv4 address in a Caller.addr "a.b.c.d:port", or None."""
    host = addr.rsplit(":", 1)[0] if isinstance(addr, str) else ""
    parts = host.split(".")
    if len(parts) != 4:
        return None
    for part in parts:
        if not part.isdigit() or int(part) > 255:
            return None
    return host


class Service:
    """Pairing on a running node (leither.node services hook): button and PairOpen open the
    window; the window task browses mDNS and runs the exchange; the partner record lives in
    ``self.partner`` (also ``node.partner``) and <root>/pair.cbor."""

    def __init__(self, node):
        self.node = node
        self.partner = load_partner(node.root, _log)
        self.machine = Machine(node.identity.id, paired=self.partner is not None)
        self.code = self.partner.get("code") if self.partner else None
        self._responder = None  # (Responder, peer node dict) while R waits for PairConfirm
        self._task = None
        self._led_task = None
        self._bg = []  # background tasks (telling an old partner); pruned as they finish
        self._linger_until = None  # ticks until which TXT keeps pair=1 after an overlap

    # -- services hook ----------------------------------------------------------------------

    def register(self, server):
        from .rpc import GUEST, OWNER, PEER

        anyone = (OWNER, PEER, GUEST)
        server.register("PairHello", self._rpc_hello, anyone)
        server.register("PairConfirm", self._rpc_confirm, anyone)
        server.register("PairCheck", self._rpc_check, anyone)
        server.register("PairOpen", self._rpc_open, (OWNER,))
        server.register("PairStatus", self._rpc_status, (OWNER,))
        server.register("Unpair", self._rpc_unpair, (OWNER,))
        server.register("PairDrop", self._rpc_drop, (PEER,))

    async def start(self):
        if self.partner is not None:
            self.node.server.peer_keys.add(self.partner["peer_key"])
            _log("paired with %s (since %d)" % (self.partner["peer_id"], self.partner["since"]))

    async def stop(self):
        for task in [self._task, self._led_task] + self._bg:
            if task is not None:
                task.cancel()
        self._task = self._led_task = None
        self._bg = []

    def on_press(self, kind):
        if kind != "short":
            return False
        self.open_window()
        return True

    def fact(self, name):
        now = ticks_ms()
        if name == "pair":
            return self.machine.window_open(now)
        if name == "pair_state":
            return self.machine.state
        if name == "pair_code":
            return self.code
        if name == "pair_reason":
            return self.machine.reason
        if name == "peer":
            return self.partner["peer_id"] if self.partner else None
        if name == "peer_addr":
            p = self.partner
            return "%s:%d" % (p["addr"], p["port"]) if p and p.get("addr") else None
        raise KeyError(name)

    def txt(self, txt):
        now = ticks_ms()
        linger = self._linger_until is not None and ticks_diff(self._linger_until, now) > 0
        txt["pair"] = "1" if linger or self.machine.window_open(now) else "0"
        if self.partner is not None:
            txt["peer"] = self.partner["peer_id"]

    def status(self):
        now = ticks_ms()
        p = self.partner or {}
        return {"pair": self.machine.window_open(now), "pair_state": self.machine.state,
                "pair_code": self.code, "pair_reason": self.machine.reason,
                "window_left": self.machine.window_left_ms(now) // 1000,
                "peer": p.get("peer_id"), "peer_addr": self.fact("peer_addr"),
                "quota_to_peer": p.get("quota_to_peer"),
                "quota_from_peer": p.get("quota_from_peer"), "since": p.get("since")}

    # -- the window -------------------------------------------------------------------------

    def open_window(self):
        if not self.machine.press(ticks_ms()):
            _log("pairing already in progress; press ignored")
            return False
        self._linger_until = None
        self._responder = None
        _log("pairing window open for %d s" % (WINDOW_MS // 1000))
        self._show("pairing")
        self.node.announce()
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.create_task(self._run_window())
        return True

    def _show(self, pattern, code=None, for_ms=None):
        led = self.node.led
        if led is None:
            return
        if self._led_task is not None:
            self._led_task.cancel()
            self._led_task = None
        led.show(pattern, code=code)
        if for_ms:
            self._led_task = asyncio.create_task(self._led_later(for_ms))

    async def _led_later(self, ms):
        try:
            await asyncio.sleep(ms / 1000)
        except asyncio.CancelledError:
            return
        self._led_task = None
        if not self.machine.window_open(ticks_ms()):
            self.node.show_idle_led()

    async def _run_window(self):
        try:
            await self._window()
        except asyncio.CancelledError:
            pass
        except Exception as err:  # noqa: BLE001 - a bug or a full disk must not stay silent
            self._responder = None
            self._fail("pairing window failed: %r" % (err,))

    async def _window(self):
        machine = self.machine
        warned = False
        view_ms = FIRST_VIEW_MS
        while True:
            now = ticks_ms()
            if machine.stale(now):
                _log("pairing exchange timed out; window stays open")
                self._responder = None
                machine.resume(now)
            if machine.expire(now):
                _log("pairing window closed (no partner found)")
                self._ended()
                return
            if machine.state not in (OPEN, PAIRING):
                return
            mdns = self.node.mdns
            if mdns is None:
                if not warned:
                    _log("pairing needs mDNS to find the other node")
                    warned = True
                await asyncio.sleep(0.5)
                continue
            nodes = await mdns.browse(timeout_ms=view_ms)
            view_ms = VIEW_MS
            action = machine.observe(nodes, ticks_ms())
            if action == OVERLAP:
                self._aborted()
                return
            if action == INITIATE:
                await self._initiate(machine.candidate)

    def _ended(self):
        self.node.announce()
        self.node.show_idle_led()

    def _aborted(self):
        _log("pairing aborted: %s" % self.machine.reason)
        self._responder = None
        if self.machine.state == OVERLAP:
            self._linger_until = ticks_ms() + LINGER_MS
            self._spawn(self._end_linger())
        else:
            self.node.announce()
        self._show("error", for_ms=ERROR_SHOW_MS)

    async def _end_linger(self):
        await asyncio.sleep(LINGER_MS / 1000)
        self._linger_until = None
        self.node.announce()

    def _fail(self, reason):
        self.machine.abort(FAILED, reason)
        self._aborted()

    def _quota(self):
        store = self.node.store
        return quota_default(store.free() if store is not None else 0, self.node.config)

    async def _initiate(self, cand):
        from . import rpcclient

        machine = self.machine
        addrs = cand.get("addresses") or []
        if not addrs or not cand.get("port"):
            return  # no address yet: the next view resolves it
        host, port = addrs[0], cand["port"]
        machine.begin(ticks_ms())
        _log("pairing with %s at %s:%d" % (cand["id"], host, port))
        client = None
        try:
            client = await rpcclient.connect(host, port, self.node.identity.seed,
                                             expected_node_id=cand["id"], timeout_ms=STEP_MS)
            ini = Initiator(self.node.identity.seed, self._quota(), client.node_key)
            hello = ini.hello()
            reply = None
            for attempt in range(HELLO_TRIES):
                try:
                    reply = await client.call("PairHello", hello, STEP_MS)
                    break
                except RPCError as err:
                    if err.code != "not_ready" or attempt == HELLO_TRIES - 1:
                        raise
                await asyncio.sleep(RETRY_MS / 1000)
                if machine.state != PAIRING:
                    return  # the window ended meanwhile (overlap seen by R, unpair, ...)
            confirm = ini.confirm(reply)
            try:
                done = await client.call("PairConfirm", confirm, STEP_MS)
            except (rpcclient.ConnectError, OSError) as err:
                # Our confirm may have reached R, and R saves before it answers: ask it.
                await client.close()
                client = None
                if not await self._check(host, port, cand["id"], ini.tag()):
                    raise err
                _log("pairing: %s's answer was lost, but it kept the pairing" % cand["id"])
                result = ini.finish_checked()
            else:
                result = ini.finish(done)
            try:
                self._commit(result, host, port)
            except OSError as err:
                self._fail("could not save the pairing: %s" % err)
        except RPCError as err:
            if err.code == "overlap":
                machine.abort(OVERLAP, "session overlap seen by %s" % cand["id"])
                self._aborted()
            elif err.code in ("not_ready", "busy"):
                machine.resume(ticks_ms())
            else:
                self._fail("%s refused pairing: %s" % (cand["id"], err.msg))
        except (AuthError, DecodeError, PairingError) as err:
            self._fail("pairing with %s failed: %s" % (cand["id"], err))
        except (rpcclient.ConnectError, OSError) as err:
            _log("pairing: %s unreachable (%s); retrying" % (cand["id"], err))
            machine.resume(ticks_ms())
        finally:
            if client is not None:
                await client.close()

    # -- RPC handlers (R's side) ------------------------------------------------------------

    def _rpc_hello(self, caller, params):
        machine = self.machine
        now = ticks_ms()
        if machine.state == OVERLAP:
            raise RPCError("overlap", "this node saw a session overlap and aborted")
        peer_id = ids.make_id(caller.key)
        if machine.state == PAIRING and self._responder is not None and (
                self._responder[0].peer_key == caller.key):
            machine.resume(now)  # I started over (lost reply): restart the exchange
        if not machine.window_open(now) or machine.state != OPEN:
            raise RPCError("closed", "pairing window is not open")
        if not machine.ready_for(peer_id):
            if machine.ready is not None:
                _log("pairing hello from %s rejected: the node in my window is %s"
                     % (peer_id, machine.ready))
            raise RPCError("not_ready", "%s is not the one node in my pairing window" % peer_id)
        responder = Responder(self.node.identity.seed, self._quota())
        reply = responder.reply(params, caller.key)
        machine.begin(now)
        self._responder = (responder, machine.candidate)
        return reply

    async def _check(self, host, port, peer_id, tag):
        """Did the node at host:port save the pairing named tag with us? False if it says no
        or stays unreachable for CHECK_TRIES sessions."""
        from . import rpcclient

        for attempt in range(CHECK_TRIES):
            if attempt:
                await asyncio.sleep(RETRY_MS * 4 / 1000)
            client = None
            try:
                client = await rpcclient.connect(host, port, self.node.identity.seed,
                                                 expected_node_id=peer_id, timeout_ms=TELL_MS)
                reply = await client.call("PairCheck", {"tag": tag}, TELL_MS)
                return isinstance(reply, dict) and reply.get("paired") is True
            except RPCError:
                return False  # it answers, without PairCheck: it cannot have saved it
            except (LeitherError, OSError) as err:
                _log("pairing: cannot ask %s whether it kept the pairing: %s" % (peer_id, err))
            finally:
                if client is not None:
                    await client.close()
        return False

    def _rpc_check(self, caller, params):
        from . import crypto

        tag = _field(params, "tag", _TAG_LEN)
        p = self.partner
        paired = (p is not None and p.get("tag") is not None and p["peer_key"] == caller.key
                  and crypto.equal(p["tag"], tag))
        return {"paired": paired}

    def _rpc_confirm(self, caller, params):
        pending = self._responder
        if (pending is None or self.machine.state != PAIRING
                or pending[0].peer_key != caller.key):
            raise RPCError("closed", "no pairing exchange with you in progress")
        self._responder = None
        try:
            result, done = pending[0].finish(params)
        except (AuthError, DecodeError, PairingError) as err:
            self._fail("pairing with %s failed: %s" % (ids.make_id(caller.key), err))
            raise
        cand = pending[1] or {}
        addrs = cand.get("addresses") or [_ipv4_of(caller.addr)]
        try:
            self._commit(result, addrs[0], cand.get("port"))
        except OSError as err:
            self._fail("could not save the pairing: %s" % err)
            raise RPCError("store", "responder could not save the pairing") from err
        if not addrs[0] or not cand.get("port"):
            self._spawn(self.locate_partner())  # learn where to reach it from mDNS
        return done

    async def _rpc_open(self, caller, params):
        self.open_window()
        return self.status()

    def _rpc_status(self, caller, params):
        return self.status()

    async def _rpc_unpair(self, caller, params):
        old = self.partner
        if old is None:
            return {"unpaired": None, "told": False}
        told = await self._tell_drop(old)
        self._drop("unpaired by the owner")
        return {"unpaired": old["peer_id"], "told": told}

    def _rpc_drop(self, caller, params):
        p = self.partner
        if p is None or p["peer_key"] != caller.key:
            raise RPCError("not_paired", "you are not this node's partner")
        self._drop("partner %s unpaired" % p["peer_id"])
        return True

    # -- the partner record -----------------------------------------------------------------

    def _commit(self, result, addr, port):
        old = self.partner
        record = dict(result)
        record["addr"] = addr
        record["port"] = port
        record["since"] = time_ms()
        save_partner(self.node.root, record)  # first: a crash leaves the old partner or this
        keys = self.node.server.peer_keys
        if old is not None and old["peer_key"] != record["peer_key"]:
            keys.discard(old["peer_key"])
            _log("replacing partner %s" % old["peer_id"])
            self._spawn(self._tell_drop(old))
        keys.add(record["peer_key"])
        self.partner = record
        self.code = record["code"]
        self.machine.done()
        _log("paired with %s at %s:%s; code %s (check that the other node shows the same)"
             % (record["peer_id"], addr, port, record["code"]))
        self.node.announce()
        self._show("pairing", code=record["code"], for_ms=CODE_SHOW_MS)

    def _drop(self, why):
        p = self.partner
        if p is None:
            return
        remove_partner(self.node.root)
        self.node.server.peer_keys.discard(p["peer_key"])
        self.partner = None
        self.code = None
        self.machine.unpaired()
        _log("%s; no partner now" % why)
        self.node.announce()
        if not self.machine.window_open(ticks_ms()):
            self.node.show_idle_led()

    async def _tell_drop(self, old):
        """Tell a partner we dropped it (best effort); True if it acknowledged."""
        from . import rpcclient

        if not old.get("addr") or not old.get("port"):
            return False
        client = None
        try:
            client = await rpcclient.connect(old["addr"], old["port"], self.node.identity.seed,
                                             expected_node_id=old["peer_id"],
                                             timeout_ms=TELL_MS)
            await client.call("PairDrop", {}, TELL_MS)
            return True
        except (LeitherError, OSError) as err:
            _log("could not tell %s it was unpaired: %s" % (old["peer_id"], err))
            return False
        finally:
            if client is not None:
                await client.close()

    def _spawn(self, coro):
        self._bg = [t for t in self._bg if not t.done()]
        self._bg.append(asyncio.create_task(coro))

    async def locate_partner(self, timeout_ms=3000):
        """Refresh the partner's address from mDNS (it may have moved); True if seen."""
        p = self.partner
        mdns = self.node.mdns
        if p is None or mdns is None:
            return False
        for node in await mdns.browse(timeout_ms=timeout_ms):
            if node.get("id") == p["peer_id"] and node.get("addresses"):
                addr, port = node["addresses"][0], node.get("port")
                if (addr, port) != (p.get("addr"), p.get("port")):
                    p["addr"], p["port"] = addr, port
                    save_partner(self.node.root, p)
                return True
        return False
