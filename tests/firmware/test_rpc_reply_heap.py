# A reply that runs short of heap after its handler has run (leither.server._send_reply): the
# caches are shed and the real result sent, since "busy" tells a client that nothing was done
# and it would do a commit or an increment again; only a second shortage answers "busy".
import sys

if sys.implementation.name == "micropython" and ".frozen" not in sys.path:
    sys.path.append(".frozen")  # asyncio is frozen into the unix port; MICROPYPATH hides it

from leither import reply, rpc, server
from leither.reply import FrameBuffer

MP_HEAP = "136K"  # passes from 104K: the server module and its imports in the heap

NODE_SEED = bytes(range(1, 33))


class _Writer:
    def __init__(self):
        self.frames = []

    def write(self, data):
        self.frames.append(bytes(data))


class _Conn:
    def __init__(self, channel):
        self.channel = channel
        self.writer = _Writer()

    def deadline(self, ms):
        pass


def _pair():
    """Two ends of one sealed channel: (node's, client's)."""
    keys = [bytes([i]) * n for i, n in ((1, 16), (2, 32), (3, 16), (4, 32))]
    return rpc.Channel(*keys), rpc.Channel(keys[2], keys[3], keys[0], keys[1])


def _replies(short):
    """Send one reply while the first ``short`` encodings run out of heap; what the client
    reads, and how many times the node shed its caches."""
    srv = server.Server(NODE_SEED, log=lambda msg: None, max_frame=2048)
    srv._out = FrameBuffer(srv.max_frame)
    shed = []
    srv.on_short_heap = lambda: shed.append(1)
    node, client = _pair()
    conn = _Conn(node)
    real = reply.encode_reply  # server._send_reply takes it from leither.reply at each call
    left = [short]

    def encode(out, msgid, ok, value, on_failure):
        if left[0]:
            left[0] -= 1
            out.pos = rpc.HEADER_LEN + 7  # half-written, as a MemoryError leaves it
            raise MemoryError("memory allocation failed")
        return real(out, msgid, ok, value, on_failure)

    reply.encode_reply = encode
    try:
        srv._send_reply(conn, 9, True, {"n": 42}, None, "Incr")
    finally:
        reply.encode_reply = real
    assert len(conn.writer.frames) == 1
    body, rest = rpc.split_frame(conn.writer.frames[0], 4096)
    assert not rest
    return rpc.decode_reply(client.open(body)), len(shed), srv.stats["busy"]


def test_a_reply_short_of_heap_once_is_sent_after_shedding():
    assert _replies(0) == ((9, True, {"n": 42}), 0, 0)
    assert _replies(1) == ((9, True, {"n": 42}), 1, 0)


def test_a_reply_short_of_heap_twice_says_busy():
    (msgid, ok, value), shed, busy = _replies(2)
    assert msgid == 9 and not ok and value["code"] == "busy" and shed == 2 and busy == 1
