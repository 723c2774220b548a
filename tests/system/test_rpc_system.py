# The RPC server as a real process (unix MicroPython and CPython) on 127.0.0.1, driven by the
# host client: owner / peer / guest handshakes, claim, tampered frames on the wire, and a flood
# of junk and slowloris connections that must not keep a good client out.
from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leither import crypto, ids, rpc
from leither.errors import AuthError, RPCError
from leither_host import client
from leither_host.keys import HostKey

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build"

# A minimal node: the Server with a "Blob" bulk-read test method (the node runtime registers the
# real store methods). argv: port seed owner|- peer|- token|- max_conns
NODE_SCRIPT = r"""
import sys
import asyncio
import binascii
from leither import server

def arg(i):
    return None if sys.argv[i] == "-" else sys.argv[i]

port = int(sys.argv[1])
seed = binascii.unhexlify(sys.argv[2])
owner = arg(3) and binascii.unhexlify(arg(3))
facts = {"name": "sys-node", "board": "unix", "fw": "test", "secret": "s3"}
srv = server.Server(seed, facts_provider=lambda name: facts[name], owner_key=owner,
                    claim_token=arg(5), on_claim=lambda key: print("CLAIMED"),
                    max_conns=int(sys.argv[6]), handshake_ms=3000, frame_ms=2000, idle_ms=4000,
                    claim_backoff_ms=0, log=lambda msg: None)
if arg(4):
    srv.peer_keys.add(binascii.unhexlify(arg(4)))
PATTERN = bytes(range(256)) * 16

def blob(caller, params):
    offset = params["offset"]
    n = max(0, min(params["length"], params["size"] - offset, len(PATTERN) - 256))
    start = offset % 256
    return PATTERN[start:start + n]

srv.register("Blob", blob, ("owner", "peer"))
PATTERN_VIEW = memoryview(PATTERN)

def blob_into(caller, params):  # the same bytes, written straight into the reply frame
    offset = params["offset"]
    n = max(0, min(params["length"], params["size"] - offset, len(PATTERN) - 256))
    start = offset % 256

    def fill(view):
        view[:] = PATTERN_VIEW[start:start + n]

    return server.Bulk(n, fill)

srv.register("BlobInto", blob_into, ("owner", "peer"))

stopping = asyncio.Event()

def stop(caller, params):
    stopping.set()
    return True

srv.register("Stop", stop)

async def main():
    await srv.start("127.0.0.1", port)
    print("READY", srv.node_id)
    await stopping.wait()
    await asyncio.sleep(0.2)  # let the reply go out
    await srv.stop()
    print("STOPPED", srv.connections)

asyncio.run(main())
"""


def micropython() -> str | None:
    here = Path(sys.executable).parent / "micropython"
    return str(here) if here.exists() else None


def build_unix() -> None:
    from leither_host.build import build

    BUILD.mkdir(exist_ok=True)
    with open(BUILD / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build("unix")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    def __init__(self, proc: subprocess.Popen[str], port: int, node_id: str) -> None:
        self.proc = proc
        self.port = port
        self.id = node_id


def start_node(kind: str, tmp: Path, seed: bytes, owner: bytes | None = None,
               peer: bytes | None = None, token: str | None = None, max_conns: int = 8,
               heap: str = "256K") -> Node:
    script = tmp / "node.py"
    script.write_text(NODE_SCRIPT)
    port = free_port()
    args = [str(port), seed.hex(), owner.hex() if owner else "-", peer.hex() if peer else "-",
            token or "-", str(max_conns)]
    env = dict(os.environ)
    if kind == "micropython":
        binary = micropython()
        if binary is None:
            pytest.skip("micropython not installed")
        build_unix()
        env["MICROPYPATH"] = f".frozen:{BUILD / 'unix'}"
        cmd = [binary, "-X", f"heapsize={heap}", str(script)] + args
    else:
        env["PYTHONPATH"] = str(REPO / "firmware")
        cmd = [sys.executable, str(script)] + args
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=str(tmp))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        proc.kill()
        raise AssertionError(f"node did not start: {line}{proc.stdout.read()}")
    return Node(proc, port, line.split()[1])


@pytest.fixture(params=["micropython", "cpython"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


NODE_SEED = bytes(range(1, 33))
OWNER = HostKey.from_seed(bytes(range(33, 65)))
PEER = HostKey.from_seed(bytes(range(65, 97)))
GUEST = HostKey.from_seed(bytes(range(97, 129)))


@pytest.fixture
def node(kind: str, tmp_path: Path):
    n = start_node(kind, tmp_path, NODE_SEED, owner=OWNER.public, peer=PEER.public)
    yield n
    n.proc.kill()
    n.proc.wait()


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_owner_peer_and_guest_sessions(node: Node) -> None:
    async def scenario() -> None:
        node_id = ids.make_id(crypto.sign_public(NODE_SEED))
        assert node.id == node_id
        async with await client.connect("127.0.0.1", node.port, OWNER, node_id) as owner:
            assert owner.role == "owner" and owner.node_id == node_id
            assert await owner.call("GetVar", "secret") == "s3"
            data = b"".join([c async for c in owner.read_chunks("Blob", {"size": 10000},
                                                                  chunk=3000)])
            assert data == bytes((i % 256) for i in range(10000))
            data = b"".join([c async for c in owner.read_chunks("BlobInto", {"size": 20000})])
            assert data == bytes((i % 256) for i in range(20000))
        async with await client.connect("127.0.0.1", node.port, PEER.seed) as peer:
            assert peer.role == "peer"
            assert await peer.call("GetVar", "role") == "peer"
            got = await peer.call("Blob", {"offset": 5, "length": 3, "size": 100})
            assert got == b"\x05\x06\x07"
        async with await client.connect("127.0.0.1", node.port, GUEST) as guest:
            assert guest.role == "guest"
            assert await guest.call("GetVar", "name") == "sys-node"
            for method, params in (("Blob", {"offset": 0, "length": 1, "size": 1}),
                                   ("GetVar", "secret")):
                with pytest.raises(RPCError) as err:
                    await guest.call(method, params)
                assert err.value.code == "forbidden"
            with pytest.raises(RPCError) as err:
                await guest.call("NoSuchMethod")
            assert err.value.code == "no_method"
            # The guest frame limit is enforced by the client before sending...
            with pytest.raises(RPCError) as err:
                await guest.call("Ping", b"x" * guest.max_frame)
            assert err.value.code == "too_big"
            assert await guest.call("Ping", b"y" * 100) == b"y" * 100
        with pytest.raises(AuthError):
            await client.connect("127.0.0.1", node.port, GUEST, ids.make_id(b"someone else"))

    run(scenario())


def test_claim_over_the_network(kind: str, tmp_path: Path) -> None:
    n = start_node(kind, tmp_path, NODE_SEED, token="c1a1m70k3n")
    try:
        async def scenario() -> None:
            async with await client.connect("127.0.0.1", n.port, GUEST) as first:
                assert first.role == "guest"
                assert await first.call("GetVar", "claimed") is False
                with pytest.raises(RPCError) as err:
                    await first.call("Claim", {"token": "wrong"})
                assert err.value.code == "bad_token"
                result = await first.call("Claim", {"token": "c1a1m70k3n"})
                assert result["owner"] == GUEST.id and first.role == "owner"
                assert await first.call("Blob", {"offset": 0, "length": 2, "size": 2}) == b"\0\1"
            async with await client.connect("127.0.0.1", n.port, OWNER) as second:
                assert second.role == "guest"
                with pytest.raises(RPCError) as err:
                    await second.call("Claim", {"token": "c1a1m70k3n"})
                assert err.value.code == "claimed"
            async with await client.connect("127.0.0.1", n.port, GUEST) as again:
                assert again.role == "owner"

        run(scenario())
    finally:
        n.proc.kill()
        out = n.proc.communicate()[0]
    assert out.count("CLAIMED") == 1


async def _raw_session(port: int, key: HostKey
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, rpc.Channel]:
    """A handshake done by hand, so the test can then misbehave on the wire."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    shake = rpc.ClientHandshake(key.seed)

    async def read() -> bytes:
        n = rpc.parse_header(await reader.readexactly(4), rpc.MAX_FRAME)
        return await reader.readexactly(n)

    writer.write(rpc.encode_frame(shake.hello()))
    writer.write(rpc.encode_frame(shake.reply(await read())))
    shake.finish(await read())
    assert shake.channel is not None
    return reader, writer, shake.channel


async def _closed_by_node(reader: asyncio.StreamReader) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(100), 10)
    except ConnectionError:
        return True
    return data == b""


def test_tampered_frames_close_only_that_connection(node: Node) -> None:
    async def scenario() -> None:
        good = await client.connect("127.0.0.1", node.port, OWNER)
        request = rpc.encode_request(1, "GetVar", "id")

        async def misbehave(how: str) -> bool:
            reader, writer, channel = await _raw_session(node.port, OWNER)
            frame = channel.seal(request)
            if how == "replay":
                writer.write(rpc.encode_frame(frame))
                n = rpc.parse_header(await reader.readexactly(4), rpc.MAX_FRAME)
                await reader.readexactly(n)
                writer.write(rpc.encode_frame(frame))
            elif how == "reorder":
                second = channel.seal(rpc.encode_request(2, "GetVar", "id"))
                writer.write(rpc.encode_frame(second) + rpc.encode_frame(frame))
            elif how == "flip":
                bad = bytearray(frame)
                bad[3] ^= 0x40
                writer.write(rpc.encode_frame(bytes(bad)))
            elif how == "truncate":  # a shorter length that still frames: the tag is wrong
                writer.write(rpc.frame_header(len(frame) - 1) + frame[:-1])
            elif how == "oversize":
                writer.write(rpc.frame_header(rpc.MAX_FRAME + 1))
            elif how == "eof":  # header promises more than ever comes
                writer.write(rpc.frame_header(len(frame)) + frame[:5])
                writer.write_eof()
            closed = await _closed_by_node(reader)
            writer.close()
            return closed

        for how in ("replay", "reorder", "flip", "truncate", "oversize", "eof"):
            assert await misbehave(how), how
            assert await good.call("GetVar", "id") == node.id  # the good session lives on
        await good.close()

    run(scenario())


async def _flood(port: int, count: int, stop: asyncio.Event) -> int:
    """Open `count` bad connections: junk, slowloris (silent, drip-fed header, drip-fed hello).
    Reopen whatever the node closes until told to stop. Returns connections opened."""
    opened = 0

    async def one(i: int) -> None:
        nonlocal opened
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            opened += 1
            try:
                style = i % 4
                if style == 0:
                    writer.write(os.urandom(64))  # junk
                elif style == 2:
                    writer.write(b"\x00\x00")  # half a header, then nothing
                elif style == 3:
                    writer.write(b"\x00\x00\x00\x30\x83")  # a hello that never finishes
                while not stop.is_set():
                    if await asyncio.wait_for(reader.read(1000), 0.5) == b"":
                        break
            except (asyncio.TimeoutError, OSError):
                pass
            finally:
                writer.close()

    async def until_stopped(i: int) -> None:
        try:
            await one(i)
        except asyncio.TimeoutError:
            pass

    tasks = [asyncio.create_task(until_stopped(i)) for i in range(count)]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return opened


def test_flood_does_not_starve_a_good_client(node: Node) -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        flood = asyncio.create_task(_flood(node.port, 200, stop))
        try:
            await asyncio.sleep(1.0)  # the node is saturated with bad connections by now
            started = time.monotonic()
            session = await client.connect("127.0.0.1", node.port, OWNER, node.id, timeout=10)
            for i in range(20):
                assert await session.call("Ping", i) == i
            elapsed = time.monotonic() - started
            await session.close()
        finally:
            # Whatever happened above, the flood ends: its loops watch `stop` (a cancel alone
            # can be swallowed by wait_for in Python 3.11 and leave them looping forever).
            stop.set()
        opened = await flood
        assert opened >= 200
        assert elapsed < 30, f"good client took {elapsed:.1f} s under the flood"
        # and the node is still healthy afterwards
        async with await client.connect("127.0.0.1", node.port, PEER) as peer:
            assert await peer.call("GetVar", "id") == node.id

    run(scenario())


def test_deadlines_close_silent_connections(node: Node) -> None:
    async def scenario() -> None:
        started = time.monotonic()
        silent_reader, silent = await asyncio.open_connection("127.0.0.1", node.port)
        half_reader, half = await asyncio.open_connection("127.0.0.1", node.port)
        half.write(b"\x00\x00\x00\x30\x83")  # a hello that never finishes
        idle_session = await client.connect("127.0.0.1", node.port, OWNER)
        busy = await client.connect("127.0.0.1", node.port, PEER)
        async def keep_talking(seconds: int) -> None:  # a session that talks is not idle
            for _ in range(seconds):
                await asyncio.sleep(1)
                assert await busy.call("Ping", 1) == 1

        talking = asyncio.create_task(keep_talking(3))
        # Handshake deadline 3 s (+ watchdog tick), + the 1 s a CPython node holds a socket it
        # drops before authentication (its tarpit against reconnect floods).
        closed = await asyncio.gather(_closed_by_node(silent_reader),
                                      _closed_by_node(half_reader))
        assert closed == [True, True]
        assert time.monotonic() - started < 8
        await talking
        await keep_talking(2)
        with pytest.raises(client.ConnectError):  # idle deadline (4 s) passed: node closed it
            await idle_session.call("Ping", 1)
        silent.close()
        half.close()
        await busy.close()

    run(scenario())


def test_stop_closes_sessions_and_port(node: Node) -> None:
    async def scenario() -> None:
        other = await client.connect("127.0.0.1", node.port, PEER)
        async with await client.connect("127.0.0.1", node.port, OWNER) as owner:
            assert await owner.call("Stop") is True
        # The node stops 0.2 s after answering: poll until the other session is cut (a
        # node that never closes it ends the loop without an error, and the test fails).
        deadline = time.monotonic() + 20
        with pytest.raises(client.ConnectError):
            while time.monotonic() < deadline:
                await other.call("Ping", 1, timeout=10)
                await asyncio.sleep(0.05)

    run(scenario())
    out, _ = node.proc.communicate(timeout=20)
    assert node.proc.returncode == 0 and "STOPPED 0" in out, out
    with pytest.raises(client.ConnectError):
        client.connect_sync("127.0.0.1", node.port, OWNER, timeout=2)


def test_sync_wrapper(node: Node) -> None:
    with client.connect_sync("127.0.0.1", node.port, OWNER, node.id) as session:
        assert session.role == "owner" and session.node_id == node.id
        assert session.call("GetVar", "board") == "unix"
        with pytest.raises(RPCError):
            session.call("GetVar", "nothing")
    with pytest.raises(client.ConnectError):
        client.connect_sync("127.0.0.1", free_port(), OWNER, timeout=2)
