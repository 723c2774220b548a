# Checks a ledger proof offline, on the board: does this account (or its absence) lead to this
# epoch's root? The host (leither_host.ledger.smt) builds the tree and the proofs; this file is
# the one definition of the hashing scheme and the proof format that both sides share.
#
# The sparse Merkle tree has 160-bit keys (a member ID's 20 raw bytes), bit 0 = the key's most
# significant bit, 0 = left. Hashes (SHA-256, domain-separated by a leading byte):
#   empty subtree  = 32 zero bytes (at every height; nobody knows a preimage)
#   leaf           = SHA-256(0x00 || key(20) || balance(8) || nonce(8))   integers big-endian
#   internal node  = SHA-256(0x01 || left(32) || right(32))
# A subtree that holds exactly one leaf IS that leaf, at whatever depth (collapsed), so a path
# stops at the first node that is empty or a single leaf.
#
# Proof (bytes), siblings listed from the root down:
#   kind(1) depth(1) bitmap(ceil(depth/8)) siblings(32 each, one per set bitmap bit) tail
#   bitmap bit i (most significant bit of byte 0 first) set = the sibling at depth i is present;
#   clear = that sibling is the empty subtree and is not sent (most deep siblings are empty:
#   this keeps a proof at a million accounts near 700 bytes).
#   kind 0  inclusion:                       tail = balance(8) nonce(8)
#   kind 1  absent, path ends in emptiness:  no tail
#   kind 2  absent, path ends in another key's leaf: tail = that key(20) balance(8) nonce(8)
"""Sparse Merkle tree proof verification (pure, small, runs at 64K heap)."""

import hashlib

from .errors import ProofError

KEY_BYTES = 20  # 160-bit member IDs (DESIGN.md §2)
KEY_BITS = 160
HASH_BYTES = 32
EMPTY = b"\x00" * 32
INCLUSION = 0
ABSENT_EMPTY = 1
ABSENT_LEAF = 2
_VALUE_BYTES = 16  # balance(8) + nonce(8)
_MAX_PROOF = 2 + 20 + 160 * 32 + 20 + 16  # bytes: a full-depth path, bounds hostile input


def _hex(b):
    import binascii

    return binascii.hexlify(b).decode() if b is not None else "none"


def encode_value(balance, nonce):
    """The 16 bytes a leaf commits to; both fields are unsigned 64-bit."""
    if not (0 <= balance < 1 << 64 and 0 <= nonce < 1 << 64):
        raise ValueError("balance and nonce must fit in 64 unsigned bits")
    return balance.to_bytes(8, "big") + nonce.to_bytes(8, "big")


def leaf_hash(key, balance, nonce):
    h = hashlib.sha256(b"\x00")
    h.update(key)
    h.update(encode_value(balance, nonce))
    return h.digest()


def node_hash(left, right):
    h = hashlib.sha256(b"\x01")
    h.update(left)
    h.update(right)
    return h.digest()


def bit(key, depth):
    """The branch (0 left, 1 right) that key takes at depth."""
    return (key[depth >> 3] >> (7 - (depth & 7))) & 1


def parse(proof):
    """Split a proof into (kind, depth, bitmap, siblings_offset, tail); ProofError if malformed."""
    n = len(proof)
    if n < 2 or n > _MAX_PROOF:
        raise ProofError(f"malformed proof: {n} bytes")
    kind = proof[0]
    depth = proof[1]
    if kind > ABSENT_LEAF or depth > KEY_BITS or (kind == ABSENT_LEAF and depth >= KEY_BITS):
        raise ProofError(f"malformed proof: kind {kind} depth {depth}")
    map_len = (depth + 7) >> 3
    if n < 2 + map_len:
        raise ProofError("malformed proof: bitmap cut short")
    if depth & 7 and proof[1 + map_len] & (0xFF >> (depth & 7)):
        raise ProofError("malformed proof: bitmap padding bits set")
    present = 0
    for i in range(depth):
        present += (proof[2 + (i >> 3)] >> (7 - (i & 7))) & 1
    tail_len = (_VALUE_BYTES, 0, KEY_BYTES + _VALUE_BYTES)[kind]
    if n != 2 + map_len + present * HASH_BYTES + tail_len:
        raise ProofError(f"malformed proof: {n} bytes for {present} siblings")
    return kind, depth, 2 + map_len, 2 + map_len + present * HASH_BYTES


def verify(root, key, proof):
    """Check proof against root for key.

    Returns (balance, nonce) when the proof shows the account, None when it shows the account
    is absent. Raises ProofError (with .expected = root and .computed = the root the proof leads
    to, when it leads anywhere) if the proof is malformed or does not lead to root.
    """
    if len(key) != KEY_BYTES or len(root) != HASH_BYTES:
        raise ProofError("key must be 20 bytes and root 32", expected=root)
    proof = memoryview(proof)
    kind, depth, _siblings_at, tail = parse(proof)
    result = None
    if kind == INCLUSION:
        value = bytes(proof[tail:tail + _VALUE_BYTES])
        h = hashlib.sha256(b"\x00")
        h.update(key)
        h.update(value)
        node = h.digest()
        result = (int.from_bytes(value[:8], "big"), int.from_bytes(value[8:], "big"))
    elif kind == ABSENT_EMPTY:
        node = EMPTY
    else:
        other = bytes(proof[tail:tail + KEY_BYTES])
        h = hashlib.sha256(b"\x00")
        h.update(other)
        h.update(proof[tail + KEY_BYTES:tail + KEY_BYTES + _VALUE_BYTES])
        node = h.digest()
    # Walk up from the bottom; the siblings after the last one we used lie at end.
    end = tail
    for i in range(depth - 1, -1, -1):
        if (proof[2 + (i >> 3)] >> (7 - (i & 7))) & 1:
            end -= HASH_BYTES
            sibling = proof[end:end + HASH_BYTES]
        else:
            sibling = EMPTY
        h = hashlib.sha256(b"\x01")
        if bit(key, i):
            h.update(sibling)
            h.update(node)
        else:
            h.update(node)
            h.update(sibling)
        node = h.digest()
    if node != bytes(root):
        raise ProofError(f"proof leads to root {_hex(node)}, expected {_hex(bytes(root))}",
                         expected=bytes(root), computed=node)
    if kind == ABSENT_LEAF:
        # The other leaf must sit on key's path: share its first depth bits and differ.
        if other == bytes(key):
            raise ProofError("absence proof names the key itself", expected=bytes(root),
                             computed=node)
        for i in range(depth):
            if bit(other, i) != bit(key, i):
                raise ProofError("absence proof's leaf is off the key's path",
                                 expected=bytes(root), computed=node)
    return result


EPOCH_DOMAIN = b"leither-epoch/1"  # what the organization key signs epoch records under
# The member set is a tree of the same kind: leaf value = (joined_ms, role code), code = the
# role's index here + 1 (leither_host.ledger.members).
MEMBER_ROLES = ("guest", "member", "supervisor")


BOOKS_DOMAIN = b"leither-bookkeepers/1"  # what the organization key signs its bookkeepers under


def _check_quorum(record, books_data, org_key):
    """k of n: the organization's bookkeeper set record, then a quorum of distinct
    bookkeepers' signatures over the record (all but its "sigs")."""
    from . import cbor, crypto
    from .errors import AuthError

    if type(books_data) is not bytes:
        raise AuthError("epoch record is kept by bookkeepers: the bundle lacks their set")
    books = cbor.loads(books_data, max_depth=2, max_len=256, max_items=64)
    sig = books.pop("sig", b"")
    if books.get("type") != "bookkeepers" or \
            not crypto.verify(org_key, BOOKS_DOMAIN + cbor.dumps(books), sig):
        raise AuthError("bookkeeper set is not signed by the organization")
    keys = books["keys"]
    quorum = books["quorum"]
    if books["version"] != record["books"] or quorum != len(keys) // 2 + 1:
        raise AuthError("bookkeeper set does not match the record, or its quorum is no majority")
    sigs = record.pop("sigs", None) or []
    record.pop("sig", None)
    message = EPOCH_DOMAIN + cbor.dumps(record)
    good = []
    for item in sigs:
        index, sig = item[0], item[1]
        if type(index) is int and 0 <= index < len(keys) and index not in good and \
                crypto.verify(keys[index], message, sig):
            good.append(index)
            if len(good) >= quorum:
                return len(good)
    raise AuthError("epoch record has %d valid bookkeeper signatures, the quorum is %d of %d"
                    % (len(good), quorum, len(keys)))


def check_bundle(data, org_key):
    """Check a proof bundle (`leither ledger proof --out`) against the organization's key.

    A bundle is CBOR {org_key, record, member, key, proof, mproof[, books]}; record is the
    epoch record the organization signed (CBOR map with "root", "mroot", "epoch", "sig") or,
    for books kept by bookkeepers, the record a quorum of them signed ("sigs": [[index, sig]],
    "books": version; books = the set record the organization signed); proof proves the
    member's balance under root, mproof its membership under mroot. Returns {"epoch", "member",
    "balance", "nonce", "included", "role" (None: not a member), "joined"}; AuthError if the
    record is not signed by org_key, ProofError if a proof does not lead to the signed root.
    """
    from . import cbor, crypto
    from .errors import AuthError

    bundle = cbor.loads(data, max_depth=2, max_len=8192, max_items=16)
    if type(bundle) is not dict or bundle.get("org_key") != bytes(org_key):
        raise AuthError("proof bundle is not from this organization")
    # The member named is the one whose key is proven: a bundle relabelled to another member
    # must not report the first one's balance under the second one's name. (Checked first:
    # it costs a hash, the signatures below cost the most time and heap.)
    from . import ids

    key = bundle.get("key")
    if type(key) is not bytes or ids.id_raw(bundle.get("member") or "") != key:
        raise ProofError("bundle's member ID does not match its ledger key")
    record = cbor.loads(bundle["record"], max_depth=3, max_len=256, max_items=64)
    if "books" in record:
        _check_quorum(record, bundle.get("books"), org_key)
    else:
        sig = record.pop("sig", b"")
        if not crypto.verify(org_key, EPOCH_DOMAIN + cbor.dumps(record), sig):
            raise AuthError("epoch record is not signed by the organization")
    value = verify(record["root"], key, bundle["proof"])
    out = {"epoch": record["epoch"], "member": bundle["member"], "included": value is not None,
           "balance": value[0] if value else 0, "nonce": value[1] if value else 0,
           "role": None, "joined": 0}
    if "mroot" in record:
        # Membership and role, from the member tree whose root the record signs.
        mproof = bundle.get("mproof")
        if type(mproof) is not bytes:
            raise ProofError("bundle has no membership proof")
        found = verify(record["mroot"], key, mproof)
        if found is not None:
            if not 1 <= found[1] <= len(MEMBER_ROLES):
                raise ProofError("member leaf with an unknown role")
            out["role"] = MEMBER_ROLES[found[1] - 1]
            out["joined"] = found[0]
    return out
