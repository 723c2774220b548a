# Paired backup, proof of service (DESIGN §5): the owner audits its partner (can it still
# produce the sealed blocks it was given?) and signs receipts for what the partner did — the
# proof settlement pays for. A part of leither.backup, loaded when an audit or a receipt is due.
"""Audits of the partner and receipts for it: ``await audit(svc, count)``, ``cut_receipt(svc)``.
"""

import os

from . import crypto, receipt, seal, treediff
from .compat import const, time_ms
from .errors import RPCError
from .identity import write_atomic

_RECEIPTS_KEPT = const(64)  # receipt files kept on the node (~220 B each)
_HOUR_MS = const(3600000)


def _log(line):
    print("leither: backup: " + line)


async def audit(svc, count):
    """Challenge the partner on count random pushed blocks; [{mid, n, ok, error}] (and the
    service's counters move)."""
    from .compat import ticks_ms

    svc._last_audit = ticks_ms()
    st = svc.node.store
    keys = svc.keys
    results = []
    mids = [mid for mid in st.list() if svc.mm_get(mid).get("n")]
    if keys is None or not mids:
        return results
    for _ in range(count):
        mid = mids[crypto.random(1)[0] % len(mids)]
        pushed_n = svc.mm_get(mid)["n"]
        versions = [v for v in st.versions(mid) if v["n"] <= pushed_n]
        if not versions:
            continue
        v = versions[crypto.random(1)[0] % len(versions)]
        rec = st.record(mid, v["n"])
        h = treediff.random_block(st.blocks, v["hash"], rec["root"])
        nonce = crypto.random(16)
        name, blob = keys.seal(h, st.get_block(h))
        expected = seal.audit_answer(nonce, blob)
        blob = None
        try:
            got = await svc.call("BKAudit", {"name": name, "nonce": nonce})
            ok = isinstance(got, bytes) and crypto.equal(got, expected)
            why = None if ok else "wrong answer"
        except RPCError as err:
            if err.code == "replaced":
                raise  # not the partner's failure: this board is fenced (leither.fence)
            ok, why = False, err.msg
        if ok:
            svc.state["audit_ok"] += 1
        else:
            svc.state["audit_failed"] += 1
            _log("audit of %s v%d failed: %s" % (mid, v["n"], why))
        results.append({"mid": mid, "n": v["n"], "ok": ok, "error": why})
    svc._save()
    return results


def cut_receipt(svc):
    """Sign a receipt for the period so far (if the partner did anything); reset it. A board
    replaced by a restore signs none: its successor does (leither.fence)."""
    s = svc.state
    p = svc.partner()
    now = time_ms()
    made = None
    stored = s["stored_ms"] // _HOUR_MS
    if p is not None and svc.replaced is None and now > s["period"] and (
            stored or s["served"] or s["audit_ok"] or s["audit_failed"]):
        made = receipt.make(svc.node.identity.seed, p["peer_id"], s["period"], now,
                            stored=stored, served=s["served"], audits_ok=s["audit_ok"],
                            audits_failed=s["audit_failed"])
        write_atomic("%s/receipts/%013d.cbor" % (svc.dir, now), made)
        names = sorted(os.listdir(svc.dir + "/receipts"))
        for name in names[:-_RECEIPTS_KEPT]:
            os.remove(svc.dir + "/receipts/" + name)
    s.update({"period": now, "stored_ms": 0, "served": 0, "audit_ok": 0, "audit_failed": 0})
    svc._save()
    return made
