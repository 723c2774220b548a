# RPC frame codec and sealed channel (leither.rpc): bounds, message shapes, and that a replayed,
# reordered, dropped, truncated, reflected or altered frame never opens.
from leither import cbor, crypto, rpc
from leither.errors import AuthError, DecodeError

from testutil import raises, random_bytes

MP_HEAP = "96K"  # leither.crypto (Ed25519, X25519, SHA-512) and cbor take ~46 KB to import

K1 = bytes(range(16))
M1 = bytes(range(32, 64))
K2 = bytes(range(100, 116))
M2 = bytes(range(200, 232))


def pair():
    """Two ends of one sealed channel (a sends with K1/M1, b with K2/M2)."""
    return rpc.Channel(K1, M1, K2, M2), rpc.Channel(K2, M2, K1, M1)


def test_header_roundtrip_and_bounds():
    assert rpc.frame_header(1) == b"\x00\x00\x00\x01"
    assert rpc.frame_header(65536) == b"\x00\x01\x00\x00"
    assert rpc.parse_header(b"\x00\x00\x01\x00", 256) == 256
    err = raises(DecodeError, rpc.parse_header, b"\x00\x00\x01\x01", 256)
    assert "limit" in str(err)
    raises(DecodeError, rpc.parse_header, b"\x00\x00\x00\x00", 256)  # empty frame
    raises(DecodeError, rpc.parse_header, b"\xff\xff\xff\xff", rpc.MAX_FRAME)
    raises(DecodeError, rpc.parse_header, b"\x00\x00\x01", 256)  # short header
    raises(DecodeError, rpc.frame_header, 0)


def test_split_frame():
    body = cbor.dumps([1, "Ping", None])
    data = rpc.encode_frame(body) + b"rest"
    got, rest = rpc.split_frame(data, 64)
    assert got == body and bytes(rest) == b"rest"
    raises(DecodeError, rpc.split_frame, data[:7], 64)  # truncated body
    raises(DecodeError, rpc.split_frame, data, 4)  # over the limit


def test_request_shapes():
    body = rpc.encode_request(7, "GetVar", "id")
    assert rpc.decode_request(body) == (7, "GetVar", "id")
    assert rpc.decode_request(rpc.encode_request(rpc.MAX_MSGID, "x", [b"\x00"]))[0] == 0xFFFFFFFF
    bad = [
        cbor.dumps({"a": 1}),  # not an array
        cbor.dumps([1, "m"]),  # two items
        cbor.dumps([1, "m", None, 4]),  # four items
        cbor.dumps([-1, "m", None]),  # negative msgid
        cbor.dumps([1 << 32, "m", None]),  # msgid over uint32
        cbor.dumps([True, "m", None]),  # bool msgid
        cbor.dumps(["1", "m", None]),  # text msgid
        cbor.dumps([1, "", None]),  # empty method
        cbor.dumps([1, "m" * 65, None]),  # method too long
        cbor.dumps([1, b"m", None]),  # bytes method
        cbor.dumps([1, "m", None]) + b"\x00",  # trailing byte
        b"\x83\x01",  # truncated
    ]
    for body in bad:
        raises(DecodeError, rpc.decode_request, body)


def test_reply_shapes():
    assert rpc.decode_reply(rpc.encode_result(3, {"a": b"x"})) == (3, True, {"a": b"x"})
    msgid, ok, err = rpc.decode_reply(rpc.encode_error(4, "forbidden", "no"))
    assert (msgid, ok, err) == (4, False, {"code": "forbidden", "msg": "no"})
    for body in (cbor.dumps([1, 2, None]), cbor.dumps([1, 1, {"code": "x"}]),
                 cbor.dumps([1, 1, "oops"]), cbor.dumps([1, False, 3]),
                 cbor.dumps([1, 1, {"code": 1, "msg": "m"}])):
        raises(DecodeError, rpc.decode_reply, body)


def test_channel_roundtrip_both_ways():
    a, b = pair()
    for i in range(5):
        msg = cbor.dumps([i, "Ping", random_bytes(i * 37, seed=i)])
        sealed = a.seal(msg)
        assert len(sealed) == len(msg) + rpc.TAG_LEN
        assert msg not in sealed or len(msg) < 4
        opened = b.open(sealed)
        assert opened == msg
        back = b.seal(msg)
        assert back != sealed  # other direction, other keys
        opened = a.open(back)
        assert opened == msg
    assert a.sent == 5 and a.received == 5


def test_channel_construction():
    # Frame n: AES-128-CTR with iv = n (8 bytes BE) || 0 (8 bytes), tag = HMAC(n || ct)[:16].
    a, _ = pair()
    a.seal(b"\x01")
    for i, msg in enumerate((b"hello, sealed world", random_bytes(700, seed=7))):
        sealed = a.seal(msg)  # 700 bytes: crosses the board's 256-byte keystream batches
        n = b"\x00" * 7 + bytes((i + 1,))
        ct = crypto.CTR(K1, n + bytes(8)).crypt(msg)
        assert sealed == ct + crypto.hmac_sha256(M1, n + ct)[:16]


def test_in_place_sealing():
    a, b = pair()
    ref_a, _ = pair()
    msg = cbor.dumps([5, 0, random_bytes(300, seed=5)])
    frame = bytearray(rpc.HEADER_LEN + len(msg) + rpc.TAG_LEN + 10)  # room to spare
    frame[rpc.HEADER_LEN:rpc.HEADER_LEN + len(msg)] = msg
    size = a.seal_into(frame, len(msg))
    assert size == rpc.HEADER_LEN + len(msg) + rpc.TAG_LEN
    assert bytes(frame[:size]) == rpc.encode_frame(ref_a.seal(msg))
    body = bytearray(frame[rpc.HEADER_LEN:size])
    plain = b.open_inplace(body)
    assert bytes(plain) == msg
    raises(AuthError, b.open_inplace, bytearray(frame[rpc.HEADER_LEN:size]))  # replay


def test_replay_rejected():
    a, b = pair()
    first = a.seal(b"\x01")
    opened = b.open(first)
    assert opened == b"\x01"
    raises(AuthError, b.open, first)


def test_reorder_and_drop_rejected():
    a, b = pair()
    one, two = a.seal(b"\x01"), a.seal(b"\x02")
    raises(AuthError, b.open, two)  # two before one
    a2, b2 = pair()
    a2.seal(b"\x01")  # dropped on the way
    raises(AuthError, b2.open, a2.seal(b"\x02"))
    # After a failure the channel stays dead: the good frame no longer opens either.
    raises(AuthError, b.open, one)


def test_truncation_rejected():
    a, _ = pair()
    sealed = a.seal(cbor.dumps([1, "Ping", b"x" * 40]))
    for cut in (1, 2, 15, 16, len(sealed) - 17):
        _, b = pair()
        raises(AuthError, b.open, sealed[:-cut])
    _, b = pair()
    raises(DecodeError, b.open, sealed[:16])  # not even a tag and one byte
    raises(DecodeError, b.open, b"")


def test_every_bit_flip_rejected():
    a, _ = pair()
    sealed = a.seal(cbor.dumps([1, "GetVar", "id"]))
    for i in range(len(sealed) * 8):
        bad = bytearray(sealed)
        bad[i // 8] ^= 1 << (i % 8)
        _, b = pair()
        raises(AuthError, b.open, bytes(bad))
    _, b = pair()
    opened = b.open(sealed)
    assert opened == cbor.dumps([1, "GetVar", "id"])


def test_reflection_and_wrong_key_rejected():
    a, _ = pair()
    sealed = a.seal(b"\x01")
    raises(AuthError, a.open, sealed)  # our own frame sent back to us
    other = rpc.Channel(K1, M1, K1, bytes(32))  # right cipher key, wrong MAC key
    raises(AuthError, other.open, sealed)


def test_multi_batch_frame():
    # 2000 bytes: many AES blocks and several keystream batches inside one frame.
    a, b = pair()
    msg = cbor.dumps([9, 0, random_bytes(2000, seed=9)])
    opened = b.open(a.seal(msg))
    assert opened == msg


def test_a_frame_cut_short_by_memory_error_opens_on_the_next_try():
    # Short of heap half-way through decrypting in place (both tries of a keystream batch),
    # open_inplace raises MemoryError with part of the frame decrypted; the server tries the
    # same buffer again: it must go on from there, not check the tag over half-plaintext.
    import sys

    msg = cbor.dumps([7, "MFSetData", {"data": random_bytes(1500, seed=3)}])
    for fresh_copy in (False, True):
        a, b = pair()
        sealed = a.seal(msg)
        body = bytearray(sealed)
        mp = sys.implementation.name == "micropython"
        name = "_ctr_batch" if mp else "_ctr_inplace"
        failing = _fails_twice(getattr(rpc, name), mp)
        real = getattr(rpc, name)
        setattr(rpc, name, failing)
        try:
            raises(MemoryError, b.open_inplace, body)
        finally:
            setattr(rpc, name, real)
        assert b.received == 0  # the counter waits for the frame to be open
        if fresh_copy:
            body = bytearray(sealed)  # another buffer: checked and decrypted from the top
        assert bytes(b.open_inplace(body)) == msg
        assert b.received == 1
        assert b.open(a.seal(b"next")) == b"next"  # and the channel goes on in step


def _fails_twice(real, mp):
    """real, short of heap at its third call and the retry (CPython: at its first)."""
    calls = [0]

    def failing(*args):
        calls[0] += 1
        if calls[0] in (3, 4) or (not mp and calls[0] == 1):
            raise MemoryError("memory allocation failed")
        return real(*args)

    return failing


def test_the_server_opens_a_frame_again_after_pauses_short_of_heap():
    # leither.session._open: a request frame whose opening meets a MemoryError is tried again
    # (the heap shed between tries, pauses for the other sessions' work to end), up to five
    # times; only then does the session end.
    import asyncio

    from leither import session

    class _Short:
        def __init__(self, fails):
            self.fails = fails
            self.tries = 0

        def open_inplace(self, body):
            self.tries += 1
            if self.tries <= self.fails:
                raise MemoryError()
            return body

    sheds = []
    ch = _Short(4)
    assert asyncio.run(session._open(ch, b"frame", lambda: sheds.append(1))) == b"frame"
    assert ch.tries == 5 and len(sheds) == 4
    ch = _Short(5)
    raises(MemoryError, asyncio.run, session._open(ch, b"frame", lambda: None))
    assert ch.tries == 5
