# The host tree against its store: the proofs the board's test vectors hold are still what the
# host makes; nodes written to SQLite load back lazily to the same roots and proofs; every
# earlier root stays readable; a rolled-back transaction leaves no trace in memory.
import hashlib
import os

import pytest
import test_smtverify as vectors  # tests/firmware is on the path (setup.cfg pythonpath)

from leither import smtverify
from leither_host.ledger.db import LedgerDB
from leither_host.ledger.smt import SMT


def _key(tag: bytes) -> bytes:
    return hashlib.sha256(tag).digest()[:20]


def test_board_vectors_are_what_the_host_makes():
    tree = SMT()
    root = tree.apply({_key(b"member%d" % i): (1000 * i, i) for i in range(100)})
    assert root.hex() == vectors.ROOT
    assert tree.prove(_key(b"member3")).hex() == "".join(vectors.PROOF_MEMBER3)
    assert tree.prove(_key(b"absent0")).hex() == "".join(vectors.PROOF_ABSENT0)
    assert tree.prove(_key(b"absent2")).hex() == "".join(vectors.PROOF_ABSENT2)


def _commit(db: LedgerDB, epoch: int, changes: dict) -> bytes:
    tree = db.tree()
    with db.transaction():
        root = tree.apply(changes)
        root_id = db.write_nodes(tree)
        db.add_epoch({"epoch": epoch, "root_id": root_id, "root": root, "start_ms": 0,
                      "end_ms": epoch, "supply": 0, "minted": 0, "burned": 0, "record": b"",
                      "inputs": b""})
    return root


def test_store_round_trip_and_history(tmp_path):
    path = tmp_path / "l.sqlite"
    keys = [os.urandom(20) for _ in range(300)]
    roots = []
    with LedgerDB(path) as db:
        roots.append(_commit(db, 1, {k: (i, 0) for i, k in enumerate(keys)}))
        roots.append(_commit(db, 2, {k: (i + 1, 1) for i, k in enumerate(keys[:50])}))
        roots.append(_commit(db, 3, {k: None for k in keys[:20]}))
    with LedgerDB(path) as db:  # reopened: nothing in memory
        assert db.tree().root_hash() == roots[2]
        for epoch, root in enumerate(roots, 1):
            tree = db.tree(epoch)
            assert tree.root_hash() == root
            for i in (0, 30, 299):
                expected = {1: (i, 0), 2: (i + 1, 1) if i < 50 else (i, 0),
                            3: None if i < 20 else ((i + 1, 1) if i < 50 else (i, 0))}[epoch]
                assert smtverify.verify(root, keys[i], tree.prove(keys[i])) == expected
        # A lazily loaded tree takes further batches and agrees with a fresh in-memory one.
        root4 = _commit(db, 4, {keys[100]: (7, 7), os.urandom(20): (1, 1)})
        fresh = SMT()
        fresh.apply({k: (b, n) for k, b, n in db.tree().items()})
        assert fresh.root_hash() == root4


def test_rolled_back_epoch_leaves_no_trace(tmp_path):
    with LedgerDB(tmp_path / "l.sqlite") as db:
        root1 = _commit(db, 1, {_key(b"a"): (1, 0)})
        tree = db.tree()
        with pytest.raises(RuntimeError), db.transaction():
            tree.apply({_key(b"b"): (2, 0)})
            db.write_nodes(tree)
            raise RuntimeError("killed halfway")
        assert db.tree().root_hash() == root1  # the in-memory tree was dropped and reloaded
        assert db.tree().get(_key(b"b")) is None
        assert _commit(db, 2, {_key(b"c"): (3, 0)}) != root1
