# The real sparse Merkle tree agrees with the reference on every root, over random operation
# sequences; every proof it makes verifies; every altered proof is refused with a ProofError that
# names the expected and the computed root.
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leither import smtverify
from leither.errors import ProofError
from leither_host.ledger.smt import EMPTY, SMT

import smt_reference

# A small key space with shared prefixes so collapsing, splitting and deep paths all happen.
PREFIXES = [bytes(19), b"\xff" * 19, b"\x80" + bytes(18), os.urandom(19)]
keys = st.builds(lambda p, last: p + bytes([last]), st.sampled_from(PREFIXES),
                 st.integers(0, 255)) | st.binary(min_size=20, max_size=20)
values = st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
batch = st.dictionaries(keys, st.none() | values, max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.lists(batch, min_size=1, max_size=6))
def test_roots_agree_with_reference(batches):
    tree = SMT()
    accounts: dict = {}
    for changes in batches:
        root = tree.apply(changes)
        for k, v in changes.items():
            if v is None:
                accounts.pop(k, None)
            else:
                accounts[k] = v
        assert root == smt_reference.root(accounts)
        assert sorted(accounts.items()) == [(k, (b, n)) for k, b, n in tree.items()]
    for k in list(accounts)[:5] + [os.urandom(20), PREFIXES[0] + b"\x07"]:
        proof = tree.prove(k)
        assert smtverify.verify(root, k, proof) == accounts.get(k)
        assert tree.get(k) == accounts.get(k)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(keys, values, min_size=0, max_size=20), keys, st.data())
def test_altered_proofs_fail(accounts, key, data):
    tree = SMT()
    root = tree.apply(dict(accounts))
    proof = tree.prove(key)
    assert smtverify.verify(root, key, proof) == accounts.get(key)
    # Flip one bit anywhere: the proof must be refused.
    pos = data.draw(st.integers(0, len(proof) * 8 - 1))
    bad = bytearray(proof)
    bad[pos >> 3] ^= 0x80 >> (pos & 7)
    with pytest.raises(ProofError) as err:
        smtverify.verify(root, key, bytes(bad))
    if err.value.computed is not None:
        assert err.value.expected == root and err.value.computed != root
        assert root.hex() in str(err.value) and err.value.computed.hex() in str(err.value)
    # The right proof for the wrong root, and for another key, fail too.
    with pytest.raises(ProofError) as err:
        smtverify.verify(bytes(32) if root != EMPTY else b"\x01" * 32, key, proof)
    assert err.value.expected is not None and err.value.computed == root


def test_proof_for_one_key_does_not_prove_another():
    tree = SMT()
    a, b = b"\x00" * 20, b"\x00" * 19 + b"\x01"
    c = b"\x80" + bytes(19)
    root = tree.apply({a: (5, 1), c: (7, 0)})
    proof_a = tree.prove(a)
    with pytest.raises(ProofError):
        smtverify.verify(root, c, proof_a)  # inclusion of a is not inclusion of c
    # b is absent: the path ends at a's leaf (they share 159 bits, c sits apart).
    absent = tree.prove(b)
    assert absent[0] == smtverify.ABSENT_LEAF and smtverify.verify(root, b, absent) is None
    with pytest.raises(ProofError):
        smtverify.verify(root, a, absent)  # "absent" proof cannot deny a present key


def test_empty_and_single_leaf_roots():
    tree = SMT()
    assert tree.root_hash() == EMPTY
    k = os.urandom(20)
    root = tree.apply({k: (1, 2)})
    assert root == smt_reference.leaf(k, 1, 2)  # a one-leaf tree is its leaf (collapsed)
    assert smtverify.verify(root, k, tree.prove(k)) == (1, 2)
    assert tree.apply({k: None}) == EMPTY
    assert smtverify.verify(EMPTY, k, tree.prove(k)) is None


def test_values_out_of_range_refused():
    tree = SMT()
    with pytest.raises(ValueError):
        tree.apply({bytes(20): (-1, 0)})
    with pytest.raises(ValueError):
        tree.apply({bytes(20): (2**64, 0)})
