# Pairing messages and key schedule (leither.pairing Initiator/Responder) driven in memory:
# both sides agree on secret, code and quotas; tampering, forged keys, replays and a broken
# commitment are refused; the partner record round-trips and rejects a mismatched ID.
from leither import cbor, crypto, ids, pairing, pairproto
from leither.errors import AuthError, DecodeError, PairingError

from testutil import raises, rmtree, tmpdir

MP_HEAP = "128K"  # Ed25519/X25519 big-int room on MicroPython (as test_rpc_handshake)

I_SEED = bytes(range(1, 33))
R_SEED = bytes(range(101, 133))
EVIL_SEED = bytes(range(201, 233))


def exchange(i_seed=I_SEED, r_seed=R_SEED, qi=1000, qr=2000):
    ini = pairproto.Initiator(i_seed, qi, crypto.sign_public(r_seed))
    resp = pairproto.Responder(r_seed, qr)
    hello = ini.hello()
    reply = resp.reply(hello, crypto.sign_public(i_seed))
    confirm = ini.confirm(reply)
    r_result, done = resp.finish(confirm)
    i_result = ini.finish(done)
    return i_result, r_result


def test_both_sides_agree():
    i_res, r_res = exchange()
    assert i_res["peer_key"] == crypto.sign_public(R_SEED)
    assert r_res["peer_key"] == crypto.sign_public(I_SEED)
    assert i_res["peer_id"] == ids.make_id(crypto.sign_public(R_SEED))
    assert r_res["peer_id"] == ids.make_id(crypto.sign_public(I_SEED))
    assert i_res["secret"] == r_res["secret"] and len(i_res["secret"]) == 32
    assert i_res["code"] == r_res["code"]
    assert i_res["tag"] == r_res["tag"] and len(i_res["tag"]) == 16
    assert len(i_res["code"]) == 6 and int(i_res["code"]) < 1000000
    assert i_res["quota_to_peer"] == 1000 and i_res["quota_from_peer"] == 2000
    assert r_res["quota_to_peer"] == 2000 and r_res["quota_from_peer"] == 1000


def test_fresh_secret_and_code_each_time():
    a, _ = exchange()
    b, _ = exchange()
    assert a["secret"] != b["secret"]
    # Codes are 6 digits from a hash: two runs colliding has chance 1e-6.
    assert a["code"] != b["code"]


def test_code_is_six_digits_of_transcript_hash():
    h3 = bytes(32)
    expected = int.from_bytes(crypto.sha256(b"leither-pair/1 code" + h3)[:4], "big") % 1000000
    assert pairproto.sas_code(h3) == "%06d" % expected


def test_hello_from_another_key_than_caller_refused():
    ini = pairproto.Initiator(EVIL_SEED, 1)
    resp = pairproto.Responder(R_SEED, 1)
    # The RPC session authenticated I_SEED's key; the hello names EVIL's.
    raises(AuthError, resp.reply, ini.hello(), crypto.sign_public(I_SEED))


def test_reply_from_another_key_than_node_refused():
    # I pinned R's key from the RPC session; EVIL answers with its own (valid) signature.
    ini = pairproto.Initiator(I_SEED, 1, crypto.sign_public(R_SEED))
    evil = pairproto.Responder(EVIL_SEED, 1)
    reply = evil.reply(ini.hello())
    raises(AuthError, ini.confirm, reply)


def test_forged_responder_signature_refused():
    ini = pairproto.Initiator(I_SEED, 1)
    resp = pairproto.Responder(R_SEED, 1)
    reply = resp.reply(ini.hello())
    # Claim R's key but sign with EVIL's: the signature does not verify.
    forged = dict(reply)
    forged["sig"] = crypto.sign(EVIL_SEED, b"leither-pair/1 responder" + bytes(32))
    raises(AuthError, ini.confirm, forged)


def test_tampered_reply_fields_refused():
    for field in ("eph", "nonce", "quota"):
        ini = pairproto.Initiator(I_SEED, 1)
        resp = pairproto.Responder(R_SEED, 5)
        reply = resp.reply(ini.hello())
        bad = dict(reply)
        if field == "quota":
            bad["quota"] = 10 ** 9  # a responder that lies about what it grants
        else:
            value = bytearray(reply[field])
            value[0] ^= 1
            bad[field] = bytes(value)
        raises(AuthError, ini.confirm, bad)


def test_tampered_hello_breaks_responder_signature():
    ini = pairproto.Initiator(I_SEED, 7)
    resp = pairproto.Responder(R_SEED, 1)
    hello = ini.hello()
    altered = dict(hello)
    altered["quota"] = 8  # a man in the middle raising the quota I grants
    reply = resp.reply(altered)
    raises(AuthError, ini.confirm, reply)


def test_confirm_checks_commitment_and_signature():
    ini = pairproto.Initiator(I_SEED, 1)
    resp = pairproto.Responder(R_SEED, 1)
    confirm = ini.confirm(resp.reply(ini.hello()))
    bad = dict(confirm)
    nonce = bytearray(confirm["nonce"])
    nonce[3] ^= 0x80
    bad["nonce"] = bytes(nonce)
    raises(AuthError, resp.finish, bad)
    # Single use: after a failure the exchange is over, even with the right message.
    raises(PairingError, resp.finish, confirm)

    ini = pairproto.Initiator(I_SEED, 1)
    resp = pairproto.Responder(R_SEED, 1)
    confirm = ini.confirm(resp.reply(ini.hello()))
    bad = dict(confirm)
    bad["sig"] = crypto.sign(EVIL_SEED, b"anything")
    raises(AuthError, resp.finish, bad)


def test_wrong_done_mac_refused():
    ini = pairproto.Initiator(I_SEED, 1)
    resp = pairproto.Responder(R_SEED, 1)
    confirm = ini.confirm(resp.reply(ini.hello()))
    _result, done = resp.finish(confirm)
    bad = {"mac": bytes(16)}
    raises(AuthError, ini.finish, bad)
    assert len(done["mac"]) == 16


def test_replayed_reply_from_old_session_refused():
    ini1 = pairproto.Initiator(I_SEED, 1)
    old = pairproto.Responder(R_SEED, 1).reply(ini1.hello())
    ini2 = pairproto.Initiator(I_SEED, 1)
    ini2.hello()
    raises(AuthError, ini2.confirm, old)  # signed over another hello


def test_malformed_messages_refused():
    resp = pairproto.Responder(R_SEED, 1)
    hello = pairproto.Initiator(I_SEED, 1).hello()
    for bad in (None, [], "x", {}, dict(hello, extra=1)):
        raises(DecodeError, pairproto.Responder(R_SEED, 1).reply, bad)
    for key, value in (("key", b"short"), ("eph", 5), ("quota", -1), ("quota", True),
                       ("v", 2), ("commit", bytes(31))):
        bad = dict(hello)
        bad[key] = value
        raises(DecodeError, pairproto.Responder(R_SEED, 1).reply, bad)
    resp.reply(hello)
    raises(PairingError, resp.reply, hello)  # one hello per exchange


def test_out_of_order_calls_refused():
    ini = pairproto.Initiator(I_SEED, 1)
    raises(PairingError, ini.confirm, {})
    raises(PairingError, ini.finish, {"mac": bytes(16)})
    ini.hello()
    raises(PairingError, ini.hello)
    raises(PairingError, pairproto.Responder(R_SEED, 1).finish, {})


def test_lost_done_falls_back_to_the_checked_result():
    # R answered PairConfirm but the answer never came: I's result, once R's PairCheck said
    # yes, is the one R saved (same secret, tag and code).
    ini = pairproto.Initiator(I_SEED, 1000, crypto.sign_public(R_SEED))
    resp = pairproto.Responder(R_SEED, 2000)
    confirm = ini.confirm(resp.reply(ini.hello(), crypto.sign_public(I_SEED)))
    r_result, _lost = resp.finish(confirm)
    assert ini.tag() == r_result["tag"]
    i_result = ini.finish(None)
    assert i_result["secret"] == r_result["secret"] and i_result["code"] == r_result["code"]
    assert i_result["peer_key"] == crypto.sign_public(R_SEED)
    raises(PairingError, ini.finish, None)  # single use
    raises(PairingError, ini.tag)
    raises(PairingError, pairproto.Initiator(I_SEED, 1).tag)  # nothing confirmed yet


def test_partner_record_round_trip():
    i_res, _ = exchange()
    record = dict(i_res, addr="10.0.0.2", port=4800, since=1795000000000)
    root = tmpdir("pair")
    try:
        assert pairing.load_partner(root) is None
        pairing.save_partner(root, record)
        back = pairing.load_partner(root)
        assert back == record
        pairing.remove_partner(root)
        assert pairing.load_partner(root) is None
        pairing.remove_partner(root)  # absent: no error
        # A record saved before tags existed still loads; a malformed tag does not.
        pairing.save_partner(root, dict(record, tag=None))
        assert pairing.load_partner(root)["tag"] is None
        pairing.save_partner(root, dict(record, tag=b"short"))
        assert pairing.load_partner(root, lambda line: None) is None
        # A record whose ID is not its key's, or garbage, is ignored with a log line.
        lines = []
        bad = dict(record, peer_id=ids.make_id(b"other"))
        with open(root + "/" + pairing.PAIR_FILE, "wb") as f:
            f.write(cbor.dumps(bad))
        assert pairing.load_partner(root, lines.append) is None
        with open(root + "/" + pairing.PAIR_FILE, "wb") as f:
            f.write(b"\xff\x00junk")
        assert pairing.load_partner(root, lines.append) is None
        assert len(lines) == 2 and "ignoring" in lines[0]
    finally:
        rmtree(root)


def test_quota_default():
    assert pairing.quota_default(1000) == 500
    assert pairing.quota_default(10 << 30) == pairing.QUOTA_CAP
    assert pairing.quota_default(-5) == 0
    assert pairing.quota_default(1000, {"pair_quota": 123}) == 123
    assert pairing.quota_default(1000, {"pair_quota": "lots"}) == 500
