# Paired backup, the partner's side (DESIGN §5): the BK* methods through which the paired node
# fills, audits and prunes the sealed vault this node keeps for it, and through which its owner
# (failover) or a restoring board reads it back. A part of leither.backup, loaded on the first
# BK* call: a node that keeps no backups for anyone never has it in its heap.
"""Partner-side BK* handlers: ``serve(svc, caller, params, method)``.

Who may call what:

* ``BKHello``, ``BKHave``, ``BKPut``, ``BKCommit``, ``BKAudit``, ``BKDrop``, ``BKSweep``: the
  paired partner only (role peer, its key), and only from its newest incarnation (below);
* ``BKList``, ``BKGet``, ``BKStat``: the partner (newest incarnation), or any caller whose key
  the partner named as its owner in BKHello, with ``node``: the partner's node ID;
* ``BKFence``: the partner, any incarnation: ``{}`` answers the newest record seen,
  ``{"record"}`` advances it (a restore; leither.fence).

Sizes: a request or reply never needs more than the frame the heap affords (4 KiB on a board
with 111,936 bytes of heap, less than a sealed 4 KiB chunk): ``BKPut`` items are ``[name,
blob]`` or, for a blob over the frame, its pieces in order ``[name, piece, offset, size]``
(staged here, stored with the last one); ``BKGet`` answers a blob too big for its reply with
its size, and ``BKGet {"names": [name], "offset": n}`` with ``{"data", "size"}``.

Fencing: BKHello carries the caller's incarnation record (None: incarnation 0). A session whose
incarnation is older than the newest this vault has seen gets ``replaced`` on every call but
BKFence, so a board replaced by a restore can neither push, prune, audit nor read as the node.
"""

from . import crypto, fence, ids, store, vault
from .compat import const
from .errors import AuthError, LeitherError, RPCError
from .port import net

_GET_MAX = const(16384)  # bytes of blobs per BKGet reply (the restoring node holds it whole)
_HAVE_MAX = const(256)  # names per BKHave request
_LIST_MAX = const(64)  # catalog entries per BKList reply (~3.8 KiB)
_VAULTS = const(2)  # vaults open at once: the partner's and one being read (failover)
_GET_OVERHEAD = const(64)  # CBOR bytes of a BKGet reply around its list (and 3 per blob)
_SEAL_OVERHEAD = const(32)  # seal.OVERHEAD: a sealed chunk's bytes over the chunk's


def serve(svc, caller, params, method):
    """Run one BK* method for caller (leither.backup's table sends them here)."""
    if not isinstance(params, dict):
        raise RPCError("bad_request", "%s takes a map" % method)
    if method == "BKFence":
        return _fence(svc, caller, params)
    if method in ("BKList", "BKGet", "BKStat"):
        return _READS[method](_reading_vault(svc, caller, params), params, svc)
    v, p = _pushing_vault(svc, caller)
    if method == "BKHello":
        return _hello(svc, caller, params, v, p)
    _check_incarnation(svc, caller, v)
    return _WRITES[method](v, p, params, svc)


# ---- who is calling ----------------------------------------------------------------------


def vault_of(svc, node_id):
    """The Vault kept for node_id (opened on demand; at most _VAULTS open)."""
    v = svc.vaults.get(node_id)
    if v is None:
        path = _vault_dir(svc, node_id)
        for other in list(svc.vaults):
            if len(svc.vaults) >= _VAULTS:
                svc.vaults.pop(other).close()
        v = vault.Vault(path)
        svc.vaults[node_id] = v
    return v


def _vault_dir(svc, node_id):
    """The one place a node ID becomes a path: checked first (DecodeError: bad_request), so
    no caller's string ever reaches the filesystem."""
    if not isinstance(node_id, str):
        raise RPCError("bad_request", "node: a node ID")
    ids.id_raw(node_id)  # base58 of 20 bytes: no "/", no "."
    return svc.node.root + "/vault/" + node_id


def _is_partner(svc, caller):
    p = svc.partner()
    return caller.role == "peer" and p is not None and caller.id == p["peer_id"], p


def _pushing_vault(svc, caller):
    ok, p = _is_partner(svc, caller)
    if not ok:
        raise AuthError("only this node's paired partner may store backups here")
    return vault_of(svc, caller.id), p


def _reading_vault(svc, caller, params):
    """The vault a caller may read: its own (the partner, newest incarnation) or one whose
    owner it is (failover reads)."""
    ok, _p = _is_partner(svc, caller)
    if ok:
        v = vault_of(svc, caller.id)
        _check_incarnation(svc, caller, v)
        return v
    node_id = params.get("node")
    if node_id is not None:
        # The ID first, then the path: a stat of a caller's string would tell a guest which
        # files exist on this node (bad_request for one path, forbidden for another).
        path = _vault_dir(svc, node_id)
        try:
            exists = _exists(path + "/info.cbor")
        except OSError:
            exists = False
        if exists:
            v = vault_of(svc, node_id)
            if v.info["owner"] is not None and crypto.equal(v.info["owner"], caller.key):
                return v
    raise AuthError("not allowed to read backups held here")


def _exists(path):
    import os

    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _check_incarnation(svc, caller, v):
    newest, record = v.incarnation()
    mine = getattr(caller, "incarnation", 0)
    if mine < newest:
        r = fence.check(caller.key, record)
        raise RPCError("replaced", fence.message(caller.id, {
            "time": r["t"], "incarnation": newest, "was": mine}))


# ---- the methods -------------------------------------------------------------------------


def _hello(svc, caller, params, v, p):
    check = params.get("check")
    owner = params.get("owner")
    if not isinstance(check, bytes) or len(check) != 32:
        raise RPCError("bad_request", "check must be 32 bytes")
    if owner is not None and (not isinstance(owner, bytes) or len(owner) != 32):
        raise RPCError("bad_request", "owner must be a 32-byte key")
    record = params.get("inc")
    n = 0 if record is None else fence.check(caller.key, record)["n"]
    if n > v.incarnation()[0]:
        v.fence(n, record)  # a restore whose BKFence this vault missed: newer is newer
    caller.incarnation = n
    _check_incarnation(svc, caller, v)  # before anything of it is kept
    v.hello(owner, check)
    push_pass = params.get("pass")
    conns = svc.node.server._conns
    for conn in conns:
        if conn.caller is caller:  # our partner's session: lock-step bulk calls
            net.no_delay(conn.writer)
            conn.push_pass = push_pass
    # Sessions of an earlier push pass are dead to the partner (it gave up on them after a
    # cut); whatever they still deliver now would land after the new pass asked BKHave and
    # resent it. Drop them, with the bytes they have not delivered yet.
    if push_pass is not None:
        for conn in list(conns):
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
            from . import pairing

            pairing.save_partner(svc.node.root, p)
        except (ImportError, OSError, LeitherError):
            pass
    return _stat(v, p)


def _fence(svc, caller, params):
    """BKFence: {} -> the newest record; {"record"} -> advance to it (a restore)."""
    ok, _p = _is_partner(svc, caller)
    if not ok:
        raise AuthError("only this node's paired partner has an incarnation here")
    v = vault_of(svc, caller.id)
    record = params.get("record")
    if record is not None:
        n = fence.check(caller.key, record)["n"]
        newest, kept = v.incarnation()
        if n > newest:
            v.fence(n, record)
        elif n < newest or not crypto.equal(bytes(kept), bytes(record)):
            raise RPCError("replaced", "incarnation %d is not newer than %d" % (n, newest))
        caller.incarnation = n
        for conn in list(svc.node.server._conns):  # the old board's sessions end here
            other = conn.caller
            if (other is not None and other is not caller and other.key == caller.key
                    and getattr(other, "incarnation", 0) < n):
                conn.why = "its node was restored elsewhere"
                conn.task.cancel()
    n, kept = v.incarnation()
    return {"incarnation": n, "record": kept}


def _stat(v, p):
    return {"used": v.used(), "quota": p.get("quota_to_peer") if p else None,
            "entries": v.entries_count()}


def _have(v, p, params, svc):
    names = params["names"]
    if not isinstance(names, list) or len(names) > _HAVE_MAX:
        raise RPCError("bad_request", "names: a list of at most %d" % _HAVE_MAX)
    return [v.has(n) for n in names]


def _put(v, p, params, svc):
    blocks = params["blocks"]
    if not isinstance(blocks, list):
        raise RPCError("bad_request", "blocks: a list of [name, blob]")
    new = 0
    for item in blocks:
        if isinstance(item, list) and item and isinstance(item[0], memoryview):
            item[0] = bytes(item[0])  # a view into the frame (zero-copy): names are kept
        if len(item) == 4:  # [name, piece, offset, size]: a blob over a frame, in order
            item = _piece(svc, item)
            if item is None:
                continue
        name, blob = item
        if not isinstance(name, bytes) or not isinstance(blob, (bytes, bytearray, memoryview)):
            raise RPCError("bad_request", "blocks: [name, blob] byte strings")
        if v.put(name, blob, p.get("quota_to_peer")):
            new += 1
    out = _stat(v, p)
    out["new"] = new
    return out


def _piece(svc, item):
    """Stage one piece of a blob that does not fit the frame (a board's frames are 4 KiB, a
    sealed chunk 4 KiB + 32 B); [name, blob] once its last piece arrived, else None. One blob
    is staged at a time (its pieces come in order on one session); a new blob drops it."""
    name, data, offset, size = item
    if (not isinstance(name, bytes) or not isinstance(data, (bytes, memoryview))
            or type(offset) is not int
            or type(size) is not int or not 0 < size <= store.BLOCK_MAX
            or offset + len(data) > size or not data):
        raise RPCError("bad_request", "blocks: [name, piece, offset, size]")
    stage = svc.stage
    if offset == 0:
        buf = stage[1] if stage is not None and len(stage[1]) >= size else bytearray(size)
        stage = svc.stage = [name, buf, 0, size]
    elif stage is None or stage[0] != name or stage[2] != offset or stage[3] != size:
        if stage is not None:  # the blob goes, its buffer stays: after a pipelined piece
            stage[0] = None  # answered busy the rest come out of order, and a board may
        # find no other 4 KiB block for the blob sent again
        raise RPCError("bad_request", "blocks: a piece out of order (resend the blob)")
    stage[1][offset:offset + len(data)] = data
    stage[2] = offset + len(data)
    if stage[2] < size:
        return None
    svc.stage = [None, stage[1], 0, 0]  # the buffer stays for the next blob
    return name, memoryview(stage[1])[:size]


def _commit(v, p, params, svc):
    v.commit(params["entries"])
    return _stat(v, p)


def _drop(v, p, params, svc):
    dropped = v.drop(params.get("entries"))
    out = _stat(v, p)
    out["dropped"] = dropped
    return out


def _sweep(v, p, params, svc):
    if params.get("bits") is not None:
        v.sweep_part(params.get("offset"), params["bits"], params.get("size"))
    out = _stat(v, p)
    if params.get("run"):
        pct = params.get("dead_pct", 25)
        if not isinstance(pct, int) or not 0 <= pct <= 100:
            raise RPCError("bad_request", "dead_pct: 0 to 100")
        packs, freed = v.sweep(params.get("salt"), pct / 100)
        out = _stat(v, p)
        out["packs"] = packs
        out["freed"] = freed
    return out


def _audit(v, p, params, svc):
    nonce = params["nonce"]
    if not isinstance(nonce, bytes) or not 16 <= len(nonce) <= 64:
        raise RPCError("bad_request", "nonce: 16 to 64 fresh bytes")
    return v.audit(params["name"], nonce)


def _list(v, params, svc):
    offset = int(params.get("offset", 0))
    count = max(0, min(int(params.get("count", _LIST_MAX)), _LIST_MAX))
    return {"entries": v.entries(offset, count), "total": v.entries_count()}


def _get(v, params, svc):
    """The blobs under names, as many as fit the reply (the caller asks again for the rest);
    None for a name not held. A blob that alone does not fit (a board's 4 KiB frames) comes
    as its size, an integer: the caller reads it with {"names": [name], "offset": n}, which
    answers {"data": a piece from n, "size": the blob's}."""
    names = params["names"]
    if not isinstance(names, list):
        raise RPCError("bad_request", "names: a list of sealed names")
    limit = min(int(params.get("max", _GET_MAX)), svc.node.server.max_data - _GET_OVERHEAD)
    offset = params.get("offset")
    # A blob over the frame is read whole for its size and for each piece (the vault checks
    # it whole): into the buffer the pieces of a push are staged in, kept by the service, not
    # a fresh 4 KiB block each time, which a partner's heap fragmented by a 20 MB push stops
    # having (its restore was answered busy from the first call). The reply is encoded from
    # it before any other request runs (no await in between).
    buf = _read_buffer(svc)
    if offset is not None:
        blob = v.get(names[0], buf) if len(names) == 1 else None
        if blob is None or type(offset) is not int or not 0 <= offset <= len(blob):
            raise RPCError("bad_request", "offset: one held name, 0 <= offset <= its size")
        return {"data": memoryview(blob)[offset:offset + limit], "size": len(blob)}
    out = []
    size = 0
    for name in names:
        blob = v.get(name, buf if not out else None)
        if blob is not None and size + len(blob) + 3 > limit:
            if not out:
                out.append(len(blob))  # read in pieces
            break
        out.append(blob)  # only the first is read into buf: it stays valid
        size += len(blob) + 3 if blob is not None else 1
    return out


def _read_buffer(svc):
    """The service's blob buffer (svc.stage's) when no blob is being staged in it, made the
    first time (a sealed 4 KiB chunk, what a board reads in pieces); else None."""
    stage = svc.stage
    if stage is None:
        stage = svc.stage = [None, bytearray(store.CHUNK + _SEAL_OVERHEAD), 0, 0]
    return stage[1] if stage[0] is None else None


def _bk_stat(v, params, svc):
    return {"used": v.used(), "entries": v.entries_count(), "stats": v.info["stats"]}


_WRITES = {"BKHave": _have, "BKPut": _put, "BKCommit": _commit, "BKDrop": _drop,
           "BKSweep": _sweep, "BKAudit": _audit}
_READS = {"BKList": _list, "BKGet": _get, "BKStat": _bk_stat}
