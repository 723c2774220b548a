# The ledger's sparse Merkle tree on the host: 160-bit keys, leaf = (balance, nonce), single-leaf
# subtrees collapsed. The hashing scheme and the proof format are defined once, in
# firmware/leither/smtverify.py; this file builds the same hashes with hashlib directly (the hot
# path) and tests check both agree.
#
# Speed: updates come in batches (one per epoch). A batch is sorted once and pushed down the tree
# in one recursive pass, so every internal node a batch touches is rebuilt and hashed once, not
# once per key. Keys are Python ints inside the tree (comparisons and bit tests are single
# operations); the 20 key bytes are made again only to hash a leaf or write a proof.
#
# Persistence: nodes are immutable. A node written to the store gets a row id; a parent refers to
# its children by row id, so every earlier root stays readable (history) and the newest tree is
# loaded lazily, one node at a time, as paths are walked.
"""Sparse Merkle tree: batched updates, proofs, lazy loading from a node store."""

from __future__ import annotations

import gc
import hashlib
import struct
from bisect import bisect_left
from collections.abc import Callable, Iterator
from collections.abc import Iterator as _Iterator
from contextlib import contextmanager
from typing import Union

from leither import smtverify
from leither.errors import ProofError

KEY_BYTES = smtverify.KEY_BYTES
KEY_BITS = smtverify.KEY_BITS
EMPTY = smtverify.EMPTY
MAX_VALUE = (1 << 64) - 1

_sha256 = hashlib.sha256
_pack_value = struct.Struct(">QQ").pack


@contextmanager
def gc_paused() -> _Iterator[None]:
    """No cyclic garbage collection while a batch makes tens of thousands of nodes.

    Tree nodes form no reference cycles (children never point up), so reference counting frees
    them; but each new node counts towards CPython's collection thresholds, and a full
    collection walks every node of a million-account tree (measured: collections were half of
    an epoch's time). Collection resumes, with its own thresholds, when the block ends.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class Leaf:
    """One account. key is the 160-bit key as an int; id is its store row (0 = not stored)."""

    __slots__ = ("balance", "hash", "id", "key", "nonce")

    def __init__(self, key: int, balance: int, nonce: int, id: int = 0,
                 hash: bytes | None = None) -> None:
        self.key = key
        self.balance = balance
        self.nonce = nonce
        self.id = id
        self.hash = hash if hash is not None else _sha256(
            b"\x00" + key.to_bytes(20, "big") + _pack_value(balance, nonce)).digest()


# A child is a loaded node, a row id not loaded yet (int), or None for the empty subtree.
Child = Union["Inner", Leaf, int, None]
Node = Union["Inner", Leaf, None]


class Inner:
    """An internal node of a subtree holding two or more leaves."""

    __slots__ = ("hash", "id", "left", "right")

    def __init__(self, left: Child, right: Child, left_hash: bytes, right_hash: bytes,
                 id: int = 0, hash: bytes | None = None) -> None:
        self.left = left
        self.right = right
        self.id = id
        self.hash = (hash if hash is not None
                     else _sha256(b"\x01" + left_hash + right_hash).digest())


# Loads the node stored at a row id.
Loader = Callable[[int], Inner | Leaf]


def key_int(key: bytes) -> int:
    if len(key) != KEY_BYTES:
        raise ValueError(f"ledger keys are {KEY_BYTES} bytes, got {len(key)}")
    return int.from_bytes(key, "big")


def _no_loader(row: int) -> Inner | Leaf:
    raise LookupError(f"node {row} is not loaded and this tree has no store")


class SMT:
    """A sparse Merkle tree with one current root.

    Reads (get, prove, items) and batched writes (apply). New nodes carry id 0 until
    `new_nodes()` hands them to a store, which numbers them.
    """

    def __init__(self, root: Child = None, loader: Loader | None = None) -> None:
        self.loader: Loader = loader or _no_loader
        self.fresh: list[Inner | Leaf] = []  # nodes made and not yet numbered, in order made
        self.root: Node = self._resolve(root)

    # -- reading ---------------------------------------------------------------------------------

    def _resolve(self, child: Child) -> Node:
        if type(child) is int:
            return self.loader(child)
        return child  # type: ignore[return-value]

    def _left(self, node: Inner) -> Node:
        child = node.left
        if type(child) is int:
            child = node.left = self.loader(child)
        return child  # type: ignore[return-value]

    def _right(self, node: Inner) -> Node:
        child = node.right
        if type(child) is int:
            child = node.right = self.loader(child)
        return child  # type: ignore[return-value]

    def root_hash(self) -> bytes:
        return self.root.hash if self.root is not None else EMPTY

    def get(self, key: bytes) -> tuple[int, int] | None:
        """(balance, nonce) of key, or None if the account does not exist."""
        k = key_int(key)
        node = self.root
        depth = 0
        while type(node) is Inner:
            node = self._right(node) if (k >> (159 - depth)) & 1 else self._left(node)
            depth += 1
        if type(node) is Leaf and node.key == k:
            return node.balance, node.nonce
        return None

    def items(self) -> Iterator[tuple[bytes, int, int]]:
        """Every account (key bytes, balance, nonce) in key order."""
        stack: list[Node] = [self.root]
        while stack:
            node = stack.pop()
            if node is None:
                continue
            if type(node) is Leaf:
                yield node.key.to_bytes(20, "big"), node.balance, node.nonce
            else:
                assert type(node) is Inner
                stack.append(self._right(node))
                stack.append(self._left(node))

    def prove(self, key: bytes) -> bytes:
        """The compact proof (smtverify format) of key's account or of its absence."""
        k = key_int(key)
        node = self.root
        depth = 0
        present = bytearray(21)
        siblings: list[bytes] = []
        while type(node) is Inner:
            if (k >> (159 - depth)) & 1:
                sibling = self._left(node)
                node = self._right(node)
            else:
                sibling = self._right(node)
                node = self._left(node)
            if sibling is not None:
                present[depth >> 3] |= 0x80 >> (depth & 7)
                siblings.append(sibling.hash)
            depth += 1
        head_tail: bytes
        if node is None:
            kind, tail = smtverify.ABSENT_EMPTY, b""
        else:
            assert type(node) is Leaf
            value = _pack_value(node.balance, node.nonce)
            if node.key == k:
                kind, tail = smtverify.INCLUSION, value
            else:
                kind, tail = smtverify.ABSENT_LEAF, node.key.to_bytes(20, "big") + value
        head_tail = bytes((kind, depth)) + bytes(present[:(depth + 7) >> 3])
        return head_tail + b"".join(siblings) + tail

    def verify(self, key: bytes, proof: bytes) -> tuple[int, int] | None:
        return smtverify.verify(self.root_hash(), key, proof)

    # -- writing ---------------------------------------------------------------------------------

    def apply(self, changes: dict[bytes, tuple[int, int] | None]) -> bytes:
        """Apply a batch: key -> (balance, nonce), or None to delete. Returns the new root hash."""
        if not changes:
            return self.root_hash()
        for k in changes:
            if len(k) != KEY_BYTES:
                raise ValueError(f"ledger keys are {KEY_BYTES} bytes, got {len(k)}")
        from_bytes = int.from_bytes
        pairs = sorted((from_bytes(k, "big"), v) for k, v in changes.items())
        keys = [p[0] for p in pairs]
        values = [p[1] for p in pairs]
        for v in values:
            if v is not None and not (0 <= v[0] <= MAX_VALUE and 0 <= v[1] <= MAX_VALUE):
                raise ValueError(f"balance and nonce must be 0..2**64-1, got {v}")
        with gc_paused():
            self.root = self._update(self.root, 0, keys, values, 0, len(keys))
        return self.root_hash()

    def _update(self, node: Node, depth: int, keys: list[int], values: list,
                lo: int, hi: int) -> Node:
        """node's subtree after the batch keys[lo:hi] (all under node's prefix), collapsed."""
        if type(node) is not Inner:
            if hi - lo == 1:  # fast paths: one key meets an empty subtree or a single leaf
                v = values[lo]
                if node is None or node.key == keys[lo]:  # type: ignore[union-attr]
                    if v is None:
                        return None
                    leaf = Leaf(keys[lo], v[0], v[1])
                    self.fresh.append(leaf)
                    return leaf
            return self._rebuild(node, depth, keys, values, lo, hi)  # type: ignore[arg-type]
        shift = 159 - depth
        split = bisect_left(keys, ((keys[lo] >> shift >> 1) << shift << 1) | (1 << shift), lo, hi)
        left: Child = node.left
        right: Child = node.right
        if type(left) is int:
            left = self.loader(left)
        if type(right) is int:
            right = self.loader(right)
        if split > lo:
            left = self._update(left, depth + 1, keys, values, lo, split)  # type: ignore[arg-type]
        if hi > split:
            right = self._update(right, depth + 1, keys, values, split, hi)  # type: ignore
        # The parent of the two new subtrees, collapsed when it holds one leaf or none.
        if left is None:
            if right is None or type(right) is Leaf:
                return right  # type: ignore[return-value]
            inner = Inner(None, right, EMPTY, right.hash)  # type: ignore[union-attr]
        elif right is None:
            if type(left) is Leaf:
                return left
            inner = Inner(left, None, left.hash, EMPTY)  # type: ignore[union-attr]
        else:
            inner = Inner(left, right, left.hash, right.hash)  # type: ignore[union-attr]
        self.fresh.append(inner)
        return inner

    def _rebuild(self, old: Leaf | None, depth: int, keys: list[int], values: list,
                 lo: int, hi: int) -> Node:
        """A subtree that held at most one leaf (old), after the batch keys[lo:hi]."""
        leaves: list[Leaf] = []
        for i in range(lo, hi):
            v = values[i]
            if v is not None:
                leaf = Leaf(keys[i], v[0], v[1])
                self.fresh.append(leaf)
                leaves.append(leaf)
        if old is not None:
            i = bisect_left(keys, old.key, lo, hi)
            if i == hi or keys[i] != old.key:
                leaves.append(old)
                leaves.sort(key=lambda leaf: leaf.key)
        return self._build(leaves, depth, 0, len(leaves))

    def _build(self, leaves: list[Leaf], depth: int, lo: int, hi: int) -> Node:
        if hi - lo == 0:
            return None
        if hi - lo == 1:
            return leaves[lo]
        shift = 159 - depth
        split = lo
        while split < hi and not (leaves[split].key >> shift) & 1:
            split += 1
        left = self._build(leaves, depth + 1, lo, split)
        right = self._build(leaves, depth + 1, split, hi)
        inner = Inner(left, right, left.hash if left is not None else EMPTY,
                      right.hash if right is not None else EMPTY)
        self.fresh.append(inner)
        return inner

    def new_nodes(self, next_id: int) -> list[Inner | Leaf]:
        """Number the nodes made since the last call (children before parents) from next_id.

        Nodes are listed as they were made, which is bottom-up, so a parent always comes after
        its children. If several batches were applied since the last call, nodes the later
        batches replaced are listed too (storing them wastes space, never correctness).
        """
        out = self.fresh
        self.fresh = []
        for node in out:
            node.id = next_id
            next_id += 1
        return out


    def drop_replaced(self) -> None:
        """Forget made nodes that later batches replaced: keep only those the current root
        reaches (a walk over the unstored part of the tree, children before parents)."""
        out: list[Inner | Leaf] = []
        self.fresh = out
        if self.root is None or self.root.id:
            return
        stack: list[tuple[Inner | Leaf, bool]] = [(self.root, False)]
        while stack:
            node, expanded = stack.pop()
            if type(node) is Leaf or expanded:
                out.append(node)
                continue
            stack.append((node, True))
            for child in (node.right, node.left):  # type: ignore[union-attr]
                if child is not None and type(child) is not int and not child.id:  # type: ignore
                    stack.append((child, False))  # type: ignore[arg-type]


def child_id(child: Child) -> int:
    """The row id a parent stores for a child: 0 for the empty subtree."""
    if child is None:
        return 0
    if type(child) is int:
        return child
    return child.id  # type: ignore[union-attr]


def check_proof(root: bytes, key: bytes, proof: bytes) -> tuple[int, int] | None:
    """Verify with the firmware's verifier (one implementation of the rules)."""
    return smtverify.verify(root, key, proof)


__all__ = ["EMPTY", "SMT", "Inner", "Leaf", "ProofError", "check_proof", "child_id", "key_int"]
