# The node's RPC server: accepts TCP connections, runs the handshake of leither.rpc, maps the
# client's key to a role and serves a table of methods. The node runtime (leither.node) makes
# one Server, registers the store's methods on it and starts it; everything else is here.
"""Asyncio RPC server for a Leither node (MicroPython and CPython).

Embedding::

    server = Server(identity.seed, facts_provider=node.fact, owner_key=owner,
                    claim_token=token, on_claim=lambda key: save_owner(root, key))
    server.peer_keys.add(partner_public_key)          # paired peers
    server.rights = lambda key, right, method, params: store.allows(key, right, params)
    server.register("MMCreate", handlers.mm_create, (OWNER,), right="write")
    await server.start("0.0.0.0", 4800)
    ...
    await server.stop()

A handler is ``handler(caller, params) -> result`` (plain or ``async def``); ``caller`` has
``key`` (32-byte Ed25519 public key), ``id`` (its ID), ``role`` and ``addr``. It raises
``RPCError(code, msg)`` for a reply ``{"code", "msg"}``; other Leither errors map to codes
(see ``error_code``), anything else to ``internal`` (and a log line). A result must encode as
CBOR and fit one frame (``max_frame``): bulk reads take ``offset``/``length`` and the client
loops (``max_data`` tells handlers the most bytes a result may carry). A handler can return
``Bulk(length, fill)`` to write bytes straight into the reply frame (no copy, no allocation).

Hostile input (every case closes that one connection and nothing else):
* any frame length over the limit of the connection's phase, an empty frame, EOF mid-frame;
* a handshake message that does not decode or verify; a sealed frame that fails its tag;
* a deadline passed: ``handshake_ms`` for the whole handshake, ``frame_ms`` for the rest of a
  frame once its header arrived (and for writing a reply), ``idle_ms`` between requests.

Fairness under a flood: at most ``max_conns`` connections. When a new one arrives at the
limit, the oldest connection that has not yet sent a valid hello is dropped (slowloris and
junk go first: a client that sent its hello is never displaced by them); failing that the
idle guest session that has waited longest; failing that the new connection is refused.
Frames larger than ``_SMALL_FRAME`` are received one at a time across all connections (a
lock), so ten clients sending big frames at once cost one big buffer, not ten.

Heap (MicroPython): the constructor makes two frame buffers (reply, big inbound) before the heap
fragments; frames are opened and sealed inside them, replies are built there by cbor.dump
and written with one call. A session costs ~2.4 KB (asyncio stream and task, keys, caller).
Under load a board's heap is chopped into small holes: a handler that returns a frame-sized
bytes object is what fails first, hence ``Bulk``.
"""

import asyncio
import gc
import hashlib

from leither import cbor, crypto, ids, rpc
from leither.compat import IS_MICROPYTHON, ticks_diff, ticks_ms
from leither.errors import (
    AuthError,
    DecodeError,
    LeitherError,
    PairingError,
    ProofError,
    QuotaError,
    RPCError,
    StoreError,
)
from leither.rpc import GUEST, OWNER, PEER

try:
    from micropython import const
except ImportError:
    from leither.compat import const

ALL_ROLES = (OWNER, PEER, GUEST)
# Facts a guest may read with GetVar; the rest (and any provider fact) need owner or peer.
PUBLIC_FACTS = ("id", "v", "name", "board", "fw", "uptime", "free", "heap", "claimed", "role",
                "pair", "peer", "replaced")

_MAX_CONNS = const(12)  # connections: 10 clients + 2 spare for handshakes, fits ~90 KB heap
# Default frame limit on MicroPython (bytes): two such buffers are made at start; a 64 KiB
# frame would not fit a board's heap beside its copies. CPython nodes take rpc.MAX_FRAME.
_BOARD_FRAME = const(8192)
_GUEST_MAX_FRAME = const(4096)  # bytes a guest may send in one frame: small calls only
_SMALL_FRAME = const(2048)  # bytes: larger inbound frames are received one at a time
_REPLY_OVERHEAD = const(64)  # bytes of CBOR around a bulk result ([id, 0, h'..'] + tag)
_HANDSHAKE_MS = const(20000)  # whole handshake; a board's Ed25519 takes ~1-3 s per side
_FRAME_MS = const(10000)  # rest of a frame after its header; writing one reply
_IDLE_MS = const(120000)  # between requests on an authenticated session
_WATCH_MS = const(250)  # how often deadlines are checked
_CLAIM_BACKOFF_MS = const(1000)  # after a wrong claim token, claims wait this long (anti-guess)
# Connections dropped before they authenticated are held open _TARPIT_MS before closing,
# at most _TARPIT_MAX at once (see Server._serve).
# Not on a board: its few lwIP sockets are better freed at once.
_TARPIT_MAX = 0 if IS_MICROPYTHON else 256  # file descriptors: well under the usual 1024
_TARPIT_MS = const(1000)
_DROP_LOGS_PER_S = const(5)  # log lines a second about dropped connections (see _log_drop)
# Listen backlog: connections the kernel completes before we accept them. A board's lwIP
# keeps few; on a Linux host a short queue overflows under a connect flood and a good
# client's SYN is then dropped (retried by TCP only after 1 s, 3 s, ...).
_BACKLOG = 8 if IS_MICROPYTHON else 128

# Connection phases (for eviction): waiting for hello, handshaking, serving.
_HELLO = const(0)
_KEYED = const(1)
_READY = const(2)


def error_code(err):
    """Wire error code for an exception a handler raised."""
    if isinstance(err, RPCError):
        return err.code
    if isinstance(err, QuotaError):
        return "quota"
    if isinstance(err, StoreError):
        return "store"
    if isinstance(err, DecodeError):
        return "bad_request"
    if isinstance(err, AuthError):
        return "forbidden"
    if isinstance(err, ProofError):
        return "proof"
    if isinstance(err, PairingError):
        return "pairing"
    if isinstance(err, LeitherError):
        return "error"
    if isinstance(err, (KeyError, TypeError, ValueError, IndexError)):
        return "bad_request"  # a handler tripping over missing or mistyped params
    return "internal"


class Caller:
    """The authenticated client of one connection, as handlers see it."""

    def __init__(self, key, role, addr):
        self.key = key
        self.id = ids.make_id(key)
        self.role = role
        self.addr = addr


class _Conn:
    def __init__(self, reader, writer, task):
        self.reader = reader
        self.writer = writer
        self.task = task
        self.phase = _HELLO
        self.since = ticks_ms()  # start of the current deadline (or of idleness)
        self.limit = _HANDSHAKE_MS  # ms allowed from `since`; None while the node is busy
        self.opened = self.since
        self.busy = False
        self.channel = None
        self.caller = None
        self.max_frame = rpc.HANDSHAKE_MAX_FRAME
        self.why = None  # reason the connection was cancelled by the node

    def deadline(self, ms):
        self.since = ticks_ms()
        self.limit = ms


def _addr(writer):
    try:
        peer = writer.get_extra_info("peername")
    except (AttributeError, OSError, KeyError):
        return "?"
    if isinstance(peer, tuple):
        return "%s:%s" % (peer[0], peer[1])
    if isinstance(peer, (bytes, bytearray)):  # the unix MicroPython port: raw struct sockaddr
        from leither.port import net

        try:
            ip, port = net.parse_addr(peer)
            return "%s:%d" % (ip, port)
        except (ValueError, IndexError, TypeError):
            return "?"
    return str(peer)


class Server:
    """A Leither node's RPC endpoint. See the module docstring for how to embed it."""

    def __init__(self, identity_seed, facts_provider=None, owner_key=None, claim_token=None,
                 on_claim=None, max_conns=_MAX_CONNS, max_frame=None,
                 guest_max_frame=_GUEST_MAX_FRAME, handshake_ms=_HANDSHAKE_MS,
                 frame_ms=_FRAME_MS, idle_ms=_IDLE_MS, claim_backoff_ms=_CLAIM_BACKOFF_MS,
                 log=None):
        if max_frame is None:
            max_frame = _BOARD_FRAME if IS_MICROPYTHON else rpc.MAX_FRAME
        self.max_frame = max(rpc.HANDSHAKE_MAX_FRAME, min(max_frame, rpc.MAX_FRAME))
        # The frame buffers: one reply buffer (filled and sent without an await between) and
        # one inbound buffer for big frames (under self._big). Made here, while the heap is
        # whole: a node builds its Server before it imports its services (~75 KB of modules on
        # the unix port, whose imports cut the heap up: made at start(), a node needed 372 KiB
        # of heap to find two 8 KiB holes), and under load no frame-sized hole is left.
        self._out = _FrameBuffer(self.max_frame)
        self._in = bytearray(self.max_frame)
        self._seed = identity_seed
        self.node_key = crypto.sign_public(identity_seed)
        self.node_id = ids.make_id(self.node_key)
        self.facts_provider = facts_provider
        self.owner_key = owner_key
        self.claim_token = claim_token
        self.on_claim = on_claim
        self.peer_keys = set()  # public keys (32 bytes) of paired peers
        # rights(key, right, method, params) -> bool: may a non-owner call a method that
        # names a right? None: only the roles listed for the method.
        self.rights = None
        self.max_conns = max_conns
        self.guest_max_frame = min(guest_max_frame, self.max_frame)
        self.handshake_ms = handshake_ms
        self.frame_ms = frame_ms
        self.idle_ms = idle_ms
        self.claim_backoff_ms = claim_backoff_ms
        self.log = log if log is not None else _print_log
        self.port = None
        self.stats = {"accepted": 0, "refused": 0, "evicted": 0, "timeouts": 0, "bad": 0,
                      "sessions": 0, "calls": 0}
        # {"code", "msg"} every call but GetVar answers: a board replaced by a restore
        # (leither.fence) serves nobody as its old ID.
        self.refusal = None
        self._methods = {}
        self._tables = []  # resolve functions of add_table(), in order
        self._conns = []
        self._big = asyncio.Lock()
        self._srv = None
        self._watch = None
        self._claim_fail = None
        self._tarpit = 0  # dropped sockets being held open (see _TARPIT_MAX)
        self._drop_window = None  # ticks_ms the current 1 s log window started
        self._drop_lines = 0  # lines logged in it
        self._drop_quiet = 0  # drops not logged since the last line
        self.register("GetVar", self._get_var, ALL_ROLES)
        self.register("Claim", self._claim, ALL_ROLES)
        self.register("Ping", _ping, ALL_ROLES)

    # ---- embedding API -------------------------------------------------------------------

    def register(self, name, handler, roles=(OWNER,), right=None):
        """Serve ``name`` with ``handler(caller, params)`` to ``roles``; other callers too when
        ``right`` is given and ``self.rights(key, right, name, params)`` allows it."""
        if not name or len(name) > rpc.MAX_METHOD:
            raise ValueError("bad method name")
        for role in roles:
            if role not in ALL_ROLES:
                raise ValueError("unknown role %r" % (role,))
        if type(roles) is not tuple:
            roles = tuple(roles)  # a tuple given is shared by every method registered with it
        self._methods[name] = (handler, roles, right)

    def add_table(self, resolve):
        """Serve the methods of a table: ``resolve(name)`` -> ``(handler, roles, right)`` or
        None, and ``handler(caller, params, name)``. Methods given to register() come first.

        For big method tables (the MiMei and db API): the table can be a constant tuple that
        a board keeps in flash with the code, where a registered method costs ~100 bytes of
        heap (entry, bound method, dict slot) for the node's whole life.
        """
        self._tables.append(resolve)

    @property
    def max_data(self):
        """The most bytes a bulk result may carry and still fit one reply frame."""
        return self.max_frame - rpc.TAG_LEN - _REPLY_OVERHEAD

    def role_of(self, key):
        if self.owner_key is not None and crypto.equal(key, self.owner_key):
            return OWNER
        if key in self.peer_keys:
            return PEER
        return GUEST

    async def start(self, host="0.0.0.0", port=4800):
        self._srv = await asyncio.start_server(self._serve, host, port, backlog=_BACKLOG)
        self.port = port
        sockets = getattr(self._srv, "sockets", None)
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self._watch = asyncio.create_task(self._watchdog())
        return self

    async def stop(self):
        """Stop listening and close every connection."""
        if self._srv is not None:
            self._srv.close()
            try:
                await self._srv.wait_closed()
            except (OSError, asyncio.CancelledError):
                pass
            self._srv = None
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        conns = list(self._conns)
        for conn in conns:
            conn.why = "stopping"
            conn.task.cancel()
        for conn in conns:
            try:
                await conn.task
            except (asyncio.CancelledError, Exception):
                pass

    @property
    def connections(self):
        return len(self._conns)

    # ---- connections ---------------------------------------------------------------------

    def _admit(self, conn):
        """Make room for a new connection; False if it must be refused."""
        if len(self._conns) < self.max_conns:
            return True
        victim = None
        for other in self._conns:  # oldest first: the list is in arrival order
            if other.phase == _HELLO:
                victim = other
                break
        if victim is None:
            for other in self._conns:
                if (other.phase == _READY and not other.busy and other.caller.role == GUEST
                        and (victim is None or ticks_diff(victim.since, other.since) > 0)):
                    victim = other
        if victim is None:
            return False
        victim.why = "evicted"
        self.stats["evicted"] += 1
        self._conns.remove(victim)
        victim.task.cancel()
        return True

    def _log_drop(self, addr, why):
        """Log a dropped connection, at most _DROP_LOGS_PER_S lines a second: under a flood,
        a line per connection would itself stall a board (a UART console prints ~11 KB/s)
        or fill a pipe nobody reads. Suppressed lines are counted in the next one."""
        now = ticks_ms()
        if self._drop_window is None or ticks_diff(now, self._drop_window) >= 1000:
            self._drop_window = now
            self._drop_lines = 0
        if self._drop_lines < _DROP_LOGS_PER_S:
            self._drop_lines += 1
            extra = " (%d more not logged)" % self._drop_quiet if self._drop_quiet else ""
            self._drop_quiet = 0
            self.log("%s: %s%s" % (addr, why, extra))
        else:
            self._drop_quiet += 1

    async def _watchdog(self):
        while True:
            await asyncio.sleep(_WATCH_MS / 1000)
            now = ticks_ms()
            for conn in self._conns:
                if (conn.limit is not None and conn.why is None
                        and ticks_diff(now, conn.since) > conn.limit):
                    conn.why = "timed out"
                    self.stats["timeouts"] += 1
                    conn.task.cancel()

    async def _serve(self, reader, writer):
        conn = _Conn(reader, writer, asyncio.current_task())
        addr = _addr(writer)
        self.stats["accepted"] += 1
        why = None
        if self._admit(conn):
            self._conns.append(conn)
            try:
                await self._handshake(conn, addr)
                while True:
                    await self._serve_one(conn)
            except asyncio.CancelledError:
                why = conn.why or "cancelled"
            except EOFError:
                why = None if conn.phase == _READY and not conn.busy else "closed mid-frame"
            except (DecodeError, AuthError) as err:
                self.stats["bad"] += 1
                why = "bad input: %s" % err
            except OSError as err:
                why = "socket error %s" % err
            except Exception as err:  # noqa: BLE001 - e.g. MemoryError: drop this one only
                why = "failed: %r" % (err,)
            finally:
                if conn in self._conns:
                    self._conns.remove(conn)
        else:
            self.stats["refused"] += 1
            why = "refused: %d connections busy" % len(self._conns)
        if why is not None:
            self._log_drop(addr, why)
            if conn.caller is None and self._tarpit < _TARPIT_MAX:
                # A peer we drop before it authenticated (refused, evicted, junk, too slow):
                # hold its socket a while before closing, so a reconnect flood runs at the
                # pace of these holds instead of as fast as we can drop, and the CPU goes to
                # sessions and to a good client's retry. The slot itself is free already.
                self._tarpit += 1
                try:
                    await asyncio.sleep(_TARPIT_MS / 1000)
                except asyncio.CancelledError:
                    pass
                finally:
                    self._tarpit -= 1
        await _close(writer)

    async def _read(self, conn, n):
        """Exactly n bytes from the connection, or EOFError (see rpc.read_exact)."""
        return await rpc.read_exact(conn.reader, n)

    async def _read_into(self, conn, view):
        """Fill a memoryview from the connection, or EOFError."""
        n = len(view)
        if IS_MICROPYTHON:
            got = 0
            while got < n:
                k = await conn.reader.readinto(view[got:])
                if not k:
                    raise EOFError("EOF")
                got += k
        else:
            view[:] = await conn.reader.readexactly(n)

    async def _read_frame(self, conn, limit):
        return await self._read(conn, rpc.parse_header(await self._read(conn, 4), limit))

    async def _write(self, conn, body, tail=b""):
        # One write per frame: MicroPython does not set TCP_NODELAY, and a frame split over
        # writes meets Nagle + delayed ACK (40 ms a reply on Linux). The join costs one copy.
        conn.deadline(self.frame_ms)
        conn.writer.write(b"".join((rpc.frame_header(len(body) + len(tail)), body, tail)))
        await conn.writer.drain()

    async def _handshake(self, conn, addr):
        conn.deadline(self.handshake_ms)
        try:
            msg1 = await self._read_frame(conn, rpc.HANDSHAKE_MAX_FRAME)
            shake = rpc.ServerHandshake(self._seed, self.node_key)
            msg2 = shake.respond(msg1)
        except DecodeError as err:
            # Tell a confused client (wrong port, old version) why, in one plain frame.
            try:
                conn.writer.write(rpc.encode_frame(
                    cbor.dumps(["error", "bad_hello", str(err)[:80]])))
            except OSError:
                pass
            raise
        conn.phase = _KEYED
        await self._write(conn, msg2)
        key = shake.verify(await self._read_frame(conn, rpc.HANDSHAKE_MAX_FRAME))
        if IS_MICROPYTHON:
            # The session's lasting objects (keys, MAC pads, caller) come next: collect the
            # handshake's big-int garbage first so they pack low in the heap instead of
            # landing between the holes, which would leave no frame-sized gap later.
            gc.collect()
        role = self.role_of(key)
        conn.max_frame = self.guest_max_frame if role == GUEST else self.max_frame
        conn.channel, msg4 = shake.accept(role, conn.max_frame)
        conn.caller = Caller(key, role, addr)
        await self._write(conn, msg4)
        conn.phase = _READY
        self.stats["sessions"] += 1

    async def _serve_one(self, conn):
        conn.busy = False
        conn.deadline(self.idle_ms)
        n = rpc.parse_header(await self._read(conn, 4), conn.max_frame)
        conn.busy = True
        big = n > _SMALL_FRAME
        if big:
            conn.limit = None  # waiting for the lock is not the client's fault
            await self._big.acquire()
        try:
            conn.deadline(self.frame_ms)
            # Big frames go into the one preallocated inbound buffer (hence the lock).
            body = memoryview(self._in)[:n] if big else memoryview(bytearray(n))
            await self._read_into(conn, body)
            msg = rpc.decode_array(conn.channel.open_inplace(body), 3)
            body = None
        finally:
            if big:
                self._big.release()
        msgid, method, params = msg
        msg = None
        if (not isinstance(msgid, int) or isinstance(msgid, bool)
                or not 0 <= msgid <= rpc.MAX_MSGID):
            raise DecodeError("bad msgid")
        conn.limit = None  # handler time is the node's
        ok, value = await self.call(conn.caller, method, params)
        params = None
        # From here to writer.write nothing awaits: the shared reply buffer is ours alone.
        out = self._out
        self._encode_reply(out, msgid, ok, value, conn.caller, method)
        value = None
        size = conn.channel.seal_into(out.buf, out.pos - rpc.HEADER_LEN)
        conn.deadline(self.frame_ms)
        # MicroPython's writer sends at once and copies only what the socket did not take;
        # CPython's transport may keep a reference, so it gets its own bytes.
        conn.writer.write(out.view[:size] if IS_MICROPYTHON else bytes(out.view[:size]))
        await conn.writer.drain()

    def _encode_reply(self, out, msgid, ok, value, caller, method):
        out.pos = rpc.HEADER_LEN
        try:
            if ok and isinstance(value, Bulk):
                out.write(_REPLY_OK_HEAD)
                out.write(cbor.dumps(msgid))
                out.write(b"\x00")
                out.write(cbor.encode_head(cbor.BYTES, value.length))
                end = out.pos + value.length
                if end > out.limit:
                    raise _Overflow()
                got = value.fill(out.view[out.pos:end])
                if got is not None and got != value.length:
                    raise RPCError("internal", "bulk result filled %d of %d bytes"
                                   % (got, value.length))
                out.pos = end
                return
            cbor.dump([msgid, 0 if ok else 1, value], out)
            return
        except _Overflow:
            error = {"code": "too_big", "msg": "result over %d bytes; ask for less"
                     % self.max_data}
        except LeitherError as err:  # a Bulk fill that failed (a store error...)
            error = {"code": error_code(err), "msg": (err.msg if isinstance(err, RPCError)
                                                     else str(err))[:200]}
        except Exception as err:  # noqa: BLE001 - a result CBOR cannot carry is a node bug
            self._log_failure(caller, method, err)
            error = {"code": "internal", "msg": "result does not encode"}
        out.pos = rpc.HEADER_LEN
        cbor.dump([msgid, 1, error], out)

    # ---- dispatch ------------------------------------------------------------------------

    async def call(self, caller, method, params):
        """(True, result) or (False, {"code", "msg"}) of one request by ``caller``."""
        self.stats["calls"] += 1
        if not isinstance(method, str):
            return False, {"code": "bad_request", "msg": "method must be text"}
        if self.refusal is not None and method != "GetVar":
            return False, self.refusal
        entry = self._methods.get(method)
        named = False
        if entry is None:
            for resolve in self._tables:
                entry = resolve(method)
                if entry is not None:
                    named = True
                    break
            else:
                return False, {"code": "no_method", "msg": "no method %s" % method}
        handler, roles, right = entry
        if caller.role not in roles and not self._allowed(caller, right, method, params):
            return False, {"code": "forbidden",
                           "msg": "%s is not allowed to call %s" % (caller.role, method)}
        try:
            if named:
                result = handler(caller, params, method)
            else:
                result = handler(caller, params)
            if hasattr(result, "send"):  # a coroutine (CPython) or generator (MicroPython)
                result = await result
        except Exception as err:  # noqa: BLE001 - every handler failure becomes a reply
            code = error_code(err)
            if code == "internal":
                self._log_failure(caller, method, err)
            msg = err.msg if isinstance(err, RPCError) else str(err)
            return False, {"code": code, "msg": msg[:200]}
        return True, result

    async def dispatch(self, caller, msgid, method, params):
        """The encoded reply (as sent, before sealing) to one request by ``caller``."""
        ok, value = await self.call(caller, method, params)
        out = _FrameBuffer(self.max_frame)
        self._encode_reply(out, msgid, ok, value, caller, method)
        return bytes(out.view[rpc.HEADER_LEN:out.pos])

    def _log_failure(self, caller, method, err):
        self.log("%s %s failed: %r" % (caller.addr, method, err))
        if IS_MICROPYTHON:
            import sys

            sys.print_exception(err)

    def _allowed(self, caller, right, method, params):
        if right is None or self.rights is None:
            return False
        try:
            return bool(self.rights(caller.key, right, method, params))
        except Exception as err:
            self.log("rights hook failed for %s: %r" % (method, err))
            return False

    # ---- built-in methods ----------------------------------------------------------------

    def _get_var(self, caller, params):
        name = params.get("name") if isinstance(params, dict) else params
        if not isinstance(name, str):
            raise RPCError("bad_request", "GetVar takes a fact name")
        if caller.role == GUEST and name not in PUBLIC_FACTS:
            raise RPCError("forbidden", "fact %s is not public" % name)
        if name == "id":
            return self.node_id
        if name == "v":
            return rpc.VERSION
        if name == "role":
            return caller.role
        if name == "claimed":
            return self.owner_key is not None
        if name == "owner":
            return None if self.owner_key is None else ids.make_id(self.owner_key)
        if name == "connections":
            return len(self._conns)
        if self.facts_provider is not None:
            try:
                return self.facts_provider(name)
            except KeyError:
                pass
        raise RPCError("not_found", "no fact %s" % name)

    def _claim(self, caller, params):
        token = params.get("token") if isinstance(params, dict) else params
        if self.owner_key is not None:
            raise RPCError("claimed", "node already has an owner")
        if self.claim_token is None:
            raise RPCError("no_token", "node has no claim token; reflash it")
        if not isinstance(token, (str, bytes)):
            raise RPCError("bad_request", "Claim takes {\"token\": text}")
        now = ticks_ms()
        if (self._claim_fail is not None
                and ticks_diff(now, self._claim_fail) < self.claim_backoff_ms):
            raise RPCError("busy", "a wrong token was tried just now; retry in a second")
        if not crypto.equal(_digest(token), _digest(self.claim_token)):
            self._claim_fail = now
            self.log("%s: wrong claim token" % caller.addr)
            raise RPCError("bad_token", "wrong claim token")
        if self.on_claim is not None:
            self.on_claim(caller.key)  # persist first: a failure leaves the node unclaimed
        self.owner_key = caller.key
        self.claim_token = None
        caller.role = OWNER
        for conn in self._conns:
            if conn.caller is caller:
                conn.max_frame = self.max_frame
        self.log("claimed by %s" % caller.id)
        return {"owner": caller.id, "node": self.node_id, "role": OWNER,
                "max_frame": self.max_frame}


class Bulk:
    """A handler result of ``length`` bytes that ``fill(view)`` writes straight into the reply
    frame (``view`` is a memoryview of exactly ``length`` bytes; fill it all, or raise).

    For bulk reads on a board: returning bytes costs a frame-sized allocation per call, and
    under load a fragmented heap has no such hole left; a Bulk costs nothing. The client sees
    an ordinary byte string. ``length`` must fit ``Server.max_data``.
    """

    def __init__(self, length, fill):
        self.length = length
        self.fill = fill


_REPLY_OK_HEAD = b"\x83"  # CBOR array of 3 items: [msgid, 0, result]


class _Overflow(Exception):
    pass


class _FrameBuffer:
    """A frame being built in place: header room, CBOR written by cbor.dump, tag room."""

    def __init__(self, max_frame):
        self.buf = bytearray(rpc.HEADER_LEN + max_frame)
        self.view = memoryview(self.buf)
        self.limit = rpc.HEADER_LEN + max_frame - rpc.TAG_LEN
        self.pos = rpc.HEADER_LEN

    def write(self, data):
        end = self.pos + len(data)
        if end > self.limit:
            raise _Overflow()
        self.view[self.pos:end] = data
        self.pos = end


def _ping(caller, params):
    return params


def _digest(token):
    """SHA-256 of a token, so the constant-time compare sees equal lengths."""
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


def _print_log(msg):
    print("rpc:", msg)


async def _close(writer):
    try:
        writer.close()
        await writer.wait_closed()
    except (OSError, asyncio.CancelledError):
        pass
    except Exception:
        pass
