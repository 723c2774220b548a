# The board's check of a proof bundle (leither.smtverify.check_bundle): the epoch record's
# signature, the member named is the member proven. Checking an Ed25519 signature builds the
# base-point comb table (~40 KB, leither.ed25519), so this module runs at 96K like
# test_receipt.py; the Merkle proof checks alone run at 64K (test_smtverify*.py).
from leither import smtverify
from leither.errors import ProofError

from testutil import raises, unhex

MP_HEAP = "96K"

# An epoch record of one account (alice: balance 900, nonce 1) signed by the organization key
# (seed bytes 1..32), made on the host: signing needs Ed25519's comb table, more than 64K holds
# beside a test; checking (what a board does) does not.
ORG_KEY = "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664"
RECORD = (
    "a5636f7267781c3252426f70414b53385472425235696f7a536a3354414a6f79556e6f637369675840d15e08b6"
    "c3b9cf87889c854c0cd9d7bca95e193564b027627ac42a103f6eb461d9c821d4e949c122110b20872778afc9a7"
    "d831d7f957c52b11552725e7123b0864726f6f7458203038eb24b50a1e52a8c9fac6ba80baac8fec3e79dee4d5"
    "8e3a600e16a19e13a564747970656565706f63686565706f636803"
)


def test_bundle_binds_member_to_key():
    # A bundle relabelled from one member to another must be refused, not reported as the
    # second member holding the first one's balance.
    from leither import cbor, ids
    from leither.errors import DecodeError

    org_key = unhex(ORG_KEY)
    alice = ids.make_id(b"alice-key")
    bob = ids.make_id(b"bob-key")
    bundle = {"org_key": org_key, "record": unhex(RECORD), "member": alice,
              "key": ids.id_raw(alice), "proof": b"\x00\x00" + smtverify.encode_value(900, 1)}
    got = smtverify.check_bundle(cbor.dumps(bundle), org_key)
    assert (got["member"], got["balance"]) == (alice, 900)
    bundle["member"] = bob
    err = raises(ProofError, smtverify.check_bundle, cbor.dumps(bundle), org_key)
    assert "does not match" in str(err)
    bundle["member"] = "not-an-id"
    raises((ProofError, DecodeError), smtverify.check_bundle, cbor.dumps(bundle), org_key)


# Epoch 4 of the same organization, signing also the member tree's root: alice is its one
# member, a supervisor (role code 3) since 2000.
RECORD_MEMBERS = (
    "a6636f7267781c3252426f70414b53385472425235696f7a536a3354414a6f79556e6f63736967584056bdf260"
    "ca37176cc915cfccd7c07d244b02a11018fb86f54da31693f64dc2bd39669f0b9279f8fb292ebf2b16b5981178"
    "aacfbfa00b03f7e2ed86edacf0b50564726f6f7458203038eb24b50a1e52a8c9fac6ba80baac8fec3e79dee4d5"
    "8e3a600e16a19e13a564747970656565706f63686565706f636804656d726f6f745820c350ed43e4e650596a84"
    "2461b919db0d4b98450b2e87fa73387ca81f2dbb4e2c"
)


def test_bundle_proves_membership_and_role():
    from leither import cbor, ids

    org_key = unhex(ORG_KEY)
    alice = ids.make_id(b"alice-key")
    key = ids.id_raw(alice)
    bundle = {"org_key": org_key, "record": unhex(RECORD_MEMBERS), "member": alice, "key": key,
              "proof": b"\x00\x00" + smtverify.encode_value(900, 1),
              "mproof": b"\x00\x00" + smtverify.encode_value(2000, 3)}
    got = smtverify.check_bundle(cbor.dumps(bundle), org_key)
    assert (got["role"], got["joined"], got["balance"]) == ("supervisor", 2000, 900)
    bundle["mproof"] = b"\x00\x00" + smtverify.encode_value(2000, 2)  # claims another role
    raises(ProofError, smtverify.check_bundle, cbor.dumps(bundle), org_key)
    del bundle["mproof"]
    err = raises(ProofError, smtverify.check_bundle, cbor.dumps(bundle), org_key)
    assert "membership" in str(err)
