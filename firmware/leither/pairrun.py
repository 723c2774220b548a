# The pairing window at work (DESIGN §5): a press opens it, a task browses mDNS and feeds
# leither.pairwin's Machine, and the exchange (leither.pairproto) runs over RPC as initiator
# or responder, then the result is saved. Functions of leither.pairing's Service (``svc``,
# whose attributes hold the state), imported at the first press or pairing call: an idle
# node keeps none of this in its heap.
"""Button pairing: the window task, the exchange over RPC and its commit."""

import asyncio

from . import ids, pairwin
from .compat import const, ticks_ms, time_ms
from .errors import AuthError, DecodeError, LeitherError, PairingError, RPCError
from .pairing import _ipv4_of, _log, quota_default, save_partner
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


def open_window(svc):
    if not svc.machine.press(ticks_ms()):
        _log("pairing already in progress; press ignored")
        return False
    svc._linger_until = None
    svc._responder = None
    _log("pairing window open for %d s" % (WINDOW_MS // 1000))
    _show(svc, "pairing")
    svc.node.announce()
    if svc._task is not None:
        svc._task.cancel()
    svc._task = asyncio.create_task(_run_window(svc))
    return True


def _show(svc, pattern, code=None, for_ms=None):
    led = svc.node.led
    if led is None:
        return
    if svc._led_task is not None:
        svc._led_task.cancel()
        svc._led_task = None
    led.show(pattern, code=code)
    if for_ms:
        svc._led_task = asyncio.create_task(_led_later(svc, for_ms))


async def _led_later(svc, ms):
    try:
        await asyncio.sleep(ms / 1000)
    except asyncio.CancelledError:
        return
    svc._led_task = None
    if not svc.machine.window_open(ticks_ms()):
        svc.node.show_idle_led()


async def _run_window(svc):
    try:
        await _window(svc)
    except asyncio.CancelledError:
        return  # a new press restarted the window (or the node stops): it runs on
    except Exception as err:  # noqa: BLE001 - a bug or a full disk must not stay silent
        svc._responder = None
        _fail(svc, "pairing window failed: %r" % (err,))
    svc.unload()


async def _window(svc):
    machine = svc.machine
    warned = False
    view_ms = _FIRST_VIEW_MS
    while True:
        now = ticks_ms()
        if machine.stale(now):
            _log("pairing exchange timed out; window stays open")
            svc._responder = None
            machine.resume(now)
        if machine.expire(now):
            _log("pairing window closed (no partner found)")
            svc.node.announce()
            svc.node.show_idle_led()
            return
        if machine.state not in (OPEN, PAIRING):
            return
        mdns = svc.node.mdns
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
            _aborted(svc)
            return
        if action == INITIATE:
            await initiate(svc, machine.candidate)


def _aborted(svc):
    _log("pairing aborted: %s" % svc.machine.reason)
    svc._responder = None
    if svc.machine.state == OVERLAP:
        svc._linger_until = ticks_ms() + _LINGER_MS
        svc._spawn(_end_linger(svc))
    else:
        svc.node.announce()
    _show(svc, "error", for_ms=_ERROR_SHOW_MS)


async def _end_linger(svc):
    await asyncio.sleep(_LINGER_MS / 1000)
    svc._linger_until = None
    svc.node.announce()


def _fail(svc, reason):
    svc.machine.abort(pairwin.FAILED, reason)
    _aborted(svc)


def _quota(svc):
    store = svc.node.store
    return quota_default(store.free() if store is not None else 0, svc.node.config)


async def initiate(svc, cand):
    from . import rpcclient
    from .pairproto import Initiator

    machine = svc.machine
    addrs = cand.get("addresses") or []
    if not addrs or not cand.get("port"):
        return  # no address yet: the next view resolves it
    host, port, peer_id = addrs[0], cand["port"], cand["id"]
    machine.begin(ticks_ms())
    _log("pairing with %s at %s:%d" % (peer_id, host, port))
    client = None
    try:
        client = await rpcclient.connect(host, port, svc.node.identity.seed,
                                         expected_node_id=peer_id, timeout_ms=STEP_MS)
        ini = Initiator(svc.node.identity.seed, _quota(svc), client.node_key)
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
            if not await _check(svc, host, port, peer_id, ini.tag()):
                raise err
            _log("pairing: %s's answer was lost, but it kept the pairing" % peer_id)
            done = None  # R's PairCheck stands in for its confirmation
        result = ini.finish(done)
        try:
            _commit(svc, result, host, port)
        except OSError as err:
            _fail(svc, "could not save the pairing: %s" % err)
    except RPCError as err:
        if err.code == "overlap":
            machine.abort(OVERLAP, "session overlap seen by %s" % peer_id)
            _aborted(svc)
        elif err.code in ("not_ready", "busy"):
            machine.resume(ticks_ms())
        else:
            _fail(svc, "%s refused pairing: %s" % (peer_id, err.msg))
    except (AuthError, DecodeError, PairingError) as err:
        _fail(svc, "pairing with %s failed: %s" % (peer_id, err))
    except (rpcclient.ConnectError, OSError) as err:
        _log("pairing: %s unreachable (%s); retrying" % (peer_id, err))
        machine.resume(ticks_ms())
    finally:
        if client is not None:
            await client.close()


async def _call(svc, addr, port, peer_id, method, params):
    """One call to a node pinned to peer_id outside an exchange, bounded by _TELL_MS;
    its failures (RPCError, LeitherError, OSError) go to the caller."""
    from . import rpcclient

    client = await rpcclient.connect(addr, port, svc.node.identity.seed,
                                     expected_node_id=peer_id, timeout_ms=_TELL_MS)
    try:
        return await client.call(method, params, _TELL_MS)
    finally:
        await client.close()


async def _check(svc, host, port, peer_id, tag):
    """Did the node at host:port save the pairing named tag with us? False if it says no
    or stays unreachable for _CHECK_TRIES sessions."""
    for attempt in range(_CHECK_TRIES):
        if attempt:
            await asyncio.sleep(_RETRY_MS * 4 / 1000)
        try:
            reply = await _call(svc, host, port, peer_id, "PairCheck", {"tag": tag})
            return isinstance(reply, dict) and reply.get("paired") is True
        except RPCError:
            return False  # it answers, without PairCheck: it cannot have saved it
        except (LeitherError, OSError) as err:
            _log("pairing: cannot ask %s whether it kept the pairing: %s" % (peer_id, err))
    return False


def hello(svc, caller, params):
    from .pairproto import Responder

    machine = svc.machine
    now = ticks_ms()
    if machine.state == OVERLAP:
        raise RPCError("overlap", "this node saw a session overlap and aborted")
    peer_id = ids.make_id(caller.key)
    if machine.state == PAIRING and svc._responder is not None and (
            svc._responder[0].peer_key == caller.key):
        machine.resume(now)  # I started over (lost reply): restart the exchange
    if not machine.window_open(now) or machine.state != OPEN:
        raise RPCError("closed", "pairing window is not open")
    if not machine.ready_for(peer_id):
        if machine.ready is not None:
            _log("pairing hello from %s rejected: the node in my window is %s"
                 % (peer_id, machine.ready))
        raise RPCError("not_ready", "%s is not the one node in my pairing window" % peer_id)
    responder = Responder(svc.node.identity.seed, _quota(svc))
    reply = responder.reply(params, caller.key)
    machine.begin(now)
    svc._responder = (responder, machine.candidate)
    return reply


def confirm(svc, caller, params):
    pending = svc._responder
    if (pending is None or svc.machine.state != PAIRING
            or pending[0].peer_key != caller.key):
        raise RPCError("closed", "no pairing exchange with you in progress")
    svc._responder = None
    try:
        result, done = pending[0].finish(params)
    except (AuthError, DecodeError, PairingError) as err:
        _fail(svc, "pairing with %s failed: %s" % (ids.make_id(caller.key), err))
        raise
    cand = pending[1] or {}
    addrs = cand.get("addresses") or [_ipv4_of(caller.addr)]
    try:
        _commit(svc, result, addrs[0], cand.get("port"))
    except OSError as err:
        _fail(svc, "could not save the pairing: %s" % err)
        raise RPCError("store", "responder could not save the pairing") from err
    if not addrs[0] or not cand.get("port"):
        svc._spawn(svc.locate_partner())  # learn where to reach it from mDNS
    return done


async def unpair(svc, caller, params):
    old = svc.partner
    if old is None:
        return {"unpaired": None, "told": False}
    told = await tell_drop(svc, old)
    svc._drop("unpaired by the owner")
    return {"unpaired": old["peer_id"], "told": told}


def _commit(svc, result, addr, port):
    old = svc.partner
    record = dict(result)
    record["addr"] = addr
    record["port"] = port
    record["since"] = time_ms()
    save_partner(svc.node.root, record)  # first: a crash leaves the old partner or this
    keys = svc.node.server.peer_keys
    if old is not None and old["peer_key"] != record["peer_key"]:
        keys.discard(old["peer_key"])
        _log("replacing partner %s" % old["peer_id"])
        svc._spawn(tell_drop(svc, old))
    keys.add(record["peer_key"])
    svc.partner = record
    svc.code = record["code"]
    svc.machine.done()
    _log("paired with %s at %s:%s; code %s (check that the other node shows the same)"
         % (record["peer_id"], addr, port, record["code"]))
    svc.node.announce()
    _show(svc, "pairing", code=record["code"], for_ms=_CODE_SHOW_MS)


async def tell_drop(svc, old):
    """Tell a partner we dropped it (best effort); True if it acknowledged."""
    if not old.get("addr") or not old.get("port"):
        return False
    try:
        await _call(svc, old["addr"], old["port"], old["peer_id"], "PairDrop", {})
        return True
    except (LeitherError, OSError) as err:
        _log("could not tell %s it was unpaired: %s" % (old["peer_id"], err))
        return False
