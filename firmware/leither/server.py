# The node's RPC server: accepts TCP connections, runs the handshake of leither.rpc, maps the
# client's key to a role and serves a table of methods (leither.node makes and starts it).
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

Hostile input closes that one connection and nothing else: a frame length over the limit of
the connection's phase, an empty frame, EOF mid-frame, a handshake message that does not verify,
a sealed frame that fails its tag, a deadline passed (``handshake_ms`` for each step the node
waits on a handshaking client, ``frame_ms`` for the rest of a frame once its header arrived,
waiting for a buffer included, ``idle_ms`` between requests). A sealed request that is not
valid CBOR gets a ``bad_request`` reply before the close.

Admission (leither.admission, SECURITY.md): the owner and the partner always get in; handshakes
that stall and guests give way to them; guests have a quota of sessions and of bytes in flight.

Heap (MicroPython, leither.memory): the reply buffer and the inbound buffer (one frame each;
the frame size follows the heap) are made for the first connection and given back when the
last one ends (then ``on_idle`` runs: the node hands back its caches too). Owner and
peer frames too big for a small allocation are received in the inbound buffer (one at a time),
opened in place and decoded from it; replies are built, sealed and written in the reply buffer
with no await in between. Methods in ``zero_copy`` (MFSetData, Ping) get byte strings as views
into the inbound buffer, no frame-sized copy: their handlers must be synchronous and keep no
reference to them. A request that meets a MemoryError anywhere is answered ``busy``
(retryable) after a collection; a node short of heap refuses new sessions with ``busy``.
"""

import asyncio
import gc
import sys

from . import cbor, crypto, ids, memory, rpc
from .admission import READY, Admission
from .compat import IS_MICROPYTHON, const, ticks_diff, ticks_ms
from .errors import AuthError, DecodeError, RPCError
from .rpc import GUEST, OWNER, PEER

# leither.reply (replies, Bulk) and leither.session (Conn, Caller) are imported by the first
# connection that needs them: an idle node keeps neither (1.3 KB of an ESP32's heap). Their
# names stay reachable here (server.Bulk, server.Caller) for handlers and tests.


def __getattr__(name):
    if name in ("Bulk", "FrameBuffer", "encode_reply", "error_code"):
        from . import reply as module
    elif name in ("Caller", "Conn", "DropLog"):
        from . import session as module
    else:
        raise AttributeError(name)
    return getattr(module, name)

ALL_ROLES = (OWNER, PEER, GUEST)
_OWNER_ONLY = (OWNER,)  # the roles of a method registered as its handler alone

_MAX_CONNS = const(12)  # connections: 10 clients + 2 spare for handshakes, fits ~90 KB heap
_MAX_SHAKES = const(4)  # handshakes at once; more evict the most stalled one
_GUEST_SESSIONS = const(4)  # guest sessions at once; the other slots stay for owner and peers
_GUEST_BYTES = const(8192)  # bytes of guest frames being received at once, all guests
_GUEST_MAX_FRAME = const(4096)  # bytes a guest may send in one frame: small calls only
# Each step the node waits on a handshaking client (a board client verifies and signs between
# messages 2 and 3: 2-6 s on an ESP32). Stalled handshakes are evicted long before this when
# slots are short; the deadline only frees slots nobody else wanted.
_HANDSHAKE_MS = const(10000)
_FRAME_MS = const(10000)  # rest of a frame after its header (waits included); one reply
_IDLE_MS = const(120000)  # between requests on an authenticated session
_WATCH_MS = const(250)  # how often deadlines are checked
_CLAIM_BACKOFF_MS = const(1000)  # after a wrong claim token, that address waits this long
# Connections dropped before they became sessions are held open _TARPIT_MS before closing,
# at most _TARPIT_MAX at once (see Server._serve): sockets, which a board has few of (lwIP's
# 10-16 on an ESP32, for the node's 12 connections), a host has 1024.
_TARPIT_MAX = (4 if sys.platform != "linux" else 32) if IS_MICROPYTHON else 256
_TARPIT_MS = const(1000)
# A guest dropped (over quota, too slow) has done a whole handshake: its socket is held longer,
# so that 24 guests cycling cost the node a few handshakes a second, not one per 50 ms.
_GUEST_TARPIT_MS = const(4000)
# Listen backlog: connections the kernel completes before we accept them. A board's lwIP
# keeps few; on a Linux host a short queue overflows under a connect flood and a good
# client's SYN is then dropped (retried by TCP only after 1 s, 3 s, ...).
_BACKLOG = 8 if IS_MICROPYTHON else 128
_BUSY_MSG = "node is short of memory; retry"


class Server:
    """A Leither node's RPC endpoint. See the module docstring for how to embed it."""

    def __init__(self, identity_seed, facts_provider=None, owner_key=None, claim_token=None,
                 on_claim=None, max_conns=_MAX_CONNS, max_frame=None,
                 guest_max_frame=_GUEST_MAX_FRAME, handshake_ms=_HANDSHAKE_MS,
                 frame_ms=_FRAME_MS, idle_ms=_IDLE_MS, claim_backoff_ms=_CLAIM_BACKOFF_MS,
                 log=None, max_shakes=_MAX_SHAKES, guest_sessions=_GUEST_SESSIONS,
                 guest_bytes=_GUEST_BYTES, work_heap=None):
        if max_frame is None:
            max_frame = memory.frame_for_heap()
        self.max_frame = max(rpc.HANDSHAKE_MAX_FRAME, min(max_frame, rpc.MAX_FRAME))
        # The frame buffers: one reply buffer (filled and sent without an await between) and
        # one inbound buffer for big frames (under self._big), shared by every connection.
        # Made when the first connection comes and given back when the last one ends
        # (_take_buffers): an idle node holds neither (2 frames, 8 KiB on an ESP32). The heap
        # of an idle node is whole, so the first connection finds the two holes; while any
        # connection is open they stay, and under load no frame-sized hole is needed.
        self._out = None
        self._in = None
        self._holders = 0  # connections that hold the frame buffers
        # Free heap (bytes) a handler may need: the store borrows 4 KiB chunk buffers from its
        # pool (made at start) and a result is built beside them. Measured with bench/soak.py
        # on the 32-bit stand-in: a busy node settles at 15-25 KB free after a collection, so
        # asking more turns every request away; a MemoryError past this check is still busy.
        self.work_heap = work_heap if work_heap is not None else self.max_frame + 4096
        self.session_heap = memory.LOW_HEAP  # free bytes below which new sessions wait
        self.on_short_heap = None  # called (then the heap checked again) before a "busy"
        self.on_idle = None  # called when the last connection has ended (caches can go)
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
        self.guest_max_frame = min(guest_max_frame, self.max_frame)
        self.handshake_ms = handshake_ms
        self.frame_ms = frame_ms
        self.idle_ms = idle_ms
        self.admission = Admission(max_conns, max_shakes, guest_sessions,
                                   max(guest_bytes, self.guest_max_frame), claim_backoff_ms)
        self.admission.evict = self._evict
        self.log = log if log is not None else _print_log
        self.port = None
        self.stats = {"accepted": 0, "refused": 0, "evicted": 0, "timeouts": 0, "bad": 0,
                      "sessions": 0, "calls": 0, "busy": 0}
        # {"code", "msg"} every call but GetVar answers: a board replaced by a restore
        # (leither.fence) serves nobody as its old ID.
        self.refusal = None
        self._methods = {}
        # Methods whose handler is synchronous and keeps no reference to its params' bytes
        # after it returns (a result may hold them: it is sent before the buffer is reused):
        # their data is read straight from the inbound buffer, with no frame-sized copy.
        self.zero_copy = {"Ping"}
        self._tables = []  # resolve functions of add_table(), in order
        self._big = asyncio.Lock()
        self._srv = None
        self._watch = None
        self._held = []  # tasks of dropped sockets being held open (see _TARPIT_MAX)
        self.tarpit_ms = _TARPIT_MS
        self.guest_tarpit_ms = _GUEST_TARPIT_MS
        self._drops = None  # the session.DropLog, made by the first drop
        self.register("GetVar", self._get_var, ALL_ROLES)
        self.register("Claim", self._claim, ALL_ROLES)
        self.register("Ping", _ping, ALL_ROLES)

    # The built-in methods live in leither.servercalls, loaded by their first call.

    def _get_var(self, caller, params):
        from .servercalls import get_var

        return get_var(self, caller, params)

    def _claim(self, caller, params):
        from .servercalls import claim

        return claim(self, caller, params)

    # ---- embedding API -------------------------------------------------------------------

    def register(self, name, handler, roles=(OWNER,), right=None):
        """Serve ``name`` with ``handler(caller, params)`` to ``roles``; other callers too when
        ``right`` is given and ``self.rights(key, right, name, params)`` allows it."""
        if not name or len(name) > rpc.MAX_METHOD:
            raise ValueError("bad method name")
        for role in roles:
            if role not in ALL_ROLES:
                raise ValueError("unknown role %r" % (role,))
        if right is None and len(roles) == 1 and roles[0] == OWNER:
            # The common entry (owner only, no right) is the handler alone: a board keeps ~20
            # registered methods for its whole life, and a tuple each is 48 bytes of heap.
            self._methods[name] = handler
            return
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
        from .reply import REPLY_OVERHEAD

        return self.max_frame - rpc.TAG_LEN - REPLY_OVERHEAD

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
        for task in list(self._held):
            task.cancel()
        conns = list(self.admission.conns)
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
        return len(self.admission.conns)

    @property
    def _conns(self):  # the backup service walks the sessions (push pass bookkeeping)
        return self.admission.conns

    # ---- connections ---------------------------------------------------------------------

    def _evict(self, victim, why):
        victim.why = why
        self.stats["evicted"] += 1
        self.admission.remove(victim)
        victim.task.cancel()

    async def _watchdog(self):
        ticks = 0
        while True:
            await asyncio.sleep(_WATCH_MS / 1000)
            now = ticks_ms()
            for conn in self.admission.conns:
                if (conn.limit is not None and conn.why is None
                        and ticks_diff(now, conn.since) > conn.limit):
                    conn.why = "timed out"
                    self.stats["timeouts"] += 1
                    conn.task.cancel()
            ticks += 1
            if ticks % 8 == 0:
                memory.collect()  # every 2 s: garbage goes early, the low-water mark moves

    def _room(self, check, need):
        """check(need), after ``on_short_heap`` handed back caches if the heap ran short
        lately or is short now. Called before a handler runs, never inside one."""
        if memory.trim_due() or not check(need):
            self._shed()
            return check(need)
        return True

    def _shed(self):
        """Short of heap between requests: the node hands back caches, then a collection."""
        try:
            if self.on_short_heap is not None:
                self.on_short_heap()
        except Exception as err:  # noqa: BLE001 - a failed trim must not fail us
            self.log("short-heap hook failed: %r" % (err,))
        gc.collect()

    def _refuse(self, conn, why):
        """Tell a client before its hello that the node cannot take it now (retryable)."""
        self.stats["refused"] += 1
        try:
            conn.writer.write(rpc.encode_frame(cbor.dumps(["error", "busy", why])))
        except (OSError, MemoryError):
            pass
        from .session import Refused

        raise Refused(why)

    async def _serve(self, reader, writer):
        if self._out is None and IS_MICROPYTHON:
            # The first connection since the node was idle: its frame buffers (and, the first
            # time, the session code) are made next; collect first, so that they take the
            # lowest holes and the long free run above stays whole for the work to come.
            gc.collect()
        from .session import Conn, Refused, close, peer_addr

        conn = Conn(reader, writer, asyncio.current_task())
        conn.limit = self.handshake_ms
        addr = peer_addr(writer)
        self.stats["accepted"] += 1
        why = None
        try:
            if not self.admission.admit(conn):
                self._refuse(conn, "all %d connections busy" % self.admission.max_conns)
            need = self.session_heap
            if self._out is None:
                need += 2 * self.max_frame  # the frame buffers come with the first connection
            if not self._room(memory.room_for_session, need) or not self._take_buffers(conn):
                memory.note_busy()
                self._refuse(conn, _BUSY_MSG)
            await conn.handshake(self, addr)
            while True:
                await self._serve_one(conn)
        except asyncio.CancelledError:
            why = conn.why or "cancelled"
        except Refused as err:
            why = "refused: %s" % err
        except EOFError:
            why = None if conn.phase == READY and not conn.busy else "closed mid-frame"
        except (DecodeError, AuthError) as err:
            self.stats["bad"] += 1
            why = "bad input: %s" % err
        except OSError as err:
            why = "socket error %s" % err
        except Exception as err:  # noqa: BLE001 - e.g. MemoryError: drop this one only
            why = "failed: %r" % (err,)
        finally:
            self.admission.remove(conn)
            if conn.buffers:
                self._give_buffers(conn)
        if why is not None:
            if self._drops is None:
                from .session import DropLog

                self._drops = DropLog()
            self._drops.log(self.log, addr, why)
            guest = conn.caller is not None and conn.caller.role == GUEST
            left = memory.free()
            if ((conn.phase != READY or guest) and len(self._held) < _TARPIT_MAX
                    and (left is None or left >= 2 * self.session_heap)):
                # A peer we drop before it became a session (refused, evicted, junk, too slow)
                # or a guest we drop: hold its socket a while before closing, so a reconnect
                # flood runs at the pace of these holds instead of as fast as we can drop
                # (each reconnect costs the node a handshake), and the CPU goes to sessions
                # and to a good client's retry. The slot itself is free already. Not when
                # the heap is short: held sockets would keep it short (each holds ~1 KB).
                self._held.append(conn.task)
                try:
                    await asyncio.sleep((self.guest_tarpit_ms if guest else self.tarpit_ms)
                                        / 1000)
                except asyncio.CancelledError:
                    pass
                finally:
                    self._held.remove(conn.task)
        await close(writer)

    def _take_buffers(self, conn):
        """Make the shared frame buffers if this is the first connection (False: no heap for
        them, even after shedding caches); ``conn`` holds them until it ends. The deadline
        watchdog runs while there are connections too: an idle node has nothing to time."""
        if self._out is None and not self._make_buffers():
            return False
        if self._watch is None:
            self._watch = asyncio.create_task(self._watchdog())
        self._holders += 1
        conn.buffers = True
        return True

    def _make_buffers(self):
        from .reply import FrameBuffer

        for attempt in (0, 1):
            try:
                self._out = FrameBuffer(self.max_frame)
                self._in = bytearray(self.max_frame)
                return True
            except MemoryError:
                self._out = self._in = None
                if attempt == 0:
                    self._shed()
        return False

    def _give_buffers(self, conn):
        """``conn`` ended: the last connection out hands the frame buffers back to the heap
        (no session can be using them: every request is answered inside its connection)
        and tells the node (``on_idle``)."""
        conn.buffers = False
        self._holders -= 1
        if self._holders <= 0:
            self._holders = 0
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
            self._out = self._in = None
            if self.on_idle is not None:
                try:
                    self.on_idle()
                except Exception as err:  # noqa: BLE001 - a failed trim must not fail us
                    self.log("idle hook failed: %r" % (err,))

    async def _serve_one(self, conn):
        conn.busy = False
        conn.deadline(self.idle_ms)
        # The header goes into the session's own 4 bytes: a read that allocates could meet a
        # MemoryError after taking bytes off the socket, and the stream would be lost.
        header = conn.header
        if header is None:
            header = conn.header = memoryview(bytearray(rpc.HEADER_LEN))
        await conn.read_into(header)
        n = rpc.parse_header(header, conn.max_frame)
        conn.busy = True
        conn.deadline(self.frame_ms)
        plain, release = await conn.receive(self, n)
        conn.work()  # from here on the time is the node's
        from . import reply

        msgid = reply.peek_msgid(plain)
        value = None
        try:
            try:
                msg = self._decode(plain, release is not None)
            except DecodeError as err:
                if str(err) == reply.CBOR_NO_HEAP:
                    raise MemoryError() from None  # the heap, not the client: busy below
                # A sealed request that does not decode: say why, then end the session.
                self.stats["bad"] += 1
                self._send_reply(conn, msgid, False, {"code": "bad_request",
                                                      "msg": str(err)[:200]}, None, None)
                raise
            plain = None
            msgid, method, params = msg
            msg = None
            if release is not None and method not in self.zero_copy:
                release()  # params hold no views into the inbound buffer (see _decode)
                release = None
            if (not isinstance(msgid, int) or isinstance(msgid, bool)
                    or not 0 <= msgid <= rpc.MAX_MSGID):
                self._send_reply(conn, 0, False, {"code": "bad_request", "msg": "bad msgid"},
                                 None, None)
                raise DecodeError("bad msgid")
            ok, value = await self.call(conn.caller, method, params)
            params = None
            if release is not None:
                release()
                release = None
            self._send_reply(conn, msgid, ok, value, conn.caller, method)
        except MemoryError:
            # Whatever ran short (decoding, the handler, the reply), the request is dropped
            # whole and the client told to retry; this session and every other one live on.
            msg = params = value = plain = None
            gc.collect()
            self.stats["busy"] += 1
            memory.note_busy()
            self._send_reply(conn, msgid, False, {"code": "busy", "msg": _BUSY_MSG}, None, None)
        finally:
            if release is not None:
                release()
        value = None
        await conn.writer.drain()

    def _decode(self, plain, pooled):
        """[msgid, method, params] of a request. From the inbound buffer, byte strings come
        as views into it (no frame-sized copy) and stay so for ``zero_copy`` methods, whose
        handler runs before the buffer is released; other methods get a copying decode."""
        if not pooled:
            return rpc.decode_array(plain, 3)
        msg = rpc.decode_array_views(plain, 3)
        if msg[1] in self.zero_copy:
            return msg
        msg = None
        return rpc.decode_array(plain, 3)

    def _send_reply(self, conn, msgid, ok, value, caller, method):
        """Encode, seal and write one reply in the shared reply buffer: no await in here.
        Short of heap while encoding or sealing, the caches are shed and the reply made
        again: the handler has run, and "busy" would tell the client that nothing was done
        (a commit or an increment retried would be done twice). Only a second shortage makes
        it "busy" (the channel's counter moves only for a frame sealed whole); a third ends
        the session."""
        from .reply import encode_reply

        out = self._out
        for last in (False, True):
            try:
                encode_reply(out, msgid, ok, value,
                             lambda err: self._log_failure(caller, method, err))
                size = conn.channel.seal_into(out.buf, out.pos - rpc.HEADER_LEN)
                break
            except MemoryError:
                self._shed()
                if not last:
                    continue
                value = None
                self.stats["busy"] += 1
                memory.note_busy()
                encode_reply(out, msgid, False, {"code": "busy", "msg": _BUSY_MSG}, None)
                size = conn.channel.seal_into(out.buf, out.pos - rpc.HEADER_LEN)
        conn.deadline(self.frame_ms)
        # MicroPython's writer sends at once and copies only what the socket did not take;
        # CPython's transport may keep a reference, so it gets its own bytes.
        conn.writer.write(out.view[:size] if IS_MICROPYTHON else bytes(out.view[:size]))

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
        if entry is not None and type(entry) is not tuple:  # owner only, no right
            entry = (entry, _OWNER_ONLY, None)
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
        if not self._room(memory.room_for_work, self.work_heap):
            self.stats["busy"] += 1
            memory.note_busy()
            return False, {"code": "busy", "msg": _BUSY_MSG}
        try:
            if named:
                result = handler(caller, params, method)
            else:
                result = handler(caller, params)
            if hasattr(result, "send"):  # a coroutine (CPython) or generator (MicroPython)
                result = await result
        except Exception as err:  # noqa: BLE001 - every handler failure becomes a reply
            from .reply import error_code

            code = error_code(err)
            if code == "busy" and not isinstance(err, RPCError):  # the heap, not the call
                err = None
                gc.collect()
                self.stats["busy"] += 1
                memory.note_busy()
                return False, {"code": "busy", "msg": _BUSY_MSG}
            if code == "internal":
                self._log_failure(caller, method, err)
            msg = err.msg if isinstance(err, RPCError) else str(err)
            return False, {"code": code, "msg": msg[:200]}
        return True, result

    async def dispatch(self, caller, msgid, method, params):
        """The encoded reply (as sent, before sealing) to one request by ``caller``."""
        from .reply import FrameBuffer, encode_reply

        ok, value = await self.call(caller, method, params)
        out = FrameBuffer(self.max_frame)
        encode_reply(out, msgid, ok, value, lambda err: self._log_failure(caller, method, err))
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

def _ping(caller, params):
    return params


def _print_log(msg):
    print("rpc:", msg)
