# MiMei storage of a node (DESIGN §3): IDs, the working copy `cur`, signed immutable versions,
# references, rights, retention and the collection of blocks nothing references. Content lives
# in leither.store (chunks + Merkle manifests); a db MiMei's working copy is leither.db's.
# Versions, retention, import and collection are leither.history's (Store's base class).
# Every commit is: put blocks, sync them, then rename a new state file over the old one.
"""Node storage: ``Store(root, signer)`` and the MiMei it keeps.

A MiMei is ``file`` (a byte stream) or ``db`` (leither.db). Versions are named ``"cur"`` (the
working copy, the only writable one), ``n`` (int or digit string; immutable, made by backup),
``"last"``, ``"release"``, or a version record's 32-byte hash.

Store(root, signer, db_class=None)
    ``signer``: an object with ``.sign(msg) -> 64 B`` and ``.public -> 32 B`` (e.g.
    leither.identity.Identity) or a 32-byte Ed25519 seed. ``db_class`` defaults to
    leither.db.DB. Opening recovers from any crash (bounded: one open pack, tmp files).

MiMei
    ``create(app, ext="", mark="", type="file") -> mid`` (same author/app/ext/mark: same ID,
    returned again; mark ``"{{auto}}"`` draws a random mark); ``open(mid) -> MiMei`` (a handle
    whose methods are the ones below without the mid); ``exists(mid)``; ``list() -> [mid]``;
    ``info(mid) -> dict``; ``remove(mid)`` (the whole MiMei; blocks go at the next collect).

Files (streamed; nothing holds the whole file)
    ``set_data(mid, offset, data, sync=True) -> new size`` (atomic: after a crash `cur` is
    before or after). ``sync=False`` is for bulk writes: the blocks are appended but nothing
    is made durable yet -- after a crash `cur` is the last durable state or a later one written
    since, never torn. It becomes durable at the next sync=True write (or ``sync()``, backup,
    collect, close, work on another MiMei), and by itself every ``SYNC_BYTES``. Appends at the
    end (an upload) stream into the tree without rebuilding its path each time;
    ``sync()`` commits whatever is pending;
    ``set_data(..., stage=True)`` writes a staged put beside cur instead (offset 0 starts it
    afresh), ``commit(mid) -> size`` swaps it in as cur in one state-file rename, ``discard(mid)``
    drops it (maintain() drops one idle for ``STAGE_IDLE``): a whole-file upload cut anywhere
    leaves cur old or new, never torn. Offsets stop at ``store.MAX_SIZE``; holes cost nothing;
    ``get_data(mid, offset, length, version="cur") -> bytes``; ``get_into(mid, offset, view,
    version="cur") -> n`` fills a writable buffer with no allocation; ``size(mid, version="cur")``;
    ``truncate(mid, size)``; ``stat(mid) -> dict``; ``set_meta(mid, meta)`` (fields ``META``);
    ``reader(mid, version="cur")`` -> stream with ``.size``, ``read(n)``, ``readinto(buf)``,
    ``read_at(offset, n)``, ``close()`` (a db's version reads as its canonical export).

``trim()`` hands back the cached reader and the pooled tree buffers (an idle node's heap).

Databases
    ``db(mid)`` -> the open leither.db.DB working copy (cached, at most ``_OPEN_DBS``).

Versions
    ``backup(mid) -> record`` (dict; the signed CBOR map, see ``make_record``);
    ``versions(mid) -> [{"n", "hash", "time", "size"}]``; ``record(mid, version) -> dict``;
    ``record_bytes(mid, version)``; ``release(mid, version)``; ``restore(mid, version)``;
    ``del_versions(mid, versions) -> count``; ``verify(mid, version)`` reads every block back;
    ``retain(mid, keep_last=10, now=None) -> [deleted n]`` (staggered thinning, see ``thin``);
    ``collect() -> dict`` mark-and-sweep of blocks nothing references (crash-safe);
    ``maintain(keep_last=10)`` retain on every MiMei then collect (run it now and then);
    ``maintain_steps()``/``collect_steps()`` the same as generators that yield between small
    pieces of work, so a node serves its sessions meanwhile (writes in between are safe).

References and rights
    ``add_ref(mid, other) -> count``, ``del_ref(mid, other) -> count``, ``get_ref(mid) -> dict``;
    ``set_right(mid, member, bits)``, ``get_right(mid, member) -> bits`` (READ|WRITE|ADMIN|BACKUP;
    the author always has ALL).

Blocks (paired backup, issue 5)
    ``has(hash)``, ``get_block(hash)`` (verified), ``put_block(data) -> hash``,
    ``blocks_of(mid, version)`` yields the record hash then every block of the version's tree,
    ``missing(root)`` yields the hashes under root not stored yet (descending where it can),
    ``import_version(record_bytes, fetch=None) -> record``: verify the signature, keep the
    partial import safe from collection, pull missing blocks with ``fetch(hash) -> bytes`` (or
    expect them put already), check the tree is complete, commit the version. If blocks are
    missing it raises StoreError and the record stays pending: blocks put from then on are
    kept from collection; call it again once they are in, or ``drop_import(record_hash)``.
    ``free() -> bytes`` free for content: the file system's free space less ``reserve``
    (default ``RESERVE``), which writes never use so that collection and sealing always
    have room on a full flash.

Version record: CBOR map {"author": node id, "key": Ed25519 public key, "mid", "n", "prev":
previous record hash or None, "root", "sig", "size", "time": ms, "type"}; "sig" signs the
deterministic CBOR of the map without "sig". The SHA-256 of the whole map's CBOR labels the
version. State of a MiMei: one CBOR file mm/<hex raw id>, replaced atomically.
"""

import os

from . import cbor, crypto, ids, store
from .compat import const, makedirs, time_ms
from .errors import DecodeError, StoreError
from .history import (  # noqa: F401 - offered here too (mimei.check_record...)
    KEEP_LAST,
    STAGE_IDLE,
    TYPES,
    History,
    check_record,
    record_body,
    thin,
)

READ = const(1)
WRITE = const(2)
ADMIN = const(4)
BACKUP = const(8)
ALL = const(15)

_MAX_REFS = const(256)  # references per MiMei (state file size bound)
_MAX_RIGHTS = const(256)  # members with rights per MiMei
_LOST_MAX = const(16)  # uploads whose lost writes are remembered (see Store._lost)
_OPEN_DBS = const(2)  # open db working copies cached (each holds buffers)
SYNC_BYTES = 1048576  # bytes written with sync=False before they are made durable anyway: what
# a crash may lose of an upload (a state file and two fsyncs per MiB cost nothing at that size)
RESERVE = 65536  # bytes of flash kept free for collection and sealing: writes stop before
_CUR = ("root", "size")  # state fields of cur's tree
_STAGE = ("sroot", "ssize")  # of a staged put's (absent when none; "stime": last write, ms)
META = ("app", "ext", "mark", "ctime", "release", "refs", "rights")  # see set_meta


class _SeedSigner:
    def __init__(self, seed):
        self.seed = bytes(seed)
        self.public = crypto.sign_public(self.seed)

    def sign(self, msg):
        return crypto.sign(self.seed, msg)


def _hex(raw):
    import binascii

    return binascii.hexlify(raw).decode()


class MiMei:
    """A handle on one MiMei: the Store's methods with the mid filled in."""

    def __init__(self, st, mid):
        self.store = st
        self.id = mid

    def __getattr__(self, name):
        fn = getattr(self.store, name)
        mid = self.id
        return lambda *args, **kwargs: fn(mid, *args, **kwargs)


class Store(History):
    """The node's MiMei storage under one root directory (see the module docstring)."""

    def __init__(self, root, signer, db_class=None, reserve=RESERVE):
        self.reserve = reserve
        # No tree buffers taken up front (8 KB of an idle node's heap): the pool fills as
        # trees are read and written and keeps up to four 4 KiB buffers from then on; a port
        # with a badly fragmenting heap may call store.reserve() before opening the store.
        self.root = root
        if isinstance(signer, (bytes, bytearray)):
            signer = _SeedSigner(signer)
        self.signer = signer
        self.public = bytes(signer.public)
        self.node_id = ids.make_id(self.public)
        self._db_class = db_class
        self._db_loaded = False  # _db_class is the db part, imported here (trim may unload it)
        # on_delete(mid, numbers or None for the whole MiMei): told before a deletion commits
        # (leither.backup keeps these as tombstones, to prune its partner's copies).
        self.on_delete = None
        for sub in ("mm", "db", "pending"):
            makedirs(root + "/" + sub)
        for sub in ("mm", "pending"):
            for name in os.listdir(root + "/" + sub):
                if name.endswith(".tmp"):
                    store.recover_file(root + "/" + sub + "/" + name[:-4])
        self.blocks = store.BlockStore(root + "/blocks")
        self._dbs = []  # [(mid, DB)], most recent last, <= _OPEN_DBS
        # One-entry caches: this Store is the only writer of its directory. The state of the
        # MiMei used last (as committed), the path of the last ID, the reader of the last
        # tree read by get_data (content-addressed, so it never goes stale; bound: 1 reader).
        self._st_cache = None
        self._path_cache = None
        self._reader = None
        # Write-back of sync=False writes: the cached state is ahead of its file when _dirty is
        # set (only ever the cached one: switching MiMei commits it first), and an upload being
        # appended holds an open store.appender (3-4 pool buffers) until it settles.
        self._dirty = False
        self._unsynced = 0  # bytes written since the last durable commit (<= SYNC_BYTES)
        self._app = None
        self._app_keys = _CUR  # where the appender's tree goes: cur or the staged put
        # [(mid, stage)] whose unsynced writes a failed append or save dropped (several uploads
        # may lose theirs in turn): until its writer goes back to where the data still is, a
        # write past it is refused, not zero-filled.
        self._lost = []

    def trim(self, unload=False):
        """Hand back the RAM kept for speed: the cached reader, the open dbs not in a
        transaction, the db page buffer pool (a node short of heap calls it; everything is
        allocated again on the next read or write). Measured on the ESP32 stand-in: ~12 KiB
        of db page buffers held otherwise. ``unload`` (a node with no session left): the tree
        buffer pool too (12 KiB), and with no db open, the db engine's code (~10 KB on an
        ESP32; imported again by the next db call)."""
        self._drop_reader()
        # The state of the MiMei used last (up to ~30 KB with 256 versions, refs and rights)
        # is read again from its file when next needed -- unless it is ahead of the file.
        if not self._dirty and self._app is None:
            self._st_cache = None
        self._path_cache = None
        keep = []
        for entry in self._dbs:
            if getattr(entry[1], "_tx", False):
                keep.append(entry)  # a transaction is open: closing would roll it back
            else:
                entry[1].close()
        self._dbs = keep
        if unload:
            # Only idle: short of heap the tree pool stays. An upload takes its 4 KiB buffers
            # from it at every piece after another MiMei's call; handed back at each "busy",
            # they had to come again as fresh blocks, which a heap the other work had cut
            # into small pieces no longer had (the soak's puts all busy from minute 11 on).
            store.trim()
        import sys

        dbpage = sys.modules.get("leither.dbpage")  # not loaded: nothing to hand back
        if dbpage is not None:
            dbpage.trim()
        if unload and not keep and self._db_loaded:
            from . import memory, parts

            self._db_class = None
            self._db_loaded = False
            memory.unload(parts.PARTS["db"][0])

    def close(self):
        try:
            self.sync()
        finally:
            self._drop_reader()
            self._st_cache = None
            self._dirty = False
            for _mid, db in self._dbs:
                db.close()
            self._dbs = []
            self.blocks.close()

    # -- state files ---------------------------------------------------------------------------

    def _path(self, mid):
        cached = self._path_cache
        if cached is not None and cached[0] == mid:
            return cached[1]
        try:
            raw = ids.id_raw(mid)
        except (DecodeError, TypeError):
            raise StoreError(f"bad MiMei id {mid!r}") from None
        path = self.root + "/mm/" + _hex(raw)
        self._path_cache = (mid, path)
        return path

    def _drop_reader(self):
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def exists(self, mid):
        try:
            os.stat(self._path(mid))
            return True
        except OSError:
            return False

    def _settle(self):
        """Finish an open appender: the cached state gets its root (still not durable)."""
        app = self._app
        if app is not None:
            self._app = None
            try:
                root, size = app.finish()
            except Exception:
                # Short of heap for its last blocks: the pieces it took since the last
                # durable point go with it (the cached size already counted them, the root
                # not: a write after that would leave a hole). Back to the state file; the
                # upload hears at its next piece that they were lost.
                app.abandon()
                self._lose(self._st_cache["id"], self._app_keys is _STAGE)
                self._st_cache = None
                self._dirty = False
                raise
            self._st_cache[self._app_keys[0]] = root
            self._st_cache[self._app_keys[1]] = size

    def sync(self):
        """Make every write so far durable (commit the state that sync=False writes left)."""
        self._settle()
        if self._dirty:
            self._save(self._st_cache)

    def _state(self, mid, kind=None):
        self._settle()
        cached = self._st_cache
        if cached is not None and cached["id"] != mid and self._dirty:
            self._save(cached)
        if cached is not None and cached["id"] == mid:
            if kind is not None and cached["type"] != kind:
                raise StoreError("MiMei {} is a {}, not a {}".format(mid, cached["type"], kind))
            return cached
        # Decoded from the file in pieces: a state of 256 versions, refs and rights is ~30 KB,
        # more than a board's split heap may have in one block.
        try:
            f = open(self._path(mid), "rb")
        except OSError:
            raise StoreError("no MiMei " + mid) from None
        try:
            st = cbor.load(f)
        except DecodeError as err:
            raise StoreError(f"corrupt state of MiMei {mid}: {err}") from err
        finally:
            f.close()
        if kind is not None and st["type"] != kind:
            raise StoreError("MiMei {} is a {}, not a {}".format(mid, st["type"], kind))
        self._st_cache = st
        return st

    def _save(self, st):
        """Commit a state (callers change the dict they got from _state, then save it).

        The blocks go to disk first: a state file never points at blocks a crash can lose.
        """
        cached = self._st_cache
        if self._dirty and cached is not None and cached["id"] != st["id"]:
            self.sync()  # the other MiMei's pending writes go first (and stay in order)
        dirty = self._dirty
        self._dirty = False
        self._unsynced = 0
        try:
            self.blocks.sync()
            store.write_file(self._path(st["id"]), lambda f: cbor.dump(st, f))
        except Exception:
            self._st_cache = None  # it holds the change that did not commit
            if dirty:  # and the sync=False writes before it, which were answered as taken
                self._lose(st["id"], True)
                self._lose(st["id"], False)
            raise
        self._st_cache = st

    def _lose(self, mid, stage):
        if (mid, stage) not in self._lost:
            self._lost.append((mid, stage))
            del self._lost[:-_LOST_MAX]

    # -- MiMei ---------------------------------------------------------------------------------

    def create(self, app, ext="", mark="", type="file"):
        """The ID of the MiMei (author, app, ext, mark), created empty if new."""
        if type not in TYPES:
            raise StoreError(f"MiMei type must be file or db, not {type!r}")
        if mark == "{{auto}}":
            mark = ids.b58encode(crypto.random(16))
        mid = ids.make_id(cbor.dumps([self.node_id, app, ext, mark]))
        if self.exists(mid):
            return mid
        st = {"id": mid, "type": type, "app": app, "ext": ext, "mark": mark,
              "author": self.node_id, "ctime": time_ms(), "mtime": time_ms(), "vers": [],
              "next": 1, "head": None, "release": None, "refs": {}, "rights": {},
              "root": None, "size": 0}
        if type == "file":
            st["root"] = store.empty_root(self.blocks)
            self.blocks.sync()
        else:
            self._db_open(mid)
        self._save(st)
        return mid

    def open(self, mid):
        self._state(mid)
        return MiMei(self, mid)

    def list(self):
        out = []
        for name in os.listdir(self.root + "/mm"):
            if not name.endswith(".tmp"):
                with open(self.root + "/mm/" + name, "rb") as f:
                    out.append(cbor.load(f)["id"])
        return out

    def info(self, mid):
        st = self._state(mid)
        last = st["vers"][-1][0] if st["vers"] else None
        return {"id": mid, "type": st["type"], "app": st["app"], "ext": st["ext"],
                "mark": st["mark"], "author": st["author"], "ctime": st["ctime"],
                "mtime": st["mtime"], "size": st["size"], "last": last,
                "release": st["release"], "versions": len(st["vers"]),
                "refs": len(st["refs"])}

    def remove(self, mid):
        """Delete a MiMei and all its versions (blocks are freed by the next collect)."""
        path = self._path(mid)
        st = self._state(mid)
        if st["type"] == "db":
            self._db_close(mid)
        self._st_cache = None
        self._dirty = False  # its pending writes go with it
        if self.on_delete is not None:
            self.on_delete(mid, None)
        os.remove(path)
        if st["type"] == "db":
            _rmtree(self._db_path(mid))

    # -- files ---------------------------------------------------------------------------------

    def _cur(self, mid):
        st = self._state(mid, "file")
        if st["root"] is None:  # a replica imported from elsewhere
            st["root"] = store.empty_root(self.blocks)
        return st

    def _room(self, need=0):
        """StoreError if a write would eat into the space kept for collection."""
        if self.reserve and self.blocks.free() < self.reserve + need:
            raise StoreError("disk full: %d bytes free, %d kept for collection"
                             % (self.blocks.free(), self.reserve))

    def set_data(self, mid, offset, data, sync=True, stage=False):
        """Write data at offset of cur (a gap before offset reads as zeros); new size.

        sync=False: not durable yet (see the module docstring); appends stream.
        stage=True: write the staged put instead (see commit); offset 0 starts it afresh.
        """
        if offset < 0 or offset + len(data) > store.MAX_SIZE:
            raise StoreError("offset %d outside 0..%d" % (offset, store.MAX_SIZE))
        keys = _STAGE if stage else _CUR
        root_key, size_key = keys
        st = self._st_cache
        app = self._app
        if (app is None or sync or st["id"] != mid or self._app_keys is not keys
                or offset != st[size_key] or (stage and not offset)):
            st = self._cur(mid)  # settles an open appender
            app = None
        if (mid, stage) in self._lost:
            if offset > st.get(size_key, 0) and not (stage and not offset):
                # The client was told its earlier pieces were taken (sync=False) and is
                # resending the one that failed: a gap here is lost data, not a sparse write.
                raise StoreError("writes of MiMei %s after byte %d were lost (the node ran "
                                 "short of memory): write again from there"
                                 % (mid, st.get(size_key, 0)))
            self._lost.remove((mid, stage))
        self._room(len(data))
        if stage:
            if not offset:
                st["sroot"] = store.empty_root(self.blocks)
                st["ssize"] = 0
            elif st.get("sroot") is None:
                raise StoreError(f"no put staged for MiMei {mid}: start one at offset 0")
            st["stime"] = time_ms()
        if sync:
            root, size = store.patch(self.blocks, st[root_key], offset, data)
            return self._commit_cur(st, root, size, keys)
        if app is None and offset == st[size_key]:
            app = store.appender(self.blocks, st[root_key])
            self._app = app
            self._app_keys = keys
        try:
            if app is not None:
                app.write(data)
                st[size_key] = app.size
            else:
                st[root_key], st[size_key] = store.patch(self.blocks, st[root_key], offset, data)
        except Exception:
            # A failed patch changed nothing. A failed append leaves the appender in between:
            # drop it and the cached state with it (cur is again its state file: the writes
            # since the last sync point were never durable) and let a later write start over.
            if app is not None:
                self._app = None
                app.abandon()
                self._st_cache = None
                self._dirty = False
                self._lose(mid, stage)
            raise
        if not stage:
            st["mtime"] = time_ms()
        self._dirty = True
        self._unsynced += len(data)
        if self._unsynced >= SYNC_BYTES:
            self.sync()
        return st[size_key]

    def commit(self, mid, size=None):
        """Make the staged put cur in one step (one state file renamed in); the new size.

        A whole-file upload stages its pieces (set_data(..., stage=True)) beside cur and
        commits at the end: a crash or an abandoned upload leaves cur as it was, never torn.
        size (what the uploader sent): a stage of another size is refused, not committed --
        another put of the same MiMei began meanwhile.
        """
        st = self._cur(mid)
        if st.get("sroot") is None:
            raise StoreError(f"no put staged for MiMei {mid}")
        if (mid, True) in self._lost:  # its last pieces, answered as taken, went (heap)
            raise StoreError("writes of MiMei %s after byte %d were lost (the node ran short "
                             "of memory): write again from there" % (mid, st["ssize"]))
        if size is not None and size != st["ssize"]:
            raise StoreError("staged %d bytes, not %d: another put of MiMei %s interfered"
                             % (st["ssize"], size, mid))
        root, size = st.pop("sroot"), st.pop("ssize")
        st.pop("stime", None)
        return self._commit_cur(st, root, size)

    def discard(self, mid):
        """Drop the staged put, if any (its blocks go at the next collect)."""
        st = self._cur(mid)
        if st.pop("sroot", None) is not None:
            st.pop("ssize", None)
            st.pop("stime", None)
            self._save(st)

    def truncate(self, mid, size):
        """Set cur's size (cut, or extend with zeros)."""
        if size < 0:
            raise StoreError("negative size")
        st = self._cur(mid)
        if size > st["size"]:
            self._room()
        root, size = store.patch(self.blocks, st["root"], 0, b"", new_size=size)
        return self._commit_cur(st, root, size)

    def _commit_cur(self, st, root, size, keys=None):
        if keys is None or keys is _CUR:
            st["mtime"] = time_ms()
            keys = _CUR
        st[keys[0]] = root
        st[keys[1]] = size
        self._save(st)
        return size

    def set_meta(self, mid, meta):
        """Set the descriptive fields a version record does not carry (a restore's)."""
        st = self._state(mid)
        for field in META:
            st[field] = meta[field]
        self._save(st)

    def reader(self, mid, version="cur"):
        st = self._state(mid)
        if version == "cur":
            if st["type"] == "file":
                if st["root"] is None:
                    raise StoreError(f"MiMei {mid} has no working copy here: restore a version")
                return store.TreeReader(self.blocks, st["root"])
            raise StoreError("read a db's cur with db(); back it up to read it as content")
        rec = self._record_of(st, version)
        return store.TreeReader(self.blocks, rec["root"])

    def get_data(self, mid, offset, length, version="cur"):
        """Up to length bytes from offset (a bytearray; fewer at the end)."""
        if offset < 0 or length < 0:
            raise StoreError("negative offset or length")
        return self._cached_reader(mid, version).read_at(offset, length)

    def get_into(self, mid, offset, view, version="cur"):
        """Fill view (a bytearray or memoryview) from offset; return the bytes read (fewer at
        the end). Nothing is allocated: verified chunks are read straight into view."""
        if offset < 0:
            raise StoreError("negative offset")
        return self._cached_reader(mid, version).read_into(offset, view)

    def read_length(self, mid, offset, length, version="cur"):
        """How many bytes get_data would return (it raises where get_data would)."""
        if offset < 0 or length < 0:
            raise StoreError("negative offset or length")
        size = self._cached_reader(mid, version).size
        return max(0, min(length, size - offset))

    def _cached_reader(self, mid, version):
        st = self._state(mid)
        if version == "cur" and st["type"] == "file" and st["root"] is not None:
            root = st["root"]
        else:
            root = None if version == "cur" else self._record_of(st, version)["root"]
        reader = self._reader
        if reader is None or root is None or reader.root != root:
            self._drop_reader()
            reader = self.reader(mid, version)
            self._reader = reader
        return reader

    def size(self, mid, version="cur"):
        st = self._state(mid)
        if version == "cur":
            return st["size"]
        return self._record_of(st, version)["size"]

    def stat(self, mid):
        st = self._state(mid)
        return {"size": st["size"], "type": st["type"], "mtime": st["mtime"],
                "ctime": st["ctime"], "versions": len(st["vers"]),
                "last": st["vers"][-1][0] if st["vers"] else None, "release": st["release"],
                "staged": st.get("ssize")}

    # -- databases -----------------------------------------------------------------------------

    def _db_path(self, mid):
        return self.root + "/db/" + _hex(ids.id_raw(mid))

    def _db_cls(self):
        if self._db_class is None:
            from . import parts

            self._db_class = parts.load("db").DB  # no_part where the bundle left it out
            self._db_loaded = True
        return self._db_class

    def _db_open(self, mid):
        for i in range(len(self._dbs)):
            if self._dbs[i][0] == mid:
                entry = self._dbs.pop(i)
                self._dbs.append(entry)
                return entry[1]
        if len(self._dbs) >= _OPEN_DBS:
            self._dbs.pop(0)[1].close()
        cls = self._db_cls()  # first: without the db part (no_part) no directory is left
        makedirs(self._db_path(mid))
        db = cls(self._db_path(mid))
        self._dbs.append((mid, db))
        return db

    def _db_close(self, mid):
        for i in range(len(self._dbs)):
            if self._dbs[i][0] == mid:
                self._dbs.pop(i)[1].close()
                return

    def db(self, mid):
        """The open working copy of a db MiMei."""
        self._state(mid, "db")
        return self._db_open(mid)

    # -- refs and rights -----------------------------------------------------------------------

    def add_ref(self, mid, other):
        st = self._state(mid)
        refs = st["refs"]
        if other not in refs and len(refs) >= _MAX_REFS:
            raise StoreError("MiMei %s has %d references" % (mid, _MAX_REFS))
        refs[other] = refs.get(other, 0) + 1
        self._save(st)
        return refs[other]

    def del_ref(self, mid, other):
        st = self._state(mid)
        count = st["refs"].get(other, 0) - 1
        if count < 0:
            raise StoreError(f"MiMei {mid} has no reference to {other}")
        if count:
            st["refs"][other] = count
        else:
            del st["refs"][other]
        self._save(st)
        return count

    def get_ref(self, mid):
        return dict(self._state(mid)["refs"])

    def set_right(self, mid, member, bits):
        if not 0 <= bits <= ALL:
            raise StoreError("rights are a bitmask of READ, WRITE, ADMIN, BACKUP")
        st = self._state(mid)
        rights = st["rights"]
        if bits:
            if member not in rights and len(rights) >= _MAX_RIGHTS:
                raise StoreError("MiMei %s has rights for %d members" % (mid, _MAX_RIGHTS))
            rights[member] = bits
        elif member in rights:
            del rights[member]
        self._save(st)

    def get_right(self, mid, member):
        st = self._state(mid)
        if member == st["author"]:
            return ALL
        return st["rights"].get(member, 0)

    def free(self):
        """Bytes free for content (the file system's free space less the reserve)."""
        return max(0, self.blocks.free() - self.reserve)


def _rmtree(path):
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        full = path + "/" + name
        if os.stat(full)[0] & 0o170000 == 0o040000:
            _rmtree(full)
        else:
            os.remove(full)
    os.rmdir(path)
