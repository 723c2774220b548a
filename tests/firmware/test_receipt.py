# Receipts (leither.receipt) made by one node verify anywhere; any change to a signed receipt,
# a forged issuer or a malformed encoding is refused. Runs on both interpreters.
from leither import cbor, crypto, ids, receipt
from leither.errors import AuthError, DecodeError, QuotaError

from testutil import raises

# Ed25519 in pure Python (leither.ed25519) builds its comb table on first use: ~40 KB of heap
# beyond the modules, so signing does not fit beside the test at 64K; a node has ~100 KB.
MP_HEAP = "96K"
SEED = bytes(range(32))
PARTNER = ids.make_id(crypto.sign_public(bytes(32)))


def _one():
    return receipt.make(SEED, PARTNER, 1000, 3601000, stored=4096 * 10, served=777,
                        audits_ok=3, audits_failed=1)


def test_make_and_verify():
    data = _one()
    r = receipt.verify(data)
    assert r["issuer"] == ids.make_id(crypto.sign_public(SEED))
    assert r["partner"] == PARTNER and r["start"] == 1000 and r["end"] == 3601000
    assert (r["stored"], r["served"], r["audits_ok"], r["audits_failed"]) == (40960, 777, 3, 1)
    assert len(receipt.receipt_id(data)) == 32
    assert len(data) < receipt.MAX_RECEIPT


def test_changed_field_fails_signature():
    r = cbor.loads(_one())
    r["served"] = 778
    raises(AuthError, receipt.verify, cbor.dumps(r))


def test_forged_issuer_fails():
    r = cbor.loads(_one())
    r["issuer"] = PARTNER[:-1] + ("2" if PARTNER[-1] != "2" else "3")
    err = raises(Exception, receipt.verify, cbor.dumps(r))
    assert isinstance(err, (AuthError, DecodeError))


def test_malformed_refused():
    data = _one()
    raises(DecodeError, receipt.verify, data[:-1])
    raises(DecodeError, receipt.verify, data + b"\x00")
    raises(DecodeError, receipt.verify, cbor.dumps([1, 2, 3]))
    raises(DecodeError, receipt.verify, bytes(600))
    r = cbor.loads(data)
    del r["audits_ok"]
    raises(DecodeError, receipt.verify, cbor.dumps(r))
    raises(DecodeError, receipt.make, SEED, PARTNER, 5000, 5000)  # empty period
    raises(DecodeError, receipt.make, SEED, PARTNER, 0, 10, stored=-1)
    me = ids.make_id(crypto.sign_public(SEED))
    raises(DecodeError, receipt.make, SEED, me, 0, 10)  # no receipts for oneself


def test_credit_check():
    assert receipt.check_credit(100, 40, 60) == 0
    err = raises(QuotaError, receipt.check_credit, 100, 40, 61, "node-x")
    assert "credit line exhausted" in str(err) and "node-x" in str(err)


def test_epoch_proof_bundle_checks_offline():
    # A one-account ledger: the root is the leaf; the organization signs the epoch record.
    from leither import smtverify

    org_seed = bytes(range(1, 33))
    org_key = crypto.sign_public(org_seed)
    key = ids.id_raw(PARTNER)
    root = smtverify.leaf_hash(key, 1234, 2)
    body = {"type": "epoch", "org": ids.make_id(org_key), "epoch": 7, "root": root}
    body["sig"] = crypto.sign(org_seed, smtverify.EPOCH_DOMAIN + cbor.dumps(body))
    proof = b"\x00\x00" + smtverify.encode_value(1234, 2)
    bundle = {"org_key": org_key, "record": cbor.dumps(body), "member": PARTNER, "key": key,
              "proof": proof}
    got = smtverify.check_bundle(cbor.dumps(bundle), org_key)
    assert (got["epoch"], got["balance"], got["nonce"], got["included"]) == (7, 1234, 2, True)
    bundle["proof"] = b"\x00\x00" + smtverify.encode_value(1235, 2)  # claims more than signed
    from leither.errors import ProofError
    raises(ProofError, smtverify.check_bundle, cbor.dumps(bundle), org_key)
    raises(AuthError, smtverify.check_bundle, cbor.dumps(bundle), crypto.sign_public(SEED))
    body["epoch"] = 8  # a record altered after signing
    bundle["record"] = cbor.dumps(body)
    bundle["proof"] = proof
    raises(AuthError, smtverify.check_bundle, cbor.dumps(bundle), org_key)
