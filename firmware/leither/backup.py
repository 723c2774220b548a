# Paired backup (DESIGN §5): the node service. This module is its small always-loaded core —
# state on disk, status, the backup key, the engine's loop and the RPC table — and loads the
# parts only when they have work, each a module a board keeps in flash until then (the aioble
# shape: optional parts, handlers registered by name, not wired):
#   backup_push     owner: the session to the partner and the push of versions (tree diff)
#   backup_prune    owner: tombstones of deletions, BKDrop and BKSweep of the partner
#   backup_audit    owner: audits of the partner and the receipts signed for it
#   backup_partner  partner: the BK* methods over the vault kept for the paired node
#   fence           both: incarnations (a restore advances them) and the "replaced" state
#   restore         a fresh node pulling a dead node's backups (BackupRestore)
# None of them imports this module: each is handed the Service and uses its public attributes.
"""Backup service: push, partner vault, restore, audits, receipts (see the parts' docs).

RPC methods. On the owner node (role owner): ``BackupStatus`` (also GetVar "backup"),
``BackupNow {wait}``, ``BackupAudit {count}``, ``BackupKey {key}`` (install the backup key the
host escrows; returns the escrow: node seed and key), ``BackupRestore {seed, key, partner:
{id, addr, port}}`` (make this fresh node the dead one), ``GetReceipts {since, cut}``.
On the partner (role peer: the paired node's key; reads also for the key the partner named as
its owner in BKHello, with ``node``: the partner's node ID): ``BKHello``, ``BKHave``,
``BKPut``, ``BKCommit``, ``BKList``, ``BKGet``, ``BKAudit``, ``BKStat``, ``BKDrop``,
``BKSweep``, ``BKFence`` (leither.backup_partner).

GetVar facts: ``backup`` (the status), ``incarnation`` (this node's, an integer), ``replaced``
(None, or ``{"time", "incarnation", "was"}`` once a restore elsewhere replaced this board:
leither.fence).
"""

import asyncio
import gc
import os

from . import cbor
from .compat import IS_MICROPYTHON, const, file_names, makedirs, ticks_diff, ticks_ms, time_ms
from .errors import AuthError, LeitherError, RPCError
from .identity import read_file, write_atomic

_STATUS_PAGE = const(32)  # MiMei per BackupStatus reply (fits a board's 8 KiB frame)
_SCHEDULE_MS = const(60000)  # look for unpushed versions this often even without a kick
_TICK_MS = const(2000)  # engine wake-ups: receipts periods and byte-time accrual
_RETRY_MIN_MS = const(500)  # after a failure, retry after this, doubling ...
_RETRY_MAX_MS = const(4000)  # ... up to this
_AUDIT_MS = const(600000)  # audits every 10 min (config "audit_ms")
_AUDITS = const(3)  # random blocks per audit round
_RECEIPT_MS = const(3600000)  # one receipt per hour (config "receipt_ms")
KEY_FILE = "backup.key"
# The partner's methods (leither.backup_partner), served through a table: the module is
# imported on the first call, so a node nobody backs up to never loads it.
_PARTNER_METHODS = ("BKHello", "BKHave", "BKPut", "BKCommit", "BKList", "BKGet", "BKAudit",
                    "BKStat", "BKDrop", "BKSweep", "BKFence")
_ANYONE = ("owner", "peer", "guest")  # leither.rpc's role names (rpc itself is big)
_OWNER = ("owner",)


def _log(line):
    print("leither: backup: " + line)


def _part(name):
    """A part's module, imported on first use (after a collection: the import's tables need
    room on a board's heap)."""
    import sys

    module = sys.modules.get("leither." + name)
    if module is None:
        if IS_MICROPYTHON:
            import gc

            gc.collect()
        module = __import__("leither." + name, None, None, ("run",))
    return module


def _mid(name):
    import binascii

    from . import ids

    return ids.b58encode(binascii.unhexlify(name))


class Service:
    """Backup on a running node (leither.node services hook)."""

    def __init__(self, node):
        self.node = node
        self.dir = node.root + "/backup"
        makedirs(self.dir + "/receipts")
        makedirs(self.dir + "/mm")
        self._keys = None  # seal.Keys, made on first use (see keys)
        self.state = {"partner": None, "pair": None, "cursors": {},
                      "last_ok": None, "last_error": None, "sent": 0,
                      "period": time_ms(), "stored_ms": 0, "served": 0, "audit_ok": 0,
                      "audit_failed": 0, "used": 0, "quota": None}
        data = self._read("state.cbor")
        if data:
            try:
                self.state.update(cbor.loads(data))
            except LeitherError as err:
                _log("state unreadable (%s): starting over" % err)
        self.vaults = {}  # partner node id -> Vault (one partner at a time: bound 2)
        self.stage = None  # a blob arriving in pieces (backup_partner._piece)
        self.busy = None  # what the engine is doing, for status
        self._kick = asyncio.Event()
        self._idle = asyncio.Event()
        self._task = None
        self._client = None  # the engine's main session to the partner (backup_push)
        self._resumes = {}  # mid -> [mid, n, acknowledged, processed] (bound: workers + errors)
        self._pass = None  # 4 random bytes naming the current push pass's sessions
        self._blobs = []  # spare blob buffers while a push pass runs (backup_push)
        self._last_tick = ticks_ms()
        self._last_audit = ticks_ms()
        self._restoring = False
        self.hello_done = False  # a BKHello went through since boot (the fence is checked)
        from . import fence

        self.incarnation = fence.incarnation(node)  # (n, signed record or None)
        self.replaced = fence.load_replaced(node)  # {"time", "incarnation", "was"} or None
        if node.store is not None:
            node.store.on_delete = self._tombstone

    def _read(self, name):
        try:
            return read_file(self.dir + "/" + name)
        except OSError:
            return None

    def _save(self):
        write_atomic(self.dir + "/state.cbor", cbor.dumps(self.state))

    @property
    def keys(self):
        """The seal.Keys of the installed backup key, or None (seal loaded on first use)."""
        if self._keys is None:
            key = self._read(KEY_FILE)
            if key is not None and len(key) == 32:
                from . import seal

                self._keys = seal.Keys(key)
        return self._keys

    @keys.setter
    def keys(self, keys):
        self._keys = keys

    # Per-MiMei push state, one small file each (<dir>/mm/<hex raw id>): {"n": newest version
    # on the partner, "root": its tree root, "t": ms of success, "err": last error, "meta": hash
    # of the metadata pushed}. Files, not one map: 200 MiMei would make every save a 20 KB
    # allocation on a board.

    def _mm_path(self, mid):
        import binascii

        from . import ids

        return self.dir + "/mm/" + binascii.hexlify(ids.id_raw(mid)).decode()

    def mm_get(self, mid):
        try:
            data = read_file(self._mm_path(mid))
        except OSError:
            return {}
        try:
            entry = cbor.loads(data) if data else {}
        except LeitherError:
            return {}
        return entry if isinstance(entry, dict) else {}

    def mm_put(self, mid, entry):
        write_atomic(self._mm_path(mid), cbor.dumps(entry))

    def config(self, name, default):
        value = self.node.config.get(name) if self.node.config else None
        return value if isinstance(value, int) and value > 0 else default

    # -- services hook --------------------------------------------------------------------

    def register(self, server):
        for name, fn in (("BackupStatus", self._rpc_status), ("BackupNow", self._rpc_now),
                         ("BackupAudit", self._rpc_audit), ("BackupKey", self._rpc_key),
                         ("BackupRestore", self._rpc_restore),
                         ("GetReceipts", self._rpc_receipts)):
            server.register(name, fn, _OWNER)
        server.add_table(self._partner_method)
        # A partner takes BKPut's blobs as views into the inbound frame: on a board a blob or
        # piece copied out would be one more block-sized allocation per request (the push
        # sends thousands). backup_partner._put stores or stages them before it returns.
        server.zero_copy.add("BKPut")
        entry = server._methods.get("MMBackup")
        if entry is not None:  # every MiMei backup kicks a push
            handler, roles, right = entry

            def mm_backup(caller, params):
                result = handler(caller, params)
                self.kick()
                return result

            server.register("MMBackup", mm_backup, roles, right=right)
        if self.replaced is not None:
            from . import fence

            fence.refuse(self.node, self.replaced)

    def _partner_method(self, name):
        if name in _PARTNER_METHODS:
            return self._serve_partner, _ANYONE, None
        return None

    def _serve_partner(self, caller, params, name):
        return _part("backup_partner").serve(self, caller, params, name)

    async def start(self):
        if self.replaced is not None:
            from . import fence

            fence.show(self.node, self.replaced)
            return  # a replaced board pushes nothing (fence)
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
        if name == "incarnation":
            return self.incarnation[0]
        if name == "replaced":
            return self.replaced
        raise KeyError(name)

    def txt(self, txt):
        pass

    def kick(self):
        self._kick.set()

    # -- partner and keys -----------------------------------------------------------------

    def partner(self):
        p = self.node.partner
        return p if p else None

    def set_key(self, key):
        """Install the owner's backup key (refused if another one already sealed backups)."""
        from . import seal

        key = bytes(key)
        old = self._read(KEY_FILE)
        if old is not None and old != key and self.state.get("partner"):
            raise AuthError("this node already backs up under another key")
        write_atomic(self.dir + "/" + KEY_FILE, key, private=True)
        self._keys = seal.Keys(key)
        self.kick()

    def ensure_key(self):
        if self.keys is None:
            from . import crypto

            self.set_key(crypto.random(32))
        return self.keys

    # -- status ---------------------------------------------------------------------------

    def status(self, offset=0, limit=_STATUS_PAGE):
        """The backup state: totals, and per MiMei for limit of them from offset (a reply must
        fit one frame: a board's is 8 KiB, ~50 B per MiMei)."""
        p = self.partner()
        mm = {}
        store_ = self.node.store
        pending_total = 0
        i = -1
        for name in file_names(store_.root + "/mm") if store_ is not None else ():
            i += 1
            mid = _mid(name)
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
        keyed = self._keys is not None or self._read(KEY_FILE) is not None
        if p is None:
            state = "unpaired"
        elif self.replaced is not None:
            state = "replaced"
        elif not keyed and not mm:
            state = "idle"
        elif self.busy:
            state = self.busy
        elif s["last_error"] and (s["last_ok"] is None or s["last_error"][0] > s["last_ok"]):
            state = "error"
        else:
            state = "idle" if not pending_total else "pending"
        return {"partner": p["peer_id"] if p else None, "state": state, "mimei": mm,
                "count": i + 1, "offset": offset,
                "pending": pending_total, "last_ok": s["last_ok"],
                "last_error": s["last_error"][1] if s["last_error"] else None,
                "last_error_time": s["last_error"][0] if s["last_error"] else None,
                "sent": s["sent"], "used_on_partner": s["used"], "quota": s["quota"],
                "audits": {"ok": s["audit_ok"], "failed": s["audit_failed"]},
                "keyed": keyed, "incarnation": self.incarnation[0],
                "replaced": self.replaced, "held_for_partner": self._held()}

    def _held(self):
        out = {}
        for pid, v in self.vaults.items():
            out[pid] = {"bytes": v.used(), "entries": v.entries_count(),
                        "stats": v.info["stats"]}
        return out

    # -- the engine -----------------------------------------------------------------------

    async def _run(self):
        retry = _RETRY_MIN_MS
        last_pass = None
        while self.replaced is None:
            try:
                await asyncio.wait_for(self._kick.wait(), _TICK_MS / 1000)
            except asyncio.TimeoutError:  # noqa: UP041 - MicroPython has no builtin alias
                pass
            kicked = self._kick.is_set()
            self._kick.clear()
            self.tick()
            if self._restoring or self.partner() is None:
                self._idle.set()
                continue
            if not kicked and last_pass is not None and ticks_diff(
                    ticks_ms(), last_pass) < _SCHEDULE_MS:
                continue
            last_pass = ticks_ms()
            try:
                await self.push_all()
                await self.prune_if_due()
                retry = _RETRY_MIN_MS
                if ticks_diff(ticks_ms(), self._last_audit) > self.config("audit_ms", _AUDIT_MS):
                    await self.audit(_AUDITS)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - any failure: log, record, retry later
                if self.replaced is not None:
                    break  # fenced: stop here, serving nobody as this ID
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
        await self._disconnect(abort=True)

    def _fail(self, err):
        msg = "%s: %s" % (type(err).__name__, err)
        self.state["last_error"] = [time_ms(), msg[:160]]
        _log("push failed: " + msg)
        if IS_MICROPYTHON and isinstance(err, MemoryError):
            import sys

            sys.print_exception(err)
            import micropython

            gc.collect()
            micropython.mem_info()  # free heap and its largest free block: fragmentation or not
        for mid in self._resumes:  # the transfers that were running
            entry = self.mm_get(mid)
            entry["err"] = msg[:160]
            self.mm_put(mid, entry)
        try:
            self._save()
        except (OSError, LeitherError):
            pass

    async def wait_idle(self, timeout_ms=120000):
        """Kick the engine and wait until a pass found nothing more to push."""
        start = ticks_ms()
        while ticks_diff(ticks_ms(), start) < timeout_ms and self.replaced is None:
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

    def tick(self):
        """Accrue byte-time held by the partner; sign a receipt when a period ends."""
        now = ticks_ms()
        dt = ticks_diff(now, self._last_tick)
        self._last_tick = now
        if self.partner() is not None and self.state["used"] and dt > 0:
            self.state["stored_ms"] += self.state["used"] * dt
        if time_ms() - self.state["period"] >= self.config("receipt_ms", _RECEIPT_MS):
            if self.partner() is None:  # nobody served this node: no receipt, a new period
                self.state["period"] = time_ms()
            else:
                self.cut_receipt()

    # -- the parts, by name (each imported when first needed) -----------------------------

    async def push_all(self):
        return await _part("backup_push").push_all(self)

    async def _open(self):
        return await _part("backup_push").open_session(self)

    async def _connect(self):
        return await _part("backup_push").connect(self)

    async def call(self, method, params, client=None, timeout_ms=None):
        return await _part("backup_push").call(self, method, params, client, timeout_ms)

    async def _disconnect(self, abort=False):
        client = self._client
        self._client = None
        if client is not None:
            await client.close(abort)

    def _tombstone(self, mid, numbers):
        if self.partner() is not None:  # unpaired: nothing of it on a partner to prune
            _part("backup_prune").tombstone(self, mid, numbers)

    async def prune(self, min_dead=0.25):
        return await _part("backup_prune").prune(self, min_dead)

    async def prune_if_due(self):
        await _part("backup_prune").prune_if_due(self)

    async def audit(self, count):
        return await _part("backup_audit").audit(self, count)

    def cut_receipt(self):
        return _part("backup_audit").cut_receipt(self)

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
            self.ensure_key()
        p = self.partner()
        return {"id": self.node.identity.id, "seed": self.node.identity.seed,
                "key": self._read(KEY_FILE), "partner": p["peer_id"] if p else None,
                "incarnation": self.incarnation[0]}

    def _rpc_receipts(self, caller, params):
        params = params if isinstance(params, dict) else {}
        if params.get("cut"):
            self.tick()
            self.cut_receipt()
        return self.receipts(int(params.get("since", 0)))

    async def _rpc_restore(self, caller, params):
        if self._restoring:
            raise RPCError("busy", "a restore is running")
        self._restoring = True
        # Busy: the node's maintenance waits (run beside a restore, it took the heap the
        # restore needed: MemoryErrors on the stand-in, lowest free 9.5 KB instead of 18.5 KB).
        self.busy = "restoring"
        try:
            await self._disconnect()
            result = await _part("restore").run(self.node, self, params)
        except Exception as err:
            _log("restore failed: %r" % (err,))
            if IS_MICROPYTHON:
                import sys

                sys.print_exception(err)
            raise
        finally:
            self._restoring = False
            self.busy = None
        return result
