# What the dashboard reads, through the CLI's own functions: open_node (name, ID prefix or
# address; an offline node's backed-up MiMei through its partner), the backup verb's status,
# the ledger's organizations. Each function is blocking (the CLI's sessions run their own event
# loop), so the server calls them in worker threads. Results are plain JSON-able dicts.
"""Read-only queries behind the dashboard's JSON routes."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from leither import ids, receipt
from leither.errors import LeitherError
from leither_host import escrow
from leither_host.commands.backup import fetch_status
from leither_host.commands.ledger import verify_bundle
from leither_host.errors import CliError
from leither_host.ledger import pool
from leither_host.ledger.home import Home
from leither_host.ledger.org import Organization
from leither_host.nodes import FailoverSession, call, open_node

SPOOL_IN_MEMORY = 1 << 20  # bytes of a download held in memory before it spills to a temp file
RECEIPTS_SHOWN = 200  # newest receipts of a pool listed (the ledger verbs page the rest)
PROOF_TIMEOUT_S = 60  # seconds for `leither ledger proof` (a proof of a big book takes ~1 s)
_READ_CHUNK = 262144  # bytes asked per MFGetData (the session caps it to one frame)


def _owner(session: Any, ref: str) -> None:
    if session.role != "owner":
        raise CliError(f"you are not the owner of {ref}: claim it first")


def node(ref: str) -> dict[str, Any]:
    """A node's MiMei, its pairing and its backup status (owner only: guests see nothing)."""
    session, record = open_node(ref)
    with session:
        failover = isinstance(session, FailoverSession)
        out: dict[str, Any] = {"id": session.node_id, "name": record.get("name"),
                               "role": session.role, "failover": failover}
        if not failover:
            _owner(session, ref)
        out["mimei"] = [_mimei_row(m) for m in call(session, "MMList", {})]
        if failover:
            out["pairing"] = out["backup"] = None
            return out
        out["pairing"] = call(session, "PairStatus")
        out["backup"] = fetch_status(session)
    out["escrowed"] = escrow.load(out["id"]) is not None
    return out


def _mimei_row(m: dict[str, Any]) -> dict[str, Any]:
    return {"mid": m["id"], "type": m["type"], "app": m["app"], "ext": m["ext"],
            "size": m["size"], "versions": m["versions"], "last": m["last"],
            "release": m["release"], "mtime": m.get("mtime")}


def versions(ref: str, mid: str) -> dict[str, Any]:
    session, _record = open_node(ref)
    with session:
        info = call(session, "MMInfo", {"mid": mid})
        rows = call(session, "MMVersions", {"mid": mid})
    return {"mid": mid, "app": info["app"], "ext": info["ext"], "type": info["type"],
            "cur_size": info["size"], "last": info["last"], "release": info["release"],
            "versions": [{"n": v["n"], "hash": bytes(v["hash"]).hex(), "size": v["size"],
                          "time": v["time"]} for v in rows]}


def download(ref: str, mid: str, version: str) -> tuple[IO[bytes], int, str]:
    """A MiMei's content (cur, last, release or a version number) in a spooled temp file,
    rewound; with its size and a file name for it."""
    want: str | int = int(version) if version.isdigit() else version
    if want not in ("cur", "last", "release") and not isinstance(want, int):
        raise CliError("version: cur, last, release or a number")
    session, _record = open_node(ref)
    out = tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY)
    try:
        with session:
            info = call(session, "MMInfo", {"mid": mid})
            size = call(session, "MFGetSize", {"mid": mid, "version": want})
            offset = 0
            while offset < size:
                data = call(session, "MFGetData", {"mid": mid, "offset": offset,
                                                   "length": min(size - offset, _READ_CHUNK),
                                                   "version": want})
                if not data:
                    raise CliError(f"the node returned no data at offset {offset} of {size}")
                out.write(data)
                offset += len(data)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    ext = f".{info['ext']}" if info.get("ext") else ""
    return out, offset, f"{info.get('app') or 'mimei'}-{mid[:8]}-{version}{ext}"


def pairing(ref: str) -> dict[str, Any]:
    session, record = open_node(ref, failover=False)
    with session:
        _owner(session, ref)
        status = dict(call(session, "PairStatus"))
    status["id"], status["name"] = session.node_id, record.get("name")
    return status


def receipts(ref: str) -> list[dict[str, Any]]:
    """The receipts a node signed for its partner's service, each signature checked here."""
    session, _record = open_node(ref, failover=False)
    with session:
        _owner(session, ref)
        raw = call(session, "GetReceipts", {"since": 0, "cut": False})
    rows = []
    for data in raw:
        try:
            r = receipt.verify(bytes(data))
        except LeitherError as err:
            raise CliError(f"the node returned a receipt that does not verify: {err}") from None
        rows.append({"id": receipt.receipt_id(bytes(data)).hex(), "issuer": r["issuer"],
                     "partner": r["partner"], "start_ms": r["start"], "end_ms": r["end"],
                     "stored_byte_hours": r["stored"], "served": r["served"],
                     "audits_ok": r["audits_ok"], "audits_failed": r["audits_failed"]})
    return rows


# ---- the books -------------------------------------------------------------------------------

def _open_org(name: str) -> Organization:
    h = Home.resolve()
    if name not in h.orgs():
        raise CliError(f"no organization {name!r} here (known: {', '.join(h.orgs()) or 'none'})")
    return Organization(h.org_dir(name))


def orgs() -> list[dict[str, Any]]:
    out = []
    for name in Home.resolve().orgs():
        org = Organization(Home.resolve().org_dir(name))
        try:
            last = org.db.last_epoch()
            out.append({"name": name, "id": org.id, "members": len(org.member_rows()),
                        "epoch": last["epoch"] if last else 0,
                        "supply": last["supply"] if last else 0})
        finally:
            org.close()
    return out


def balances(name: str) -> dict[str, Any]:
    """Every account at the latest epoch (members without one at 0), and the receipt pool."""
    org = _open_org(name)
    try:
        last = org.db.last_epoch()
        tree = org.db.tree()
        members = {bytes(r["raw"]): r for r in org.member_rows()}
        rows, seen = [], set()
        for key, balance, nonce in tree.items():
            seen.add(key)
            m = members.get(key)
            rows.append({"id": org.id if key == org.raw else ids.b58encode(key),
                         "name": "treasury" if key == org.raw else (m["name"] if m else ""),
                         "role": m["role"] if m else None, "balance": balance, "nonce": nonce,
                         "account": True})
        for key in sorted(set(members) - seen):
            m = members[key]
            rows.append({"id": m["id"], "name": m["name"], "role": m["role"], "balance": 0,
                         "nonce": 0, "account": False})
        pooled = pool.list_receipts(org.db, None, 1 << 30)[-RECEIPTS_SHOWN:]
        return {"org": name, "id": org.id, "epoch": last["epoch"] if last else 0,
                "root": bytes(last["root"]).hex() if last else None,
                "supply": last["supply"] if last else 0, "accounts": rows,
                "receipts": list(reversed(pooled))}
    finally:
        org.close()


def proof(name: str, member: str) -> tuple[bytes, dict[str, Any]]:
    """A member's proof bundle at the latest epoch, made by `leither ledger proof --out` itself
    (the bundle's format is the ledger verb's to keep), checked offline before it is handed
    out."""
    org = _open_org(name)
    org_id = org.id
    org.close()
    if not member or member.startswith("-"):
        raise CliError("member: a member name, ID or ID prefix")
    with tempfile.TemporaryDirectory(prefix="leither-proof-") as tmp:
        out = Path(tmp) / "member.proof"
        proc = subprocess.run([sys.executable, "-m", "leither_host", "ledger", "proof", member,
                               "--org", name, "--out", str(out), "--json"],
                              capture_output=True, text=True, timeout=PROOF_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
            raise CliError(lines[-1].removeprefix("leither: "))
        bundle = out.read_bytes()
    return bundle, verify_bundle(bundle, org_id)
