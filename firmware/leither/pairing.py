# Push-button pairing (DESIGN §5), like WPS push-button configuration: a press opens a 120 s
# window; two nodes that each see exactly the other in their window run a signed X25519
# exchange over RPC and keep the result (partner's key, a shared secret, quotas) in
# <root>/pair.cbor. Three modules, from pure to I/O:
#   * leither.pairproto: messages and key schedule (Initiator, Responder), bytes in and out,
#     imported only when two windows meet;
#   * leither.pairwin: the window state machine (Machine), fed mDNS views and the clock;
#   * here: the partner record on disk, and the node Service that runs both (browse, RPC
#     methods, LED, TXT).
"""Button pairing: the node service and the partner record.

Quota: each node grants its partner ``config["pair_quota"]`` bytes if set, else half of its
free storage at pairing time, capped at ``QUOTA_CAP`` (1 GiB).
"""

import asyncio
import os

from . import ids, pairwin
from .compat import const, ticks_diff, ticks_ms, time_ms
from .errors import AuthError, DecodeError, LeitherError, PairingError, RPCError
from .pairwin import INITIATE, OPEN, OVERLAP, PAIRING, STEP_MS, WINDOW_MS

_VIEW_MS = const(1000)  # one mDNS browse: one PTR query, answers within ~0.1-1 s (RFC 6762 §6)
# The first view of a window is longer than one query period of the nodes already browsing:
# a browsing node answers its own queries, so its PTR goes out once a period and the 1 s rate
# limit (RFC 6762 §6) swallows its answer to our first query; we then hear its next one (ms).
_FIRST_VIEW_MS = const(1300)
# After an overlap a node keeps TXT pair=1 this long (ms) while refusing to pair, so that every
# node in the window sees two or more candidates too and aborts (a view takes _VIEW_MS, and
# the single candidate must hold pairwin.SETTLE_MS before anyone acts).
_LINGER_MS = const(3000)
_RETRY_MS = const(250)  # I retries PairHello this often while R is not ready yet
_HELLO_TRIES = const(12)  # ... this many times (3 s) before browsing again
_TELL_MS = const(3000)  # one call to the partner outside an exchange: best effort, bounded
_CHECK_TRIES = const(3)  # sessions I tries to ask R whether it kept a pairing (PairCheck)
_CODE_SHOW_MS = const(60000)  # the LED blinks the code this long after pairing
_ERROR_SHOW_MS = const(30000)  # the LED blinks "error" this long after an abort
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
        view_ms = _FIRST_VIEW_MS
        while True:
            now = ticks_ms()
            if machine.stale(now):
                _log("pairing exchange timed out; window stays open")
                self._responder = None
                machine.resume(now)
            if machine.expire(now):
                _log("pairing window closed (no partner found)")
                self.node.announce()
                self.node.show_idle_led()
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
            view_ms = _VIEW_MS
            action = machine.observe(nodes, ticks_ms())
            if action == OVERLAP:
                self._aborted()
                return
            if action == INITIATE:
                await self._initiate(machine.candidate)

    def _aborted(self):
        _log("pairing aborted: %s" % self.machine.reason)
        self._responder = None
        if self.machine.state == OVERLAP:
            self._linger_until = ticks_ms() + _LINGER_MS
            self._spawn(self._end_linger())
        else:
            self.node.announce()
        self._show("error", for_ms=_ERROR_SHOW_MS)

    async def _end_linger(self):
        await asyncio.sleep(_LINGER_MS / 1000)
        self._linger_until = None
        self.node.announce()

    def _fail(self, reason):
        self.machine.abort(pairwin.FAILED, reason)
        self._aborted()

    def _quota(self):
        store = self.node.store
        return quota_default(store.free() if store is not None else 0, self.node.config)

    async def _initiate(self, cand):
        from . import rpcclient
        from .pairproto import Initiator

        machine = self.machine
        addrs = cand.get("addresses") or []
        if not addrs or not cand.get("port"):
            return  # no address yet: the next view resolves it
        host, port, peer_id = addrs[0], cand["port"], cand["id"]
        machine.begin(ticks_ms())
        _log("pairing with %s at %s:%d" % (peer_id, host, port))
        client = None
        try:
            client = await rpcclient.connect(host, port, self.node.identity.seed,
                                             expected_node_id=peer_id, timeout_ms=STEP_MS)
            ini = Initiator(self.node.identity.seed, self._quota(), client.node_key)
            hello = ini.hello()
            reply = None
            for attempt in range(_HELLO_TRIES):
                try:
                    reply = await client.call("PairHello", hello, STEP_MS)
                    break
                except RPCError as err:
                    if err.code != "not_ready" or attempt == _HELLO_TRIES - 1:
                        raise
                await asyncio.sleep(_RETRY_MS / 1000)
                if machine.state != PAIRING:
                    return  # the window ended meanwhile (overlap seen by R, unpair, ...)
            confirm = ini.confirm(reply)
            try:
                done = await client.call("PairConfirm", confirm, STEP_MS)
            except (rpcclient.ConnectError, OSError) as err:
                # Our confirm may have reached R, and R saves before it answers: ask it.
                await client.close()
                client = None
                if not await self._check(host, port, peer_id, ini.tag()):
                    raise err
                _log("pairing: %s's answer was lost, but it kept the pairing" % peer_id)
                done = None  # R's PairCheck stands in for its confirmation
            result = ini.finish(done)
            try:
                self._commit(result, host, port)
            except OSError as err:
                self._fail("could not save the pairing: %s" % err)
        except RPCError as err:
            if err.code == "overlap":
                machine.abort(OVERLAP, "session overlap seen by %s" % peer_id)
                self._aborted()
            elif err.code in ("not_ready", "busy"):
                machine.resume(ticks_ms())
            else:
                self._fail("%s refused pairing: %s" % (peer_id, err.msg))
        except (AuthError, DecodeError, PairingError) as err:
            self._fail("pairing with %s failed: %s" % (peer_id, err))
        except (rpcclient.ConnectError, OSError) as err:
            _log("pairing: %s unreachable (%s); retrying" % (peer_id, err))
            machine.resume(ticks_ms())
        finally:
            if client is not None:
                await client.close()

    async def _call(self, addr, port, peer_id, method, params):
        """One call to a node pinned to peer_id outside an exchange, bounded by _TELL_MS;
        its failures (RPCError, LeitherError, OSError) go to the caller."""
        from . import rpcclient

        client = await rpcclient.connect(addr, port, self.node.identity.seed,
                                         expected_node_id=peer_id, timeout_ms=_TELL_MS)
        try:
            return await client.call(method, params, _TELL_MS)
        finally:
            await client.close()

    async def _check(self, host, port, peer_id, tag):
        """Did the node at host:port save the pairing named tag with us? False if it says no
        or stays unreachable for _CHECK_TRIES sessions."""
        for attempt in range(_CHECK_TRIES):
            if attempt:
                await asyncio.sleep(_RETRY_MS * 4 / 1000)
            try:
                reply = await self._call(host, port, peer_id, "PairCheck", {"tag": tag})
                return isinstance(reply, dict) and reply.get("paired") is True
            except RPCError:
                return False  # it answers, without PairCheck: it cannot have saved it
            except (LeitherError, OSError) as err:
                _log("pairing: cannot ask %s whether it kept the pairing: %s" % (peer_id, err))
        return False

    # -- RPC handlers (R's side) ------------------------------------------------------------

    def _rpc_hello(self, caller, params):
        from .pairproto import Responder

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

    def _rpc_check(self, caller, params):
        from . import crypto

        tag = field(params, "tag", 16)
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
        self._show("pairing", code=record["code"], for_ms=_CODE_SHOW_MS)

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
        if not old.get("addr") or not old.get("port"):
            return False
        try:
            await self._call(old["addr"], old["port"], old["peer_id"], "PairDrop", {})
            return True
        except (LeitherError, OSError) as err:
            _log("could not tell %s it was unpaired: %s" % (old["peer_id"], err))
            return False

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
