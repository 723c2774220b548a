# Paired backup, the owner's push (DESIGN §5): the sessions to the partner and the transfer of
# this node's versions into its vault. A part of leither.backup, loaded on the first push.
"""Push this node's versions to its partner: ``await push_all(svc)``.

Per MiMei and per version not yet on the partner, oldest first: the sealed version record
first, then the sealed blocks of the version's tree that differ from the previous pushed
version's tree (a walk of both canonical trees side by side: unchanged subtrees are skipped
without reading them), in ``BKPut`` batches of at most ``_BATCH`` bytes; then ``BKCommit``
appends the catalog entry, after the partner synced the blobs. Requests are pipelined (up to
``_WINDOW`` unanswered on a session, see _Pipe), and a catalog entry is sent only once every
request before it was answered ok. The partner checks each blob's tag on arrival and dedups
by name.

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
# (a blob over it goes in pieces). A board: the request is held twice on its way out (encoded,
# then sealed in its frame), each copy one block of the heap, and a long push fragments the
# heap further (measured on the 32-bit stand-in at 111,936 bytes: 4 KiB requests failed at
# once, 2 KiB ones after ~1 MB, 1 KiB ones pushed 2 MB in 20 MiMei): a quarter of the 4 KiB
# frame the heap affords there (leither.memory). An 8 KiB frame: half of it and room for one
# sealed 4 KiB chunk whole (4,352 bytes; 7.5 KiB requests failed in a 512 KiB test heap).
# CPython: 16 KiB (requests are pipelined: bigger ones would only save a frame's header
# and tag).
_FRAME = memory.frame_for_heap()
_BATCH = (_FRAME // 4 if _FRAME <= 4096 else _FRAME // 2 + 256) if IS_MICROPYTHON else 16384
_ITEM_OVERHEAD = const(48)  # CBOR bytes around one [name, blob] in a BKPut request
_BLOB_EXTRA = const(80)  # _ITEM_OVERHEAD + seal.TAG_LEN: a blob's bytes over its block's
CALL_OVERHEAD = const(96)  # CBOR and seal bytes around a BKPut's list of blocks
# Requests in flight per session (_Pipe): enough to keep an 8 Mbit/s link busy through the
# partner's commit (fsyncs) and the owner's reading and sealing (CPython: 256 KiB, 0.26 s of
# it). What is in flight costs the sender no heap (written out: the kernel's, or lwIP's,
# buffers hold it); a board keeps its ring of slots short and what a cut leaves in doubt
# small (8 KiB).
_WINDOW = 8 if _FRAME <= 4096 else 16
# A board collects before each request (a request is one contiguous block of its split heap:
# free the last one first); a bigger heap leaves it to gc's threshold (leither.memory.tune).
_COLLECT = IS_MICROPYTHON and _FRAME <= 4096
# A board's kept request frame (bytes of body, see _Pipe.open): a sealed 4 KiB chunk in two
# pieces. 1 KiB pieces cost five requests a chunk (wire 1.22x the payload on the 32-bit
# stand-in); a whole chunk does not fit a 4 KiB frame. Each half is over the partner's small
# frame (session._SMALL_FRAME, 2 KiB), so it is read into the partner's inbound buffer, not a
# fresh block per piece, and staged from there (backup_partner._piece).
_PIECE_FRAME = const(2256)  # (4096 + _BLOB_EXTRA + 16) / 2 + CALL_OVERHEAD + 48 + 16
_HAVE_MAX = const(64)  # names per BKHave (2 KiB of request)
_CURSOR_EVERY = const(256)  # blocks between saved transfer positions (1 MiB of chunks)
# Catalog entries per BKCommit: ~60 bytes each, within a board's 1 KiB batch (and well within
# the 64 the partner looks back through for a repeated commit, vault._RECENT).
_COMMIT_MAX = const(14)
_CALL_MS = const(5000)  # one backup call: a cut link is noticed this fast
_CONNECT_MS = const(5000)
# A partner short of heap answers "busy" (it did nothing of that request): waited out,
# _BUSY_MS doubling up to _BUSY_MAX_MS, _BUSY_TRIES times in a row without a version committed.
_BUSY_TRIES = const(8)
_BUSY_MS = const(50)
_BUSY_MAX_MS = const(1000)


def _log(line):
    print("leither: backup: " + line)


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
    for again in (False, True):  # again: where _locate found it
        try:
            client = await rpcclient.connect(
                p["addr"], p["port"], svc.node.identity.seed, expected_node_id=p["peer_id"],
                timeout_ms=_CONNECT_MS, max_reply=rpc.MAX_FRAME)
            break
        except rpcclient.ConnectError:
            if again or not await _locate(svc):
                raise
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
        for k in ("used", "quota"):
            if k in reply:
                svc.state[k] = reply[k]


async def call(svc, method, params, client=None, timeout_ms=None):
    """One call to the partner (the main session unless client); a "replaced" answer makes
    this board learn it was replaced (fence.learn) before the error goes up."""
    if client is None:
        client = await connect(svc)
    if IS_MICROPYTHON:
        memory.collect()  # a request is one contiguous block of KiB: free the last one first
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
    """Push every version (and MiMei metadata) the partner lacks; True if anything went."""
    p = svc.partner()
    if p is None or svc.replaced is not None:
        return False
    svc._pass = crypto.random(4)  # the sessions of this pass (see backup_partner.hello)
    try:
        return await _push_all(svc, p)
    finally:
        svc._kept = None  # the kept frame goes with the pass


async def _push_all(svc, p):
    if svc.state["partner"] != p["peer_id"]:  # a new partner has none of our data
        svc.state.update({"partner": p["peer_id"], "pair": None, "cursors": {}, "used": 0})
        for name in os.listdir(svc.dir + "/mm"):
            os.remove(svc.dir + "/mm/" + name)
        svc._save()
    svc._idle.clear()
    started = ticks_ms()
    sent = svc.state["sent"]
    keys = svc.ensure_key()
    if not svc.hello_done:
        await connect(svc)  # once per boot even with nothing to push: the fence is checked
    pipe = _Pipe(svc)
    await _drive(svc, pipe, keys)
    count = pipe.count
    if count:
        _log("pushed %d versions, %d sealed bytes in %d ms" % (
            count, svc.state["sent"] - sent, ticks_diff(ticks_ms(), started)))
    if count or svc.state["last_ok"] is None:
        svc.state["last_ok"] = time_ms()
        svc._save()
    return count > 0


# ---- the pipeline ------------------------------------------------------------------------

_PUT = const(0)  # kinds of requests in flight
_COMMIT = const(1)


class _Pipe:
    """The pass's requests in flight on the main session. The partner serves a session's
    requests in order and answers in order, so up to _WINDOW go unanswered: the link carries
    the next batches while the partner checks and stores the last one (lock-step calls left
    the link idle for every round trip, fsync and seal). Nothing in flight is held here: a
    request leaves the heap once written, and what a cut leaves in doubt is re-read and
    asked about (BKHave).

    A catalog entry (BKCommit) goes only when every request before it was answered ok: a
    BKPut answered "busy" stored nothing, and a commit must never list a torn version. The
    entries ready by then go in one BKCommit. The first error answer stops the pipe: the rest
    is drained with its acknowledgements ignored (they stay in doubt) and the error raised."""

    def __init__(self, svc):
        self.svc = svc
        self.client = None  # the main session, locked while the pass runs (opened on use)
        self.count = 0  # versions committed in this pass
        # [msgid, kind, a, b, bytes] per request not answered yet: a ring of slots made once,
        # oldest at head (a list item per request, living while 8 more go, would settle in
        # the holes the 1 KiB request frames leave and split them: a board's heap ran out)
        self.ring = [[0, 0, None, 0, 0] for _ in range(_WINDOW + 1)]  # + a BKCommit
        self.head = 0
        self.flying = 0
        self.sent = 0  # requests sent (sent - flying: answered)
        self.committed = 0  # the sequence number of the last BKCommit sent
        # [seq of its last request, catalog entry, mid, root or hash, resume]: sent, not
        # committed yet (a commit lists the first ones whose requests were all answered ok)
        self.versions = []
        self.err = None
        # The next BKPut's sealed blobs: [[name, blob]] of size bytes (<= limit, the
        # partner's frame may be lower than ours), the sequence index of the last.
        self.items = []
        self.size = 0
        self.last = 0
        self.limit = _BATCH
        self.step = 0

    async def open(self):
        if self.client is None:
            client = await connect(self.svc)
            await client.lock.acquire()
            self.client = client
            room = client.max_frame
            if _COLLECT:
                # A board encodes and seals its requests in one frame buffer the pass keeps
                # (and reads the answers there): no request-sized object per request, which
                # a split heap fails now and then in a long push (rpcclient.keep_frame).
                # Made once a pass; where the heap has no such block just now, a batch's
                # frame does (1 KiB pieces: slower, but the push goes on).
                kept = getattr(self.svc, "_kept", None)
                try:
                    room = client.keep_frame(_PIECE_FRAME, kept)
                except MemoryError:
                    memory.collect()
                    room = client.keep_frame(_BATCH + CALL_OVERHEAD, kept)
                self.svc._kept = client.kept_frame  # a new session of the pass takes it on
            self.limit = min(self.svc.config("push_batch", _BATCH), _BATCH,
                             client.max_frame - CALL_OVERHEAD)
            self.step = room - CALL_OVERHEAD - _ITEM_OVERHEAD - 16  # bytes of a blob's piece

    async def send(self, method, params, kind, a=None, b=None, size=0):
        if self.err is not None:
            await self.settle()  # raises it
        while self.flying >= _WINDOW:
            await self._answer()
        await self._commit_ready()
        await self._send(method, params, kind, a, b, size)

    async def _send(self, method, params, kind, a, b, size):
        if _COLLECT:
            memory.collect()  # a request is one contiguous block of KiB: free the last one
        ring = self.ring
        slot = ring[(self.head + self.flying) % len(ring)]
        slot[0] = await self.client.send(method, params)
        slot[1] = kind
        slot[2] = a
        slot[3] = b
        slot[4] = size
        self.flying += 1
        self.sent += 1

    async def _answer(self):
        msgid, kind, a, b, size = self.ring[self.head]
        self.head = (self.head + 1) % len(self.ring)
        self.flying -= 1
        try:
            value = await self.client.receive(msgid, "BK", _CALL_MS)
        except RPCError as err:
            if self.err is None:
                self.err = err
        if self.err is not None:
            return  # after an error nothing more counts as acknowledged
        account(self.svc, value)
        if kind == _PUT:
            self.svc.state["sent"] += size
            if a is not None:
                _acknowledged(self.svc, a, b)
        else:  # _COMMIT
            svc = self.svc
            for _seq, cat, mid, root, resume in a:  # listed in the partner's catalog
                if mid is None:
                    svc.state["pair"] = root
                    svc._save()
                    continue
                entry = svc.mm_get(mid)
                if cat[0] == vault.META:
                    entry["meta"] = root
                else:
                    now = time_ms()
                    entry.update({"n": cat[2], "t": now, "err": None, "root": root})
                    if svc._resumes.get(mid) is resume:
                        svc._resumes.pop(mid)
                    if svc.state["cursors"].pop(mid, None) is not None:
                        svc._save()
                    svc.state["last_ok"] = now
                    self.count += 1
                svc.mm_put(mid, entry)

    async def _commit_ready(self):
        ready = []
        done = self.sent - self.flying
        while (self.versions and self.err is None and len(ready) < _COMMIT_MAX
               and self.versions[0][0] <= done and self.committed <= done):
            ready.append(self.versions.pop(0))
        if ready:
            self.committed = self.sent + 1
            await self._send("BKCommit", {"entries": [v[1] for v in ready]}, _COMMIT, ready,
                             0, 0)

    async def settle(self):
        """Wait for every answer, committing what is complete; raise the first error (what
        it left uncommitted is pushed again: the versions' resume records say how far)."""
        while self.flying or (self.versions and self.err is None):
            if self.flying:
                await self._answer()
            await self._commit_ready()
        err, self.err = self.err, None
        if err is not None:
            self.versions = []
            raise err


async def _drive(svc, pipe, keys):
    """Push every MiMei, then the pairing record, through pipe: one walk of the store's
    directory (nothing per MiMei is held: 200 of them must fit a board's heap), each MiMei's
    new versions, then its metadata if it changed. A "busy" partner (short of heap: it did
    nothing of that request) is waited out and the walk made again: what was committed is
    skipped, and the resume records of the rest skip what was answered ok (BKHave sorts out
    what is in doubt). _BUSY_TRIES in a row without a version committed give up."""
    tries = progress = 0
    try:
        while True:
            try:
                for name in mimei_names(svc.node.store):
                    await _push_mimei(svc, pipe, mid_of(name), keys)
                await _push_pair(svc, pipe, keys)
                await pipe.settle()
                return
            except RPCError as err:
                if err.code == "replaced":
                    client, pipe.client = pipe.client, None
                    if client is not None:  # (a BKHello's "replaced": call learnt it)
                        client.lock.release()
                        await fence.learn(svc, client)
                    raise
                if err.code != "busy" or tries >= _BUSY_TRIES:
                    raise
                tries = 1 if pipe.count != progress else tries + 1
                progress = pipe.count  # versions committed
                await asyncio.sleep(min(_BUSY_MAX_MS, _BUSY_MS << tries) / 1000)
    finally:
        if pipe.client is not None:
            pipe.client.lock.release()


# ---- the push ----------------------------------------------------------------------------


async def _push_mimei(svc, pipe, mid, keys):
    """The versions of mid the partner lacks, oldest first, then its metadata if changed."""
    st = svc.node.store
    entry = svc.mm_get(mid)
    prev_root = entry.get("root")
    n = entry.get("n", 0)
    for v in st.versions(mid):
        if v["n"] > n:
            if svc.busy is None:
                svc.busy = "pushing"
                if IS_MICROPYTHON:
                    # The last read's cached tree reader holds 4 KiB buffers a push needs
                    # more: back to the tree pool (which the push takes from). Not st.trim():
                    # emptying the pool frees holes low in the heap that small objects fill
                    # at once (first fit), and the next 4 KiB take() then finds no room
                    # (measured, stand-in).
                    st._drop_reader()
            prev_root = await _push_version(svc, pipe, mid, v, prev_root, keys)
            n = v["n"]
    if not n:
        return  # none of its versions there yet
    s = st._state(mid)  # the MiMei's own fields, not its versions: restore's
    meta = cbor.dumps({"id": mid, "type": s["type"], "app": s["app"], "ext": s["ext"],
                       "mark": s["mark"], "ctime": s["ctime"], "release": s["release"],
                       "refs": s["refs"], "rights": s["rights"]})
    h = crypto.sha256(meta)
    if entry.get("meta") != h:
        await _put_blob(pipe, keys, h, meta, [vault.META, keys.mtag(mid), 0], mid)


def _chain(first, rest):
    yield first
    yield from rest


async def _push_version(svc, pipe, mid, v, prev_root, keys):
    st = svc.node.store
    rec_bytes = st.record_bytes(mid, v["n"])
    rec_hash = crypto.sha256(rec_bytes)
    root = cbor.loads(rec_bytes)["root"]
    rec_bytes = None
    # resume = [mid, n, acknowledged, processed]: items 1..acknowledged of the sequence
    # (record, then the tree diff) are on the partner; acknowledged+1..processed in doubt.
    old = svc._resumes.get(mid)
    if old is not None and old[1] == v["n"]:
        resume = old
        skip = resume[2]
        check = resume[3] - resume[2]  # the requests whose answers were lost
    else:
        skip = check = 0
        cursor = svc.state["cursors"].get(mid)
        if cursor and cursor[0] == v["n"]:
            skip = cursor[1]  # saved before a reboot: ask about what may follow it
            check = _CURSOR_EVERY + _WINDOW * _BATCH // store.CHUNK + 1
        resume = [mid, v["n"], skip, skip]
        svc._resumes[mid] = resume  # (its commit drops it, unless a newer one took its place)
    if skip or check:
        _log("resuming %s v%d after %d blocks (%d to check)" % (mid, v["n"], skip, check))
    await pipe.open()
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
                await _send_missing(svc, pipe, doubt, keys, resume)
                doubt = []
            continue
        await _add(svc, pipe, index, h, keys, resume)
    if doubt:
        await _send_missing(svc, pipe, doubt, keys, resume)
    await _flush(svc, pipe, resume)
    pipe.versions.append([pipe.sent, [vault.VERSION, keys.mtag(mid), v["n"],
                                       keys.name(rec_hash)], mid, root, resume])
    return root


async def _send_missing(svc, pipe, doubt, keys, resume):
    names = [keys.name(h) for _i, h in doubt]
    await pipe.settle()  # everything before it answered: then one call on the session
    client = pipe.client
    have = await client.receive(await client.send("BKHave", {"names": names}), "BKHave",
                                _CALL_MS)
    for k in range(len(doubt)):
        index, h = doubt[k]
        if not have[k]:
            await _add(svc, pipe, index, h, keys, resume, names[k])
        elif not pipe.items and not pipe.flying:
            resume[2] = index  # everything before it is acknowledged too


async def _add(svc, pipe, index, h, keys, resume, name=None):
    # Read and seal in reused buffers: a pass sends thousands of blocks, and a board's split,
    # fragmented heap has few 4 KiB holes to spare for each.
    buf = store.take()
    try:
        data = svc.node.store.blocks.get(h, buf)  # blocks are <= store.CHUNK bytes
        if len(data) + _BLOB_EXTRA > pipe.limit:
            # Over the partner's frame (a board's): sealed where it was read, sent in pieces;
            # no blob-sized buffer at all.
            # As [name, piece, offset, size] items in order, the tag last (with the last
            # piece where it fits); the partner stages them and stores the blob with the last
            # (a cut drops the staged part: the resume asks BKHave and sends it all again).
            await _flush(svc, pipe, resume)
            name, tag = keys.seal_in_place(h, data, name)
            n = len(data)
            size = n + len(tag)
            # As few requests as the frame allows, the pieces even and the tag's item riding
            # with the last: a 4 KiB chunk in two requests of ~2.1 KiB each (not one of 4 KiB
            # and one of a few bytes, the second small enough for a fresh block).
            whole = n + _BLOB_EXTRA + 16
            count = -(-whole // pipe.step)
            per = -(-whole // count)
            off = 0
            while off < n:
                end = min(off + per, n)
                blocks = [[name, data[off:end], off, size]]
                last = end >= n
                if last:
                    blocks.append([name, tag, n, size])
                await pipe.send("BKPut", {"blocks": blocks}, _PUT, resume if last else None,
                                index, size if last else 0)
                off = end
            return
        if pipe.size + len(data) + _BLOB_EXTRA > pipe.limit and pipe.items:
            await _flush(svc, pipe, resume)
        # In a buffer of its own size (a record or a small block on a board: no more than
        # it needs); the batch's blobs are garbage once it is written out.
        name, blob = keys.seal(h, data, name)
    finally:
        store.give(buf)
    pipe.items.append([name, blob])
    pipe.size += len(blob) + _ITEM_OVERHEAD
    pipe.last = index


async def _flush(svc, pipe, resume):
    if not pipe.items:
        return
    await pipe.send("BKPut", {"blocks": pipe.items}, _PUT, resume, pipe.last, pipe.size)
    pipe.items = []
    pipe.size = 0


def _acknowledged(svc, resume, index):
    """Items up to index of the transfer are on the partner; every _CURSOR_EVERY of them
    the position is saved (a reboot resumes from there)."""
    before = resume[2]
    if index <= before:
        return
    resume[2] = index
    if index // _CURSOR_EVERY != before // _CURSOR_EVERY:
        svc.state["cursors"][resume[0]] = [resume[1], index]
        svc._save()


async def _put_blob(pipe, keys, h, data, head, mid):
    """A small blob and its catalog entry (head + [name]) through the pipe. No BKHave first:
    the partner keeps a blob it holds once (a repeat costs a few hundred bytes)."""
    name, blob = keys.seal(h, data)
    await pipe.open()
    await pipe.send("BKPut", {"blocks": [[name, blob]]}, _PUT, None, 0, len(blob))
    pipe.versions.append([pipe.sent, head + [name], mid, h, None])


async def _push_pair(svc, pipe, keys):
    try:
        data = read_file(svc.node.root + "/pair.cbor")
    except OSError:
        return
    h = crypto.sha256(data)
    if svc.state["pair"] != h:
        await _put_blob(pipe, keys, h, data, [vault.PAIR, bytes(seal.MTAG_LEN), 0], None)
