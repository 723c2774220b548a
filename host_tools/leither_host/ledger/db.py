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
# Tree nodes are numbered in creation order; a parent names its children by number, 0 = empty
# subtree. They are stored in pages of PAGE_NODES fixed-size records (one BLOB row per page), not
# one row per node: an epoch of 10,000 updates into a million accounts makes ~70,000 nodes, and
# packing them with struct into ~70 BLOBs costs a few ms where 70,000 INSERTs cost ~0.3 s.
# Each epoch starts a fresh page (node numbers skip to the next multiple of PAGE_NODES), so a
# page is written once, inside its epoch's transaction, and never changed: every epoch's root
# stays readable (history), and a killed epoch leaves no page behind.
"""SQLite store of one organization: tree nodes, epochs, members, contracts, receipts."""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

from leither.errors import StoreError
from leither_host.ledger.smt import SMT, Inner, Leaf, child_id, gc_paused

SCHEMA_VERSION = 1
PAGE_NODES = 1024  # nodes per stored page: ~70 KB BLOBs, SQLite's sweet spot for blobs
NODE_BYTES = 69  # per record: kind(1) hash(32) + left(8) right(8) pad(20) | key(20) bal nonce
_INNER = struct.Struct(">B32sQQ20x")
_LEAF = struct.Struct(">B32s20sQQ")
PAGE_CACHE = 1024  # pages kept decoded-ready in memory (~70 MB at most): the hot top of the tree

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS node_pages (
    page INTEGER PRIMARY KEY,  -- nodes page*PAGE_NODES+1 .. +PAGE_NODES
    data BLOB NOT NULL         -- up to PAGE_NODES records of NODE_BYTES (see _INNER, _LEAF)
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
CREATE TABLE IF NOT EXISTS member_roots (  -- the Merkle member set per version (members.py)
    version INTEGER PRIMARY KEY, root_id INTEGER NOT NULL, root BLOB NOT NULL,
    count INTEGER NOT NULL
);
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
        self._depth = 0  # savepoints open inside the transaction
        self._tree: SMT | None = None
        self._pages: dict[int, bytes] = {}
        self.next_node_id = self._first_free_node()

    def _first_free_node(self) -> int:
        row = self.conn.execute("SELECT max(page) FROM node_pages").fetchone()
        return (row[0] + 1) * PAGE_NODES + 1 if row[0] is not None else 1

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions --------------------------------------------------------------------------

    class _Tx:
        """The outermost `with` is BEGIN IMMEDIATE … COMMIT; one inside it is a SAVEPOINT, so a
        bookkeeper can apply many inputs in one transaction and undo just the one that fails."""

        def __init__(self, db: LedgerDB) -> None:
            self.db = db
            self.savepoint = ""

        def __enter__(self) -> sqlite3.Connection:
            if self.db._in_tx:
                self.db._depth += 1
                self.savepoint = f"sp{self.db._depth}"
                self.db.conn.execute(f"SAVEPOINT {self.savepoint}")
                return self.db.conn
            self.db.conn.execute("BEGIN IMMEDIATE")
            self.db._in_tx = True
            return self.db.conn

        def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
            if self.savepoint:
                self.db._depth -= 1
                if kind is not None:
                    self.db.conn.execute(f"ROLLBACK TO {self.savepoint}")
                    self.db._forget()
                self.db.conn.execute(f"RELEASE {self.savepoint}")
                return
            self.db._in_tx = False
            if kind is None:
                self.db.conn.execute("COMMIT")
            else:
                self.db.conn.execute("ROLLBACK")
                self.db._forget()

    def _forget(self) -> None:
        """In-memory state may hold what was rolled back: forget it."""
        self._tree = None
        self._pages.clear()
        self.next_node_id = self._first_free_node()

    def transaction(self) -> LedgerDB._Tx:
        return LedgerDB._Tx(self)

    # -- meta ----------------------------------------------------------------------------------

    def get_meta(self, name: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return row[0] if row else default

    def set_meta(self, name: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    # -- tree ----------------------------------------------------------------------------------

    def load_node(self, number: int) -> Inner | Leaf:
        page, slot = divmod(number - 1, PAGE_NODES)
        data = self._pages.get(page)
        if data is None:
            found = self.conn.execute("SELECT data FROM node_pages WHERE page=?",
                                      (page,)).fetchone()
            if found is None:
                raise StoreError(f"ledger node {number} is missing (page {page})")
            data = bytes(found[0])
            if len(self._pages) >= PAGE_CACHE:
                self._pages.pop(next(iter(self._pages)))  # oldest first
            self._pages[page] = data
        offset = slot * NODE_BYTES
        if offset + NODE_BYTES > len(data):
            raise StoreError(f"ledger node {number} is missing (page {page} is short)")
        if data[offset] == 1:
            _kind, h, left, right = _INNER.unpack_from(data, offset)
            return Inner(left or None, right or None, b"", b"", id=number, hash=h)
        _kind, h, key, balance, nonce = _LEAF.unpack_from(data, offset)
        return Leaf(int.from_bytes(key, "big"), balance, nonce, id=number, hash=h)

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
        """Store the tree's new nodes (inside a transaction); returns the root's number."""
        with gc_paused():
            return self._write_nodes(tree)

    def _write_nodes(self, tree: SMT) -> int:
        first = self.next_node_id
        nodes = tree.new_nodes(first)
        pack_inner, pack_leaf = _INNER.pack, _LEAF.pack
        records: list[bytes] = []
        append = records.append
        for n in nodes:
            if type(n) is Leaf:
                append(pack_leaf(2, n.hash, n.key.to_bytes(20, "big"), n.balance, n.nonce))
            else:
                # A child is a node (its number), a number not loaded yet, or None (empty).
                left: Any = n.left  # type: ignore[union-attr]
                right: Any = n.right  # type: ignore[union-attr]
                append(pack_inner(1, n.hash,
                                  0 if left is None else left if type(left) is int else left.id,
                                  0 if right is None else right if type(right) is int
                                  else right.id))
        first_page = (first - 1) // PAGE_NODES
        pages = [(first_page + i // PAGE_NODES, b"".join(records[i:i + PAGE_NODES]))
                 for i in range(0, len(records), PAGE_NODES)]
        self.conn.executemany("INSERT INTO node_pages VALUES (?, ?)", pages)
        if pages:  # the next epoch starts a fresh page
            self.next_node_id = (pages[-1][0] + 1) * PAGE_NODES + 1
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
