# The board's ledger proof verifier (leither.smtverify) accepts the proofs the host produces and
# refuses altered ones. The vectors below were made by leither_host.ledger.smt for a tree of 100
# accounts (key = SHA-256("member<i>")[:20], balance = 1000*i, nonce = i);
# tests/host/test_ledger_smt.py checks the host still produces exactly these bytes.
import hashlib

from leither import smtverify
from leither.errors import ProofError

from testutil import raises, unhex

# Passes from 52K (its code and ours sit in the unix port's heap); 20% headroom so a
# shifted heap layout cannot fail it (ci/mp_heap_margin.py). The board's own proof check
# runs at 64K: bench/ledger.py measures it.
MP_HEAP = "80K"

ROOT = "997a1f08ab4febbc037d3cdc79d81fe62e2154bad5d723db7f7ee5ae01e9bd63"
PROOF_MEMBER3 = (
    "0008fdc4cbedfd399d700d888ac502192be012f56e2f21c005e11984404d65a8463f48880918360ea71b89c7"
    "904601b8e5c6fdf2a4e546b529704676777d46c2c40ecd3eb668f23f66721fc7ef0b58ea6692a193e729a5d7"
    "b14f43eba2a6a819ad0764040312a30165fbe20cbc9aa0fb7b2681044647007590e440a163ad0fffad2bb3ae"
    "c1ded64903ee63d89aca552a16dbc9c55973278a33bd796c3eea35117c32911061d5980afa8da49c28c02a1a"
    "59026ca902cc5d2c15433b374cea9124ff2e0ce8386f265c9781a645b4f07d3f9d7074988a250e4fc38b7856"
    "5c44c11e550f520000000000000bb80000000000000003"
)
PROOF_ABSENT0 = (
    "0204f0be5cc604791a7361f5f0faf09cb066e166eb2a4155ac8691594d4da306dba6249d74ecb181503648ca"
    "968c5d440a8e3712769534ea7b75719ab82306d559d314234dc1572174c5b508bd1ca7dd267b7da39f498577"
    "7b3e17b674d8243d306bf0139d1549bee8ebb996ea5242a9a4ba56f14911353953971852918ae7b3e1e80755"
    "600f1d498f9577143b6831dcf45dc78db921cc00000000000105b80000000000000043"
)
PROOF_ABSENT2 = (
    "0107fec4cbedfd399d700d888ac502192be012f56e2f21c005e11984404d65a8463f48295ad76618efec33c9"
    "36bd6c976baa1d81ae7bc85bb3f6d4397bca984653b459959b49c617252e23bfef7dc5dc0d376e79c37c595f"
    "641472ed00b4e4dc160b51f0423bd1fabb53f1d9cf7668a13f096d7f6d703f9fe7982b03fa31966cd83b6d98"
    "bca8985482c02d5ece6aec7b9412873d2b70f94ade7f932f2272db301c32cddce5f9c0c089371074e73b9384"
    "bac6ca3558beefe2b82a3f33859e3755de95f6788a7ee3bcd485ba35b9446c850dc0ea885db5083902833325"
    "e159e41631bc10"
)


def _key(tag):
    return hashlib.sha256(tag).digest()[:20]


def _reference_root(leaves, lo, hi, depth):
    # The definition, by recursion: leaves[lo:hi] (sorted by key) all share the first `depth`
    # bits, so the ones going left come first. Index ranges, not list copies: this runs at 64K
    # on MicroPython whatever the heap's fragmentation after the tests before it.
    if lo == hi:
        return smtverify.EMPTY
    if hi - lo == 1:
        k, b, n = leaves[lo]
        return smtverify.leaf_hash(k, b, n)
    mid = lo
    while mid < hi and not smtverify.bit(leaves[mid][0], depth):
        mid += 1
    return smtverify.node_hash(_reference_root(leaves, lo, mid, depth + 1),
                               _reference_root(leaves, mid, hi, depth + 1))


def test_root_from_definition():
    leaves = sorted((_key(b"member%d" % i), 1000 * i, i) for i in range(100))
    assert _reference_root(leaves, 0, len(leaves), 0) == unhex(ROOT)


def test_inclusion():
    assert smtverify.verify(unhex(ROOT), _key(b"member3"), unhex(PROOF_MEMBER3)) == (3000, 3)


def test_absence_both_kinds():
    root = unhex(ROOT)
    p0 = unhex(PROOF_ABSENT0)
    p2 = unhex(PROOF_ABSENT2)
    assert p0[0] == smtverify.ABSENT_LEAF and p2[0] == smtverify.ABSENT_EMPTY
    assert smtverify.verify(root, _key(b"absent0"), p0) is None
    assert smtverify.verify(root, _key(b"absent2"), p2) is None


def test_every_altered_byte_fails():
    root = unhex(ROOT)
    key = _key(b"member3")
    proof = unhex(PROOF_MEMBER3)
    for i in range(len(proof)):
        bad = bytearray(proof)
        bad[i] ^= 0x01 if i != 1 else 0x80  # depth byte: jump far, a bit flip may still parse
        err = raises(ProofError, smtverify.verify, root, key, bytes(bad))
        if err.computed is not None:
            assert err.expected == root and err.computed != root


def test_wrong_key_or_root_fails():
    root = unhex(ROOT)
    err = raises(ProofError, smtverify.verify, root, _key(b"member4"), unhex(PROOF_MEMBER3))
    assert err.expected == root
    other_root = bytes(31) + b"\x01"
    err = raises(ProofError, smtverify.verify, other_root, _key(b"member3"), unhex(PROOF_MEMBER3))
    assert err.expected == other_root and err.computed == root
    # An absence proof cannot deny a member that exists.
    raises(ProofError, smtverify.verify, root, _key(b"member3"), unhex(PROOF_ABSENT2))


def test_truncated_and_oversized():
    root = unhex(ROOT)
    key = _key(b"member3")
    proof = unhex(PROOF_MEMBER3)
    for n in (0, 1, 2, 5, len(proof) - 1):
        raises(ProofError, smtverify.verify, root, key, proof[:n])
    raises(ProofError, smtverify.verify, root, key, proof + b"\x00")
    raises(ProofError, smtverify.verify, root, key, b"\x00\xff" + bytes(6000))

