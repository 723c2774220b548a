# The node-to-node RPC client (leither.rpcclient) against a real leither.server.Server on
# loopback, in one event loop, on both interpreters: roles, results and errors, node ID pinning,
# the reply bound, a node that never answers, and a port nobody listens on.
import sys

if sys.implementation.name == "micropython" and ".frozen" not in sys.path:
    sys.path.append(".frozen")  # asyncio is frozen into the unix port; MICROPYPATH hides it

import asyncio
import socket

from leither import crypto, ids, rpcclient, server
from leither.errors import AuthError, DecodeError, RPCError

# A server, a client, the handshake crypto and asyncio in one heap. Passes from 180K (its code
# and ours sit in the unix port's heap); 20% headroom so a shifted heap layout cannot fail it
# (ci/mp_heap_margin.py; at 160K a fragmented heap once failed a 4 KB request in a full run).
MP_HEAP = "240K"

NODE_SEED = bytes(range(1, 33))
CLIENT_SEED = bytes(range(33, 65))
PEER_SEED = bytes(range(65, 97))


def free_port():
    """A loopback TCP port nobody listens on (MicroPython sockets lack getsockname, so try
    random ports until a bind succeeds)."""
    import os

    while True:
        port = 20000 + int.from_bytes(os.urandom(2), "big") % 40000
        s = socket.socket()
        try:
            s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            return port
        except OSError:
            pass
        finally:
            s.close()


async def with_server(body, **kwargs):
    srv = server.Server(NODE_SEED, log=lambda msg: None, max_frame=4096,
                        facts_provider=lambda name: {"secret": "s"}[name], **kwargs)
    srv.peer_keys.add(crypto.sign_public(PEER_SEED))
    srv.register("Echo", lambda caller, params: [caller.role, params], ("guest", "peer"))
    srv.register("Big", lambda caller, params: bytes(params), ("guest",))

    async def slow(caller, params):
        await asyncio.sleep(5)

    srv.register("Slow", slow, ("guest",))
    port = free_port()
    await srv.start("127.0.0.1", port)
    try:
        return await body(port)
    finally:
        await srv.stop()


def run(body, **kwargs):
    return asyncio.run(with_server(body, **kwargs))


def test_calls_roles_and_errors():
    async def body(port):
        guest = await rpcclient.connect("127.0.0.1", port, CLIENT_SEED, timeout_ms=5000)
        peer = await rpcclient.connect("127.0.0.1", port, PEER_SEED,
                                       expected_node_id=ids.make_id(crypto.sign_public(NODE_SEED)))
        try:
            assert guest.role == "guest" and peer.role == "peer"
            assert guest.node_id == ids.make_id(crypto.sign_public(NODE_SEED))
            assert await guest.call("Echo", {"x": b"\x00\x01"}) == ["guest", {"x": b"\x00\x01"}]
            assert await peer.call("Echo", 7) == ["peer", 7]
            assert await guest.call("GetVar", "id") == guest.node_id
            err = None
            try:
                await guest.call("GetVar", "secret")  # not a public fact
            except RPCError as e:
                err = e
            assert err is not None and err.code == "forbidden"
            try:
                await guest.call("NoSuch")
            except RPCError as e:
                err = e
            assert err.code == "no_method"
            # The session is still good after error replies; calls go in order.
            results = []
            for i in range(5):
                results.append(await peer.call("Echo", i))
            assert [r[1] for r in results] == [0, 1, 2, 3, 4]
        finally:
            await guest.close()
            await peer.close()
        closed = None
        try:
            await guest.call("Echo", 1)
        except rpcclient.ConnectError as e:
            closed = e
        assert closed is not None

    run(body)


def test_pinned_node_id_refused():
    async def body(port):
        other = ids.make_id(crypto.sign_public(PEER_SEED))
        try:
            await rpcclient.connect("127.0.0.1", port, CLIENT_SEED, expected_node_id=other)
        except AuthError as err:
            return str(err)
        return None

    msg = run(body)
    assert msg is not None and "not the expected" in msg


def test_a_kept_frame_serves_requests_and_replies():
    # A restore keeps one frame for thousands of calls (rpcclient.keep_frame): requests are
    # sealed and replies opened in it, byte strings come as views into it on request, and a
    # reply or request over it still goes through in a buffer of its own.
    async def body(port):
        client = await rpcclient.connect("127.0.0.1", port, CLIENT_SEED)
        try:
            assert client.keep_frame(2048) == 2048
            frame = client.kept_frame
            assert len(frame) >= 2048
            got = await client.call("Big", 1000, views=True)
            assert isinstance(got, memoryview) and bytes(got) == bytes(1000)
            echo = await client.call("Echo", {"x": b"abc" * 300}, views=True)
            assert echo[0] == "guest" and bytes(echo[1]["x"]) == b"abc" * 300
            assert await client.call("Echo", {"x": b"abc"}) == ["guest", {"x": b"abc"}]
            assert await client.call("Big", 3000) == bytes(3000)  # over the kept frame
            assert await client.call("Echo", bytes(3000)) == ["guest", bytes(3000)]
            assert client.kept_frame is frame and not client.closed
            # A new session may take the old one's buffer over.
            other = await rpcclient.connect("127.0.0.1", port, PEER_SEED)
            try:
                assert other.keep_frame(None, frame) == 4096  # too small for it: a new one
                assert other.kept_frame is not frame
                assert other.keep_frame(1024, frame) == 1024 and other.kept_frame is frame
                assert await other.call("Echo", 5, views=True) == ["peer", 5]
            finally:
                await other.close()
        finally:
            await client.close()

    run(body)


def test_reply_over_bound_and_too_big_request():
    async def body(port):
        client = await rpcclient.connect("127.0.0.1", port, CLIENT_SEED, max_reply=1024)
        try:
            assert len(await client.call("Big", 900)) == 900
            err = None
            try:
                await client.call("Big", 2000)  # reply frame over our 1024-byte bound
            except DecodeError as e:
                err = e
            assert err is not None and client.closed
        finally:
            await client.close()
        client = await rpcclient.connect("127.0.0.1", port, CLIENT_SEED)
        try:
            try:
                await client.call("Echo", bytes(4100))  # over the node's 4096-byte frame limit
            except RPCError as e:
                err = e
            assert err.code == "too_big"
            assert await client.call("Echo", 1) == ["guest", 1]  # nothing was sent
        finally:
            await client.close()

    run(body)


def test_timeouts_and_unreachable():
    async def body(port):
        client = await rpcclient.connect("127.0.0.1", port, CLIENT_SEED)
        err = None
        try:
            await client.call("Slow", None, timeout_ms=200)
        except rpcclient.ConnectError as e:
            err = e
        assert err is not None and "did not answer" in str(err) and client.closed
        return True

    assert run(body)

    async def nobody():
        try:
            await rpcclient.connect("127.0.0.1", free_port(), CLIENT_SEED, timeout_ms=2000)
        except rpcclient.ConnectError as err:
            return str(err)
        return None

    msg = asyncio.run(nobody())
    assert msg is not None and "127.0.0.1" in msg
