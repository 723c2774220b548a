"""Fuzz the RPC frame decoder, the handshake parsers and the server's input path (CPython).

* arbitrary and mutated bytes into the frame codec, the sealed channel and both handshake
  sides raise only DecodeError or AuthError;
* our frames decode the same in cbor2 (an independent CBOR implementation);
* a live server fed arbitrary bytes before the handshake, or arbitrary (but correctly sealed)
  CBOR after it, answers or closes that connection and keeps serving a good client.

FUZZ_EXAMPLES (env) sets the number of examples per property; `make fuzz` uses 20000.
"""
from __future__ import annotations

import asyncio
import os

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leither import cbor, rpc, server
from leither.errors import AuthError, DecodeError
from leither_host import client

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
# The live-server properties make a TCP session per example: fewer of them by default.
LIVE = settings(max_examples=max(10, EXAMPLES // 5), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

NODE_SEED = bytes(range(1, 33))
CLIENT_SEED = bytes(range(33, 65))

cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


def mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        if out:
            out[pos % len(out)] = value
    return bytes(out)


@SETTINGS
@given(st.binary(max_size=300), st.integers(1, rpc.MAX_FRAME))
def test_frame_codec_only_raises_decode_error(data: bytes, limit: int) -> None:
    try:
        body, rest = rpc.split_frame(data, limit)
    except DecodeError:
        return
    assert 0 < len(body) <= limit
    assert rpc.encode_frame(body) + bytes(rest) == data
    for decode in (rpc.decode_request, rpc.decode_reply):
        try:
            decode(body)
        except DecodeError:
            pass


@SETTINGS
@given(st.integers(0, rpc.MAX_MSGID), st.text(min_size=1, max_size=rpc.MAX_METHOD),
       cbor_values)
def test_requests_agree_with_cbor2(msgid: int, method: str, params: object) -> None:
    if len(method.encode()) > rpc.MAX_METHOD:
        return
    body = rpc.encode_request(msgid, method, params)
    assert cbor2.loads(body) == [msgid, method, params]
    assert body == cbor2.dumps([msgid, method, params], canonical=True)
    assert rpc.decode_request(body) == (msgid, method, params)
    reply = rpc.encode_result(msgid, params)
    assert rpc.decode_reply(reply) == (msgid, True, params)


@SETTINGS
@given(st.binary(max_size=200), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                         max_size=4))
def test_channel_open_only_raises_auth_or_decode(junk: bytes, edits: list[tuple[int, int]]
                                                 ) -> None:
    sender = rpc.Channel(bytes(16), bytes(32), bytes(range(16)), bytes(range(32)))
    receiver = rpc.Channel(bytes(range(16)), bytes(range(32)), bytes(16), bytes(32))
    good = sender.seal(cbor.dumps([1, "Ping", junk]))
    for body in (junk, mutate(good, edits)):
        try:
            opened = rpc.Channel(bytes(range(16)), bytes(range(32)), bytes(16),
                                 bytes(32)).open(body)
        except (AuthError, DecodeError):
            continue
        assert body == good and opened == cbor.dumps([1, "Ping", junk])
    assert receiver.open(good) == cbor.dumps([1, "Ping", junk])


@SETTINGS
@given(st.binary(max_size=rpc.HANDSHAKE_MAX_FRAME), st.binary(max_size=rpc.HANDSHAKE_MAX_FRAME),
       st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3))
def test_handshake_parsers_only_raise_auth_or_decode(junk1: bytes, junk2: bytes,
                                                     edits: list[tuple[int, int]]) -> None:
    for body in (junk1, mutate(cbor.dumps([rpc.PROTOCOL, 1, junk2[:32].ljust(32, b"\1")]),
                               edits)):
        try:
            rpc.ServerHandshake(NODE_SEED).respond(body)
        except (AuthError, DecodeError):
            pass
    shake = rpc.ClientHandshake(CLIENT_SEED)
    node = rpc.ServerHandshake(NODE_SEED)
    msg2 = node.respond(shake.hello())
    bad2 = mutate(msg2, edits)
    try:
        msg3 = shake.reply(bad2)
    except (AuthError, DecodeError):
        msg3 = None
    else:
        assert bad2 == msg2
    if msg3 is not None:
        for body in (junk2, mutate(msg3, edits)):
            fresh = rpc.ServerHandshake(NODE_SEED)
            try:
                fresh.verify(body)
            except (AuthError, DecodeError):
                pass


class LiveNode:
    """One CPython server on loopback for the live properties, in its own event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = server.Server(NODE_SEED, owner_key=None, max_conns=8, handshake_ms=2000,
                                    frame_ms=1000, log=lambda msg: None)
        # Every example's guest is dropped on purpose: no need to hold its socket (that
        # defence is tested in tests/system/test_rpc_attack.py).
        self.server.tarpit_ms = self.server.guest_tarpit_ms = 0
        self.loop.run_until_complete(self.server.start("127.0.0.1", 0))
        self.port = self.server.port

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(asyncio.wait_for(coro, 20))

    def close(self) -> None:
        self.loop.run_until_complete(self.server.stop())
        self.loop.close()


_node: list[LiveNode] = []


def live() -> LiveNode:
    if not _node:
        _node.append(LiveNode())
    return _node[0]


def teardown_module() -> None:
    if _node:
        _node.pop().close()


async def _still_serves(port: int) -> None:
    session = await client.connect("127.0.0.1", port, CLIENT_SEED)
    assert await session.call("Ping", 7) == 7
    await session.close()


async def _send_and_drain(port: int, data: bytes, prefix_handshake: bool) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if prefix_handshake:
        shake = rpc.ClientHandshake(CLIENT_SEED)

        async def read() -> bytes:
            n = rpc.parse_header(await reader.readexactly(4), rpc.MAX_FRAME)
            return await reader.readexactly(n)

        writer.write(rpc.encode_frame(shake.hello()))
        writer.write(rpc.encode_frame(shake.reply(await read())))
        channel = shake.finish(await read())
        data = rpc.encode_frame(channel.seal(data))
    writer.write(data)
    writer.write_eof()
    try:
        while await asyncio.wait_for(reader.read(4096), 5):
            pass
    except ConnectionError:
        pass
    writer.close()


@LIVE
@given(st.binary(max_size=600))
def test_server_survives_raw_junk(data: bytes) -> None:
    node = live()
    node.run(_send_and_drain(node.port, data, prefix_handshake=False))
    node.run(_still_serves(node.port))


@LIVE
@given(st.one_of(cbor_values.map(cbor.dumps),
                 st.tuples(st.integers(-5, 2**33), st.text(max_size=70), cbor_values)
                 .map(lambda t: cbor.dumps(list(t))),
                 st.binary(min_size=1, max_size=300)))
def test_server_survives_sealed_garbage(plaintext: bytes) -> None:
    node = live()
    node.run(_send_and_drain(node.port, plaintext, prefix_handshake=True))
    node.run(_still_serves(node.port))


async def _sealed_reply(port: int, plaintext: bytes) -> tuple[int, bool, object] | None:
    """Send one sealed frame after a handshake; the node's reply to it, or None if it
    closed without one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    shake = rpc.ClientHandshake(CLIENT_SEED)

    async def read() -> bytes:
        n = rpc.parse_header(await reader.readexactly(4), rpc.MAX_FRAME)
        return await reader.readexactly(n)

    try:
        writer.write(rpc.encode_frame(shake.hello()))
        writer.write(rpc.encode_frame(shake.reply(await read())))
        channel = shake.finish(await read())
        writer.write(rpc.encode_frame(channel.seal(plaintext)))
        try:
            body = await asyncio.wait_for(read(), 5)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return rpc.decode_reply(channel.open(body))
    finally:
        writer.close()


@LIVE
@given(st.binary(min_size=1, max_size=300).filter(lambda b: not _decodes(b)))
def test_undecodable_request_is_answered_before_the_close(plaintext: bytes) -> None:
    node = live()
    reply = node.run(_sealed_reply(node.port, plaintext))
    assert reply is not None, "closed without an error reply"
    msgid, ok, value = reply
    assert not ok and isinstance(value, dict) and value["code"] == "bad_request"
    node.run(_still_serves(node.port))


def _decodes(data: bytes) -> bool:
    try:
        cbor.loads(data)
    except DecodeError:
        return False
    return True
