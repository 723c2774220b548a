# Restore (DESIGN §5): a fresh node, handed a dead node's identity seed and backup key by the
# owner, pulls every MiMei and version the dead node had pushed back from its partner, checks
# every block, and then takes the dead node's place (its key, its pairing record) at restart.
# Imported only when a restore runs (leither.backup's BackupRestore).
"""Pull a dead node's backups from its partner into this node: ``await run(node, svc, params)``.

Every blob is opened with the backup key and checked: a version record against its sealed name
(and its Ed25519 signature, by the store's import), every tree block against the hash it was
asked for. Versions are imported in the order they were pushed; the MiMei's metadata (app, ext,
mark, release, references, rights) follows; then each MiMei's cur becomes its last version.
"""

import asyncio
import binascii
import os

from . import cbor, crypto, fence, ids, memory, mimei, rpc, rpcclient, seal
from .compat import IS_MICROPYTHON, const, file_names, ticks_diff, ticks_ms, time_ms
from .errors import AuthError, RPCError, StoreError
from .identity import write_atomic
from .store import give, take

_WANT = const(32)  # hashes asked per round of a tree pull
# Catalog entries per BKList call: a page is held (decoded, ~130 B an entry) while its
# versions are pulled, so a board asks for a few at a time.
_PAGE = const(16)
# The partner's replies are read, opened and decoded in one frame buffer the session keeps
# (rpcclient.keep_frame), blobs taken as views into it: a board restoring thousands of blocks
# makes no frame-sized object per call, which its fragmenting heap would fail after a few
# hundred (it did, at ~50 of 200 MiMei). Its size: the partner's frame, at most this board's.
_FRAME = memory.frame_for_heap()
_GET_SLACK = const(64)  # bytes of a BKGet reply besides its blobs (msgid, list, heads, tag)
_CALL_MS = const(15000)
_BLOB_MAX = const(8192)  # store.BLOCK_MAX: no sealed block is bigger
# A step (a call, a version's import) that meets a MemoryError is done again this many times
# in all, after a collection and the store's trim: everything it did is done again or found
# done (blocks by hash, versions by number). A call cut short leaves its session out of step,
# so the session is opened again first.
_TRIES = const(4)
_RETRY_MS = const(200)
_PROGRESS_MS = const(3000)  # between progress lines in the node's log


class _Pull:
    def __init__(self, partner, seed, keys, dead_id):
        self.partner = partner  # {id, addr, port}
        self.seed = seed
        self.client = None
        self.record = None  # the incarnation record, once the fence moved (see connect)
        self.frame = None  # the session's kept frame buffer, handed on to a new session
        self.get_max = 0  # bytes of blobs asked per BKGet: what fits the kept frame
        self.keys = keys
        self.dead_id = dead_id
        self.blocks = 0
        self.bytes = 0

    async def connect(self):
        p = self.partner
        self.client = await rpcclient.connect(p["addr"], p["port"], self.seed,
                                              expected_node_id=p["id"],
                                              max_reply=rpc.MAX_FRAME)
        room = self.client.keep_frame(_FRAME if IS_MICROPYTHON else None, self.frame)
        self.frame = self.client.kept_frame
        self.get_max = room - _GET_SLACK
        if self.record is not None:  # a new session reads as the new incarnation too
            await self.client.call("BKFence", {"record": self.record}, _CALL_MS)

    async def close(self):
        if self.client is not None:
            await self.client.close()

    async def call(self, method, params, views=False):
        """client.call; short of heap, the session is opened again and the call repeated.
        With views, byte strings in the result live until the next call."""
        for attempt in range(_TRIES):
            _collect()
            try:
                if self.client.closed:
                    await self.connect()
                return await self.client.call(method, params, _CALL_MS, views)
            except MemoryError:
                if attempt == _TRIES - 1:
                    raise
            await self.client.close()  # mid-call: the channel's counters may be out of step
            await _short_of_heap()
        return None

    async def fetch(self, names):
        """The blobs under names, in order (several BKGet calls if the replies fill up)."""
        out = []
        while len(out) < len(names):
            got = await self.call("BKGet", {"names": names[len(out):], "max": self.get_max},
                                  True)
            if not got:
                raise StoreError("partner returned no blobs")
            for blob in got:  # views into the kept frame: copied before the next call
                if isinstance(blob, int):  # alone in its reply (see backup_partner._get)
                    blob = await self.assemble(names[len(out)], blob)
                if blob is None:
                    raise StoreError("the partner lacks a sealed block of this backup")
                self.bytes += len(blob)
                out.append(bytes(blob))
        return out

    async def assemble(self, name, size):
        """A record blob over the partner's frame (rare), read piece by piece."""
        blob = bytearray(size)
        at = [0]

        def put(data):
            blob[at[0]:at[0] + len(data)] = data
            at[0] += len(data)

        await self.pieces(name, size, put)
        return blob

    async def pieces(self, name, size, feed):
        """feed() each piece of a blob too big for one reply (a board's frames are smaller
        than a sealed chunk), in order."""
        if not 0 < size <= _BLOB_MAX:
            raise StoreError("the partner offers a blob of %d bytes" % size)
        off = 0
        while off < size:
            got = await self.call("BKGet", {"names": [name], "offset": off,
                                            "max": self.get_max}, True)
            data = got.get("data") if isinstance(got, dict) else None
            if not data or got.get("size") != size or off + len(data) > size:
                raise StoreError("the partner's pieces of a blob do not add up")
            feed(data)
            off += len(data)

    async def open_named(self, name):
        blob = (await self.fetch([name]))[0]
        return self.keys.open_blob(name, blob)

    async def block(self, store, name, h, blob):
        """Open and store one block: blob is its sealed bytes, or its size when it comes in
        pieces (opened as they arrive, into the store's pooled buffer)."""
        size = blob if isinstance(blob, int) else len(blob)
        buf = take()
        try:
            if size - seal.TAG_LEN > len(buf):  # a block over a 4 KiB chunk (rare)
                give(buf)
                buf = None
                out = bytearray(size - seal.TAG_LEN)
            else:
                out = buf
            if isinstance(blob, int):
                opener = seal.Opener(self.keys, name, size, out)
                await self.pieces(name, size, opener.feed)
                plain = opener.done(h)
            else:
                plain = self.keys.open_blob(name, blob, h, out)
            store.put_block(plain)
        finally:
            give(buf)
        self.bytes += size
        self.blocks += 1

    async def version(self, store, name):
        """Import one version (record by sealed name); its record dict."""
        data = await self.open_named(name)
        rec = mimei.check_record(data)
        if rec["author"] != self.dead_id:
            raise AuthError("a version record in the backup is not the node's own")
        if store.exists(rec["mid"]):
            for v in store.versions(rec["mid"]):
                if v["n"] == rec["n"]:
                    return rec
        # Names asked per call: as many blobs as one reply may hold (a board's 4 KiB frame
        # holds one sealed chunk in pieces, so asking for 32 would send 32 names for one).
        ask = max(2, min(_WANT, self.get_max // 1024))
        while True:
            want = []
            walk = store.missing(rec["root"])
            try:
                for h in walk:
                    want.append(h)
                    if len(want) >= _WANT:
                        break
            finally:
                walk.close()  # gives the walk's pool buffers back (MicroPython: no finalizer)
            if not want:
                break
            names = [self.keys.name(h) for h in want]
            done = 0
            while done < len(want):  # each reply's blobs are stored before the next call
                got = await self.call("BKGet", {"names": names[done:done + ask],
                                                "max": self.get_max}, True)
                if not got:
                    raise StoreError("partner returned no blobs")
                for blob in got:  # views into the kept frame; an int comes alone
                    if blob is None:
                        raise StoreError("the partner lacks a sealed block of this backup")
                    await self.block(store, names[done], want[done], blob)
                    done += 1
                got = None
        store.blocks.sync()
        return store.import_version(data)


async def _page(pull, offset):
    """The partner's catalog entries [kind, tag, n, name] from offset, _PAGE at most."""
    return (await pull.call("BKList", {"offset": offset, "count": _PAGE}))["entries"]


async def _short_of_heap(store=None):
    """A step ran out of heap: hand back the store's caches, collect, let the node's other
    work finish a moment, then the step is done again."""
    if store is not None and hasattr(store, "trim"):
        store.trim()
    _collect()
    await asyncio.sleep(_RETRY_MS / 1000)
    _collect()


async def _again(store, step, *args):
    """step(*args), awaited if a coroutine, done again (see _TRIES) when the heap runs short
    half-way: each step here is safe to repeat (a version's import finds its blocks by hash;
    a db's restore removes the generation it was building, a file's is one commit)."""
    for attempt in range(_TRIES):
        try:
            result = step(*args)
            if hasattr(result, "send"):  # a coroutine (CPython) or generator (MicroPython)
                result = await result
            return result
        except MemoryError:
            if attempt == _TRIES - 1:
                raise
        await _short_of_heap(store)
    return None


class _Progress:
    """A log line every _PROGRESS_MS (show() returns it): bytes pulled of the partner's
    total, the rate, the time left at that rate."""

    def __init__(self, total):
        self.total = total if isinstance(total, int) and total > 0 else None
        self.start = self.last = ticks_ms()

    def show(self, done, versions, now=None):
        if now is None:
            now = ticks_ms()
        if ticks_diff(now, self.last) < _PROGRESS_MS:
            return None
        self.last = now
        seconds = ticks_diff(now, self.start) / 1000
        rate = done / seconds if seconds > 0 else 0
        line = "leither: restoring: %d versions, %d KB" % (versions, done // 1000)
        if self.total is not None:
            line += " of %d KB (%d%%)" % (self.total // 1000, min(100, done * 100 // self.total))
            if rate > 0:
                line += ", ~%d s left" % max(0, (self.total - done) / rate)
        line += ", %d KB/s" % (rate // 1000)
        print(line)
        return line


def _collect():
    """Free the last reply's garbage before the next one is decoded: a reply needs one
    contiguous block of several KiB, which a fragmented board heap may not have."""
    if IS_MICROPYTHON:
        import gc

        gc.collect()


def _check(params):
    if not isinstance(params, dict):
        raise RPCError("bad_request", "BackupRestore takes a map")
    seed, key, partner = params.get("seed"), params.get("key"), params.get("partner")
    if not isinstance(seed, bytes) or len(seed) != 32:
        raise RPCError("bad_request", "seed: the dead node's 32-byte identity seed")
    if not isinstance(key, bytes) or len(key) != 32:
        raise RPCError("bad_request", "key: the dead node's 32-byte backup key")
    if (not isinstance(partner, dict) or not isinstance(partner.get("id"), str)
            or not isinstance(partner.get("addr"), str)
            or not isinstance(partner.get("port"), int)):
        raise RPCError("bad_request", "partner: {id, addr, port} of the dead node's partner")
    return seed, key, partner


async def run(node, service, params):
    """Restore into node (see the module docstring); a summary dict. The node restarts itself
    shortly after as the dead node (its identity is written last)."""
    seed, key, partner = _check(params)
    dead_id = ids.make_id(crypto.sign_public(seed))
    keys = seal.Keys(key)
    store = node.store
    _collect()  # the kept frame is made now, while the heap has room for it
    pull = _Pull(partner, seed, keys, dead_id)
    await pull.connect()
    try:
        # First of all the fence: from here on the partner serves this incarnation only, so
        # the old board, should it come back, can no longer push (even while this runs).
        record = pull.record = await fence.advance(pull.client, seed, _CALL_MS)
    except BaseException:
        await pull.close()
        raise
    pair_name = None
    versions = 0
    mimei_count = 0
    now = time_ms()
    try:
        # How much there is (sealed bytes the partner holds for the dead node): the progress
        # lines below (the node's log, which `leither restore` shows live) say how far along.
        progress = _Progress((await pull.call("BKStat", {}))["used"])
        # Pass 1, versions in push order; each MiMei's push state (newest version, its root)
        # goes to its file at once: nothing per MiMei is held (200 must fit a board's heap).
        for name in list(file_names(service.dir + "/mm")):  # the fresh board's own, if any
            os.remove(service.dir + "/mm/" + name)
        offset = 0
        while True:
            entries = await _page(pull, offset)
            if not entries:
                break
            offset += len(entries)
            progress.show(pull.bytes, versions)
            for kind, _tag, _n, name in entries:
                if kind == 118:
                    rec = await _again(store, pull.version, store, name)
                    last = service.mm_get(rec["mid"]).get("n")
                    # Versions are listed in push order, rising per MiMei: one listed twice
                    # (an old catalog) is imported once and counted once.
                    if last is None or rec["n"] > last:
                        mimei_count += last is None
                        versions += 1
                        service.mm_put(rec["mid"], {"n": rec["n"], "root": rec["root"],
                                                    "t": now, "err": None})
                elif kind == 112:
                    pair_name = name
        # Pass 2, the MiMei's own fields (app, ext, mark, release, references, rights): the
        # newest of each is listed last and so applied last.
        offset = 0
        while True:
            entries = await _page(pull, offset)
            if not entries:
                break
            offset += len(entries)
            for kind, _tag, _n, name in entries:
                if kind == 109:
                    meta = cbor.loads(await pull.open_named(name))
                    if store.exists(meta["id"]):
                        store.set_meta(meta["id"], meta)  # what import_version cannot know
        pair = await pull.open_named(pair_name) if pair_name is not None else None
    finally:
        await pull.close()
        pull.client = pull.frame = None  # the session's buffers back before the local work
    # Each MiMei's last version in place: a db MiMei's engine builds its tree here, with page
    # buffers of its own that a board had no room for beside the partner session's (its
    # restore failed at this step, again at every retry).
    for name in file_names(service.dir + "/mm"):
        _collect()
        await _again(store, store.restore, ids.b58encode(binascii.unhexlify(name)), "last")
    # Take the dead node's place: backup key and state first, pairing record, identity last
    # (a crash before that leaves a node that simply restores again).
    write_atomic(service.dir + "/backup.key", key, private=True)
    service.keys = keys
    service.state.update({"partner": partner["id"], "pair": None, "cursors": {},
                          "last_ok": now, "last_error": None})
    service._save()
    if pair is not None:
        write_atomic(node.root + "/pair.cbor", pair, private=True)
    fence.save(node.root, record)
    try:
        os.remove(node.root + "/" + fence.REPLACED_FILE)  # restored onto a replaced board
    except OSError:
        pass
    write_atomic(node.root + "/node.key", seed, private=True)
    service.state["served"] += pull.bytes
    service._save()
    print("leither: restored %d versions of %d MiMei as node %s; restarting"
          % (versions, mimei_count, dead_id))
    # The answer is made before the restart is set off, and with no big work left: the
    # record is the one this restore made (an Ed25519 check of it here ran out of heap on
    # a board, and the node restarted with the owner's call unanswered).
    result = {"id": dead_id, "mimei": mimei_count, "versions": versions,
              "blocks": pull.blocks, "bytes": pull.bytes, "restart": True,
              "incarnation": cbor.loads(record)["n"]}
    pull = None
    _collect()
    asyncio.create_task(_restart(node))
    return result


async def _restart(node):
    await asyncio.sleep(0.5)  # let the reply go out first
    stopping = getattr(node, "_stopping", None)
    if stopping is not None:
        stopping.set()  # run_forever ends; the board's main (or the sim) starts it again
