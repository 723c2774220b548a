# Paired backup, the owner's push (DESIGN §5): the sessions to the partner and the transfer of
# this node's versions into its vault. A part of leither.backup, loaded on the first push.
"""Push this node's versions to its partner: ``await push_all(svc)``.

Per MiMei and per version not yet on the partner, oldest first: the sealed version record
first, then the sealed blocks of the version's tree that differ from the previous pushed
version's tree (a walk of both canonical trees side by side: unchanged subtrees are skipped
without reading them), in ``BKPut`` batches of at most ``_BATCH`` bytes; then ``BKCommit``
appends the catalog entry, after the partner synced the blobs. The partner checks each blob's
tag on arrival and dedups by name.

Resume: the transfer's position (blocks acknowledged) is kept in RAM and, every
``_CURSOR_EVERY`` blocks, on disk. After a broken connection the next attempt skips what was
acknowledged (hashes only: nothing is read or sealed) and asks the partner (``BKHave``) about
the blocks that were in flight, sending only those it lacks; after a reboot it asks about the
blocks since the last saved position. So a block that arrived is never sent twice.

Every session starts with ``BKHello``, which carries this node's incarnation (leither.fence):
a partner that saw a newer one answers ``replaced`` and this board stops (fence.learn).
"""

import asyncio
import os

from . import (
    cbor,
    crypto,
    fence,
    ids,
    memory,
    rpc,
    rpcclient,
    seal,
    store,
    treediff,
    vault,
)
from .compat import IS_MICROPYTHON, const, file_names, ticks_diff, ticks_ms, time_ms
from .errors import LeitherError, RPCError, StoreError
from .identity import read_file
from .port import net

# Bytes of sealed blobs per BKPut: one request frame, held whole by the sender and the receiver
# (a blob over it goes in pieces). CPython: 8-16 KiB keep an 8 Mbit/s tbf link full (48 KiB:
# -30%). A board: the client copies a request ~4 times on its way out, each copy one block of
# the heap, and a long push fragments the heap further (measured on the 32-bit stand-in at
# 111,936 bytes: 4 KiB requests failed at once, 2 KiB ones after ~1 MB, 1 KiB ones pushed
# 2 MB in 20 MiMei). So: a quarter of the frame the heap affords (leither.memory) where that
# is the 4 KiB minimum, else half of it; at most 16 KiB.
_FRAME = memory.frame_for_heap()
_BATCH = min(16384, _FRAME // 4 if _FRAME <= 4096 else _FRAME // 2)
_ITEM_OVERHEAD = const(48)  # CBOR bytes around one [name, blob] in a BKPut request
_BLOB_EXTRA = const(80)  # _ITEM_OVERHEAD + seal.TAG_LEN: a blob's bytes over its block's
CALL_OVERHEAD = const(96)  # CBOR and seal bytes around a BKPut's list of blocks
_HAVE_MAX = const(64)  # names per BKHave (2 KiB of request)
_CURSOR_EVERY = const(256)  # blocks between saved transfer positions (1 MiB of chunks)
# MiMei pushed at once, one session each (config "push_workers"): two keep a slow link busy
# while one waits for its reply; a board's heap holds the buffers of one.
_WORKERS = 1 if IS_MICROPYTHON else 2
_SPARE_BLOBS = const(4)  # blob buffers kept for reuse during a push pass (4 KiB + 32 each)
_CALL_MS = const(5000)  # one backup call: a cut link is noticed this fast
_CONNECT_MS = const(5000)


def _log(line):
    print("leither: backup: " + line)


class _Batch:
    """Sealed blobs waiting for one BKPut; the names of the last batch sent stay in doubt
    until its reply arrives."""

    def __init__(self, client, limit=_BATCH):
        self.client = client
        self.items = []  # [[name, blob]] <= limit bytes
        self.size = 0
        self.last = 0  # sequence index of the last item added
        self.bufs = []  # the buffers the items' blobs live in (back to svc._blobs on flush)
        # Bytes per request: the partner's frame limit may be lower than ours.
        self.limit = min(limit, _BATCH, client.max_frame - CALL_OVERHEAD)


# ---- sessions ----------------------------------------------------------------------------


async def connect(svc):
    """The engine's main session to the partner (opened on first use)."""
    if svc._client is None or svc._client.closed:
        svc._client = await svc._open()
    return svc._client


async def open_session(svc):
    """A new authenticated session to the partner, after BKHello."""
    p = svc.partner()
    if p is None:
        raise StoreError("no partner")
    if not p.get("addr"):
        await _locate(svc)
    seed = svc.node.identity.seed
    try:
        client = await rpcclient.connect(p["addr"], p["port"], seed, expected_node_id=p["peer_id"],
                                         timeout_ms=_CONNECT_MS, max_reply=rpc.MAX_FRAME)
    except rpcclient.ConnectError:
        if not await _locate(svc):
            raise
        client = await rpcclient.connect(p["addr"], p["port"], seed, expected_node_id=p["peer_id"],
                                         timeout_ms=_CONNECT_MS, max_reply=rpc.MAX_FRAME)
    net.no_delay(client._writer)
    try:
        await hello(svc, client)
    except BaseException:
        await client.close()
        raise
    return client


async def hello(svc, client):
    """BKHello on a new session: this node's owner, check key, port, push pass and
    incarnation (a partner that saw a newer one answers "replaced": see call)."""
    keys = svc.ensure_key()
    reply = await call(svc, "BKHello", {"owner": svc.node.owner, "check": keys.check,
                                        "port": svc.node.port, "pass": svc._pass,
                                        "inc": svc.incarnation[1]}, client)
    svc.hello_done = True
    account(svc, reply)


async def _locate(svc):
    for service in svc.node.services:
        if hasattr(service, "locate_partner"):
            try:
                return await service.locate_partner()
            except (OSError, LeitherError):
                return False
    return False


def account(svc, reply):
    if isinstance(reply, dict):
        if "used" in reply:
            svc.state["used"] = reply["used"]
        if "quota" in reply:
            svc.state["quota"] = reply["quota"]


async def call(svc, method, params, client=None, timeout_ms=None):
    """One call to the partner (the main session unless client); a "replaced" answer makes
    this board learn it was replaced (fence.learn) before the error goes up."""
    if client is None:
        client = await connect(svc)
    if IS_MICROPYTHON:
        import gc

        gc.collect()  # a request is one contiguous block of KiB: free the last one first
    try:
        return await client.call(method, params, timeout_ms or _CALL_MS)
    except RPCError as err:
        if err.code == "replaced":
            await fence.learn(svc, client)
        raise


# ---- the push ----------------------------------------------------------------------------


def mimei_names(st):
    """The file names (hex raw IDs) of the store's MiMei, one at a time."""
    return file_names(st.root + "/mm")


def mid_of(name):
    import binascii

    return ids.b58encode(binascii.unhexlify(name))


async def push_all(svc):
    """Push every version (and MiMei metadata) the partner lacks; True if anything went.

    Up to _WORKERS MiMei go at once, each over its own connection: while one waits for its
    reply the other's batch is on the wire (the calls of one session are lock-step).
    """
    p = svc.partner()
    if p is None or svc.replaced is not None:
        return False
    svc._pass = crypto.random(4)  # the sessions of this pass (see backup_partner.hello)
    svc._blobs = []  # spare blob buffers of this pass (whole blobs: big frames only)
    try:
        return await _push_all(svc, p)
    finally:
        svc._blobs = []


async def _push_all(svc, p):
    if svc.state["partner"] != p["peer_id"]:  # a new partner has none of our data
        svc.state.update({"partner": p["peer_id"], "pair": None, "cursors": {}, "used": 0})
        for name in os.listdir(svc.dir + "/mm"):
            os.remove(svc.dir + "/mm/" + name)
        svc._save()
    st = svc.node.store
    svc._idle.clear()
    started = ticks_ms()
    sent = svc.state["sent"]
    keys = svc.ensure_key()
    if not svc.hello_done:
        await connect(svc)  # once per boot even with nothing to push: the fence is checked
    count = [0]
    pending = _pending(svc, st)
    some = next(pending, None)
    pending.close()
    if some is not None:
        svc.busy = "pushing"
        if IS_MICROPYTHON:
            # The last read's cached tree reader holds 4 KiB buffers a push needs more: they
            # go back to the tree pool (which the push takes from). Not st.trim(): emptying
            # the pool frees holes low in the heap that small objects fill at once (first
            # fit), and the push's next 4 KiB take() then finds no room (measured, stand-in).
            st._drop_reader()
        await connect(svc)  # the first session (BKHello) before the others
        # Each worker takes the next MiMei with versions to push from one walk of the store's
        # directory (nothing per MiMei is held: 200 of them must fit a board's heap).
        pending = _pending(svc, st)
        workers = svc.config("push_workers", _WORKERS)
        results = await asyncio.gather(
            *[_worker(svc, pending, keys, count, k == 0) for k in range(workers)],
            return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
    for name in mimei_names(st):
        mid = mid_of(name)
        entry = svc.mm_get(mid)
        if entry.get("n"):
            await _push_meta(svc, mid, entry, keys)
    await _push_pair(svc, keys)
    if count[0]:
        _log("pushed %d versions, %d sealed bytes in %d ms" % (
            count[0], svc.state["sent"] - sent, ticks_diff(ticks_ms(), started)))
    if count[0] or svc.state["last_ok"] is None:
        svc.state["last_ok"] = time_ms()
        svc._save()
    return count[0] > 0


def _pending(svc, st):
    """The MiMei with versions the partner lacks, one by one (a generator several workers
    share: each next() runs to its yield without an await, so no MiMei goes twice)."""
    for name in mimei_names(st):
        mid = mid_of(name)
        vers = st.versions(mid)
        if vers and vers[-1]["n"] > svc.mm_get(mid).get("n", 0):
            yield mid


async def _worker(svc, pending, keys, count, first):
    client = None
    try:
        client = svc._client if first else await svc._open()
        for mid in pending:
            entry = svc.mm_get(mid)
            prev_root = entry.get("root")
            for v in svc.node.store.versions(mid):
                if v["n"] <= entry.get("n", 0):
                    continue
                root = await _push_version(svc, client, mid, v, prev_root, keys)
                prev_root = root
                entry.update({"n": v["n"], "t": time_ms(), "err": None, "root": root})
                svc.mm_put(mid, entry)
                if svc.state["cursors"].pop(mid, None) is not None:
                    svc._save()
                svc.state["last_ok"] = time_ms()
                count[0] += 1
    except BaseException:
        if client is not None and not first:
            await client.close(abort=True)  # given up: drop what it still had queued
            client = None
        raise
    finally:
        if client is not None and not first:
            await client.close()


def _chain(first, rest):
    yield first
    yield from rest


async def _push_version(svc, client, mid, v, prev_root, keys):
    st = svc.node.store
    rec_bytes = st.record_bytes(mid, v["n"])
    rec_hash = crypto.sha256(rec_bytes)
    root = cbor.loads(rec_bytes)["root"]
    rec_bytes = None
    # resume = [mid, n, acknowledged, processed]: items 1..acknowledged of the sequence
    # (record, then the tree diff) are on the partner; acknowledged+1..processed in doubt.
    resume = svc._resumes.get(mid)
    if resume is not None and resume[1] == v["n"]:
        skip = resume[2]
        check = resume[3] - resume[2]  # the batch whose reply was lost
    else:
        skip = check = 0
        cursor = svc.state["cursors"].get(mid)
        if cursor and cursor[0] == v["n"]:
            skip = cursor[1]  # saved before a reboot: ask about what may follow it
            check = _CURSOR_EVERY + _BATCH // store.CHUNK + 1
        resume = [mid, v["n"], skip, skip]
        svc._resumes[mid] = resume
    if skip or check:
        _log("resuming %s v%d after %d blocks (%d to check)" % (mid, v["n"], skip, check))
    batch = _Batch(client, svc.config("push_batch", _BATCH))
    doubt = []  # [(index, hash)] to ask BKHave about (<= _HAVE_MAX)
    index = 0
    for h in _chain(rec_hash, treediff.tree_diff(st.blocks, root, prev_root)):
        index += 1
        if index <= skip:
            continue
        resume[3] = index
        if check > 0:
            check -= 1
            doubt.append((index, h))
            if len(doubt) >= _HAVE_MAX or check == 0:
                await _send_missing(svc, doubt, batch, keys, resume)
                doubt = []
            continue
        await _add(svc, batch, index, h, keys, resume)
    if doubt:
        await _send_missing(svc, doubt, batch, keys, resume)
    await _flush(svc, batch, resume)
    reply = await call(svc, "BKCommit", {"entries": [[vault.VERSION, keys.mtag(mid), v["n"],
                                                      keys.name(rec_hash)]]}, client)
    account(svc, reply)
    svc._resumes.pop(mid, None)
    return root


async def _send_missing(svc, doubt, batch, keys, resume):
    names = [keys.name(h) for _i, h in doubt]
    have = await call(svc, "BKHave", {"names": names}, batch.client)
    for k in range(len(doubt)):
        index, h = doubt[k]
        if not have[k]:
            await _add(svc, batch, index, h, keys, resume, names[k])
        elif not batch.items:
            resume[2] = index  # everything before it is acknowledged too


async def _add(svc, batch, index, h, keys, resume, name=None):
    # Read and seal in reused buffers: a pass sends thousands of blocks, and a board's split,
    # fragmented heap has few 4 KiB holes to spare for each.
    buf = store.take()
    try:
        data = svc.node.store.blocks.get(h, buf)  # blocks are <= store.CHUNK bytes
        if len(data) + _BLOB_EXTRA > batch.limit:
            # Over the partner's frame (a board's): sealed where it was read, sent in pieces;
            # no blob-sized buffer at all.
            await _flush(svc, batch, resume)
            name, tag = keys.seal_in_place(h, data, name)
            await _send_pieces(svc, batch, name, data, tag)
            _acknowledged(svc, resume, index)
            return
        if batch.size + len(data) + _BLOB_EXTRA > batch.limit and batch.items:
            await _flush(svc, batch, resume)  # first: its buffers come back for this one
        need = len(data) + seal.TAG_LEN
        if svc._blobs and len(svc._blobs[-1]) >= need:
            out = svc._blobs.pop()
        else:  # a record or a small block: no more than it needs (a board's heap)
            out = bytearray(store.CHUNK + seal.TAG_LEN if need > 1024 else need)
        name, blob = keys.seal(h, data, name, out)
    finally:
        store.give(buf)
    batch.items.append([name, blob])
    batch.bufs.append(out)
    batch.size += len(blob) + _ITEM_OVERHEAD
    batch.last = index


async def _flush(svc, batch, resume):
    if not batch.items:
        return
    reply = await call(svc, "BKPut", {"blocks": batch.items}, batch.client)
    svc.state["sent"] += batch.size
    batch.items = []
    batch.size = 0
    for out in batch.bufs:
        _give_blob(svc, out)
    batch.bufs = []
    account(svc, reply)
    _acknowledged(svc, resume, batch.last)


async def _send_pieces(svc, batch, name, ct, tag):
    """One blob (ct + tag) bigger than a request may carry, as [name, piece, offset, size]
    items in order, the tag last; the partner stages them and stores the blob with the last
    (a cut drops the staged part: the resume asks BKHave and sends the whole blob again)."""
    step = batch.limit - _ITEM_OVERHEAD - 16  # the offset and size integers
    size = len(ct) + len(tag)
    for off in range(0, len(ct), step):
        reply = await call(svc, "BKPut", {"blocks": [[name, ct[off:off + step], off, size]]},
                           batch.client)
        account(svc, reply)
    account(svc, await call(svc, "BKPut", {"blocks": [[name, tag, len(ct), size]]},
                            batch.client))
    svc.state["sent"] += size


def _give_blob(svc, out):
    if len(svc._blobs) < _SPARE_BLOBS:
        svc._blobs.append(out)


def _acknowledged(svc, resume, index):
    """Items up to index of the transfer are on the partner; every _CURSOR_EVERY of them
    the position is saved (a reboot resumes from there)."""
    before = resume[2]
    resume[2] = index
    if index // _CURSOR_EVERY != before // _CURSOR_EVERY:
        svc.state["cursors"][resume[0]] = [resume[1], index]
        svc._save()


async def _push_meta(svc, mid, entry, keys):
    s = svc.node.store._state(mid)  # the MiMei's own fields, not its versions: restore's
    meta = cbor.dumps({"id": mid, "type": s["type"], "app": s["app"], "ext": s["ext"],
                       "mark": s["mark"], "ctime": s["ctime"], "release": s["release"],
                       "refs": s["refs"], "rights": s["rights"]})
    h = crypto.sha256(meta)
    if entry.get("meta") == h:
        return
    await _put_entry(svc, vault.META, keys.mtag(mid), h, meta, keys)
    entry["meta"] = h
    svc.mm_put(mid, entry)


async def _push_pair(svc, keys):
    try:
        data = read_file(svc.node.root + "/pair.cbor")
    except OSError:
        return
    h = crypto.sha256(data)
    if svc.state["pair"] == h:
        return
    await _put_entry(svc, vault.PAIR, bytes(seal.MTAG_LEN), h, data, keys)
    svc.state["pair"] = h
    svc._save()


async def _put_entry(svc, kind, tag, h, data, keys):
    name, blob = keys.seal(h, data)
    # Ask first: a put whose reply a cut swallowed has often landed (metadata changes rarely,
    # so the extra round trip is rare too), and nothing is sent twice.
    if not (await call(svc, "BKHave", {"names": [name]}))[0]:
        reply = await call(svc, "BKPut", {"blocks": [[name, blob]]})
        svc.state["sent"] += len(blob)
        account(svc, reply)
    account(svc, await call(svc, "BKCommit", {"entries": [[kind, tag, 0, name]]}))
