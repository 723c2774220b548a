# The member set as a sparse Merkle tree, the same tree as the balances (smt.py, proof format of
# leither.smtverify): key = the member's raw 20-byte ID, leaf value = (joined_ms, role code) in
# the places of (balance, nonce). One member's membership and role are then proven by a path of
# ~20 hashes (~700 bytes at 10^6 members) instead of a signed list of every member, which was
# one record of ~110 bytes a member and hit the 1 MiB record limit near 9,500 members.
#
# A version of the set is a root: `member_roots` keeps each version's root (and its node in the
# store); the epoch record signs the root of the version it settled with ("mroot"), and a
# one-host organization also signs each version's small record {version, prev, root, count}.
# The member's public key need not be in the leaf: the ID is the hash of the key.
"""The Merkle member set: leaf encoding, versions, loading."""

from __future__ import annotations

from typing import Any

from leither import ids, smtverify
from leither.errors import DecodeError
from leither_host.ledger import contract as contract_mod
from leither_host.ledger.smt import SMT

ROLE_CODES = {role: smtverify.MEMBER_ROLES.index(role) + 1 for role in smtverify.MEMBER_ROLES}


def leaf_value(role: str, joined_ms: int) -> tuple[int, int]:
    """(balance, nonce) slots of a member's leaf: (join time, role code)."""
    if role not in ROLE_CODES:
        raise DecodeError(f"unknown role {role!r}")
    return joined_ms, ROLE_CODES[role]


def decode_leaf(value: tuple[int, int]) -> tuple[str, int]:
    """(role, joined_ms) of a member's leaf value."""
    joined, code = value
    if not 1 <= code <= len(smtverify.MEMBER_ROLES):
        raise DecodeError(f"member leaf with unknown role code {code}")
    return smtverify.MEMBER_ROLES[code - 1], joined


def latest(db: Any) -> dict[str, Any] | None:
    row = db.conn.execute("SELECT version, root_id, root, count FROM member_roots "
                          "ORDER BY version DESC LIMIT 1").fetchone()
    return dict(zip(("version", "root_id", "root", "count"), row)) if row else None


def version_row(db: Any, version: int) -> dict[str, Any]:
    row = db.conn.execute("SELECT version, root_id, root, count FROM member_roots "
                          "WHERE version=?", (version,)).fetchone()
    if row is None:
        raise DecodeError(f"no member set version {version}")
    return dict(zip(("version", "root_id", "root", "count"), row))


def tree(db: Any, version: int | None = None) -> SMT:
    """The member tree at a version (None: the latest)."""
    row = latest(db) if version is None else version_row(db, version)
    return SMT((row["root_id"] or None) if row else None, db.load_node)


def publish(db: Any, changes: dict[bytes, tuple[int, int] | None]) -> dict[str, Any]:
    """Apply changes (raw ID -> leaf value, None = leaves) as the next version; inside a
    transaction. Returns {version, root, count}."""
    last = latest(db)
    current = tree(db)
    count = last["count"] if last else 0
    for raw, value in changes.items():
        was = current.get(raw)
        count += (value is not None) - (was is not None)
    root = current.apply(dict(changes))
    root_id = db.write_nodes(current)
    # After every earlier version, those of books from before the tree (member_lists) too.
    listed = db.conn.execute("SELECT max(version) FROM member_lists").fetchone()[0] or 0
    version = max(last["version"] if last else 0, listed) + 1
    db.conn.execute("INSERT INTO member_roots VALUES (?,?,?,?)", (version, root_id, root, count))
    return {"version": version, "root": root, "count": count}


def members_at(db: Any, version: int) -> list[contract_mod.Member]:
    """Every member of a version, in ascending raw ID order (the contract's order)."""
    out = []
    for raw, joined, code in tree(db, version).items():
        role, joined_ms = decode_leaf((joined, code))
        out.append(contract_mod.Member(ids.b58encode(raw), raw, role, joined_ms))
    return out


def prove(db: Any, version: int, raw: bytes) -> bytes:
    return tree(db, version).prove(raw)


def check(root: bytes, raw: bytes, proof: bytes) -> tuple[str, int] | None:
    """(role, joined_ms) of raw in the member set with this root, or None if not a member;
    ProofError if the proof does not lead to root."""
    value = smtverify.verify(root, raw, proof)
    return decode_leaf(value) if value is not None else None
