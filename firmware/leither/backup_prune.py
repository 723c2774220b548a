# Paired backup, pruning (DESIGN §5): the partner forgets what this node deleted. A part of
# leither.backup: tombstone() runs on every deletion of a paired node's store, the rest after
# a push when tombstones are waiting.
"""Tombstones and prune: ``tombstone(svc, mid, numbers)``, ``await prune(svc, min_dead)``.

A deletion here (MMDelVers, retention, a removed MiMei) leaves a tombstone, written before the
deletion commits; after the next push the owner asks the partner to drop the catalog entries
of what its tombstones name and is really gone (``BKDrop``), then sends a filter of every
sealed name still in use and has the partner sweep the rest (``BKSweep``). Only tombstoned
deletions are dropped, and no sweep runs while the partner lists a version this node lacks: a
node that lost its store (or one version of it) never erases its own backup.
"""

import asyncio
import binascii
import os

from . import backup_push, ids, store, vault
from .compat import const, fsync
from .errors import LeitherError
from .identity import write_atomic

_TOMBS = "tombstones"  # records raw MiMei ID(20) | version n (u32 BE; _ALL: the MiMei)
_TOMB_LEN = const(24)
_ALL = 0xFFFFFFFF  # not const(): no small int on a 32-bit board
_LIST_MAX = const(64)  # catalog entries per BKList reply (~3.8 KiB)
_SWEEP_MS = const(120000)  # BKSweep: the partner rewrites packs before it answers


def _log(line):
    print("leither: backup: " + line)


def tombstone(svc, mid, numbers):
    """mimei.Store.on_delete: note what is about to be deleted (before it is), so that prune()
    later makes the partner drop exactly that. A failed note only leaves the partner holding
    more; it never stops the deletion (a full disk is when one deletes)."""
    rec = ids.id_raw(mid)
    out = bytearray()
    for n in numbers if numbers is not None else (_ALL,):
        out.extend(rec)
        out.extend(n.to_bytes(4, "big"))
    path = svc.dir + "/" + _TOMBS
    try:
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


async def prune_if_due(svc):
    try:
        due = os.stat(svc.dir + "/" + _TOMBS)[6] >= _TOMB_LEN
    except OSError:
        due = False
    if not due and not svc.state.get("sweep"):
        return
    try:
        await prune(svc)
    except (LeitherError, OSError) as err:  # the tombstones stay: tried after next push
        if svc.replaced is not None:
            raise
        _log("prune failed: %s: %s" % (type(err).__name__, err))
        await svc._disconnect(abort=True)


async def prune(svc, min_dead=0.25):
    """Make the partner forget what this node deleted: the catalog entries of versions and
    MiMei deleted here (BKDrop), then the sealed blobs nothing kept uses any more (BKSweep).
    Without it retention would fill the partner's quota with history this node threw away,
    and a restore would bring deleted versions back.

    Evidence, not absence: only what a tombstone names (written before the deletion
    committed) and is gone from the store now is dropped; and the sweep runs only when every
    version the partner still lists is here to say which blobs it uses. Returns (entries
    dropped, bytes freed there); the partner rewrites a pack once min_dead of its bytes are
    dead (store.sweep)."""
    path = svc.dir + "/" + _TOMBS
    try:
        size = os.stat(path)[6]
    except OSError:
        size = 0
    size -= size % _TOMB_LEN  # a torn last record names nothing deleted
    if not size and not svc.state.get("sweep"):
        return 0, 0
    st = svc.node.store
    keys = svc.ensure_key()
    svc.busy = "pruning"
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
                    batch.append([vault.VERSION, keys.mtag(mid), n])
        if batch:
            reply = await svc.call("BKDrop", {"entries": batch})
            backup_push.account(svc, reply)
            if reply["dropped"] and not svc.state.get("sweep"):
                svc.state["sweep"] = True  # a sweep is owed, even if this pass breaks
                svc._save()
            dropped += reply["dropped"]
        if done == start:
            break  # the file ended early: nothing more to read
    if size:
        _forget_head(path, done)  # handled; tombstones noted meanwhile stay
        for name in os.listdir(svc.dir + "/mm"):  # push state of MiMei deleted here
            if not name.endswith(".tmp") and not st.exists(backup_push.mid_of(name)):
                os.remove(svc.dir + "/mm/" + name)
    freed = 0
    if svc.state.get("sweep"):
        freed = await _sweep_partner(svc, keys, min_dead)
        svc.state["sweep"] = False
        svc._save()
    _log("pruned: the partner dropped %d entries and freed %d bytes" % (dropped, freed))
    return dropped, freed


async def _sweep_partner(svc, keys, min_dead):
    """BKSweep with a filter of every sealed name still in use: the partner's kept catalog
    entries and every block of every version here (pushed or pending)."""
    st = svc.node.store
    # The store's MiMei as two packed tables, not a dict (200 MiMei: 7 KiB, not ~25): their
    # catalog tags (16 bytes each) to look entries up, their raw IDs (20) to name them.
    tags = bytearray()
    raws = bytearray()
    for name in backup_push.mimei_names(st):
        raw = binascii.unhexlify(name)
        tags.extend(keys.mtag(ids.b58encode(raw)))
        raws.extend(raw)
    live = None
    offset = 0
    total = 1
    vers_of = (-1, None)  # (MiMei index, its version numbers): entries come grouped
    while offset < total:
        reply = await svc.call("BKList", {"offset": offset, "count": _LIST_MAX})
        total = reply["total"]
        entries = reply["entries"]
        if not entries:
            break
        if live is None:
            live = store.LiveSet(st.blocks.count() + total)
        for kind, tag, n, name in entries:
            i = _index(tags, bytes(tag))
            if kind != vault.PAIR and i is None:
                return _no_sweep("a MiMei it lists is not here")
            if kind == vault.VERSION:
                if vers_of[0] != i:
                    mid = ids.b58encode(bytes(raws[i * 20:i * 20 + 20]))
                    vers_of = (i, [v["n"] for v in st.versions(mid)])
                if n not in vers_of[1]:
                    return _no_sweep("version %d of a MiMei is not here" % n)
            live.add(name)
        offset += len(entries)
    if live is None:
        return 0
    tags = raws = None
    for name in backup_push.mimei_names(st):
        mid = backup_push.mid_of(name)
        for v in st.versions(mid):
            for h in st.blocks_of(mid, v["n"]):
                live.add(keys.name(h))
        await asyncio.sleep(0)
    bits = live.bits
    client = svc._client
    piece = client.max_frame - backup_push.CALL_OVERHEAD if client else 4096
    for off in range(0, len(bits), piece):
        await svc.call("BKSweep", {"offset": off, "bits": bytes(bits[off:off + piece]),
                                   "size": len(bits)})
    # min_dead goes as a percentage: the deterministic CBOR here encodes no floats.
    reply = await svc.call("BKSweep", {"run": True, "salt": live.salt,
                                       "dead_pct": int(min_dead * 100)}, None, _SWEEP_MS)
    backup_push.account(svc, reply)
    return reply["freed"]


def _index(tags, tag):
    """The index of a 16-byte tag in the packed table, or None."""
    at = tags.find(tag)
    while at >= 0 and at % 16:  # a match across two tags: look further
        at = tags.find(tag, at + 1)
    return at // 16 if at >= 0 else None


def _no_sweep(why):
    _log("not sweeping the partner: %s (restore it first?)" % why)
    return 0


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
