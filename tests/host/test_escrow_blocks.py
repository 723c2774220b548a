# A dead node's backup is read through its partner (leither_host.escrow): blocks come whole
# from the partner, and the tree readers and walks take them through the source's get_part
# only (leither.tree has no other way in), manifests a window at a time. The partner is
# stood in for by a local store here; the LAN story (tests/system/test_backup_lan.py) needs root.
from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from leither import store, tree
from leither_host import escrow


class _Partner:
    """Stands for escrow.BackupReader: block(h) is block h whole (there: fetched sealed,
    opened and checked against h)."""

    def __init__(self, bs: Any) -> None:
        self.bs = bs

    def block(self, h: bytes) -> bytes:
        return bytes(self.bs.get(h))


def test_reads_walks_and_chunk_checks_through_the_partner(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    bs = store.BlockStore(str(tmp_path / "blocks"))
    try:
        # Two levels (FANOUT + 2 chunks) and a short last chunk.
        content = bytes(i * 7 % 251 for i in range((tree.FANOUT + 2) * tree.CHUNK + 5))
        root, size = store.build(bs, [content])
        assert size == len(content)
        monkeypatch.setattr(tree, "WINDOW", 64)  # a manifest in many parts, as on a board
        src = escrow._PartnerBlocks(cast(Any, _Partner(bs)))
        assert list(store.walk(src, root)) == list(store.walk(bs, root))
        r = store.TreeReader(src, root)
        assert r.size == size
        assert bytes(r.read_at(0, size)) == content
        for off in (tree.CHUNK - 10, tree.FANOUT * tree.CHUNK - 3, size - 2):
            assert bytes(r.read_at(off, 20)) == content[off:off + 20]
        for i in (0, r.n - 1):
            r.check_chunk(i)  # asks the block's length with an empty (read-only) view
    finally:
        bs.close()
