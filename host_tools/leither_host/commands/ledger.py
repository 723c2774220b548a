# `leither ledger`: balances, inclusion proofs anyone can check offline, verification of the
# whole book (every epoch replayed), history, transfers and credit lines.
"""The ledger verb."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from leither import cbor, ids, smtverify
from leither.errors import DecodeError, ProofError
from leither_host.errors import CliError
from leither_host.ledger import credit, members, pool, settle
from leither_host.ledger import tx as tx_mod
from leither_host.ledger.records import decode_record
from leither_host.ledger.verbs import (
    add_books_dir,
    add_common,
    emit,
    home,
    member_key,
    open_org,
    parser,
    read_input,
)

EXAMPLES = """examples:
  leither ledger balance                         # every member, latest epoch
  leither ledger balance alice --epoch 3
  leither ledger proof alice --out alice.proof   # a self-contained, signed proof
  leither ledger verify --proof alice.proof      # offline: no database needed
  leither ledger verify                          # replay every epoch, check the supply
  leither ledger proof alice --books ~/.local/share/leither/books/2dpq… --out a.proof
                                                 # from a bookkeeper's books: co-signed
  leither ledger history                         # epochs: roots, supply, minted, burned
  leither ledger history alice --json            # one member's balance per epoch
  leither ledger transfer bob 250 --key alice --out pay.tx
  leither ledger countersign pay.tx --key bob    # then: leither settle --tx pay.tx
  leither ledger credit grant bob 5000 --key alice
  leither ledger credit ls
  leither ledger submit pay.tx                    # queue a signed transaction
  leither ledger queue                           # transactions waiting for the next epoch
  leither ledger drop 3f9c                       # remove a queued one (by ID prefix)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = parser(sub, "ledger", "balances, proofs, verification and history of the books",
               EXAMPLES)
    verbs = p.add_subparsers(dest="ledger_verb", metavar="ACTION")
    verbs.required = True

    def sub_parser(name: str, help: str) -> argparse.ArgumentParser:
        return verbs.add_parser(name, help=help, epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)

    b = sub_parser("balance", "balances (all members, or one)")
    b.add_argument("member", nargs="?", help="member name, ID, ID prefix or 'treasury'")
    b.add_argument("--epoch", type=int, help="at this epoch (default: the latest)")
    add_common(b)
    add_books_dir(b)
    b.set_defaults(func=run_balance)

    pr = sub_parser("proof", "an inclusion (or absence) proof of a member's balance")
    pr.add_argument("member", help="member name, ID, ID prefix or 'treasury'")
    pr.add_argument("--epoch", type=int, help="at this epoch (default: the latest)")
    pr.add_argument("--out", metavar="FILE", help="write the proof bundle (CBOR) here")
    add_common(pr)
    add_books_dir(pr)
    pr.set_defaults(func=run_proof)

    v = sub_parser("verify", "check a proof offline, or replay and check the whole book")
    v.add_argument("--proof", metavar="FILE", help="a bundle from `ledger proof --out`")
    v.add_argument("--org-id", metavar="ID", help="the organization the proof must be from")
    v.add_argument("--fast", action="store_true",
                   help="replay without re-checking receipt signatures (checked on import)")
    add_common(v)
    add_books_dir(v)
    v.set_defaults(func=run_verify)

    h = sub_parser("history", "epochs, or one member's balance per epoch")
    h.add_argument("member", nargs="?", help="member name, ID, ID prefix or 'treasury'")
    h.add_argument("--epoch", type=int, help="the per-member report of this epoch")
    add_common(h)
    add_books_dir(h)
    h.set_defaults(func=run_history)

    t = sub_parser("transfer", "sign a transfer (the receiver countersigns it)")
    t.add_argument("to", help="receiver: member name, ID or ID prefix")
    t.add_argument("amount", type=int)
    t.add_argument("--memo", default="")
    t.add_argument("--out", metavar="FILE", required=True, help="write the transfer here")
    t.add_argument("--countersign-key", metavar="NAME",
                   help="the receiver's key, when it is on this host too")
    add_common(t, key=True)
    t.set_defaults(func=run_transfer)

    cs = sub_parser("countersign", "the receiver signs a transfer file")
    cs.add_argument("file")
    add_common(cs, org=False, key=True)
    cs.set_defaults(func=run_countersign)

    su = sub_parser("submit", "queue signed transactions for the next epoch")
    su.add_argument("files", nargs="+", metavar="FILE")
    add_common(su)
    su.set_defaults(func=run_submit)

    q = sub_parser("queue", "the transactions queued for the next epoch")
    add_common(q)
    q.set_defaults(func=run_queue)

    d = sub_parser("drop", "remove a queued transaction (e.g. one that cannot settle)")
    d.add_argument("id", help="the transaction's ID or a unique prefix of it (ledger queue)")
    add_common(d)
    d.set_defaults(func=run_drop)

    cr = sub_parser("credit", "credit lines between paired nodes")
    crv = cr.add_subparsers(dest="credit_verb", metavar="ACTION")
    crv.required = True
    g = crv.add_parser("grant", help="grant a partner a credit limit (tokens)")
    g.add_argument("partner", help="member name, ID or ID prefix")
    g.add_argument("limit", type=int)
    add_common(g, key=True)
    g.set_defaults(func=run_credit_grant)
    cl = crv.add_parser("ls", help="lines, their use and what is left")
    add_common(cl)
    cl.set_defaults(func=run_credit_ls)
    cc = crv.add_parser("check", help="may PARTNER use AMOUNT more of GRANTOR's service?")
    cc.add_argument("grantor")
    cc.add_argument("partner")
    cc.add_argument("amount", type=int)
    add_common(cc)
    cc.set_defaults(func=run_credit_check)


def _names(org: Any) -> dict[bytes, str]:
    names = {bytes(r["raw"]): r["name"] or r["id"][:10] for r in org.member_rows()}
    names[org.raw] = "treasury"
    return names


def run_balance(args: argparse.Namespace) -> int:
    org = open_org(args)
    try:
        tree = org.db.tree(args.epoch)
        last = org.db.last_epoch()
        epoch = args.epoch if args.epoch is not None else (last["epoch"] if last else 0)
        if args.member:
            member_id, raw = member_key(org, args.member)
            found = tree.get(raw)
            rows = [{"id": member_id, "balance": found[0] if found else 0,
                     "nonce": found[1] if found else 0, "exists": found is not None}]
        else:
            names = _names(org)
            listed = {bytes(r["raw"]) for r in org.member_rows()}
            rows = []
            seen = set()
            for key, balance, nonce in tree.items():
                seen.add(key)
                rows.append({"id": ids.b58encode(key) if key != org.raw else org.id,
                             "name": names.get(key, ""), "balance": balance, "nonce": nonce,
                             "exists": True})
            for raw in sorted(listed - seen):
                rows.append({"id": ids.b58encode(raw), "name": names.get(raw, ""),
                             "balance": 0, "nonce": 0, "exists": False})
    finally:
        org.close()
    root = tree.root_hash().hex()
    result = {"epoch": epoch, "root": root, "accounts": rows}
    emit(args, result, ["id", "name", "balance", "nonce"],
         [(r["id"], r.get("name", ""), r["balance"], r["nonce"]) for r in rows],
         text=lambda: print(f"epoch {epoch}, root {root[:16]}…"))
    return 0


def run_proof(args: argparse.Namespace) -> int:
    org = open_org(args)
    try:
        last = org.db.last_epoch()
        if last is None:
            raise CliError("no epoch settled yet: nothing to prove against")
        epoch = args.epoch if args.epoch is not None else last["epoch"]
        row = org.db.epoch(epoch)
        if row is None:
            raise CliError(f"no epoch {epoch} (latest is {last['epoch']})")
        member_id, raw = member_key(org, args.member)
        proof = org.db.tree(epoch).prove(raw)
        record = settle.open_epoch_record(bytes(row["record"]), org.public,
                                          settle.books_of(org, row["record"]))
        parts = {"org_key": org.public, "record": bytes(row["record"]), "member": member_id,
                 "key": raw, "proof": proof}
        if "books" in record:
            if "sigs" not in record:
                raise CliError(f"epoch {epoch} is not final yet: no quorum of bookkeepers "
                               f"signed it (leither books status)")
            books = org.books_record(record["books"])
            if books is None:
                raise CliError(f"bookkeeper set v{record['books']} is not in these books")
            parts["books"] = books
        if "mroot" in record:
            parts["mproof"] = members.prove(org.db, record["members"], raw)
        bundle = cbor.dumps(parts)
        value = smtverify.verify(bytes(row["root"]), raw, proof)
    finally:
        org.close()
    if args.out:
        Path(args.out).write_bytes(bundle)
    result = {"epoch": epoch, "member": member_id, "root": bytes(row["root"]).hex(),
              "included": value is not None, "balance": value[0] if value else 0,
              "nonce": value[1] if value else 0, "proof": proof.hex(),
              "proof_bytes": len(proof), "file": args.out}
    emit(args, result, text=lambda: print(
        f"{'inclusion' if value else 'absence'} proof of {member_id} at epoch {epoch}: "
        f"{len(proof)} bytes, balance {result['balance']}"
        + (f", written to {args.out}" if args.out else f"\n{proof.hex()}")))
    return 0


def verify_bundle(data: bytes, org_id: str | None = None) -> dict[str, Any]:
    """Check a proof bundle with nothing but its bytes (and, if given, the org's ID)."""
    try:
        bundle = cbor.loads(data)
        org_key, record, member, key, proof = (bundle["org_key"], bundle["record"],
                                               bundle["member"], bundle["key"], bundle["proof"])
    except (DecodeError, KeyError, TypeError):
        raise CliError("not a proof bundle (from `leither ledger proof --out FILE`)") from None
    if org_id is not None and ids.make_id(org_key) != org_id:
        raise CliError(f"proof is from organization {ids.make_id(org_key)}, not {org_id}")
    books = None
    if "books" in bundle:  # kept by bookkeepers: final = signed by a quorum of the set
        from leither_host.ledger import bookkeepers

        books = bookkeepers.open_books(bundle["books"], org_key)
    body = settle.open_epoch_record(record, org_key, books, final=True)
    if ids.id_raw(member) != key:
        raise ProofError("bundle's member ID does not match its ledger key")
    value = smtverify.verify(body["root"], key, proof)
    role: tuple[str, int] | None = None
    if "mroot" in body:
        mproof = bundle.get("mproof")
        if not isinstance(mproof, bytes):
            raise ProofError("bundle has no membership proof")
        role = members.check(body["mroot"], key, mproof)
    return {"ok": True, "org": ids.make_id(org_key), "epoch": body["epoch"], "member": member,
            "root": body["root"].hex(), "included": value is not None,
            "balance": value[0] if value else 0, "nonce": value[1] if value else 0,
            "role": role[0] if role else None, "joined": role[1] if role else 0}


def run_verify(args: argparse.Namespace) -> int:
    if args.proof:
        result = verify_bundle(read_input(args.proof), args.org_id)
        emit(args, result, text=lambda: print(
            f"OK: organization {result['org']} signed epoch {result['epoch']}, and in it "
            f"{result['member']} "
            + (f"has balance {result['balance']} (nonce {result['nonce']})"
               if result["included"] else "has no account")
            + (f", and is a {result['role']} since {result['joined']}" if result["role"]
               else ", and is not a member")))
        return 0
    org = open_org(args)
    try:
        result = settle.verify_all(org, check_receipt_signatures=not args.fast)
    finally:
        org.close()
    emit(args, result, text=lambda: print(
        f"OK: {result['epochs']} epochs replayed to their signed roots; {result['accounts']} "
        f"accounts sum to the signed supply {result['supply']}"))
    return 0


def run_history(args: argparse.Namespace) -> int:
    org = open_org(args)
    try:
        if args.epoch is not None:
            import json

            rows = [{"member": m, **json.loads(r)} for m, r in org.db.conn.execute(
                "SELECT member, report FROM reports WHERE epoch=? ORDER BY member",
                (args.epoch,))]
            rejected = [{"kind": k, "id": i, "reason": r} for k, i, r in org.db.conn.execute(
                "SELECT kind, id, reason FROM rejections WHERE epoch=?", (args.epoch,))]
            result: Any = {"epoch": args.epoch, "members": rows, "rejected": rejected}
            emit(args, result, ["member", "earned", "received", "sent", "receipts",
                                "balance"],
                 [(r["member"], r["earned"] + r["rewards"], r["received"] + r["credit_in"],
                   r["sent"] + r["burned"] + r["credit_out"], r["receipts"], r["balance"])
                  for r in rows])
            return 0
        epochs = list(org.db.epochs())
        if args.member:
            member_id, raw = member_key(org, args.member)
            rows = []
            for e in epochs:
                found = org.db.tree(e["epoch"]).get(raw)
                rows.append({"epoch": e["epoch"], "end_ms": e["end_ms"],
                             "balance": found[0] if found else 0,
                             "nonce": found[1] if found else 0})
            result = {"member": member_id, "epochs": rows}
            emit(args, result, ["epoch", "end_ms", "balance", "nonce"],
                 [(r["epoch"], r["end_ms"], r["balance"], r["nonce"]) for r in rows])
            return 0
        rows = [{"epoch": e["epoch"], "start_ms": e["start_ms"], "end_ms": e["end_ms"],
                 "root": bytes(e["root"]).hex(), "supply": e["supply"], "minted": e["minted"],
                 "burned": e["burned"]} for e in epochs]
    finally:
        org.close()
    emit(args, rows, ["epoch", "end_ms", "root", "supply", "minted", "burned"],
         [(r["epoch"], r["end_ms"], r["root"][:16], r["supply"], r["minted"], r["burned"])
          for r in rows])
    return 0


def run_transfer(args: argparse.Namespace) -> int:
    if args.amount <= 0:
        raise CliError("amount must be a positive number of tokens")
    h = home(args)
    seed, public = h.key(args.key, create=False)
    org = open_org(args)
    try:
        to_id, _raw = member_key(org, args.to)
        member = org.member(to_id)
        if member is None:
            raise CliError(f"{to_id} is not a member: its key is unknown here")
        to_key = bytes(member["pubkey"])
        sender = org.db.tree().get(ids.raw_id(public))
        pending = org.db.conn.execute(
            "SELECT data FROM pending WHERE kind IN ('transfer', 'burn')").fetchall()
        queued = sum(1 for (d,) in pending if decode_record(bytes(d)).get("from_key") == public)
        nonce = (sender[1] if sender else 0) + queued + 1
        data = tx_mod.transfer(seed, org.id, to_key, args.amount, nonce, args.memo)
        if args.countersign_key:
            data = tx_mod.countersign(h.key(args.countersign_key, create=False)[0], data)
    finally:
        org.close()
    Path(args.out).write_bytes(data)
    result = {"to": to_id, "amount": args.amount, "nonce": nonce, "file": args.out,
              "countersigned": bool(args.countersign_key)}
    emit(args, result, text=lambda: print(
        f"transfer of {args.amount} to {to_id} (nonce {nonce}) written to {args.out}"
        + ("" if args.countersign_key else "; the receiver must countersign it")))
    return 0


def run_countersign(args: argparse.Namespace) -> int:
    seed, _ = home(args).key(args.key, create=False)
    data = tx_mod.countersign(seed, read_input(args.file))
    Path(args.file).write_bytes(data)
    body = decode_record(data)
    result = {"file": args.file, "from": body["from"], "to": body["to"],
              "amount": body["amount"]}
    emit(args, result, text=lambda: print(f"countersigned {args.file}: {body['amount']} from "
                                          f"{body['from']} to {body['to']}"))
    return 0


def run_credit_grant(args: argparse.Namespace) -> int:
    seed, _ = home(args).key(args.key, create=False)
    org = open_org(args)
    try:
        partner, _raw = member_key(org, args.partner)
        result = credit.store_grant(org.db, credit.grant(seed, org.id, partner, args.limit),
                                    org.id)
    finally:
        org.close()
    emit(args, result, text=lambda: print(
        f"{result['grantor']} grants {result['grantee']} credit up to {result['limit']}"))
    return 0


def run_credit_ls(args: argparse.Namespace) -> int:
    org = open_org(args)
    try:
        rows = credit.lines(org.db)
    finally:
        org.close()
    emit(args, rows, ["grantor", "grantee", "limit", "used", "left", "over"],
         [(r["grantor"][:12], r["grantee"][:12], r["limit"], r["used"], r["left"],
           "OVER" if r["over"] else "") for r in rows])
    return 0


def run_credit_check(args: argparse.Namespace) -> int:
    org = open_org(args)
    try:
        grantor, _ = member_key(org, args.grantor)
        partner, _ = member_key(org, args.partner)
        left = credit.check(org.db, grantor, partner, args.amount)
    finally:
        org.close()
    emit(args, {"grantor": grantor, "grantee": partner, "requested": args.amount,
                "left": left}, text=lambda: print(f"OK: {left} left after this request"))
    return 0



def run_queue(args: argparse.Namespace) -> int:
    org = open_org(args)
    try:
        rows = pool.list_pending(org.db)
    finally:
        org.close()
    emit(args, rows, ["id", "type", "amount", "from", "to"],
         [(r["id"][:16], r["type"], r["amount"], (r["from"] or "")[:12], (r["to"] or "")[:16])
          for r in rows], text=lambda: None if rows else print("nothing queued"))
    return 0


def run_drop(args: argparse.Namespace) -> int:
    org = open_org(args)
    try:
        try:
            dropped = pool.drop_pending(org.db, args.id)
        except DecodeError as err:
            raise CliError(str(err)) from None
    finally:
        org.close()
    emit(args, dropped, text=lambda: print(
        f"dropped queued {dropped['type']} {dropped['id'][:16]} ({dropped['amount']} tokens)"))
    return 0


def run_submit(args: argparse.Namespace) -> int:
    datas = [read_input(f) for f in args.files]
    org = open_org(args)
    try:
        supervisors = org.supervisors()
        for data in datas:  # every file checked before any is queued
            tx_mod.open_tx(data, org.id, supervisors)
        rows = [pool.add_transaction(org.db, data, org.id, supervisors) for data in datas]
    finally:
        org.close()
    emit(args, rows, ["id", "type", "amount"],
         [(r["id"][:16], r["type"], r["amount"]) for r in rows])
    return 0
