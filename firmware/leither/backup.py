# Paired backup (DESIGN §5): the node service that pushes this node's versions to its partner,
# keeps the partner's sealed data (leither.vault), restores a dead node from its partner, audits
# the partner and signs receipts for what it did. Sealing is leither.seal's, the tree diff that
# decides what to send leither.treediff's, the partner's storage leither.vault's.
"""Backup service: push, partner vault, restore, audits, receipts.

Push (owner node -> partner), per MiMei and per version not yet on the partner, oldest first:
the sealed version record first, then the sealed blocks of the version's tree that differ from
the previous pushed version's tree (a walk of both canonical trees side by side: unchanged
subtrees are skipped without reading them), in ``BKPut`` batches of at most ``_BATCH`` bytes;
then ``BKCommit`` appends the catalog entry, after the partner synced the blobs. The partner
checks each blob's tag on arrival and dedups by name.

Resume: the transfer's position (blocks acknowledged) is kept in RAM and, every
``_CURSOR_EVERY`` blocks, on disk. After a broken connection the next attempt skips what was
acknowledged (hashes only: nothing is read or sealed) and asks the partner (``BKHave``) about
the blocks that were in flight, sending only those it lacks; after a reboot it asks about the
blocks since the last saved position. So a block that arrived is never sent twice.

Prune: a deletion here (MMDelVers, retention, a removed MiMei) leaves a tombstone, written
before the deletion commits; after the next push the owner asks the partner to drop the
catalog entries of what its tombstones name and is really gone (``BKDrop``), then sends a
filter of every sealed name still in use and has the partner sweep the rest (``BKSweep``).
Only tombstoned deletions are dropped, and no sweep runs while the partner lists a version
this node lacks: a node that lost its store never erases its own backup.

RPC methods. On the owner node (role owner): ``BackupStatus`` (also GetVar "backup"),
``BackupNow {wait}``, ``BackupAudit {count}``, ``BackupKey {key}`` (install the backup key the
host escrows; returns the escrow: node seed and key), ``BackupRestore {seed, key, partner:
{id, addr, port}}`` (make this fresh node the dead one), ``GetReceipts {since, cut}``.
On the partner (role peer: the paired node's key; reads also for the key the partner named as
its owner in BKHello, with ``node``: the partner's node ID): ``BKHello``, ``BKHave``,
``BKPut``, ``BKCommit``, ``BKList``, ``BKGet``, ``BKAudit``, ``BKStat``, ``BKDrop``,
``BKSweep`` (the last two: the partner only).
"""

import asyncio
import os

# Everything a push, an audit, a receipt, a restore or the partner's vault needs is imported
# here, at boot: on the unix port .mpy code lives in the heap, and a module imported later lands
# in the middle of a heap that bulk transfers need in contiguous 4-8 KiB pieces.
from leither import (
    cbor,
    crypto,
    ids,
    receipt,
    restore,
    rpc,
    rpcclient,
    seal,
    store,
    treediff,
    vault,
)
from leither.compat import IS_MICROPYTHON, makedirs, ticks_diff, ticks_ms, time_ms
from leither.errors import AuthError, LeitherError, RPCError, StoreError
from leither.identity import read_file, write_atomic
from leither.port import net

try:
    from micropython import const
except ImportError:
    from leither.compat import const

# Bytes of sealed blobs per BKPut: one request frame, held whole by the sender and the receiver.
_BATCH = const(16384)  # measured: 8-16 KiB keep an 8 Mbit/s tbf link full; 48 KiB: -30%
_ITEM_OVERHEAD = const(48)  # CBOR bytes around one [name, blob] in a BKPut request
_CALL_OVERHEAD = const(96)  # CBOR and seal bytes around a BKPut's list of blocks
_GET_MAX = const(16384)  # bytes of blobs per BKGet reply (the restoring node holds it whole)
_HAVE_MAX = const(64)  # names per BKHave (2 KiB of request)
_LIST_MAX = const(64)  # catalog entries per BKList reply (~3.8 KiB)
_CURSOR_EVERY = const(256)  # blocks between saved transfer positions (1 MiB of chunks)
_STATUS_PAGE = const(32)  # MiMei per BackupStatus reply (fits a board's 8 KiB frame)
_WORKERS = const(2)  # MiMei pushed at once, one session each (config "push_workers")
_CALL_MS = const(5000)  # one backup call: a cut link is noticed this fast
_CONNECT_MS = const(5000)
_SWEEP_MS = const(120000)  # BKSweep: the partner rewrites packs before it answers
_TOMBS = "tombstones"  # records raw MiMei ID(20) | version n (u32 BE; _ALL: the MiMei)
_TOMB_LEN = const(24)
_ALL = 0xFFFFFFFF  # not const(): no small int on a 32-bit board
_SCHEDULE_MS = const(60000)  # look for unpushed versions this often even without a kick
_TICK_MS = const(2000)  # engine wake-ups: receipts periods and byte-time accrual
_RETRY_MIN_MS = const(500)  # after a failure, retry after this, doubling ...
_RETRY_MAX_MS = const(4000)  # ... up to this
_AUDIT_MS = const(600000)  # audits every 10 min (config "audit_ms")
_AUDITS = const(3)  # random blocks per audit round
_RECEIPT_MS = const(3600000)  # one receipt per hour (config "receipt_ms")
_RECEIPTS_KEPT = const(64)  # receipt files kept on the node (~220 B each)
_HOUR_MS = const(3600000)
_KEY_FILE = "backup.key"
_V = const(118)  # catalog kinds: "v" version, "m" MiMei metadata, "p" pairing record
_M = const(109)
_P = const(112)


OWNER = "owner"  # leither.rpc's role names (not imported: rpc is big and the client loads it)
PEER = "peer"
GUEST = "guest"


def _log(line):
    print("leither: backup: " + line)


# ---- the service -------------------------------------------------------------------------------


class _Batch:
    """Sealed blobs waiting for one BKPut; the names of the last batch sent stay in doubt
    until its reply arrives."""

    def __init__(self, client, limit=_BATCH):
        self.client = client
        self.items = []  # [[name, blob]] <= limit bytes
        self.size = 0
        self.last = 0  # sequence index of the last item added
        # Bytes per request: the partner's frame limit may be lower than ours.
        self.limit = min(limit, client.max_frame - _CALL_OVERHEAD)


class Service:
    """Backup on a running node (leither.node services hook)."""

    def __init__(self, node):
        self.node = node
        self.dir = node.root + "/backup"
        makedirs(self.dir + "/receipts")
        self.keys = None
        key = self._read(_KEY_FILE)
        if key is not None and len(key) == 32:
            self.keys = seal.Keys(key)
        makedirs(self.dir + "/mm")
        self.state = {"partner": None, "pair": None, "cursors": {},
                      "last_ok": None, "last_error": None, "sent": 0,
                      "period": time_ms(), "stored_ms": 0, "served": 0, "audit_ok": 0,
                      "audit_failed": 0, "used": 0, "quota": None}
        data = self._read("state.cbor")
        if data:
            try:
                self.state.update(cbor.loads(data))
            except LeitherError as err:
                _log(f"state unreadable ({err}): starting over")
        self.vaults = {}  # partner node id -> Vault (one partner at a time: bound 2)
        self.busy = None  # what the engine is doing, for status
        self.pending = {}  # mid -> content bytes of versions not on the partner yet
        self._kick = asyncio.Event()
        self._idle = asyncio.Event()
        self._task = None
        self._client = None
        self._resumes = {}  # mid -> [mid, n, acknowledged, processed] (bound: _WORKERS + errors)
        self._pass = None  # 4 random bytes naming the current push pass's sessions
        self._last_tick = ticks_ms()
        self._last_audit = ticks_ms()
        self._restoring = False
        if node.store is not None:
            node.store.on_delete = self._tombstone

    def _read(self, name):
        try:
            return read_file(self.dir + "/" + name)
        except OSError:
            return None

    def _save(self):
        write_atomic(self.dir + "/state.cbor", cbor.dumps(self.state))

    # Per-MiMei push state, one small file each (<dir>/mm/<hex raw id>): {"n": newest version
    # on the partner, "root": its tree root, "t": ms of success, "err": last error, "meta": hash
    # of the metadata pushed}. Files, not one map: 200 MiMei would make every save a 20 KB
    # allocation on a board.

    def _mm_path(self, mid):
        import binascii

        return self.dir + "/mm/" + binascii.hexlify(ids.id_raw(mid)).decode()

    def mm_get(self, mid):
        data = self._read("mm/" + self._mm_path(mid).rsplit("/", 1)[1])
        if not data:
            return {}
        try:
            entry = cbor.loads(data)
        except LeitherError:
            return {}
        return entry if isinstance(entry, dict) else {}

    def mm_put(self, mid, entry):
        write_atomic(self._mm_path(mid), cbor.dumps(entry))

    def _config(self, name, default):
        value = self.node.config.get(name) if self.node.config else None
        return value if isinstance(value, int) and value > 0 else default

    # -- services hook --------------------------------------------------------------------

    def register(self, server):
        anyone = (OWNER, PEER, GUEST)
        owner = (OWNER,)
        for name, fn in (("BKHello", self._bk_hello), ("BKHave", self._bk_have),
                         ("BKPut", self._bk_put), ("BKCommit", self._bk_commit),
                         ("BKList", self._bk_list), ("BKGet", self._bk_get),
                         ("BKAudit", self._bk_audit), ("BKStat", self._bk_stat),
                         ("BKDrop", self._bk_drop), ("BKSweep", self._bk_sweep)):
            server.register(name, fn, anyone)
        server.register("BackupStatus", self._rpc_status, owner)
        server.register("BackupNow", self._rpc_now, owner)
        server.register("BackupAudit", self._rpc_audit, owner)
        server.register("BackupKey", self._rpc_key, owner)
        server.register("BackupRestore", self._rpc_restore, owner)
        server.register("GetReceipts", self._rpc_receipts, owner)
        entry = server._methods.get("MMBackup")
        if entry is not None:  # every MiMei backup kicks a push
            handler, roles, right = entry

            def mm_backup(caller, params):
                result = handler(caller, params)
                self.kick()
                return result

            server.register("MMBackup", mm_backup, roles, right=right)

    async def start(self):
        self._kick.set()  # first pass at once: versions made while the node was down
        self._task = asyncio.create_task(self._run())

    async def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self._disconnect()
        for v in self.vaults.values():
            v.close()
        self.vaults = {}

    def on_press(self, kind):
        return False

    def fact(self, name):
        if name == "backup":
            return self.status()
        raise KeyError(name)

    def txt(self, txt):
        pass

    def kick(self):
        self._kick.set()

    # -- partner and keys -----------------------------------------------------------------

    def _partner(self):
        p = self.node.partner
        return p if p else None

    def _owner_key(self):
        return self.node.owner

    def set_key(self, key):
        """Install the owner's backup key (refused if another one already sealed backups)."""
        key = bytes(key)
        old = self._read(_KEY_FILE)
        if old is not None and old != key and self.state.get("partner"):
            raise AuthError("this node already backs up under another key")
        write_atomic(self.dir + "/" + _KEY_FILE, key, private=True)
        self.keys = seal.Keys(key)
        self.kick()

    def _ensure_key(self):
        if self.keys is None:
            self.set_key(crypto.random(32))
        return self.keys

    # -- status ---------------------------------------------------------------------------

    def status(self, offset=0, limit=_STATUS_PAGE):
        """The backup state: totals, and per MiMei for limit of them from offset (a reply must
        fit one frame: a board's is 8 KiB, ~50 B per MiMei)."""
        p = self._partner()
        mm = {}
        store_ = self.node.store
        pending_total = 0
        mids = store_.list() if store_ is not None else []
        for i in range(len(mids)):
            mid = mids[i]
            entry = self.mm_get(mid)
            vers = store_.versions(mid)
            pushed = entry.get("n", 0)
            pending = 0
            for v in vers:
                if v["n"] > pushed:
                    pending += v["size"]
            pending_total += pending
            if not offset <= i < offset + limit:
                continue
            mm[mid] = {"partner_n": pushed or None, "last_n": vers[-1]["n"] if vers else None,
                       "pending": pending, "last_ok": entry.get("t"),
                       "last_error": entry.get("err")}
        s = self.state
        if p is None:
            state = "unpaired"
        elif self.keys is None and self._read(_KEY_FILE) is None and not mm:
            state = "idle"
        elif self.busy:
            state = self.busy
        elif s["last_error"] and (s["last_ok"] is None or s["last_error"][0] > s["last_ok"]):
            state = "error"
        else:
            state = "idle" if not pending_total else "pending"
        return {"partner": p["peer_id"] if p else None, "state": state, "mimei": mm,
                "count": len(mids), "offset": offset,
                "pending": pending_total, "last_ok": s["last_ok"],
                "last_error": s["last_error"][1] if s["last_error"] else None,
                "last_error_time": s["last_error"][0] if s["last_error"] else None,
                "sent": s["sent"], "used_on_partner": s["used"], "quota": s["quota"],
                "audits": {"ok": s["audit_ok"], "failed": s["audit_failed"]},
                "keyed": self.keys is not None,
                "held_for_partner": self._held()}

    def _held(self):
        out = {}
        for pid, v in self.vaults.items():
            out[pid] = {"bytes": v.used(), "entries": v.entries_count(),
                        "stats": v.info["stats"]}
        return out

    # -- the push engine ------------------------------------------------------------------

    async def _run(self):
        retry = _RETRY_MIN_MS
        last_pass = None
        while True:
            try:
                await asyncio.wait_for(self._kick.wait(), _TICK_MS / 1000)
            except asyncio.TimeoutError:  # noqa: UP041 - MicroPython has no builtin alias
                pass
            kicked = self._kick.is_set()
            self._kick.clear()
            self._tick()
            if self._restoring or self._partner() is None:
                self._idle.set()
                continue
            if not kicked and last_pass is not None and ticks_diff(
                    ticks_ms(), last_pass) < _SCHEDULE_MS:
                continue
            last_pass = ticks_ms()
            try:
                await self.push_all()
                await self._prune_if_due()
                retry = _RETRY_MIN_MS
                if ticks_diff(ticks_ms(), self._last_audit) > self._config("audit_ms", _AUDIT_MS):
                    await self.audit(_AUDITS)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - any failure: log, record, retry later
                self._fail(err)
                await self._disconnect(abort=True)
                await asyncio.sleep(retry / 1000)
                retry = min(retry * 2, _RETRY_MAX_MS)
                self._kick.set()
            else:
                await self._disconnect()
            finally:
                self.busy = None
                self._idle.set()

    def _tombstone(self, mid, numbers):
        """mimei.Store.on_delete: note what is about to be deleted (before it is), so that
        prune() later makes the partner drop exactly that. A failed note only leaves the
        partner holding more; it never stops the deletion (a full disk is when one deletes)."""
        rec = ids.id_raw(mid)
        out = bytearray()
        for n in numbers if numbers is not None else (_ALL,):
            out.extend(rec)
            out.extend(n.to_bytes(4, "big"))
        path = self.dir + "/" + _TOMBS
        try:
            from leither.compat import fsync

            try:
                size = os.stat(path)[6]
            except OSError:
                size = -1
            with open(path, "r+b" if size >= 0 else "wb") as f:
                if size > 0:  # over a record torn by a crash (its deletion never committed)
                    f.seek(size - size % _TOMB_LEN)
                f.write(out)
                fsync(f)
        except OSError as err:
            _log("could not note the deletion for the partner: %s" % err)

    async def _prune_if_due(self):
        try:
            due = os.stat(self.dir + "/" + _TOMBS)[6] >= _TOMB_LEN
        except OSError:
            due = False
        if not due and not self.state.get("sweep"):
            return
        try:
            await self.prune()
        except (LeitherError, OSError) as err:  # the tombstones stay: tried after next push
            _log("prune failed: %s: %s" % (type(err).__name__, err))
            await self._disconnect(abort=True)

    def _fail(self, err):
        msg = f"{type(err).__name__}: {err}"
        self.state["last_error"] = [time_ms(), msg[:160]]
        _log("push failed: " + msg)
        if IS_MICROPYTHON and isinstance(err, MemoryError):
            import sys

            sys.print_exception(err)
        for mid in self._resumes:  # the transfers that were running
            entry = self.mm_get(mid)
            entry["err"] = msg[:160]
            self.mm_put(mid, entry)
        try:
            self._save()
        except (OSError, LeitherError):
            pass

    async def _connect(self):
        """The engine's main session to the partner (opened on first use)."""
        if self._client is None or self._client.closed:
            self._client = await self._open()
        return self._client

    async def _open(self):
        """A new authenticated session to the partner, after BKHello."""
        p = self._partner()
        if p is None:
            raise StoreError("no partner")
        if not p.get("addr"):
            await self._locate()
        try:
            client = await rpcclient.connect(p["addr"], p["port"], self.node.identity.seed,
                                             expected_node_id=p["peer_id"],
                                             timeout_ms=_CONNECT_MS, max_reply=rpc.MAX_FRAME)
        except rpcclient.ConnectError:
            if not await self._locate():
                raise
            client = await rpcclient.connect(p["addr"], p["port"], self.node.identity.seed,
                                             expected_node_id=p["peer_id"],
                                             timeout_ms=_CONNECT_MS, max_reply=rpc.MAX_FRAME)
        net.no_delay(client._writer)
        keys = self._ensure_key()
        try:
            hello = await client.call("BKHello", {"owner": self._owner_key(),
                                                  "check": keys.check,
                                                  "port": self.node.port,
                                                  "pass": self._pass}, _CALL_MS)
        except BaseException:
            await client.close()
            raise
        self._account(hello)
        return client

    async def _locate(self):
        for service in self.node.services:
            if hasattr(service, "locate_partner"):
                try:
                    return await service.locate_partner()
                except (OSError, LeitherError):
                    return False
        return False

    async def _disconnect(self, abort=False):
        client = self._client
        self._client = None
        if client is not None:
            await client.close(abort)

    def _account(self, reply):
        if isinstance(reply, dict):
            if "used" in reply:
                self.state["used"] = reply["used"]
            if "quota" in reply:
                self.state["quota"] = reply["quota"]

    async def _call(self, method, params, client=None, timeout_ms=_CALL_MS):
        if client is None:
            client = await self._connect()
        if IS_MICROPYTHON:
            import gc

            gc.collect()  # a request is one contiguous block of KiB: free the last one first
        return await client.call(method, params, timeout_ms)

    async def push_all(self):
        """Push every version (and MiMei metadata) the partner lacks; True if anything went.

        Up to _WORKERS MiMei go at once, each over its own connection: while one waits for
        its reply the other's batch is on the wire (the calls of one session are lock-step).
        """
        p = self._partner()
        if p is None:
            return False
        self._pass = crypto.random(4)  # the sessions of this pass (see _bk_hello)
        if self.state["partner"] != p["peer_id"]:  # a new partner has none of our data
            self.state.update({"partner": p["peer_id"], "pair": None, "cursors": {}, "used": 0})
            for name in os.listdir(self.dir + "/mm"):
                os.remove(self.dir + "/mm/" + name)
            self._save()
        st = self.node.store
        self._idle.clear()
        started = ticks_ms()
        sent = self.state["sent"]
        keys = self._ensure_key()
        # The MiMei as the store's file names, listed in one go: a scan that kept an ID string
        # per MiMei between the garbage of reading each state would sprinkle small survivors
        # over a board's heap, leaving no 5 KiB hole for a request (measured: 200 MiMei).
        names = _mimei_names(st)
        queue = []  # indexes into names of MiMei with versions to push (small ints)
        for i in range(len(names)):
            mid = _mid(names[i])
            done = self.mm_get(mid).get("n", 0)
            vers = st.versions(mid)
            if vers and vers[-1]["n"] > done:
                queue.append(i)
            mid = vers = None
        count = [0]
        if queue:
            self.busy = "pushing"
            await self._connect()  # the first session (BKHello) before the others
            workers = min(self._config("push_workers", _WORKERS), len(queue))
            results = await asyncio.gather(
                *[self._worker(names, queue, keys, count, k == 0) for k in range(workers)],
                return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r
        for name in names:
            mid = _mid(name)
            entry = self.mm_get(mid)
            if entry.get("n"):
                await self._push_meta(mid, entry, keys)
        await self._push_pair()
        if count[0]:
            _log("pushed %d versions, %d sealed bytes in %d ms" % (
                count[0], self.state["sent"] - sent, ticks_diff(ticks_ms(), started)))
        if count[0] or self.state["last_ok"] is None:
            self.state["last_ok"] = time_ms()
            self._save()
        return count[0] > 0

    async def _worker(self, names, queue, keys, count, first):
        client = None
        try:
            client = self._client if first else await self._open()
            while queue:
                mid = _mid(names[queue.pop(0)])
                entry = self.mm_get(mid)
                prev_root = entry.get("root")
                for v in self.node.store.versions(mid):
                    if v["n"] <= entry.get("n", 0):
                        continue
                    root = await self._push_version(client, mid, v, prev_root, keys)
                    prev_root = root
                    entry.update({"n": v["n"], "t": time_ms(), "err": None, "root": root})
                    self.mm_put(mid, entry)
                    if self.state["cursors"].pop(mid, None) is not None:
                        self._save()
                    self.state["last_ok"] = time_ms()
                    count[0] += 1
        except BaseException:
            if client is not None and not first:
                await client.close(abort=True)  # given up: drop what it still had queued
                client = None
            raise
        finally:
            if client is not None and not first:
                await client.close()

    async def _push_version(self, client, mid, v, prev_root, keys):
        st = self.node.store
        rec_bytes = st.record_bytes(mid, v["n"])
        rec_hash = crypto.sha256(rec_bytes)
        root = cbor.loads(rec_bytes)["root"]
        rec_bytes = None
        # resume = [mid, n, acknowledged, processed]: items 1..acknowledged of the sequence
        # (record, then the tree diff) are on the partner; acknowledged+1..processed in doubt.
        resume = self._resumes.get(mid)
        if resume is not None and resume[1] == v["n"]:
            skip = resume[2]
            check = resume[3] - resume[2]  # the batch whose reply was lost
        else:
            skip = check = 0
            cursor = self.state["cursors"].get(mid)
            if cursor and cursor[0] == v["n"]:
                skip = cursor[1]  # saved before a reboot: ask about what may follow it
                check = _CURSOR_EVERY + _BATCH // store.CHUNK + 1
            resume = [mid, v["n"], skip, skip]
            self._resumes[mid] = resume
        if skip or check:
            _log("resuming %s v%d after %d blocks (%d to check)" % (mid, v["n"], skip, check))
        batch = _Batch(client, self._config("push_batch", _BATCH))
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
                    await self._send_missing(doubt, batch, keys, resume)
                    doubt = []
                continue
            await self._add(batch, index, h, keys, resume)
        if doubt:
            await self._send_missing(doubt, batch, keys, resume)
        await self._flush(batch, resume)
        reply = await self._call("BKCommit", {"entries": [[_V, keys.mtag(mid), v["n"],
                                                           keys.name(rec_hash)]]}, client)
        self._account(reply)
        self._resumes.pop(mid, None)
        return root

    async def _send_missing(self, doubt, batch, keys, resume):
        names = [keys.name(h) for _i, h in doubt]
        have = await self._call("BKHave", {"names": names}, batch.client)
        for k in range(len(doubt)):
            index, h = doubt[k]
            if not have[k]:
                await self._add(batch, index, h, keys, resume, names[k])
            elif not batch.items:
                resume[2] = index  # everything before it is acknowledged too

    async def _add(self, batch, index, h, keys, resume, name=None):
        data = self.node.store.get_block(h)
        name, blob = keys.seal(h, data, name)
        data = None
        if batch.size + len(blob) + _ITEM_OVERHEAD > batch.limit and batch.items:
            await self._flush(batch, resume)
        batch.items.append([name, blob])
        batch.size += len(blob) + _ITEM_OVERHEAD
        batch.last = index

    async def _flush(self, batch, resume):
        if not batch.items:
            return
        reply = await self._call("BKPut", {"blocks": batch.items}, batch.client)
        self.state["sent"] += batch.size
        batch.items = []
        batch.size = 0
        before = resume[2]
        resume[2] = batch.last
        self._account(reply)
        if resume[2] // _CURSOR_EVERY != before // _CURSOR_EVERY:
            self.state["cursors"][resume[0]] = [resume[1], resume[2]]
            self._save()

    async def _push_meta(self, mid, entry, keys):
        st = self.node.store
        s = st._state(mid)  # the MiMei's own fields, not its versions: what restore needs back
        meta = cbor.dumps({"id": mid, "type": s["type"], "app": s["app"], "ext": s["ext"],
                           "mark": s["mark"], "ctime": s["ctime"], "release": s["release"],
                           "refs": s["refs"], "rights": s["rights"]})
        h = crypto.sha256(meta)
        if entry.get("meta") == h:
            return
        await self._put_entry(_M, keys.mtag(mid), h, meta, keys)
        entry["meta"] = h
        self.mm_put(mid, entry)

    async def _push_pair(self):
        try:
            data = read_file(self.node.root + "/pair.cbor")
        except OSError:
            return
        h = crypto.sha256(data)
        if self.state["pair"] == h:
            return
        keys = self._ensure_key()
        await self._put_entry(_P, bytes(seal.MTAG_LEN), h, data, keys)
        self.state["pair"] = h
        self._save()

    async def _put_entry(self, kind, tag, h, data, keys):
        name, blob = keys.seal(h, data)
        # Ask first: a put whose reply a cut swallowed has often landed (metadata changes
        # rarely, so the extra round trip is rare too), and nothing is sent twice.
        if not (await self._call("BKHave", {"names": [name]}))[0]:
            reply = await self._call("BKPut", {"blocks": [[name, blob]]})
            self.state["sent"] += len(blob)
            self._account(reply)
        self._account(await self._call("BKCommit", {"entries": [[kind, tag, 0, name]]}))

    # -- pruning: the partner forgets what this node deleted ------------------------------

    async def prune(self, min_dead=0.25):
        """Make the partner forget what this node deleted: the catalog entries of versions and
        MiMei deleted here (BKDrop), then the sealed blobs nothing kept uses any more
        (BKSweep). Without it retention would fill the partner's quota with history this
        node threw away, and a restore would bring deleted versions back.

        Evidence, not absence: only what a tombstone names (written before the deletion
        committed) and is gone from the store now is dropped, so a node that lost its store
        (but kept its key) never erases its own backup; and the sweep runs only when every
        version the partner still lists is here to say which blobs it uses. Returns
        (entries dropped, bytes freed there); the partner rewrites a pack once min_dead of
        its bytes are dead (store.sweep)."""
        path = self.dir + "/" + _TOMBS
        try:
            size = os.stat(path)[6]
        except OSError:
            size = 0
        size -= size % _TOMB_LEN  # a torn last record names nothing deleted
        if not size and not self.state.get("sweep"):
            return 0, 0
        st = self.node.store
        keys = self._ensure_key()
        self.busy = "pruning"
        dropped = 0
        done = 0  # bytes of the tombstone file handled
        rec = bytearray(_TOMB_LEN)
        while done + _TOMB_LEN <= size:
            batch = []
            start = done
            with open(path, "rb") as f:
                f.seek(done)
                while (len(batch) < vault.DROP_MAX and done + _TOMB_LEN <= size
                       and f.readinto(rec) == _TOMB_LEN):
                    done += _TOMB_LEN
                    mid = ids.b58encode(bytes(rec[:20]))
                    n = int.from_bytes(rec[20:], "big")
                    if not st.exists(mid):
                        batch.append([vault.ALL, keys.mtag(mid), 0])
                    elif n != _ALL and n not in [v["n"] for v in st.versions(mid)]:
                        batch.append([_V, keys.mtag(mid), n])
            if batch:
                reply = await self._call("BKDrop", {"entries": batch})
                self._account(reply)
                if reply["dropped"] and not self.state.get("sweep"):
                    self.state["sweep"] = True  # a sweep is owed, even if this pass breaks
                    self._save()
                dropped += reply["dropped"]
            if done == start:
                break  # the file ended early: nothing more to read
        if size:
            _forget_head(path, done)  # handled; tombstones noted meanwhile stay
            for name in os.listdir(self.dir + "/mm"):  # push state of MiMei deleted here
                if not name.endswith(".tmp") and not st.exists(_mid(name)):
                    os.remove(self.dir + "/mm/" + name)
        freed = 0
        if self.state.get("sweep"):
            freed = await self._sweep_partner(keys, min_dead)
            self.state["sweep"] = False
            self._save()
        _log("pruned: the partner dropped %d entries and freed %d bytes" % (dropped, freed))
        return dropped, freed

    async def _sweep_partner(self, keys, min_dead):
        """BKSweep with a filter of every sealed name still in use: the partner's kept
        catalog entries and every block of every version here (pushed or pending)."""
        st = self.node.store
        names = _mimei_names(st)
        tags = {}
        for i in range(len(names)):
            tags[keys.mtag(_mid(names[i]))] = i
        live = None
        offset = 0
        total = 1
        vers_of = (-1, None)  # (MiMei index, its version numbers): entries come grouped
        while offset < total:
            reply = await self._call("BKList", {"offset": offset, "count": _LIST_MAX})
            total = reply["total"]
            entries = reply["entries"]
            if not entries:
                break
            if live is None:
                live = store.LiveSet(st.blocks.count() + total)
            for kind, tag, n, name in entries:
                i = tags.get(bytes(tag))
                if kind != _P and i is None:
                    return self._no_sweep("a MiMei it lists is not here")
                if kind == _V:
                    if vers_of[0] != i:
                        vers_of = (i, [v["n"] for v in st.versions(_mid(names[i]))])
                    if n not in vers_of[1]:
                        return self._no_sweep("version %d of a MiMei is not here" % n)
                live.add(name)
            offset += len(entries)
        if live is None:
            return 0
        for i in range(len(names)):
            mid = _mid(names[i])
            for v in st.versions(mid):
                for h in st.blocks_of(mid, v["n"]):
                    live.add(keys.name(h))
            await asyncio.sleep(0)
        bits = live.bits
        piece = self._client.max_frame - _CALL_OVERHEAD if self._client else 4096
        for off in range(0, len(bits), piece):
            await self._call("BKSweep", {"offset": off, "bits": bytes(bits[off:off + piece]),
                                         "size": len(bits)})
        # min_dead goes as a percentage: the deterministic CBOR here encodes no floats.
        reply = await self._call("BKSweep", {"run": True, "salt": live.salt,
                                             "dead_pct": int(min_dead * 100)},
                                 None, _SWEEP_MS)
        self._account(reply)
        return reply["freed"]

    def _no_sweep(self, why):
        _log("not sweeping the partner: %s (restore it first?)" % why)
        return 0

    async def wait_idle(self, timeout_ms=120000):
        """Kick the engine and wait until a pass found nothing more to push."""
        start = ticks_ms()
        while ticks_diff(ticks_ms(), start) < timeout_ms:
            self._idle.clear()
            self.kick()
            try:
                await asyncio.wait_for(self._idle.wait(), max(1, timeout_ms // 1000))
            except asyncio.TimeoutError:  # noqa: UP041 - MicroPython has no builtin alias
                break
            if self.status()["pending"] == 0 and self.busy is None:
                return True
            await asyncio.sleep(0.2)
        return False

    # -- audits and receipts --------------------------------------------------------------

    async def audit(self, count):
        """Challenge the partner on count random pushed blocks; [(ok, why)] and counters."""
        self._last_audit = ticks_ms()
        st = self.node.store
        keys = self.keys
        results = []
        mids = [mid for mid in st.list() if self.mm_get(mid).get("n")]
        if keys is None or not mids:
            return results
        for _ in range(count):
            mid = mids[crypto.random(1)[0] % len(mids)]
            pushed_n = self.mm_get(mid)["n"]
            versions = [v for v in st.versions(mid) if v["n"] <= pushed_n]
            if not versions:
                continue
            v = versions[crypto.random(1)[0] % len(versions)]
            rec = st.record(mid, v["n"])
            h = treediff.random_block(st.blocks, v["hash"], rec["root"])
            nonce = crypto.random(16)
            name, blob = keys.seal(h, st.get_block(h))
            expected = seal.audit_answer(nonce, blob)
            try:
                got = await self._call("BKAudit", {"name": name, "nonce": nonce})
                ok = isinstance(got, bytes) and crypto.equal(got, expected)
                why = None if ok else "wrong answer"
            except RPCError as err:
                ok, why = False, err.msg
            if ok:
                self.state["audit_ok"] += 1
            else:
                self.state["audit_failed"] += 1
                _log("audit of %s v%d failed: %s" % (mid, v["n"], why))
            results.append({"mid": mid, "n": v["n"], "ok": ok, "error": why})
        self._save()
        return results

    def _tick(self):
        """Accrue byte-time held by the partner; sign a receipt when a period ends."""
        now = ticks_ms()
        dt = ticks_diff(now, self._last_tick)
        self._last_tick = now
        if self._partner() is not None and self.state["used"] and dt > 0:
            self.state["stored_ms"] += self.state["used"] * dt
        if time_ms() - self.state["period"] >= self._config("receipt_ms", _RECEIPT_MS):
            self.cut_receipt()

    def cut_receipt(self):
        """Sign a receipt for the period so far (if the partner did anything); reset it."""
        s = self.state
        p = self._partner()
        now = time_ms()
        made = None
        stored = s["stored_ms"] // _HOUR_MS
        if p is not None and now > s["period"] and (
                stored or s["served"] or s["audit_ok"] or s["audit_failed"]):
            made = receipt.make(self.node.identity.seed, p["peer_id"], s["period"], now,
                                stored=stored, served=s["served"], audits_ok=s["audit_ok"],
                                audits_failed=s["audit_failed"])
            write_atomic("%s/receipts/%013d.cbor" % (self.dir, now), made)
            names = sorted(os.listdir(self.dir + "/receipts"))
            for name in names[:-_RECEIPTS_KEPT]:
                os.remove(self.dir + "/receipts/" + name)
        s.update({"period": now, "stored_ms": 0, "served": 0, "audit_ok": 0,
                  "audit_failed": 0})
        self._save()
        return made

    def receipts(self, since=0):
        out = []
        for name in sorted(os.listdir(self.dir + "/receipts")):
            if name.endswith(".cbor") and int(name[:-5]) > since:
                out.append(read_file(self.dir + "/receipts/" + name))
        return out

    # -- owner RPC ------------------------------------------------------------------------

    def _rpc_status(self, caller, params):
        params = params if isinstance(params, dict) else {}
        return self.status(max(0, int(params.get("offset", 0))),
                           max(0, min(int(params.get("limit", _STATUS_PAGE)), _STATUS_PAGE)))

    async def _rpc_now(self, caller, params):
        self.kick()
        if isinstance(params, dict) and params.get("wait"):
            await self.wait_idle(int(params.get("timeout_ms", 120000)))
        return self.status(0, 0)

    async def _rpc_audit(self, caller, params):
        count = params.get("count", _AUDITS) if isinstance(params, dict) else _AUDITS
        try:
            results = await self.audit(max(1, min(int(count), 64)))
        finally:
            await self._disconnect()
        return {"results": results, "ok": self.state["audit_ok"],
                "failed": self.state["audit_failed"]}

    def _rpc_key(self, caller, params):
        key = params.get("key") if isinstance(params, dict) else None
        if key is not None:
            if not isinstance(key, bytes) or len(key) != 32:
                raise RPCError("bad_request", "key must be 32 bytes")
            self.set_key(key)
        else:
            self._ensure_key()
        return {"id": self.node.identity.id, "seed": self.node.identity.seed,
                "key": self._read(_KEY_FILE),
                "partner": self._partner()["peer_id"] if self._partner() else None}

    def _rpc_receipts(self, caller, params):
        params = params if isinstance(params, dict) else {}
        if params.get("cut"):
            self._tick()
            self.cut_receipt()
        return self.receipts(int(params.get("since", 0)))

    async def _rpc_restore(self, caller, params):
        if self._restoring:
            raise RPCError("busy", "a restore is running")
        self._restoring = True
        try:
            await self._disconnect()
            result = await restore.run(self.node, self, params)
        except Exception as err:
            _log("restore failed: %r" % (err,))
            if IS_MICROPYTHON:
                import sys

                sys.print_exception(err)
            raise
        finally:
            self._restoring = False
        return result

    # -- partner side: the vault ----------------------------------------------------------

    def _vault(self, node_id):
        v = self.vaults.get(node_id)
        if v is None:
            ids.id_raw(node_id)  # a node ID, not a path
            for other in list(self.vaults):  # bound: the partner's vault and one being read
                if len(self.vaults) >= 2:
                    self.vaults.pop(other).close()
            v = vault.Vault(self.node.root + "/vault/" + node_id)
            self.vaults[node_id] = v
        return v

    def _pushing_vault(self, caller):
        p = self._partner()
        if caller.role != PEER or p is None or caller.id != p["peer_id"]:
            raise AuthError("only this node's paired partner may store backups here")
        return self._vault(caller.id), p

    def _reading_vault(self, caller, params):
        """The vault a caller may read: its own (the partner) or one whose owner it is."""
        p = self._partner()
        if caller.role == PEER and p is not None and caller.id == p["peer_id"]:
            return self._vault(caller.id)
        node_id = params.get("node") if isinstance(params, dict) else None
        if isinstance(node_id, str):
            try:
                exists = os.stat(self.node.root + "/vault/" + node_id) is not None
            except OSError:
                exists = False
            if exists:
                v = self._vault(node_id)
                if v.info["owner"] is not None and crypto.equal(v.info["owner"], caller.key):
                    return v
        raise AuthError("not allowed to read backups held here")

    def _bk_hello(self, caller, params):
        v, p = self._pushing_vault(caller)
        check = params.get("check")
        owner = params.get("owner")
        if not isinstance(check, bytes) or len(check) != 32:
            raise RPCError("bad_request", "check must be 32 bytes")
        if owner is not None and (not isinstance(owner, bytes) or len(owner) != 32):
            raise RPCError("bad_request", "owner must be a 32-byte key")
        v.hello(owner, check)
        push_pass = params.get("pass")
        for conn in self.node.server._conns:
            if conn.caller is caller:  # our partner's session: lock-step bulk calls
                net.no_delay(conn.writer)
                conn.push_pass = push_pass
        # Sessions of an earlier push pass are dead to the partner (it gave up on them after a
        # cut); whatever they still deliver now would land after the new pass asked BKHave
        # and resent it. Drop them, with the bytes they have not delivered yet.
        if push_pass is not None:
            for conn in list(self.node.server._conns):
                other = conn.caller
                earlier = getattr(conn, "push_pass", None)
                if (other is not None and other is not caller and other.key == caller.key
                        and earlier is not None and earlier != push_pass):
                    conn.why = "superseded by a new push pass"
                    conn.task.cancel()
        addr = caller.addr.rsplit(":", 1)[0] if caller.addr else None
        port = params.get("port")
        if addr and isinstance(port, int) and (p.get("addr"), p.get("port")) != (addr, port):
            p["addr"], p["port"] = addr, port  # the partner moved (e.g. restored elsewhere)
            try:
                from leither import pairing

                pairing.save_partner(self.node.root, p)
            except (ImportError, OSError, LeitherError):
                pass
        return self._stat(v, p)

    def _stat(self, v, p):
        return {"used": v.used(), "quota": p.get("quota_to_peer") if p else None,
                "entries": v.entries_count()}

    def _bk_have(self, caller, params):
        v, _p = self._pushing_vault(caller)
        names = params["names"]
        if not isinstance(names, list) or len(names) > 256:
            raise RPCError("bad_request", "names: a list of at most 256")
        return [v.has(n) for n in names]

    def _bk_put(self, caller, params):
        v, p = self._pushing_vault(caller)
        blocks = params["blocks"]
        if not isinstance(blocks, list):
            raise RPCError("bad_request", "blocks: a list of [name, blob]")
        new = 0
        for item in blocks:
            name, blob = item
            if not isinstance(name, bytes) or not isinstance(blob, (bytes, bytearray)):
                raise RPCError("bad_request", "blocks: [name, blob] byte strings")
            if v.put(name, blob, p.get("quota_to_peer")):
                new += 1
        out = self._stat(v, p)
        out["new"] = new
        return out

    def _bk_commit(self, caller, params):
        v, p = self._pushing_vault(caller)
        v.commit(params["entries"])
        return self._stat(v, p)

    def _bk_drop(self, caller, params):
        v, p = self._pushing_vault(caller)
        dropped = v.drop(params.get("entries") if isinstance(params, dict) else None)
        out = self._stat(v, p)
        out["dropped"] = dropped
        return out

    def _bk_sweep(self, caller, params):
        v, p = self._pushing_vault(caller)
        if not isinstance(params, dict):
            raise RPCError("bad_request", "BKSweep takes a map")
        if params.get("bits") is not None:
            v.sweep_part(params.get("offset"), params["bits"], params.get("size"))
        out = self._stat(v, p)
        if params.get("run"):
            pct = params.get("dead_pct", 25)
            if not isinstance(pct, int) or not 0 <= pct <= 100:
                raise RPCError("bad_request", "dead_pct: 0 to 100")
            packs, freed = v.sweep(params.get("salt"), pct / 100)
            out = self._stat(v, p)
            out["packs"] = packs
            out["freed"] = freed
        return out

    def _bk_list(self, caller, params):
        v = self._reading_vault(caller, params)
        offset = int(params.get("offset", 0))
        count = max(0, min(int(params.get("count", _LIST_MAX)), _LIST_MAX))
        return {"entries": v.entries(offset, count), "total": v.entries_count()}

    def _bk_get(self, caller, params):
        v = self._reading_vault(caller, params)
        names = params["names"]
        limit = min(int(params.get("max", _GET_MAX)), self.node.server.max_data - 1024)
        out = []
        size = 0
        for name in names:
            blob = v.get(name)
            if blob is not None and out and size + len(blob) > limit:
                break  # the caller asks again for the rest
            out.append(blob)
            size += len(blob) if blob is not None else 0
        return out

    def _bk_audit(self, caller, params):
        v, _p = self._pushing_vault(caller)
        nonce = params["nonce"]
        if not isinstance(nonce, bytes) or not 16 <= len(nonce) <= 64:
            raise RPCError("bad_request", "nonce: 16 to 64 fresh bytes")
        return v.audit(params["name"], nonce)

    def _bk_stat(self, caller, params):
        v = self._reading_vault(caller, params)
        return {"used": v.used(), "entries": v.entries_count(), "stats": v.info["stats"]}


def _forget_head(path, done):
    """Drop the first done bytes of a tombstone file (atomically; what follows stays)."""
    try:
        size = os.stat(path)[6]
    except OSError:
        return
    if done >= size:
        os.remove(path)
        return
    with open(path, "rb") as f:
        f.seek(done)
        rest = f.read()
    write_atomic(path, rest)


def _mimei_names(st):
    """The file names (hex raw IDs) of the store's MiMei, in one list."""
    return [n for n in os.listdir(st.root + "/mm") if not n.endswith(".tmp")]


def _mid(name):
    import binascii

    return ids.b58encode(binascii.unhexlify(name))


def _chain(first, rest):
    yield first
    yield from rest
