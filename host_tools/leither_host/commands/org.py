# `leither org`: create an organization, apply to one, approve applicants, list members.
"""The org verb."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from leither import cbor, ids
from leither.compat import time_ms
from leither_host.errors import CliError
from leither_host.fleet import node_id_for
from leither_host.ledger import pool
from leither_host.ledger.org import Organization, make_application, open_application
from leither_host.ledger.records import key_id
from leither_host.ledger.verbs import (
    add_common,
    emit,
    home,
    open_org,
    parser,
    read_input,
)

EXAMPLES = """examples:
  leither org create coop                    # you (key "default") become its supervisor
  leither org show --json
  leither org apply --org coop --key alice   # alice applies (queued: the org is on this host)
  leither org apply --to 2dpq… --key bob --out bob.app   # for an org kept elsewhere
  leither org apply --org coop --node board2 # a node you own applies, with its own key
  leither org approve bob.app                # a supervisor admits bob
  leither org approve 3f9c --role guest      # by application ID prefix or member ID
  leither org role bob supervisor            # a role change keeps bob's join time
  leither org members
  leither org members --pending --json
  leither org bookkeepers add pi1 --pubkey 3b6a… --etcd 10.0.0.5:2379,10.0.0.6:2379
  leither org bookkeepers ls
  leither org bookkeepers publish            # then `leither books serve` on each bookkeeper
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = parser(sub, "org", "create and run organizations: members, roles, approvals", EXAMPLES)
    verbs = p.add_subparsers(dest="org_verb", metavar="ACTION")
    verbs.required = True

    c = verbs.add_parser("create", help="make an organization; you become its supervisor",
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("name", help="short name (letters, digits, . _ -)")
    add_common(c, org=False, key=True)
    c.set_defaults(func=run_create)

    s = verbs.add_parser("show", help="the organization's ID, key, members and books")
    add_common(s)
    s.set_defaults(func=run_show)

    a = verbs.add_parser("apply", help="sign an application to join",
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--to", metavar="ORG_ID", help="ID of an organization not kept on this host")
    a.add_argument("--role", default="member", choices=("supervisor", "member", "guest"))
    a.add_argument("--name", default="", help="a name for the member list")
    a.add_argument("--out", metavar="FILE", help="also write the signed application here")
    a.add_argument("--node", metavar="NODE",
                   help="apply for a node you own, signed with its key (kept since the claim)")
    add_common(a, key=True)
    a.set_defaults(func=run_apply)

    v = verbs.add_parser("approve", help="admit an applicant (supervisors only)",
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("application", help="application file, application ID prefix or member ID")
    v.add_argument("--role", choices=("supervisor", "member", "guest"),
                   help="grant this role instead of the one applied for")
    add_common(v, key=True)
    v.set_defaults(func=run_approve)

    r = verbs.add_parser("role", help="change a member's role (supervisors only); its join "
                                      "time and vesting clock are kept",
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("member", help="member name, ID or ID prefix")
    r.add_argument("role", choices=("supervisor", "member", "guest"))
    add_common(r, key=True)
    r.set_defaults(func=run_role)

    b = verbs.add_parser("bookkeepers", help="the hosts that keep the books on etcd",
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    bv = b.add_subparsers(dest="books_verb", metavar="ACTION")
    bv.required = True
    ba = bv.add_parser("add", help="name a bookkeeper (signed by the organization key)")
    ba.add_argument("name", help="a name for it (e.g. its host)")
    who = ba.add_mutually_exclusive_group(required=True)
    who.add_argument("--pubkey", metavar="HEX", help="its Ed25519 public key")
    who.add_argument("--bk-key", metavar="NAME", help="a personal key on this host")
    ba.add_argument("--etcd", metavar="HOST:PORT,…", help="the etcd cluster's endpoints")
    add_common(ba, key=True)
    ba.set_defaults(func=run_books_add)
    bl = bv.add_parser("ls", help="the bookkeepers and the quorum")
    add_common(bl)
    bl.set_defaults(func=run_books_ls)
    br = bv.add_parser("rm", help="remove a bookkeeper")
    br.add_argument("name")
    add_common(br)
    br.set_defaults(func=run_books_rm)
    bp = bv.add_parser("publish", help="put the organization's genesis in etcd: the "
                                       "bookkeepers start from it")
    add_common(bp)
    bp.set_defaults(func=run_books_publish)

    m = verbs.add_parser("members", help="list members (or pending applications)")
    m.add_argument("--pending", action="store_true", help="list pending applications instead")
    add_common(m)
    m.set_defaults(func=run_members)


def run_create(args: argparse.Namespace) -> int:
    h = home(args)
    seed, public = h.key(args.key)
    org = Organization.create(h.org_dir(args.name), args.name, seed)
    try:
        if not h.config_values().get("org"):
            h.set_config(org=args.name)
        result = {"name": org.name, "id": org.id, "key": org.public.hex(),
                  "supervisor": key_id(public), "path": str(org.dir)}
    finally:
        org.close()
    emit(args, result, text=lambda: print(
        f"organization {result['name']} created: ID {result['id']}\n"
        f"supervisor {result['supervisor']} (key {args.key!r})\nbooks in {result['path']}"))
    return 0


def run_show(args: argparse.Namespace) -> int:
    org = open_org(args)
    try:
        rows = org.member_rows()
        last = org.db.last_epoch()
        contracts = pool.contract_info(org.db)
        listing = org.db.conn.execute("SELECT max(version) FROM member_lists").fetchone()[0]
        result: dict[str, Any] = {
            "name": org.name, "id": org.id, "key": org.public.hex(), "path": str(org.dir),
            "holds_org_key": (org.dir / "org.key").exists(),
            "members": len(rows),
            "roles": {r: sum(1 for x in rows if x["role"] == r)
                      for r in ("supervisor", "member", "guest")},
            "member_list_version": listing,
            "contract": ({"version": contracts[-1]["version"],
                          "digest": contracts[-1]["digest"]} if contracts else None),
            "epoch": last["epoch"] if last else 0,
            "root": bytes(last["root"]).hex() if last else None,
            "supply": last["supply"] if last else 0,
            "bookkeepers": (lambda b: {"count": len(b["keys"]), "quorum": b["quorum"],
                                       "version": b["version"]} if b else None)(org.books()),
        }
    finally:
        org.close()
    emit(args, result, ["field", "value"],
         [(k, result[k]) for k in ("name", "id", "members", "roles", "member_list_version",
                                   "contract", "epoch", "root", "supply", "bookkeepers",
                                   "path")])
    return 0


def run_apply(args: argparse.Namespace) -> int:
    h = home(args)
    if args.node:
        from leither import crypto
        from leither_host import escrow

        held = escrow.find(node_id_for(args.node) or args.node)  # inventory names too
        if held is None:
            raise CliError(f"no key held for node {args.node!r}: claim it from this host first")
        seed, public = held.seed, crypto.sign_public(held.seed)
    else:
        seed, public = h.key(args.key)
    org: Organization | None = None
    if args.to:
        org_id = args.to
        ids.id_raw(org_id)  # DecodeError names a bad ID
    else:
        org = open_org(args)
        org_id = org.id
    try:
        data = make_application(seed, org_id, args.role, args.name, time_ms())
        result: dict[str, Any] = {"org": org_id, "member": key_id(public), "role": args.role,
                                  "application": None, "file": args.out}
        if args.out:
            Path(args.out).write_bytes(data)
        if org is not None:
            result["application"] = org.submit(data)
        elif not args.out:
            raise CliError("the organization is not on this host: give --out FILE and send it "
                           "to a supervisor")
    finally:
        if org is not None:
            org.close()
    emit(args, result, text=lambda: print(
        f"{result['member']} applied to {org_id} as {args.role}"
        + (f"; application {result['application'][:12]} queued" if result["application"]
           else "") + (f"; written to {args.out}" if args.out else "")))
    return 0


def run_approve(args: argparse.Namespace) -> int:
    h = home(args)
    seed, _ = h.key(args.key, create=False)
    org = open_org(args)
    try:
        if org.books() is not None:
            raise CliError(f"{org.name}'s books are kept by its bookkeepers: approve through "
                           f"them (leither books approve FILE)")
        ref = args.application
        if Path(ref).is_file():
            data = read_input(ref)
            app = open_application(data)
            existing = org.db.conn.execute("SELECT id FROM applications WHERE record=?",
                                           (data,)).fetchone()
            app_id = existing[0] if existing else org.submit(data)
            del app
        else:
            app_id = org.find_application(node_id_for(ref) or ref)  # node names too
        approval = org.approve(app_id, seed, args.role)
        body = cbor.loads(approval)
        result = {"application": app_id, "member": body["member"], "role": body["role"],
                  "by": body["by"], "member_list_version": org.db.conn.execute(
                      "SELECT max(version) FROM member_lists").fetchone()[0]}
    finally:
        org.close()
    emit(args, result, text=lambda: print(
        f"approved {result['member']} as {result['role']} (member list "
        f"v{result['member_list_version']}, signed by the organization)"))
    return 0


def run_members(args: argparse.Namespace) -> int:
    org = open_org(args)
    try:
        if args.pending:
            pending = org.pending()
            emit(args, pending, ["application", "member", "role", "name"],
                 [(p["application"][:12], p["member"], p["role"], p["name"]) for p in pending])
            return 0
        tree = org.db.tree()
        rows = []
        for r in org.member_rows():
            found = tree.get(bytes(r["raw"]))
            rows.append({"id": r["id"], "role": r["role"], "name": r["name"],
                         "joined_ms": r["joined_ms"], "key": bytes(r["pubkey"]).hex(),
                         "balance": found[0] if found else 0})
    finally:
        org.close()
    emit(args, rows, ["id", "role", "name", "balance"],
         [(r["id"], r["role"], r["name"], r["balance"]) for r in rows])
    return 0



def run_role(args: argparse.Namespace) -> int:
    from leither_host.ledger.verbs import member_key

    seed, _ = home(args).key(args.key, create=False)
    org = open_org(args)
    try:
        member_id, _raw = member_key(org, args.member)
        result = org.set_role(member_id, args.role, seed)
    finally:
        org.close()
    emit(args, result, text=lambda: print(
        f"{result['member']} is now {result['role']} (was {result['was']}; joined "
        f"{result['joined_ms']}, kept)"))
    return 0


def _books_rows(books: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not books:
        return []
    return [{"name": n, "id": key_id(k), "key": k.hex()} for n, k in
            zip(books["names"], books["keys"])]


def _books_result(books: dict[str, Any]) -> dict[str, Any]:
    return {"version": books["version"], "quorum": books["quorum"], "etcd": books["etcd"],
            "bookkeepers": _books_rows(books)}


def run_books_add(args: argparse.Namespace) -> int:
    from leither_host.ledger import bookkeepers as bk

    if args.pubkey:
        try:
            key = bytes.fromhex(args.pubkey)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise CliError("--pubkey wants 64 hex digits (an Ed25519 public key)")
    else:
        key = home(args).key(args.bk_key, create=False)[1]
    org = open_org(args)
    try:
        current = bk.members_of(org.books())
        if any(n == args.name or k == key for n, k in current):
            raise CliError(f"{args.name} (or its key) is already a bookkeeper")
        etcd = [e for e in (args.etcd or "").split(",") if e] or None
        books = bk.set_bookkeepers(org, current + [(args.name, key)], etcd)
    finally:
        org.close()
    result = _books_result(books)
    emit(args, result, text=lambda: print(
        f"bookkeepers v{result['version']}: {len(result['bookkeepers'])}, quorum "
        f"{result['quorum']}"))
    return 0


def run_books_ls(args: argparse.Namespace) -> int:
    org = open_org(args)
    try:
        books = org.books()
    finally:
        org.close()
    if books is None:
        emit(args, {"bookkeepers": []}, text=lambda: print("kept on this host alone"))
        return 0
    result = _books_result(books)
    emit(args, result, ["name", "id", "key"],
         [(r["name"], r["id"], r["key"][:16]) for r in result["bookkeepers"]],
         text=lambda: print(f"quorum {result['quorum']} of {len(result['bookkeepers'])}; "
                            f"etcd {','.join(result['etcd'])}"))
    return 0


def run_books_rm(args: argparse.Namespace) -> int:
    from leither_host.ledger import bookkeepers as bk

    org = open_org(args)
    try:
        current = bk.members_of(org.books())
        kept = [(n, k) for n, k in current if n != args.name]
        if len(kept) == len(current):
            raise CliError(f"no bookkeeper named {args.name!r}")
        books = bk.set_bookkeepers(org, kept)
    finally:
        org.close()
    result = _books_result(books)
    emit(args, result, text=lambda: print(
        f"bookkeepers v{result['version']}: {len(result['bookkeepers'])}, quorum "
        f"{result['quorum']}"))
    return 0


def run_books_publish(args: argparse.Namespace) -> int:
    from leither_host.ledger import bookkeepers as bk

    org = open_org(args)
    try:
        books = org.books()
        if books is None:
            raise CliError("name the bookkeepers first (leither org bookkeepers add)")
        new = bk.publish_genesis(org, bk.log_for(books))
    finally:
        org.close()
    emit(args, {"published": new}, text=lambda: print(
        "genesis published" if new else "the genesis was already in etcd"))
    return 0
