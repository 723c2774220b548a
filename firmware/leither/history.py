# The history of a MiMei (DESIGN §3): signed immutable versions made from cur, their
# retention, import from elsewhere (a partner, a restore) and the mark-and-sweep collection
# of the blocks nothing references. A part of leither.mimei.Store (its base class), which
# brings the state files, cur and the dbs these methods work on.
"""Versions, retention, import and collection of leither.mimei.Store (see its docstring)."""

import os

from . import cbor, crypto, ids, store
from .compat import IS_MICROPYTHON, const, time_ms
from .errors import DecodeError, StoreError

TYPES = ("file", "db")
KEEP_LAST = const(10)  # versions kept by retain() before thinning
_MAX_VERSIONS = const(256)  # a state file's version list bound (~50 bytes each)
_HOUR = const(3600000)  # ms
_DAY = const(86400000)  # ms
_MONTH = 30 * 86400000  # ms: 30 days, past which one version per week is kept
_WEEK = 7 * 86400000  # ms
STAGE_IDLE = 3600000  # ms a staged put may sit unwritten before maintain() drops it
_MARK_STEP = const(256)  # blocks marked between two yields of collect_steps
# Bits of a board's own live-set filter at most: 4 KiB taken while sessions are served beside
# the mark (16 KiB squeezed the soak's uploads out); 11 bits a block for a 3 MB store, and a
# bigger one's extra false positives only keep garbage until a later run. CPython: 128 Ki.
_LIVE_BITS = 32768 if IS_MICROPYTHON else store.LIVE_MAX_BITS
# Free heap a maintenance step waits for, as a request's handler does (a 4 KiB frame + 4 KiB),
# and how many yields it waits at most before it goes on anyway: see _heap_room.
_STEP_HEAP = const(8192)
WAIT_STEPS = const(100)
_RECORD_KEYS = ("author", "key", "mid", "n", "prev", "root", "sig", "size", "time", "type")


def _heap_room(wait):
    """Yield while the heap is short (a collection each time, at most WAIT_STEPS): the
    node's maintenance lets the sessions' requests finish and their garbage go rather than
    meet a MemoryError half-way, which ends its run (the next one starts over; the soak's
    failed on 300-512 byte allocations beside four busy sessions). CPython: never waits."""
    if not wait:
        return
    from . import memory

    n = 0
    while n < WAIT_STEPS and not memory.room_for_work(_STEP_HEAP):
        n += 1
        yield


def thin(versions, now, keep_last=KEEP_LAST):
    """Numbers to keep of versions [(n, time ms)] ascending by n (Syncthing-like staggering).

    The newest keep_last are kept; of the older ones, the newest in each hour for those less
    than a day old, in each day for those less than 30 days old, in each week beyond.
    """
    keep = set()
    cut = len(versions) - keep_last if keep_last > 0 else len(versions)
    cut = max(cut, 0)
    for n, _t in versions[cut:]:
        keep.add(n)
    buckets = set()
    i = cut - 1
    while i >= 0:
        n, t = versions[i]
        age = now - t
        step = _HOUR if age < _DAY else (_DAY if age < _MONTH else _WEEK)
        bucket = (step, t // step)
        if bucket not in buckets:
            buckets.add(bucket)
            keep.add(n)
        i -= 1
    return keep


def record_body(rec):
    """The signed bytes of a version record: its CBOR without "sig"."""
    body = {}
    for k in rec:
        if k != "sig":
            body[k] = rec[k]
    return cbor.dumps(body)


def check_record(data):
    """Decode and verify a version record's bytes; return the record dict."""
    try:
        rec = cbor.loads(data, canonical=True)
    except DecodeError as err:
        raise StoreError(f"bad version record: {err}") from err
    if not isinstance(rec, dict) or sorted(rec.keys()) != list(_RECORD_KEYS):
        raise StoreError("bad version record fields")
    if (rec["type"] not in TYPES or not isinstance(rec["n"], int) or rec["n"] < 1
            or not isinstance(rec["root"], bytes) or len(rec["root"]) != 32
            or not isinstance(rec["size"], int) or rec["size"] < 0
            or not isinstance(rec["key"], bytes) or len(rec["key"]) != 32
            or not isinstance(rec["sig"], bytes) or len(rec["sig"]) != 64
            or not isinstance(rec["mid"], str) or not isinstance(rec["time"], int)
            or not (rec["prev"] is None or (isinstance(rec["prev"], bytes)
                                            and len(rec["prev"]) == 32))):
        raise StoreError("bad version record field types")
    if ids.make_id(rec["key"]) != rec["author"]:
        raise StoreError("version record author is not its key")
    if not crypto.verify(rec["key"], record_body(rec), rec["sig"]):
        raise StoreError("version record signature does not verify")
    return rec


def _hex(raw):
    import binascii

    return binascii.hexlify(raw).decode()


class History:
    """The version, collection and block methods of leither.mimei.Store."""

    # -- versions ------------------------------------------------------------------------------

    def make_record(self, st, root, size):
        rec = {"author": self.node_id, "key": self.public, "mid": st["id"], "n": st["next"],
               "prev": st["head"], "root": root, "size": size, "time": time_ms(),
               "type": st["type"]}
        rec["sig"] = bytes(self.signer.sign(record_body(rec)))
        return rec

    def backup(self, mid):
        """Make the next immutable version from cur; return its signed record."""
        st = self._state(mid)
        if len(st["vers"]) >= _MAX_VERSIONS:
            raise StoreError("MiMei %s has %d versions: delete some" % (mid, _MAX_VERSIONS))
        self._room()
        if st["type"] == "file":
            root, size = st["root"], st["size"]
        else:
            root, size = store.build(self.blocks, self._db_open(mid).export())
        rec = self.make_record(st, root, size)
        h = self.blocks.put(cbor.dumps(rec))
        self.blocks.sync()
        st["vers"].append([rec["n"], h, rec["time"], size])
        st["next"] = rec["n"] + 1
        st["head"] = h
        self._save(st)
        return rec

    def versions(self, mid):
        st = self._state(mid)
        return [{"n": v[0], "hash": v[1], "time": v[2], "size": v[3]} for v in st["vers"]]

    def _find(self, st, version):
        """The [n, hash, time, size] entry of a version name."""
        if isinstance(version, (bytes, bytearray)):
            for v in st["vers"]:
                if v[1] == version:
                    return v
            raise StoreError("MiMei {} has no version with that hash".format(st["id"]))
        if version == "last":
            if not st["vers"]:
                raise StoreError("MiMei {} has no versions".format(st["id"]))
            return st["vers"][-1]
        if version == "release":
            if st["release"] is None:
                raise StoreError("MiMei {} has no release".format(st["id"]))
            version = st["release"]
        if isinstance(version, str) and version.isdigit():
            version = int(version)
        for v in st["vers"]:
            if v[0] == version:
                return v
        raise StoreError("MiMei {} has no version {!r}".format(st["id"], version))

    def _record_of(self, st, version):
        return cbor.loads(self.blocks.get(self._find(st, version)[1]))

    def record(self, mid, version="last"):
        return self._record_of(self._state(mid), version)

    def record_bytes(self, mid, version="last"):
        return self.blocks.get(self._find(self._state(mid), version)[1])

    def release(self, mid, version="last"):
        st = self._state(mid)
        n = self._find(st, version)[0]
        st["release"] = n
        self._save(st)
        return n

    def restore(self, mid, version):
        """Copy a version into cur."""
        st = self._state(mid)
        rec = self._record_of(st, version)
        reader = store.TreeReader(self.blocks, rec["root"])
        try:
            if st["type"] == "file":
                return self._commit_cur(st, rec["root"], reader.size)
            self._db_close(mid)
            self._db_cls().restore(self._db_path(mid), _pieces(reader))
        finally:
            reader.close()
        self._db_open(mid)
        st["mtime"] = time_ms()
        self._save(st)
        return reader.size

    def del_versions(self, mid, versions):
        """Drop versions (names or numbers); their blocks go at the next collect()."""
        st = self._state(mid)
        drop = []
        for version in versions:
            drop.append(self._find(st, version)[0])
        st["vers"] = [v for v in st["vers"] if v[0] not in drop]
        if st["release"] in drop:
            st["release"] = None
        if drop and self.on_delete is not None:
            self.on_delete(mid, drop)
        self._save(st)
        return len(drop)

    def retain(self, mid, keep_last=KEEP_LAST, now=None):
        """Thin the versions (see thin); the release is always kept. Returns deleted numbers."""
        st = self._state(mid)
        if now is None:
            now = time_ms()
        keep = thin([(v[0], v[2]) for v in st["vers"]], now, keep_last)
        drop = [v[0] for v in st["vers"] if v[0] not in keep and v[0] != st["release"]]
        if drop:
            self.del_versions(mid, drop)
        return drop

    def maintain(self, keep_last=KEEP_LAST, now=None, min_dead=0.25):
        """Retention for every MiMei (retain), then collect: what a node runs now and then.

        Returns {"deleted": versions dropped, "packs": packs rewritten, "freed": bytes}."""
        return _finish(self.maintain_steps(keep_last, now, min_dead, False))

    def maintain_steps(self, keep_last=KEEP_LAST, now=None, min_dead=0.25, wait=True):
        """maintain() as a generator that yields between small pieces of work (a MiMei's
        retention, a few hundred blocks marked, a pack swept): a node's event loop serves
        its sessions in between (``for _ in steps: await asyncio.sleep(0)``), and the
        writes they make meanwhile are safe (see collect_steps). Its return value (the
        StopIteration's) is maintain()'s. ``wait``: pause while the heap is short (_heap_room)."""
        deleted = 0
        for mid in self.list():
            yield from _heap_room(wait)
            if not self.exists(mid):
                continue  # removed meanwhile
            deleted += len(self.retain(mid, keep_last, now))
            st = self._state(mid)
            if st.get("stime") is not None and (now or time_ms()) - st["stime"] > STAGE_IDLE:
                self.discard(mid)  # an upload abandoned an hour ago
            yield
        result = yield from self.collect_steps(min_dead, wait)
        result["deleted"] = deleted
        return result

    def verify(self, mid, version="last"):
        """Read back and check a version: record signature, every block, the tree's shape."""
        st = self._state(mid)
        entry = self._find(st, version)
        rec = check_record(self.blocks.get(entry[1]))
        if rec["mid"] != mid or rec["n"] != entry[0]:
            raise StoreError("version record does not match its MiMei")
        reader = store.TreeReader(self.blocks, rec["root"])
        try:
            if reader.size != rec["size"]:
                raise StoreError("version size does not match its tree")
            for i in range(reader.n):
                reader.check_chunk(i)
        finally:
            reader.close()
        return rec

    # -- collection ----------------------------------------------------------------------------

    def _roots(self):
        """Yield (hash, is_tree, partial) for every root the collector must keep."""
        for mid in self.list():
            if not self.exists(mid):
                continue  # removed while a stepped collection ran (a corrupt one raises)
            st = self._state(mid)
            if st["root"] is not None:
                yield st["root"], True, False
            if st.get("sroot") is not None:
                yield st["sroot"], True, False
            for v in st["vers"]:
                yield v[1], False, False
                rec = cbor.loads(self.blocks.get(v[1]))
                yield rec["root"], True, False
        for name in os.listdir(self.root + "/pending"):
            if name.endswith(".tmp"):
                continue
            try:
                with open(self.root + "/pending/" + name, "rb") as f:
                    data = f.read()
            except OSError:
                continue  # the import committed meanwhile: its MiMei's roots hold it
            yield store.sha256(data), False, True
            yield cbor.loads(data)["root"], True, True

    def collect(self, min_dead=0.25):
        """Mark every block reachable from a MiMei, then compact packs of dead blocks."""
        return _finish(self.collect_steps(min_dead, False))

    def collect_steps(self, min_dead=0.25, wait=True):
        """collect() as a generator yielding every _MARK_STEP blocks marked and every pack
        swept. Writes between the steps are safe: only packs sealed before the mark began
        are swept, and a block found by put() or has() meanwhile (a reference made to it)
        is marked live then (BlockStore.live)."""
        yield from _heap_room(wait)
        self.sync()  # the mark reads state files: what they point at must be what is live
        self._drop_reader()
        bs = self.blocks
        live = store.LiveSet(bs.count(), least=2048, most=_LIVE_BITS)
        packs = bs.packs()
        bs.live = live
        try:
            marked = 0
            wins = []  # the walks' windows: 512 B per tree level, made once for the mark
            for h, is_tree, partial in self._roots():
                if not is_tree:
                    live.add(h)
                    continue
                for b in store.walk(bs, h, store.PRESENT if partial else store.ALL, wins):
                    live.add(b)
                    marked += 1
                    if marked % _MARK_STEP == 0:
                        yield
                        yield from _heap_room(wait)
            swept = [0, 0]
            for step in bs.sweep_steps(live.has, min_dead, packs):
                swept[0] += step[0]
                swept[1] += step[1]
                yield
                yield from _heap_room(wait)
        finally:
            bs.live = None
        return {"packs": swept[0], "freed": swept[1]}

    # -- blocks (paired backup) ----------------------------------------------------------------

    def has(self, h):
        return self.blocks.has(h)

    def get_block(self, h):
        return self.blocks.get(h)

    def put_block(self, data):
        return self.blocks.put(data)

    def blocks_of(self, mid, version="last"):
        st = self._state(mid)
        entry = self._find(st, version)
        yield entry[1]
        yield from store.walk(self.blocks, cbor.loads(self.blocks.get(entry[1]))["root"])

    def missing(self, root):
        return store.walk(self.blocks, root, store.MISSING)

    def drop_import(self, record_hash):
        """Give up an unfinished import: its blocks are no longer kept from collection."""
        try:
            os.remove(self.root + "/pending/" + _hex(record_hash))
        except OSError:
            pass

    def import_version(self, data, fetch=None):
        """Add a version made elsewhere (a partner's or a restored node's); return its record."""
        rec = check_record(data)
        h = store.sha256(data)
        mid = rec["mid"]
        try:
            st = self._state(mid)
        except StoreError:
            st = {"id": mid, "type": rec["type"], "app": None, "ext": None, "mark": None,
                  "author": rec["author"], "ctime": rec["time"], "mtime": rec["time"],
                  "vers": [], "next": 1, "head": None, "release": None, "refs": {},
                  "rights": {}, "root": None, "size": 0}
        if st["type"] != rec["type"] or st["author"] != rec["author"]:
            raise StoreError(f"version record does not match MiMei {mid}")
        for v in st["vers"]:
            if v[0] == rec["n"]:
                if v[1] == h:
                    return rec
                raise StoreError("MiMei %s already has another version %d" % (mid, rec["n"]))
        self._room(len(data))
        pending = self.root + "/pending/" + _hex(h)
        store.write_file(pending, data)  # keeps the partial tree from collect()
        self.blocks.put(data)
        if fetch is not None:
            progress = True
            while progress:
                progress = False
                for want in store.walk(self.blocks, rec["root"], store.MISSING):
                    got = fetch(want)
                    if got is None or store.sha256(got) != want:
                        raise StoreError("fetched block does not match its hash")
                    self.blocks.put(got)
                    progress = True
        for want in store.walk(self.blocks, rec["root"], store.MISSING):
            raise StoreError(f"import incomplete: missing block {_hex(want)}")
        self.blocks.sync()
        st["vers"].append([rec["n"], h, rec["time"], rec["size"]])
        st["vers"].sort(key=lambda v: v[0])
        if rec["n"] >= st["next"]:
            st["next"] = rec["n"] + 1
            st["head"] = h
        self._save(st)
        os.remove(pending)
        return rec


def _finish(steps):
    """Run a stepped job to its end; its return value."""
    try:
        while True:
            next(steps)
    except StopIteration as done:
        return done.args[0] if done.args else None


def _pieces(reader):
    """The content under a TreeReader as 4096-byte pieces."""
    while True:
        data = reader.read(store.CHUNK)
        if not data:
            return
        yield data
