# A tiny, obviously correct sparse Merkle tree: the root is computed from scratch from a dict of
# accounts by the definition alone (no caching, no batching, no collapsing tricks beyond the rule
# itself). The real tree (leither_host.ledger.smt) must agree with it.
"""Reference root of the ledger tree, straight from the definition."""

import hashlib

EMPTY = bytes(32)


def leaf(key: bytes, balance: int, nonce: int) -> bytes:
    return hashlib.sha256(b"\x00" + key + balance.to_bytes(8, "big")
                          + nonce.to_bytes(8, "big")).digest()


def bit(key: bytes, depth: int) -> int:
    return (int.from_bytes(key, "big") >> (159 - depth)) & 1


def root(accounts: dict, depth: int = 0) -> bytes:
    """accounts: key(20 bytes) -> (balance, nonce)."""
    if not accounts:
        return EMPTY
    if len(accounts) == 1:
        (key, (balance, nonce)), = accounts.items()
        return leaf(key, balance, nonce)
    left = {k: v for k, v in accounts.items() if bit(k, depth) == 0}
    right = {k: v for k, v in accounts.items() if bit(k, depth) == 1}
    return hashlib.sha256(b"\x01" + root(left, depth + 1) + root(right, depth + 1)).digest()
