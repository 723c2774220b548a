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
from .compat import IS_MICROPYTHON, const, file_names, time_ms
from .errors import AuthError, RPCError, StoreError
from .identity import write_atomic
from .store import give, take

_WANT = const(32)  # hashes asked per round of a tree pull
# Bytes of blobs per BKGet reply: the reply is read and decoded whole, one heap block each;
# a board at the 4 KiB frame minimum asks for 1 KiB (see backup_push._BATCH), CPython 48 KiB.
_FRAME = memory.frame_for_heap()
_GET_MAX = 49152 if not IS_MICROPYTHON else min(16384, _FRAME // 4 if _FRAME <= 4096
                                                else _FRAME // 2)
_CALL_MS = const(15000)
_BLOB_MAX = const(8192)  # store.BLOCK_MAX: no sealed block is bigger


class _Pull:
    def __init__(self, client, keys, dead_id):
        self.client = client
        self.keys = keys
        self.dead_id = dead_id
        self.blocks = 0
        self.bytes = 0
        self.buf = None  # the buffer blobs read in pieces land in (see pieces)

    async def fetch(self, names):
        """The blobs under names, in order (several BKGet calls if the replies fill up)."""
        out = []
        while len(out) < len(names):
            _collect()
            got = await self.client.call("BKGet", {"names": names[len(out):],
                                                   "max": _GET_MAX}, _CALL_MS)
            if not got:
                raise StoreError("partner returned no blobs")
            for blob in got:
                if isinstance(blob, int):
                    blob = bytes(await self.pieces(names[len(out)], blob))
                if blob is None:
                    raise StoreError("the partner lacks a sealed block of this backup")
                self.bytes += len(blob)
                out.append(blob)
        return out

    async def pieces(self, name, size):
        """A blob too big for one reply (the partner's frames are smaller than a sealed
        chunk), read piece by piece into one buffer."""
        if not 0 < size <= _BLOB_MAX:
            raise StoreError("the partner offers a blob of %d bytes" % size)
        blob = self.buf if self.buf is not None and len(self.buf) >= size else bytearray(size)
        self.buf = blob  # reused: restore reads thousands of them
        off = 0
        while off < size:
            _collect()
            got = await self.client.call("BKGet", {"names": [name], "offset": off,
                                                   "max": _GET_MAX}, _CALL_MS)
            data = got.get("data") if isinstance(got, dict) else None
            if not data or got.get("size") != size or off + len(data) > size:
                raise StoreError("the partner's pieces of a blob do not add up")
            blob[off:off + len(data)] = data
            off += len(data)
        return memoryview(blob)[:size]

    async def open_named(self, name):
        blob = (await self.fetch([name]))[0]
        return self.keys.open_blob(name, blob)

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
                _collect()
                got = await self.client.call("BKGet", {"names": names[done:],
                                                       "max": _GET_MAX}, _CALL_MS)
                if not got:
                    raise StoreError("partner returned no blobs")
                for blob in got:
                    if isinstance(blob, int):
                        blob = await self.pieces(names[done], blob)
                    if blob is None:
                        raise StoreError("the partner lacks a sealed block of this backup")
                    self.bytes += len(blob)
                    buf = take()
                    try:
                        store.put_block(self.keys.open_blob(names[done], blob, want[done], buf))
                    finally:
                        give(buf)
                    blob = None
                    self.blocks += 1
                    done += 1
                got = None
        store.blocks.sync()
        return store.import_version(data)


async def _page(client, offset):
    """The partner's catalog entries [kind, tag, n, name] from offset, 64 at most."""
    _collect()
    return (await client.call("BKList", {"offset": offset, "count": 64}, _CALL_MS))["entries"]


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
    client = await rpcclient.connect(partner["addr"], partner["port"], seed,
                                     expected_node_id=partner["id"], max_reply=rpc.MAX_FRAME)
    try:
        # First of all the fence: from here on the partner serves this incarnation only, so
        # the old board, should it come back, can no longer push (even while this runs).
        record = await fence.advance(client, seed, _CALL_MS)
    except BaseException:
        await client.close()
        raise
    pull = _Pull(client, keys, dead_id)
    pair_name = None
    versions = 0
    mimei_count = 0
    now = time_ms()
    try:
        # Pass 1, versions in push order; each MiMei's push state (newest version, its root)
        # goes to its file at once: nothing per MiMei is held (200 must fit a board's heap).
        for name in list(file_names(service.dir + "/mm")):  # the fresh board's own, if any
            os.remove(service.dir + "/mm/" + name)
        offset = 0
        while True:
            entries = await _page(client, offset)
            if not entries:
                break
            offset += len(entries)
            for kind, _tag, _n, name in entries:
                if kind == 118:
                    rec = await pull.version(store, name)
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
            entries = await _page(client, offset)
            if not entries:
                break
            offset += len(entries)
            for kind, _tag, _n, name in entries:
                if kind == 109:
                    meta = cbor.loads(await pull.open_named(name))
                    if store.exists(meta["id"]):
                        store.set_meta(meta["id"], meta)  # what import_version cannot know
        for name in file_names(service.dir + "/mm"):
            store.restore(ids.b58encode(binascii.unhexlify(name)), "last")
        pair = await pull.open_named(pair_name) if pair_name is not None else None
    finally:
        await client.close()
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
    asyncio.create_task(_restart(node))
    return {"id": dead_id, "mimei": mimei_count, "versions": versions, "blocks": pull.blocks,
            "bytes": pull.bytes, "restart": True,
            "incarnation": fence.check(crypto.sign_public(seed), record)["n"]}


async def _restart(node):
    await asyncio.sleep(0.5)  # let the reply go out first
    stopping = getattr(node, "_stopping", None)
    if stopping is not None:
        stopping.set()  # run_forever ends; the board's main (or the sim) starts it again
