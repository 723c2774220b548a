# The organization's books on disk: one SQLite file per organization.
#
# Why SQLite: it ships with Python (no new dependency), gives real ACID transactions with a
# write-ahead log — a transaction is either entirely in the file or not at all, also when the
# process is killed or the power fails between any two writes — and it is a single file anyone
# can inspect with the sqlite3 shell. TinyDB (already a dependency) rewrites a whole JSON file
# per change and has no transactions; LMDB would need a new package. One settlement epoch is one
# `BEGIN IMMEDIATE … COMMIT`: the tree's new nodes, the signed root, the consumed receipts and
# incomes and the per-member reports land together or not at all.
#
# Tree nodes are rows numbered in creation order (INTEGER PRIMARY KEY, so appends are cheap);
# a parent names its children by row number, 0 = empty subtree. Rows are never updated or
# deleted, so every epoch's root stays readable.
"""SQLite store of one organization: tree nodes, epochs, members, contracts, receipts."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

from leither.errors import StoreError

from leither_host.ledger.smt import SMT, Inner, Leaf, child_id

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS nodes (
    id INTEGER PRIMARY KEY, hash BLOB NOT NULL,
    lft INTEGER, rgt INTEGER,                -- inner node: children's row ids (0 = empty)
    key BLOB, balance INTEGER, nonce INTEGER -- leaf
);
CREATE TABLE IF NOT EXISTS epochs (
    epoch INTEGER PRIMARY KEY, root_id INTEGER NOT NULL, root BLOB NOT NULL,
    start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,
    supply INTEGER NOT NULL, minted INTEGER NOT NULL, burned INTEGER NOT NULL,
    record BLOB NOT NULL,   -- the org-signed epoch record (CBOR)
    inputs BLOB NOT NULL    -- CBOR of everything the epoch accepted, for replay by `verify`
);
CREATE TABLE IF NOT EXISTS members (
    id TEXT PRIMARY KEY, raw BLOB NOT NULL, pubkey BLOB NOT NULL, role TEXT NOT NULL,
    name TEXT NOT NULL, joined_ms INTEGER NOT NULL, application BLOB, approval BLOB
);
CREATE TABLE IF NOT EXISTS member_lists (version INTEGER PRIMARY KEY, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS applications (
    id TEXT PRIMARY KEY, member TEXT NOT NULL, record BLOB NOT NULL, status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS contracts (
    version INTEGER PRIMARY KEY, digest BLOB NOT NULL, source TEXT NOT NULL,
    canonical BLOB NOT NULL, deployed_ms INTEGER NOT NULL, from_epoch INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS receipt_pool (
    id BLOB PRIMARY KEY,    -- SHA-256 of the encoded receipt
    data BLOB NOT NULL, issuer TEXT NOT NULL, partner TEXT NOT NULL,
    start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL, stored INTEGER NOT NULL,
    served INTEGER NOT NULL, audits_ok INTEGER NOT NULL, audits_failed INTEGER NOT NULL,
    status TEXT NOT NULL,   -- pending (signature checked) | settled | rejected
    epoch INTEGER, reason TEXT, added_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS receipt_pool_status ON receipt_pool (status);
CREATE TABLE IF NOT EXISTS rejections (
    epoch INTEGER,          -- NULL: refused when it entered the pool
    kind TEXT NOT NULL, id TEXT NOT NULL, reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pending (
    id BLOB PRIMARY KEY, kind TEXT NOT NULL, data BLOB NOT NULL, added_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS spent (id BLOB PRIMARY KEY, epoch INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS receipt_marks (
    issuer TEXT NOT NULL, partner TEXT NOT NULL, end_ms INTEGER NOT NULL,
    PRIMARY KEY (issuer, partner)
);
CREATE TABLE IF NOT EXISTS credit_lines (
    grantor TEXT NOT NULL, grantee TEXT NOT NULL, lim INTEGER NOT NULL, record BLOB NOT NULL,
    PRIMARY KEY (grantor, grantee)
);
CREATE TABLE IF NOT EXISTS credit_debts (
    debtor TEXT NOT NULL, creditor TEXT NOT NULL, amount INTEGER NOT NULL,
    PRIMARY KEY (debtor, creditor)
);
CREATE TABLE IF NOT EXISTS reports (
    epoch INTEGER NOT NULL, member TEXT NOT NULL, report BLOB NOT NULL,
    PRIMARY KEY (epoch, member)
);
"""


class LedgerDB:
    """One organization's SQLite file. Use `with db.transaction():` for every write."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly
        # what `transaction()` encloses.
        self.conn = sqlite3.connect(str(self.path), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")  # a committed epoch survives power loss
        self.conn.executescript(SCHEMA)
        self._in_tx = False
        self._tree: SMT | None = None
        row = self.conn.execute("SELECT max(id) FROM nodes").fetchone()
        self.next_node_id = (row[0] or 0) + 1

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions --------------------------------------------------------------------------

    class _Tx:
        def __init__(self, db: LedgerDB) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            if self.db._in_tx:
                raise StoreError("nested transaction")
            self.db.conn.execute("BEGIN IMMEDIATE")
            self.db._in_tx = True
            return self.db.conn

        def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
            self.db._in_tx = False
            if kind is None:
                self.db.conn.execute("COMMIT")
            else:
                self.db.conn.execute("ROLLBACK")
                # In-memory state may hold what was rolled back: forget it.
                self.db._tree = None
                row = self.db.conn.execute("SELECT max(id) FROM nodes").fetchone()
                self.db.next_node_id = (row[0] or 0) + 1

    def transaction(self) -> LedgerDB._Tx:
        return LedgerDB._Tx(self)

    # -- meta ----------------------------------------------------------------------------------

    def get_meta(self, name: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return row[0] if row else default

    def set_meta(self, name: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    # -- tree ----------------------------------------------------------------------------------

    def load_node(self, row: int) -> Inner | Leaf:
        found = self.conn.execute(
            "SELECT hash, lft, rgt, key, balance, nonce FROM nodes WHERE id=?", (row,)).fetchone()
        if found is None:
            raise StoreError(f"ledger node {row} is missing")
        h, left, right, key, balance, nonce = found
        if key is not None:
            return Leaf(int.from_bytes(key, "big"), balance, nonce, id=row, hash=h)
        return Inner(left or None, right or None, b"", b"", id=row, hash=h)

    def tree(self, epoch: int | None = None) -> SMT:
        """The tree at an epoch (None: the latest). The latest one is kept and reused."""
        if epoch is None:
            if self._tree is None:
                last = self.last_epoch()
                self._tree = SMT(last["root_id"] if last and last["root_id"] else None,
                                 self.load_node)
            return self._tree
        row = self.epoch(epoch)
        if row is None:
            raise StoreError(f"no epoch {epoch}")
        return SMT(row["root_id"] or None, self.load_node)

    def write_nodes(self, tree: SMT) -> int:
        """Store the tree's new nodes (inside a transaction); returns the root's row id."""
        nodes = tree.new_nodes(self.next_node_id)
        rows: list[tuple[Any, ...]] = []
        for node in nodes:
            if type(node) is Leaf:
                rows.append((node.id, node.hash, None, None, node.key.to_bytes(20, "big"),
                             node.balance, node.nonce))
            else:
                assert type(node) is Inner
                rows.append((node.id, node.hash, child_id(node.left), child_id(node.right),
                             None, None, None))
        self.conn.executemany("INSERT INTO nodes VALUES (?,?,?,?,?,?,?)", rows)
        self.next_node_id += len(rows)
        return child_id(tree.root)

    # -- epochs --------------------------------------------------------------------------------

    _EPOCH_COLS = ("epoch", "root_id", "root", "start_ms", "end_ms", "supply", "minted",
                   "burned", "record", "inputs")

    def _epoch_row(self, row: tuple | None) -> dict[str, Any] | None:
        return dict(zip(self._EPOCH_COLS, row)) if row else None

    def last_epoch(self) -> dict[str, Any] | None:
        return self._epoch_row(self.conn.execute(
            f"SELECT {','.join(self._EPOCH_COLS)} FROM epochs ORDER BY epoch DESC LIMIT 1"
        ).fetchone())

    def epoch(self, n: int) -> dict[str, Any] | None:
        return self._epoch_row(self.conn.execute(
            f"SELECT {','.join(self._EPOCH_COLS)} FROM epochs WHERE epoch=?", (n,)).fetchone())

    def epochs(self) -> Iterator[dict[str, Any]]:
        for row in self.conn.execute(
                f"SELECT {','.join(self._EPOCH_COLS)} FROM epochs ORDER BY epoch"):
            found = self._epoch_row(row)
            assert found is not None
            yield found

    def add_epoch(self, values: dict[str, Any]) -> None:
        self.conn.execute(f"INSERT INTO epochs VALUES ({','.join('?' * len(self._EPOCH_COLS))})",
                          tuple(values[c] for c in self._EPOCH_COLS))
