# Push-button pairing (DESIGN §5), like WPS push-button configuration: a press opens a 120 s
# window; two nodes that each see exactly the other in their window run a signed X25519
# exchange over RPC and keep the result (partner's key, a shared secret, quotas) in
# <root>/pair.cbor. Four modules, from pure to I/O:
#   * leither.pairproto: messages and key schedule (Initiator, Responder), bytes in and out;
#   * leither.pairwin: the window state machine (Machine), fed mDNS views and the clock;
#   * leither.pairrun: the window at work (browse, exchange over RPC, commit, LED);
#   * here: the partner record on disk, and the node Service an idle node keeps (RPC methods,
#     facts, TXT, unpairing), which loads pairrun (and it pairproto) at the first press.
"""Button pairing: the node service and the partner record.

Quota: each node grants its partner ``config["pair_quota"]`` bytes if set, else half of its
free storage at pairing time, capped at ``QUOTA_CAP`` (1 GiB).
"""

import asyncio
import os

from . import ids, pairwin
from .compat import const, ticks_diff, ticks_ms
from .errors import DecodeError, RPCError

QUOTA_CAP = 1 << 30  # bytes: default grant cap (1 GiB)
_MAX_QUOTA = const(0x7FFFFFFFFFFFFFFF)
PAIR_FILE = "pair.cbor"
_FACTS = ("pair", "pair_state", "pair_code", "pair_reason", "peer", "peer_addr")  # GetVar


def field(msg, name, size=None):
    """msg[name], checked: ``size`` bytes, or (size None) a count of bytes; DecodeError."""
    value = msg.get(name) if isinstance(msg, dict) else None
    if size is None:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_QUOTA:
            raise DecodeError("pairing field %s must be a count of bytes" % name)
    elif not isinstance(value, bytes) or len(value) != size:
        raise DecodeError("pairing field %s must be %d bytes" % (name, size))
    return value


# ---- the partner record on disk -----------------------------------------------------------

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
    for name in ("peer_key", "secret"):
        field(rec, name, 32)
    for name in ("quota_to_peer", "quota_from_peer", "since"):
        field(rec, name)
    if rec.get("peer_id") != ids.make_id(rec["peer_key"]):
        raise DecodeError("pair record's peer_id does not match its key")
    for name in ("addr", "code"):
        if rec.get(name) is not None and not isinstance(rec[name], str):
            raise DecodeError("pair record's %s must be text" % name)
    if rec.get("port") is not None and not isinstance(rec["port"], int):
        raise DecodeError("pair record's port must be a number")
    if rec.get("tag") is not None:  # absent in records saved before PairCheck existed
        field(rec, "tag", 16)
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
        self.machine = pairwin.Machine(node.identity.id, paired=self.partner is not None)
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

    def open_window(self):
        """Open (or restart) the pairing window; False while an exchange runs."""
        from . import pairrun

        return pairrun.open_window(self)

    def fact(self, name):
        if name not in _FACTS:
            raise KeyError(name)
        return self.status()[name]

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
                "peer": p.get("peer_id"),
                "peer_addr": ("%s:%d" % (p["addr"], p["port"]) if p.get("addr")
                              and p.get("port") else None),
                "quota_to_peer": p.get("quota_to_peer"),
                "quota_from_peer": p.get("quota_from_peer"), "since": p.get("since")}

    # -- RPC handlers (the exchange's in leither.pairrun) --------------------------------------

    def _rpc_check(self, caller, params):
        from . import crypto

        tag = field(params, "tag", 16)
        p = self.partner
        paired = (p is not None and p.get("tag") is not None and p["peer_key"] == caller.key
                  and crypto.equal(p["tag"], tag))
        return {"paired": paired}

    def _rpc_hello(self, caller, params):
        from . import pairrun

        return pairrun.hello(self, caller, params)

    def _rpc_confirm(self, caller, params):
        from . import pairrun

        return pairrun.confirm(self, caller, params)

    async def _rpc_open(self, caller, params):
        self.open_window()
        return self.status()

    async def _rpc_unpair(self, caller, params):
        from . import pairrun

        try:
            return await pairrun.unpair(self, caller, params)
        finally:
            self.unload()

    def _rpc_status(self, caller, params):
        return self.status()

    def _rpc_drop(self, caller, params):
        p = self.partner
        if p is None or p["peer_key"] != caller.key:
            raise RPCError("not_paired", "you are not this node's partner")
        self._drop("partner %s unpaired" % p["peer_id"])
        return True

    # -- the partner record -----------------------------------------------------------------

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

    def unload(self):
        """Forget the window's code (leither.pairrun, leither.pairproto) once the window is
        over: the next press imports it again, and a board's heap has it back meanwhile (for
        the backup push that follows a pairing). Tasks still running it keep it alive."""
        if self.machine.window_open(ticks_ms()) or self._responder is not None:
            return
        from .memory import unload

        unload(("pairrun", "pairproto"))

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
