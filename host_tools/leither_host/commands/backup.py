# `leither backup`: a node's backups to its paired partner — where each MiMei stands (status),
# push now and watch it finish (now), challenge the partner (audit), escrow the node's identity
# and backup key on this host (key; `leither claim` does it for new nodes).
"""The backup verb."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from leither_host import escrow
from leither_host.client import SyncSession
from leither_host.errors import CliError
from leither_host.nodes import call, open_node
from leither_host.output import Progress, human_bytes, print_json, print_table

EXAMPLES = """examples:
  leither backup status board1            # per MiMei: version on the partner, pending, errors
  leither backup now board1               # push now, with a progress bar, until done
  leither backup now board1 --no-wait     # just start it
  leither backup audit board1 --count 8   # challenge the partner on 8 random sealed blocks
  leither backup key board1               # escrow the node's identity and backup key here
  leither backup receipts board1 --cut    # sign the period so far; show board1's receipts
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backup", help="backups to the paired partner: status, now, audit, key",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="backup_verb", metavar="ACTION")
    verbs.required = True
    a = verbs.add_parser("status", help="where each MiMei's backup stands")
    a.add_argument("node", help="node name, ID prefix or host:port")
    a.add_argument("--json", action="store_true", help="print JSON")
    a.set_defaults(func=_status)
    a = verbs.add_parser("now", help="push new versions to the partner now")
    a.add_argument("node", help="node name, ID prefix or host:port")
    a.add_argument("--no-wait", action="store_true", help="start the push and return")
    a.add_argument("--timeout", type=float, default=600, help="seconds to wait (default 600)")
    a.add_argument("--json", action="store_true", help="print JSON")
    a.set_defaults(func=_now)
    a = verbs.add_parser("audit", help="challenge the partner on random sealed blocks")
    a.add_argument("node", help="node name, ID prefix or host:port")
    a.add_argument("--count", type=_audit_count, default=4,
                   help=f"blocks to challenge (1-{AUDIT_MAX})")
    a.add_argument("--json", action="store_true", help="print JSON")
    a.set_defaults(func=_audit)
    a = verbs.add_parser("receipts", help="receipts the node signed for its partner's service")
    a.add_argument("node", help="node name, ID prefix or host:port")
    a.add_argument("--cut", action="store_true", help="sign a receipt for the period so far")
    a.add_argument("--since", type=int, default=0, help="only receipts ending after (ms)")
    a.add_argument("--json", action="store_true", help="print JSON")
    a.set_defaults(func=_receipts)
    a = verbs.add_parser("key", help="escrow the node's identity and backup key on this host")
    a.add_argument("node", help="node name, ID prefix or host:port")
    a.add_argument("--json", action="store_true", help="print JSON")
    a.set_defaults(func=_key)


AUDIT_MAX = 64  # blocks one BackupAudit challenges (the node's bound)


def _audit_count(text: str) -> int:
    """--count: refused outside 1-AUDIT_MAX rather than silently capped by the node."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= n <= AUDIT_MAX:
        raise argparse.ArgumentTypeError(f"{n} blocks: an audit challenges 1 to {AUDIT_MAX}")
    return n


def _session(ref: str) -> tuple[SyncSession, dict[str, Any]]:
    return open_node(ref, failover=False)


def _when(ms: Any) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(ms) / 1000))


def fetch_status(s: SyncSession, per_mimei: bool = True) -> dict[str, Any]:
    """BackupStatus, every page of per-MiMei detail merged (or none: per_mimei=False)."""
    status = dict(call(s, "BackupStatus", {"offset": 0, "limit": 32 if per_mimei else 0}))
    mm = dict(status["mimei"])
    while per_mimei and status.get("count", 0) > len(mm) and status["mimei"]:
        status = dict(call(s, "BackupStatus", {"offset": len(mm), "limit": 32}))
        mm.update(status["mimei"])
    status["mimei"] = mm
    escrow.note_partner(s.node_id, status.get("partner"))
    return status


def show_status(st: dict[str, Any]) -> None:
    quota = st.get("quota")
    print(f"partner {st.get('partner') or '(none: press both buttons to pair)'}  "
          f"state {st['state']}  on partner {human_bytes(st.get('used_on_partner') or 0)}"
          f"{' of ' + human_bytes(quota) if quota else ''}  pending "
          f"{human_bytes(st['pending'])}")
    print(f"last success {_when(st.get('last_ok'))}  audits ok {st['audits']['ok']} "
          f"failed {st['audits']['failed']}"
          + (f"  last error: {st['last_error']}" if st.get("last_error") else ""))
    rows = [(mid, m["last_n"] or "-", m["partner_n"] or "-", human_bytes(m["pending"]),
             _when(m["last_ok"]), m["last_error"] or "")
            for mid, m in sorted(st["mimei"].items())]
    if rows:
        print_table(["mid", "last", "on partner", "pending", "last success", "error"], rows)
    else:
        print("no MiMei")


def _status(args: argparse.Namespace) -> int:
    s, _record = _session(args.node)
    with s:
        st = fetch_status(s)
    if args.json:
        print_json(st)
    else:
        show_status(st)
    return 0


def _now(args: argparse.Namespace) -> int:
    s, record = _session(args.node)
    with s:
        st = call(s, "BackupNow", {})
        if st.get("partner") is None:
            raise CliError(f"{record.get('name') or args.node} has no partner: press both "
                           f"boards' buttons (or `leither pair`) first")
        start = time.monotonic()
        total = int(st["pending"])
        if not total and st.get("state") != "pushing":
            print("nothing to push: the partner has every version", file=sys.stderr)
        elif not args.no_wait:
            with Progress(total, f"backup {record.get('name') or args.node}",
                          force=False) as bar:
                sent0 = int(st.get("sent") or 0)
                while True:
                    st = fetch_status(s, per_mimei=False)
                    # Bytes sent move during a version's push; pending drops per version.
                    bar.advance_to(min(total, max(int(st.get("sent") or 0) - sent0,
                                                  total - int(st["pending"]))))
                    if st["pending"] == 0 and st["state"] != "pushing":
                        break
                    if time.monotonic() - start > args.timeout:
                        raise CliError(f"backup not done after {args.timeout:.0f} s "
                                       f"(state {st['state']}, last error "
                                       f"{st.get('last_error')})")
                    time.sleep(0.3)
        st = fetch_status(s)
    st["seconds"] = round(time.monotonic() - start, 3)
    if args.json:
        print_json(st)
    else:
        show_status(st)
    return 0


def _audit(args: argparse.Namespace) -> int:
    s, _record = _session(args.node)
    with s:
        result = call(s, "BackupAudit", {"count": args.count}, timeout=120)
    if args.json:
        print_json(result)
        return 0
    for r in result["results"]:
        print(f"{'pass' if r['ok'] else 'FAIL'}  {r['mid']} v{r['n']}"
              + (f"  ({r['error']})" if r.get("error") else ""))
    print(f"audits so far this period: {result['ok']} passed, {result['failed']} failed")
    return 0 if all(r["ok"] for r in result["results"]) else 1


def _key(args: argparse.Namespace) -> int:
    s, record = _session(args.node)
    with s:
        entry = escrow.take(s, name=record.get("name"))
    path = escrow.escrow_dir() / f"{entry.id}.json"
    if args.json:
        print_json({"id": entry.id, "escrow": str(path), "partner": entry.partner})
    else:
        print(f"escrowed {entry.id}'s identity and backup key in {path} (mode 0600)")
    return 0


def _receipts(args: argparse.Namespace) -> int:
    from leither import receipt
    from leither.errors import LeitherError

    s, _record = _session(args.node)
    with s:
        raw = call(s, "GetReceipts", {"since": args.since, "cut": args.cut})
    rows = []
    for data in raw:
        try:
            r = receipt.verify(bytes(data))
        except LeitherError as err:
            raise CliError(f"the node returned a receipt that does not verify: {err}") from None
        rows.append({"issuer": r["issuer"], "partner": r["partner"], "start": r["start"],
                     "end": r["end"], "stored_byte_hours": r["stored"], "served": r["served"],
                     "audits_ok": r["audits_ok"], "audits_failed": r["audits_failed"],
                     "id": receipt.receipt_id(bytes(data)).hex()})
    if args.json:
        print_json(rows)
    elif not rows:
        print("no receipts yet (one per period; --cut signs the period so far)")
    else:
        print_table(["end", "partner", "stored (byte-h)", "served", "audits ok/failed", "id"],
                    [(_when(r["end"]), r["partner"], r["stored_byte_hours"],
                      human_bytes(r["served"]), f"{r['audits_ok']}/{r['audits_failed']}",
                      r["id"][:16]) for r in rows])
    return 0
