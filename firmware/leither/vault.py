# The partner's side of paired backup (DESIGN §5): what a node keeps for its partner. Everything
# in here is sealed by the partner's owner (leither.seal): this node can check each blob's tag
# with the check key it was handed, answer audits and hand blobs back, but it holds no key that
# reads content or links a name to a content hash.
"""Partner-side sealed storage: ``Vault(dir)`` per partner node.

Layout of ``dir`` (``<root>/vault/<partner node id>``):

* ``blocks/`` — a ``SealedStore``: leither.store's packs and indexes, keyed by sealed *name*
  (not by the SHA-256 of the stored bytes), each blob checked against its HMAC tag (check key)
  when it arrives, when the open pack is rescanned after a crash, and on every read;
* ``info.cbor`` — ``{"owner": owner's public key, "check": check key, "stats": {...}}``;
* ``catalog`` — fixed 53-byte records ``kind(1) | tag(16) | n (u32 BE) | name(32)``, appended
  only after every block of what they name is stored and synced: ``v`` a version (tag: the
  MiMei's opaque tag, n: version number, name: the sealed version record), ``m`` a MiMei's
  metadata, ``p`` the owner node's pairing record. A torn last record is cut at open.
"""

import os
import struct

from . import cbor, crypto, seal, store
from .compat import const, makedirs
from .errors import AuthError, DecodeError, QuotaError, StoreError
from .identity import write_atomic

ENTRY_LEN = const(53)  # catalog record: kind 1 + tag 16 + n 4 + name 32
VERSION = const(118)  # catalog kinds: "v" a version, "m" a MiMei's metadata, "p" pairing record
META = const(109)
PAIR = const(112)
KINDS = (118, 109, 112)
_RECENT = const(64)  # catalog entries a commit checks for duplicates (a retried batch)
DROP_MAX = const(128)  # catalog entries per drop() (one BKDrop request: ~4 KiB)
ALL = const(0)  # drop() kind: every entry of a MiMei tag
_DROP_KINDS = KINDS + (ALL,)
_HDR = const(34)  # store record header: name 32 + length 2


def _entry_head(kind, tag, n, kinds):
    """A catalog record's first 21 bytes, kind(1) | tag(16) | n (u32 BE), checked."""
    if (kind not in kinds or not isinstance(tag, bytes) or len(tag) != seal.MTAG_LEN
            or not isinstance(n, int) or not 0 <= n < (1 << 32)):
        raise DecodeError("bad catalog entry")
    return bytes((kind,)) + tag + struct.pack(">I", n)


class SealedStore(store.BlockStore):
    """A BlockStore whose records are keyed by sealed name and verified by their tag."""

    def __init__(self, path, check_key):
        self.check_key = check_key  # set first: the base constructor rescans the open pack
        super().__init__(path)

    def put_sealed(self, name, blob):
        """Store blob under name once; True if it was new. AuthError if its tag is wrong."""
        if len(blob) > store.BLOCK_MAX:
            raise StoreError("sealed block of %d bytes > %d" % (len(blob), store.BLOCK_MAX))
        if not seal.check(self.check_key, name, blob):
            raise AuthError("sealed block fails its tag")
        name = bytes(name)
        if self._locate(name) is not None:
            return False
        self._append(name, blob)
        return True

    # leither.store's check hooks: a record is genuine when its tag checks, not its SHA-256.

    def check(self, h, data):
        return seal.check(self.check_key, h, data)

    def _check_from(self, f, h, length, view):
        """The tag check of a record read from f in slices of view (the open-pack scan):
        no block-sized buffer. A short read is False."""
        if length < seal.TAG_LEN:
            return False
        mac = crypto.HMACSHA256(self.check_key, bytes(h))
        left = length - seal.TAG_LEN
        while left:
            got = f.readinto(view[:min(left, len(view))])
            if not got:
                return False
            mac.update(view[:got])
            left -= got
        tag = f.read(seal.TAG_LEN)
        return len(tag) == seal.TAG_LEN and crypto.equal(mac.digest(), bytes(tag))


def _read_file(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


class Vault:
    """What this node stores for one partner (see the module docstring)."""

    def __init__(self, path):
        self.path = path
        makedirs(path)
        self.info = {"owner": None, "check": None,
                     "stats": {"received": 0, "dups": 0, "served": 0, "audits": 0}}
        data = _read_file(path + "/info.cbor")
        if data:
            try:
                info = cbor.loads(data)
                if isinstance(info, dict):
                    self.info.update(info)
            except DecodeError as err:
                print(f"leither: vault {path}: unreadable info ({err}); waiting for a hello")
        self.blocks = None
        self._used = 0
        self._filter = None  # the owner's live-set filter while it arrives (see sweep)
        if self.info["check"] is not None:
            self._open_blocks()
        self._fix_catalog()

    def _open_blocks(self):
        self.blocks = SealedStore(self.path + "/blocks", self.info["check"])
        self._used = self._records_bytes()

    def _records_bytes(self):
        """Bytes of the records held (pack files; their indexes are this node's overhead):
        the measure put() adds to and the quota bounds."""
        path = self.path + "/blocks"
        total = 0
        for name in os.listdir(path):
            if name.endswith(".pk"):
                total += os.stat(path + "/" + name)[6]
        return total

    def _fix_catalog(self):
        """Cut a torn last catalog record (an append interrupted by a crash)."""
        path = self.path + "/catalog"
        try:
            size = os.stat(path)[6]
        except OSError:
            return
        if size % ENTRY_LEN:
            keep = size - size % ENTRY_LEN
            with open(path, "rb") as f:
                data = f.read(keep)
            write_atomic(path, data)

    def save_info(self):
        write_atomic(self.path + "/info.cbor", cbor.dumps(self.info))

    def close(self):
        if self.blocks is not None:
            self.blocks.close()
            self.blocks = None

    # -- owner's side of the protocol ---------------------------------------------------------

    def hello(self, owner_key, check_key):
        """The partner tells who its owner is and which check key its blobs carry."""
        if self.info["check"] is not None and not crypto.equal(self.info["check"], check_key):
            if self.entries_count() or self._used:
                raise AuthError("this vault holds blobs under another backup key")
        changed = self.info["owner"] != owner_key or self.info["check"] != check_key
        self.info["owner"] = owner_key
        self.info["check"] = check_key
        if changed:
            self.save_info()
        if self.blocks is None:
            self._open_blocks()

    def incarnation(self):
        """(n, signed record or None): the newest incarnation of the owner node seen here
        (leither.fence); 0 and None until a restore advanced it."""
        inc = self.info.get("inc")
        return (inc[0], inc[1]) if isinstance(inc, list) and len(inc) == 2 else (0, None)

    def fence(self, n, record):
        """Keep a newer incarnation's signed record (checked by the caller): from now on only
        sessions of incarnation n may push into this vault."""
        if n <= self.incarnation()[0]:
            raise AuthError("incarnation %d is not newer than %d" % (n, self.incarnation()[0]))
        self.info["inc"] = [n, bytes(record)]
        self.save_info()

    def _need_blocks(self):
        if self.blocks is None:
            raise StoreError("vault has no check key yet: send BKHello first")
        return self.blocks

    def used(self):
        return self._used

    def put(self, name, blob, quota):
        """Store one sealed block; True if new. QuotaError past quota bytes."""
        blocks = self._need_blocks()
        if blocks.has(name):
            self.info["stats"]["dups"] += 1
            return False
        if quota is not None and self._used + len(blob) + _HDR > quota:
            raise QuotaError("backup quota exhausted: %d of %d bytes used, %d more asked"
                             % (self._used, quota, len(blob) + _HDR))
        if blocks.put_sealed(name, blob):
            self._used += len(blob) + _HDR
            self.info["stats"]["received"] += len(blob)
            return True
        return False

    def has(self, name):
        return self.blocks is not None and self.blocks.has(name)

    def get(self, name, buf=None):
        """The blob under name, or None; read into buf when it fits (see BlockStore.get)."""
        blocks = self._need_blocks()
        if not blocks.has(name):
            return None
        blob = blocks.get(name, buf)
        self.info["stats"]["served"] += len(blob)
        return blob

    def audit(self, name, nonce):
        blocks = self._need_blocks()
        if not blocks.has(name):
            raise StoreError("no such sealed block")
        self.info["stats"]["audits"] += 1
        return seal.audit_answer(nonce, blocks.get(name))

    def commit(self, entries):
        """Make stored blobs durable, then append catalog entries [[kind, tag, n, name]]."""
        out = bytearray()
        # A commit retried after a lost reply must not list its versions twice: entries
        # already among the catalog's last _RECENT ones are skipped (a retry repeats the
        # batch just committed; looking further back would cost a scan of the whole file).
        count = self.entries_count()
        recent = {bytes(e[3]) + bytes((e[0],)) for e in
                  self.entries(max(0, count - _RECENT), _RECENT)}
        for e in entries:
            kind, tag, n, name = e
            head = _entry_head(kind, tag, n, KINDS)
            if not isinstance(name, bytes) or len(name) != seal.NAME_LEN:
                raise DecodeError("bad catalog entry")
            if not self.has(name):
                raise StoreError("catalog entry names a block not stored")
            if bytes(name) + bytes((kind,)) in recent:
                continue
            out.extend(head)
            out.extend(name)
        self._need_blocks().sync()
        if out:
            from .compat import fsync

            with open(self.path + "/catalog", "ab") as f:
                f.write(out)
                fsync(f)
        self.save_info()
        return self.entries_count()

    def drop(self, entries):
        """Remove catalog entries (what the owner deleted): [kind, tag, n] names one entry,
        [ALL, tag, 0] every entry of that MiMei tag. Returns how many went. The catalog is
        copied without them and renamed over the old one: a crash leaves one or the other.
        RAM: the request's keys and one 53-byte record."""
        if not isinstance(entries, list) or len(entries) > DROP_MAX:
            raise DecodeError("drop: a list of at most %d entries" % DROP_MAX)
        exact = set()
        whole = set()
        for e in entries:
            if not isinstance(e, list) or len(e) != 3:
                raise DecodeError("drop: entries are [kind, tag, n]")
            kind, tag, n = e
            head = _entry_head(kind, tag, n, _DROP_KINDS)
            if kind == ALL:
                whole.add(tag)
            else:
                exact.add(head)
        path = self.path + "/catalog"
        if not (exact or whole) or not self.entries_count():
            return 0
        from .compat import fsync

        dropped = 0
        rec = bytearray(ENTRY_LEN)
        with open(path, "rb") as src, open(path + ".tmp", "wb") as dst:
            while src.readinto(rec) == ENTRY_LEN:
                if bytes(rec[:21]) in exact or bytes(rec[1:17]) in whole:
                    dropped += 1
                else:
                    dst.write(rec)
            fsync(dst)
        if dropped:
            os.rename(path + ".tmp", path)
        else:
            os.remove(path + ".tmp")
        return dropped

    def sweep_part(self, offset, data, size):
        """Receive a piece of the owner's live-set filter (LiveSet bits, size bytes in all)."""
        if (not isinstance(size, int) or not 1024 <= size <= store.LIVE_MAX_BITS // 8
                or not isinstance(offset, int) or not isinstance(data, bytes)
                or offset < 0 or offset + len(data) > size):
            raise DecodeError("sweep filter piece out of range")
        if offset == 0:
            self._filter = [bytearray(size), 0]  # [bits, bytes received in order]
        f = self._filter
        if f is None or len(f[0]) != size or offset != f[1]:
            self._filter = None
            raise DecodeError("sweep filter pieces out of order: start again at 0")
        f[0][offset:offset + len(data)] = data
        f[1] += len(data)

    def sweep(self, salt, min_dead=0.25):
        """Drop the sealed blobs the owner's filter does not hold (sweep_part before): what
        no catalog entry and no version of the owner still uses. Returns (packs, freed)."""
        f = self._filter
        self._filter = None
        if f is None or f[1] != len(f[0]):
            raise DecodeError("sweep filter incomplete: send it again from 0")
        if not isinstance(min_dead, (int, float)) or not 0 <= min_dead <= 1:
            raise DecodeError("min_dead must be between 0 and 1")
        try:
            live = store.LiveSet(bits=f[0], salt=salt)
        except ValueError as err:
            raise DecodeError(str(err)) from None
        f = None
        blocks = self._need_blocks()
        blocks.seal_open()  # what the owner dropped may sit in the open pack too
        result = blocks.sweep(live.has, min_dead)
        self._used = self._records_bytes()
        return result

    def entries_count(self):
        try:
            return os.stat(self.path + "/catalog")[6] // ENTRY_LEN
        except OSError:
            return 0

    def entries(self, offset, count):
        """Up to count catalog entries from offset: [[kind, tag, n, name]]."""
        out = []
        try:
            f = open(self.path + "/catalog", "rb")
        except OSError:
            return out
        try:
            f.seek(offset * ENTRY_LEN)
            for _ in range(count):
                rec = f.read(ENTRY_LEN)
                if len(rec) != ENTRY_LEN:
                    break
                out.append([rec[0], rec[1:17], struct.unpack(">I", rec[17:21])[0], rec[21:]])
        finally:
            f.close()
        return out
