# RPC handshake (leither.rpc) with both sides driven in memory: mutual authentication, node ID
# pinning, tampering and man-in-the-middle attempts, and the session keys that come out of it.
from leither import cbor, crypto, ids, rpc
from leither.errors import AuthError, DecodeError

from testutil import raises

MP_HEAP = "128K"  # Ed25519/X25519 in pure Python on MicroPython need big-int room

CLIENT_SEED = bytes(range(1, 33))
NODE_SEED = bytes(range(101, 133))
OTHER_SEED = bytes(range(201, 233))


def handshake(client_seed=CLIENT_SEED, node_seed=NODE_SEED, role="guest", expected=None):
    """Run the four messages; return (client side, server side, server channel)."""
    client = rpc.ClientHandshake(client_seed, expected)
    server = rpc.ServerHandshake(node_seed)
    msg2 = server.respond(client.hello())
    msg3 = client.reply(msg2)
    server.verify(msg3)
    channel, msg4 = server.accept(role, 4096)
    client.finish(msg4)
    return client, server, channel


def flip(data, index):
    bad = bytearray(data)
    bad[index] ^= 0x01
    return bytes(bad)


def test_mutual_authentication():
    client, server, channel = handshake(role="owner")
    node_key = crypto.sign_public(NODE_SEED)
    assert client.node_key == node_key
    assert client.node_id == ids.make_id(node_key)
    assert server.client_key == crypto.sign_public(CLIENT_SEED)
    assert client.role == "owner" and client.max_frame == 4096
    # The keys agree, one pair per direction.
    request = rpc.encode_request(1, "GetVar", "id")
    got = rpc.decode_request(channel.open(client.channel.seal(request)))
    assert got == (1, "GetVar", "id")
    reply = rpc.encode_result(1, client.node_id)
    got = rpc.decode_reply(client.channel.open(channel.seal(reply)))
    assert got == (1, True, client.node_id)


def test_sessions_have_fresh_keys():
    first = handshake()[2].seal(b"\x01")
    second = handshake()[2].seal(b"\x01")
    assert first != second  # fresh ephemeral keys: a frame from one session is noise in another


def test_pinned_node_id():
    node_id = ids.make_id(crypto.sign_public(NODE_SEED))
    client, _, _ = handshake(expected=node_id)
    assert client.node_id == node_id
    other_id = ids.make_id(crypto.sign_public(OTHER_SEED))
    err = raises(AuthError, handshake, expected=other_id)
    assert "expected" in str(err)


def test_tampered_node_message_rejected():
    client = rpc.ClientHandshake(CLIENT_SEED)
    msg2 = rpc.ServerHandshake(NODE_SEED).respond(client.hello())
    raises(AuthError, client.reply, flip(msg2, len(msg2) - 1))  # signature byte
    for index in (5, 40):  # a byte of E_s, a byte of P_s
        client = rpc.ClientHandshake(CLIENT_SEED)
        msg2 = rpc.ServerHandshake(NODE_SEED).respond(client.hello())
        raises(AuthError, client.reply, flip(msg2, index))


def test_node_signature_binds_the_client_hello():
    # A message 2 made for another client's hello does not verify (no replay of message 2).
    client_a = rpc.ClientHandshake(CLIENT_SEED)
    client_b = rpc.ClientHandshake(CLIENT_SEED)
    client_a.hello()
    msg2_for_b = rpc.ServerHandshake(NODE_SEED).respond(client_b.hello())
    raises(AuthError, client_a.reply, msg2_for_b)


def test_tampered_client_message_rejected():
    client = rpc.ClientHandshake(CLIENT_SEED)
    server = rpc.ServerHandshake(NODE_SEED)
    msg3 = client.reply(server.respond(client.hello()))
    raises(AuthError, server.verify, flip(msg3, 10))
    raises(AuthError, server.verify, msg3)  # a failed handshake stays failed


def test_client_claiming_someone_elses_key_rejected():
    # The client signs with its own seed but announces another public key.
    client = rpc.ClientHandshake(CLIENT_SEED)
    client._pub = crypto.sign_public(OTHER_SEED)
    server = rpc.ServerHandshake(NODE_SEED)
    msg3 = client.reply(server.respond(client.hello()))
    err = raises(AuthError, server.verify, msg3)
    assert "signature" in str(err)


def test_identity_misbinding_fails():
    # A man in the middle M relays the node's key share under its own identity. The client
    # then believes it talks to M; the node must not accept the client's message 3.
    client = rpc.ClientHandshake(CLIENT_SEED)
    node = rpc.ServerHandshake(NODE_SEED)
    msg1 = client.hello()
    eph_s, _, _ = cbor.loads(node.respond(msg1))
    m_key = crypto.sign_public(OTHER_SEED)
    h2 = rpc._hash(rpc._hash(rpc._hash(rpc._LABEL), msg1), eph_s, m_key)
    forged = cbor.dumps([eph_s, m_key, crypto.sign(OTHER_SEED, rpc._SERVER_SIG + h2)])
    msg3 = client.reply(forged)
    assert client.node_id == ids.make_id(m_key)  # the client sees M (pinning would refuse)
    raises(AuthError, node.verify, msg3)


def test_wrong_confirmation_rejected():
    client = rpc.ClientHandshake(CLIENT_SEED)
    server = rpc.ServerHandshake(NODE_SEED)
    server.verify(client.reply(server.respond(client.hello())))
    _, msg4 = server.accept("guest", 4096)
    raises(AuthError, client.finish, flip(msg4, 3))
    # message 4 of another session
    _, _, other = handshake()
    client2 = rpc.ClientHandshake(CLIENT_SEED)
    server2 = rpc.ServerHandshake(NODE_SEED)
    server2.verify(client2.reply(server2.respond(client2.hello())))
    raises(AuthError, client2.finish, other.seal(cbor.dumps(["ok", "owner", 4096])))


def test_bad_hello_rejected():
    eph = bytes(32)
    for msg in ([rpc.PROTOCOL, 2, eph], ["other", 1, eph], [rpc.PROTOCOL, 1, eph[:31]],
                [rpc.PROTOCOL, True, eph], [rpc.PROTOCOL, 1], {"a": 1}):
        raises(DecodeError, rpc.ServerHandshake(NODE_SEED).respond, cbor.dumps(msg))
    raises(DecodeError, rpc.ServerHandshake(NODE_SEED).respond, b"\xff\x00")


def test_node_refusal_is_reported():
    client = rpc.ClientHandshake(CLIENT_SEED)
    client.hello()
    err = raises(AuthError, client.reply, cbor.dumps(["error", "bad_hello", "old version"]))
    assert "old version" in str(err)


def test_busy_in_place_of_message_4_is_busy():
    # A node out of heap half-way through the handshake says "busy" where message 4 goes.
    from leither.errors import RPCError

    for code, kind in (("busy", RPCError), ("bad_hello", AuthError)):
        client = rpc.ClientHandshake(CLIENT_SEED)
        server = rpc.ServerHandshake(NODE_SEED)
        server.verify(client.reply(server.respond(client.hello())))
        err = raises(kind, client.finish, cbor.dumps(["error", code, "short of memory"]))
        assert "short of memory" in str(err)
        assert client.channel is None
        raises(AuthError, client.finish, b"\x80")  # single use: the handshake is over
    # A real message 4 that starts like one still opens (the check reads its head only).
    client, _, _ = handshake(role="owner")
    assert client.role == "owner"


def test_out_of_order_calls_refused():
    client = rpc.ClientHandshake(CLIENT_SEED)
    raises(AuthError, client.reply, b"\x80")
    raises(AuthError, client.finish, b"\x80")
    server = rpc.ServerHandshake(NODE_SEED)
    raises(AuthError, server.verify, b"\x80")
    raises(AuthError, server.accept, "guest", 100)
