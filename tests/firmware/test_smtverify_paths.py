# The board's ledger verifier, the rules a forger would probe: an absence proof's other leaf
# must lie on the key's whole path, the last bit included. (Apart from test_smtverify.py: that
# module's 100-leaf tree already fills most of a 64K heap.)
from leither import smtverify
from leither.errors import ProofError

from testutil import raises


def _root_on_path(key, depth, node):
    # The root reached from node at `depth` on key's path with every sibling empty.
    for i in range(depth - 1, -1, -1):
        if smtverify.bit(key, i):
            node = smtverify.node_hash(smtverify.EMPTY, node)
        else:
            node = smtverify.node_hash(node, smtverify.EMPTY)
    return node

def test_absence_leaf_must_share_the_whole_path():
    # A root built (by a forger, not by the host) with another key's leaf sitting at depth d on
    # key's path. The hashes all check out; only the path rule refuses the proof: the other key
    # must take key's branch at every depth above d, the last one (d - 1) included.
    key = bytes(19) + b"\x00"
    for depth in (1, 5, 8, 12):
        for off_at in (0, depth - 1):  # first bit and the last bit of the path
            other = bytearray(key)
            other[off_at >> 3] ^= 0x80 >> (off_at & 7)
            other[19] |= 1  # differs from key anyway, also below depth
            other = bytes(other)
            leaf = smtverify.leaf_hash(other, 5, 1)
            root = _root_on_path(key, depth, leaf)
            proof = bytes((smtverify.ABSENT_LEAF, depth)) + bytes((depth + 7) >> 3) + \
                other + smtverify.encode_value(5, 1)
            err = raises(ProofError, smtverify.verify, root, key, proof)
            assert "off the key's path" in str(err)
        # The same leaf on the path (differing only below depth) is a valid absence proof.
        other = key[:19] + b"\x01"
        root = _root_on_path(key, depth, smtverify.leaf_hash(other, 5, 1))
        proof = bytes((smtverify.ABSENT_LEAF, depth)) + bytes((depth + 7) >> 3) + other + \
            smtverify.encode_value(5, 1)
        assert smtverify.verify(root, key, proof) is None


def test_relabelled_bundle_refused_before_any_signature_check():
    # At 64K: the member/key binding is checked first (a hash), before the record's Ed25519
    # signature (which needs ~40 KB more); test_smtverify_bundle.py checks signed bundles.
    from leither import cbor, ids

    alice = ids.make_id(b"alice-key")
    bundle = {"org_key": bytes(32), "record": b"\xa0", "member": ids.make_id(b"bob-key"),
              "key": ids.id_raw(alice), "proof": b"\x00\x00" + smtverify.encode_value(1, 1)}
    err = raises(ProofError, smtverify.check_bundle, cbor.dumps(bundle), bytes(32))
    assert "does not match" in str(err)
