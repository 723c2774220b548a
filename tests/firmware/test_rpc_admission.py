# Admission and heap exhaustion in the node's RPC server, on both interpreters: which connection
# gives way when slots run out (leither.admission), claim back-off per address, and a server
# out of heap that answers "busy" (retried by the node's client) instead of dropping anyone.
import sys

if sys.implementation.name == "micropython" and ".frozen" not in sys.path:
    sys.path.append(".frozen")  # asyncio is frozen into the unix port; MICROPYPATH hides it

import asyncio

from leither import admission, crypto, memory, rpcclient, server
from leither.admission import HELLO, KEYED, READY
from leither.compat import IS_MICROPYTHON, ticks_ms
from leither.errors import RPCError

from test_pairing_rpcclient import free_port

# A server, the node's client, the handshake crypto and asyncio in one heap, as in
# test_pairing_rpcclient (passes from 180K on the 64-bit port; 20% headroom).
MP_HEAP = "232K"

NODE_SEED = bytes(range(1, 33))
OWNER_SEED = bytes(range(33, 65))
GUEST_SEED = bytes(range(97, 129))


def check(cond, msg="check failed"):
    """An assert that survives mpy-cross -O1, which drops assert statements."""
    if not cond:
        raise AssertionError(msg)


class _Task:
    def __init__(self):
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class _Caller:
    def __init__(self, role):
        self.role = role


class _Conn:
    def __init__(self, phase, since, role=None, waiting=True, busy=False):
        self.phase = phase
        self.since = ticks_ms() - since  # `since` ms ago
        self.waiting = waiting
        self.busy = busy
        self.why = None
        self.task = _Task()
        self.caller = _Caller(role) if role else None


def test_stalled_handshakes_give_way_junk_first_never_the_owner():
    adm = admission.Admission(max_conns=6, max_shakes=3, guest_sessions=2, guest_bytes=4096,
                              claim_backoff_ms=1000)
    owner = _Conn(READY, 9000, "owner")
    computing = _Conn(HELLO, 8000, waiting=False)  # the node is working on its hello
    keyed_old = _Conn(KEYED, 7000)
    keyed_new = _Conn(KEYED, 100)
    for conn in (owner, computing, keyed_old, keyed_new):
        check(adm.admit(conn))
    # Three handshakes: a fourth takes the slot of the one stalled longest (not the one
    # the node computes for, not the one that just got message 2).
    newcomer = _Conn(HELLO, 0)
    check(adm.admit(newcomer))
    check(keyed_old.task.cancelled and keyed_old not in adm.conns)
    check(not computing.task.cancelled and not keyed_new.task.cancelled)
    # A silent newcomer (no hello yet) goes before a handshake that sent its hello.
    junk = _Conn(HELLO, 0)
    newcomer.since = ticks_ms() - 50
    check(adm.admit(junk))
    check(newcomer.task.cancelled and not keyed_new.task.cancelled)
    # The owner's session is never anyone's victim; with nothing to evict, refuse.
    computing.waiting = False
    junk.waiting = keyed_new.waiting = False
    check(not adm.admit(_Conn(HELLO, 0)))
    check(not owner.task.cancelled and adm.evicted == 2)


def _join(adm, conn):
    """A connection admitted, then past its handshake: True if it may stay."""
    role, conn.phase = conn.caller.role, KEYED
    if not adm.admit(conn):
        return False
    if not adm.ready(conn):
        adm.remove(conn)
        return False
    conn.phase = READY
    return role is not None


def test_guest_quota_keeps_slots_for_owner_and_peer():
    adm = admission.Admission(max_conns=4, max_shakes=4, guest_sessions=2, guest_bytes=4096,
                              claim_backoff_ms=1000)
    idle = _Conn(READY, 5000, "guest")
    slow = _Conn(READY, 6000, "guest", busy=True)  # mid-frame, e.g. 1 byte a second
    check(_join(adm, idle) and _join(adm, slow))
    idle.since = ticks_ms() - 5000
    third = _Conn(READY, 0, "guest")
    check(_join(adm, third) and idle.task.cancelled)  # the idle guest made room
    third.busy = True
    fourth = _Conn(READY, 0, "guest")
    check(not _join(adm, fourth))  # every guest busy: the newcomer is refused
    check(not slow.task.cancelled and not third.task.cancelled)
    # A full node still takes the owner's and the partner's handshakes: guests give way.
    owner = _Conn(READY, 0, "owner")
    peer = _Conn(READY, 0, "peer")
    check(_join(adm, owner) and _join(adm, peer))
    check(_join(adm, _Conn(READY, 0, "owner")))
    check(slow.task.cancelled)  # the oldest busy guest went last
    check(not owner.task.cancelled and not peer.task.cancelled)
    # Bytes in flight: guests share one budget.
    check(adm.take_guest_bytes(3000) and not adm.take_guest_bytes(2000))
    adm.give_guest_bytes(3000)
    check(adm.take_guest_bytes(4096))


def test_claim_backoff_is_per_address():
    adm = admission.Admission(4, 2, 2, 4096, claim_backoff_ms=60000)
    check(not adm.claim_blocked("10.0.0.9"))
    adm.claim_failed("10.0.0.9")
    check(adm.claim_blocked("10.0.0.9") and not adm.claim_blocked("10.0.0.2"))
    for i in range(20):  # a bounded memory of addresses
        adm.claim_failed("10.1.0.%d" % i)
    check(len(adm._claims) <= 8)
    srv = server.Server(NODE_SEED, claim_token="right", log=lambda m: None, max_frame=1024,
                        claim_backoff_ms=60000)
    guesser = server.Caller(crypto.sign_public(GUEST_SEED), "guest", "10.0.0.9:4000")
    owner = server.Caller(crypto.sign_public(OWNER_SEED), "guest", "10.0.0.2:4001")
    ok, err = asyncio.run(srv.call(guesser, "Claim", {"token": "wrong"}))
    check(not ok and err["code"] == "bad_token")
    ok, err = asyncio.run(srv.call(guesser, "Claim", {"token": "wrong"}))
    check(not ok and err["code"] == "busy")
    ok, result = asyncio.run(srv.call(owner, "Claim", {"token": "right"}))
    check(ok and result["role"] == "owner", repr(result))


def test_out_of_heap_answers_busy_and_keeps_serving():
    calls = []

    def hog(caller, params):
        calls.append(params)
        if params == "once" and len(calls) > 2:
            return "done"
        return bytearray(1 << 40)  # far beyond any heap: a real MemoryError

    async def body():
        srv = server.Server(NODE_SEED, log=lambda m: None, max_frame=4096,
                            owner_key=crypto.sign_public(OWNER_SEED))
        srv.register("Hog", hog)

        def no_heap(view):
            raise MemoryError()

        srv.register("BulkHog", lambda caller, params: server.Bulk(10, no_heap))
        port = free_port()
        await srv.start("127.0.0.1", port)
        try:
            client = await rpcclient.connect("127.0.0.1", port, OWNER_SEED)
            try:
                try:
                    await client.call("Hog", "always")
                    raise AssertionError("no MemoryError")
                except RPCError as err:
                    check(err.code == "busy", err.code)
                check(len(calls) == rpcclient.BUSY_TRIES)  # retried, then given up
                check(await client.call("Ping", 5) == 5)  # the session lives on
                try:  # out of heap while the reply is built: busy, and the channel in step
                    await client.call("BulkHog")
                    raise AssertionError("no busy")
                except RPCError as err:
                    check(err.code == "busy", err.code)
                check(await client.call("Ping", 4) == 4)
                calls[:] = []
                check(await client.call("Hog", "once") == "done")  # a retry got through
                check(len(calls) == 3)
                if IS_MICROPYTHON:
                    # A handler needing more heap than there is is not even started.
                    srv.work_heap = 1 << 30
                    calls[:] = []
                    try:
                        await client.call("Hog", "once")
                        raise AssertionError("no busy")
                    except RPCError as err:
                        check(err.code == "busy" and not calls)
                    srv.work_heap = 0
                    # New sessions are refused (busy) before old ones starve.
                    srv.session_heap = 1 << 30
                    try:
                        await rpcclient.connect("127.0.0.1", port, OWNER_SEED)
                        raise AssertionError("a session started without heap")
                    except RPCError as err:
                        check(err.code == "busy")
                    check(await client.call("Ping", 6) == 6)
                    # ...unless the node's short-heap hook (Store.trim) hands enough back.
                    trims = []

                    def trim():
                        trims.append(1)
                        srv.session_heap = memory.LOW_HEAP

                    srv.on_short_heap = trim
                    extra = await rpcclient.connect("127.0.0.1", port, OWNER_SEED)
                    check(trims and await extra.call("Ping", 8) == 8)
                    await extra.close()
                    srv.on_short_heap = None
                    srv.session_heap = memory.LOW_HEAP
                    check(memory.low_water() is not None)
                check(srv.stats["busy"] >= rpcclient.BUSY_TRIES)
                check(await client.call("GetVar", "busy") >= rpcclient.BUSY_TRIES)
            finally:
                await client.close()
            again = await rpcclient.connect("127.0.0.1", port, OWNER_SEED)
            check(await again.call("Ping", 7) == 7)
            await again.close()
        finally:
            await srv.stop()

    asyncio.run(body())


def test_out_of_heap_mid_handshake_answers_busy_not_a_drop():
    # A MemoryError making message 2 or message 4 (the handshake's big-int crypto on a board)
    # reaches the client as "busy" in place of that message, which its connect retries; a
    # dropped connection would end the connect (ConnectError) instead.
    from leither import rpc

    real = (rpc.ServerHandshake.respond, rpc.ServerHandshake.accept)
    fail = {"respond": 1, "accept": 1}

    def short(name, fn):
        def wrapped(self, *args):
            if fail[name]:
                fail[name] -= 1
                raise MemoryError()
            return fn(self, *args)

        return wrapped

    async def body():
        srv = server.Server(NODE_SEED, log=lambda m: None, max_frame=4096,
                            owner_key=crypto.sign_public(OWNER_SEED))
        port = free_port()
        await srv.start("127.0.0.1", port)
        try:
            client = await rpcclient.connect("127.0.0.1", port, OWNER_SEED)
            check(await client.call("Ping", 3) == 3 and client.role == "owner")
            await client.close()
            check(fail == {"respond": 0, "accept": 0}, repr(fail))
            check(srv.stats["busy"] == 2 and srv.stats["sessions"] == 1, repr(srv.stats))
        finally:
            await srv.stop()

    rpc.ServerHandshake.respond = short("respond", real[0])
    rpc.ServerHandshake.accept = short("accept", real[1])
    try:
        asyncio.run(body())
    finally:
        rpc.ServerHandshake.respond, rpc.ServerHandshake.accept = real


def test_frame_size_follows_the_heap():
    check(memory.frame_for_heap(111936) == 4096)  # an ESP32-WROOM
    check(memory.frame_for_heap(160 * 1024) == 8192)
    check(memory.frame_for_heap(8 * 1024 * 1024) == memory.MAX_BLOCK // 2)  # no big blocks
    check(memory.frame_for_heap(40000) == memory.MIN_FRAME)


def test_a_decode_out_of_heap_below_a_handler_is_busy():
    from leither.errors import StoreError

    def state(caller, params):  # the store wraps what cbor said about the heap
        raise StoreError("corrupt state of MiMei x: CBOR: out of memory decoding the item")

    srv = server.Server(NODE_SEED, log=lambda m: None, max_frame=1024,
                        owner_key=crypto.sign_public(OWNER_SEED))
    srv.register("State", state)
    owner = server.Caller(crypto.sign_public(OWNER_SEED), "owner", "127.0.0.1:1")
    ok, err = asyncio.run(srv.call(owner, "State", None))
    check(not ok and err["code"] == "busy", repr(err))
    srv.register("Broken", lambda caller, params: (_ for _ in ()).throw(StoreError("bad")))
    ok, err = asyncio.run(srv.call(owner, "Broken", None))
    check(not ok and err["code"] == "store")


def test_frame_buffers_come_with_the_first_session_and_go_with_the_last():
    idle = []

    async def until(cond, what, ms=5000):
        start = ticks_ms()
        while not cond():
            if ticks_ms() - start > ms:
                raise AssertionError("still waiting for " + what)
            await asyncio.sleep(0.01)

    async def body():
        srv = server.Server(NODE_SEED, log=lambda m: None, max_frame=4096,
                            owner_key=crypto.sign_public(OWNER_SEED))
        srv.on_idle = lambda: idle.append(1)
        port = free_port()
        await srv.start("127.0.0.1", port)
        big = bytes(range(256)) * 12  # over the small-frame size: the inbound buffer's
        try:
            check(srv._out is None and srv._in is None, "an idle server holds frame buffers")
            check(srv._watch is None, "an idle server runs its deadline watchdog")
            first = await rpcclient.connect("127.0.0.1", port, OWNER_SEED)
            second = await rpcclient.connect("127.0.0.1", port, OWNER_SEED)
            check(srv._out is not None and srv._in is not None and srv._watch is not None)
            check(await first.call("Ping", big) == big)
            await first.close()
            await until(lambda: srv.connections == 1, "the first session to end")
            check(srv._out is not None and not idle, "buffers went with a session still open")
            check(await second.call("Ping", big) == big)
            await second.close()
            await until(lambda: srv._out is None and srv._in is None and srv._watch is None,
                        "the buffers and the watchdog to go")
            check(idle == [1], "on_idle not called once: %r" % (idle,))
            # The next session gets buffers anew and is served as before.
            again = await rpcclient.connect("127.0.0.1", port, OWNER_SEED)
            check(await again.call("Ping", big) == big)
            await again.close()
            await until(lambda: srv._out is None, "the buffers to go again")
        finally:
            await srv.stop()

    asyncio.run(body())
