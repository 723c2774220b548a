# The RPC wire protocol, pure: frame codec, handshake messages and key schedule, sealed channel.
# No sockets here: leither.server (node) and leither_host.client (host) move the bytes.
"""Leither RPC protocol (version 1): frames, mutual handshake, sealed and counted frames.

Frames
------
Every frame is a 4-byte big-endian body length followed by the body. The length is checked
against a limit *before* anything is read or allocated: ``HANDSHAKE_MAX_FRAME`` until the
handshake is done, then the limit the server announced (``MAX_FRAME`` at most). A zero length
is an error. Plain bodies (handshake messages 1 and 2) are one CBOR array; sealed bodies are
``ciphertext || tag`` where the ciphertext is a CBOR array.

Messages (DESIGN §4), once the channel is sealed::

    request   [msgid, method, params]         msgid: uint < 2**32, method: text ≤ 64 bytes
    reply     [msgid, 0, result]
    error     [msgid, 1, {"code": text, "msg": text}]

Handshake (SIGMA-style, like Noise XX with signatures; C = client, S = server/node)
------------------------------------------------------------------------------------
Each side has a static Ed25519 identity key (seed s, public key P) and draws a fresh X25519
ephemeral key pair (e, E) per connection::

    1. C -> S  plain   ["leither-rpc", 1, E_c]
    2. S -> C  plain   [E_s, P_s, sig_s]
    3. C -> S  sealed with the handshake key:  [P_c, sig_c]
    4. S -> C  sealed with the session key (s2c frame 0):  ["ok", role, max_frame]

    h0 = SHA-256("leither-rpc/1")
    h1 = SHA-256(h0 || body of message 1)            (the exact bytes received)
    h2 = SHA-256(h1 || E_s || P_s)
    sig_s = Ed25519(s_s, "leither-rpc/1 server" || h2)
    dh = X25519(e_c, E_s) = X25519(e_s, E_c)
    handshake key = HKDF-SHA256(ikm=dh, salt=h2, info="leither-rpc/1 handshake", 48)
    h3 = SHA-256(h2 || P_c)
    sig_c = Ed25519(s_c, "leither-rpc/1 client" || h3)
    session keys = HKDF-SHA256(ikm=dh, salt=h3, info="leither-rpc/1 session", 96)
                 = c2s_enc(16) || c2s_mac(32) || s2c_enc(16) || s2c_mac(32)

* Each signature covers both ephemeral keys and the signer's own static key, so it proves a
  live holder of that key in *this* session; the session keys are salted with a hash of both
  static keys, so a man in the middle that relays one side under its own identity ends up
  with keys that differ from both ends (no unknown-key-share).
* The client checks sig_s before it reveals anything; the node ID is
  ``leither.ids.make_id(P_s)``, which the client can pin (``expected_node_id``).
* The client's static key travels sealed (message 3), so a passive observer learns which node
  was contacted but not who contacted it.
* The server maps P_c to a role — ``owner`` (the claimed owner's key), ``peer`` (a paired
  node's key) or ``guest`` — and announces it with its frame limit for this session in
  message 4 (8 KiB on a board, 64 KiB on CPython, 4 KiB for guests; replies keep to it too),
  which also confirms the session key to the client. A claim upgrades a guest session.
* A node that cannot take a hello answers one plain frame ``["error", code, msg]`` and
  closes: ``bad_hello`` (bad version, not our protocol) or ``busy`` (no slot or no heap for a
  new session now: retry later); any other fault just closes the connection. A node that runs
  out of heap half-way answers ``busy`` so in place of message 2 or message 4 (a sealed
  message 4 never decodes as that plain array).

Sealed channel
--------------
One key pair (AES-128 key, HMAC-SHA256 key) per direction and a frame counter per direction,
starting at 0 (the handshake key is used for message 3 only, with counter 0). Frame n::

    ct  = AES-128-CTR(enc_key, iv = uint64_be(n) || 8 zero bytes, plaintext)
    tag = HMAC-SHA256(mac_key, uint64_be(n) || ct)[:16]
    body = ct || tag

The counter is implicit (never sent): the receiver computes the tag with the counter it
expects, so a replayed, reordered, dropped, truncated or altered frame fails the tag check
(AuthError) and the connection is closed. The low 64 bits of the CTR block count AES blocks
inside one frame (a frame is far below 2**64 blocks) so no keystream block is ever reused.
"""

import gc
import hashlib
import struct

from . import cbor, crypto, ids
from .compat import IS_MICROPYTHON, const
from .errors import AuthError, DecodeError, RPCError

PROTOCOL = "leither-rpc"
VERSION = 1
HEADER_LEN = const(4)  # bytes: big-endian body length (DESIGN §4)
TAG_LEN = const(16)  # bytes of HMAC-SHA256 kept per frame: 128-bit forgery bound
# Bound on any frame body once sealed (bytes): 64 KiB keeps a bulk chunk in one frame while a
# board can still hold one frame plus its decrypted copy; servers may announce less.
MAX_FRAME = const(65536)
# Bound on handshake bodies (bytes): message 2 is ~150 bytes, message 3 ~120 (+ tag). Junk
# before authentication never makes the node allocate more than this.
HANDSHAKE_MAX_FRAME = const(256)
_CTR_BATCH = const(256)  # bytes of keystream per AES-ECB call on a board: 16 blocks
MAX_METHOD = const(64)  # bytes of a method name; Leither's longest names are ~12
MAX_MSGID = 0xFFFFFFFF  # msgid is a uint32: clients count up and wrap
_MAX_COUNTER = 0xFFFFFFFFFFFF  # frames per direction before the session must end (2**48)

_LABEL = b"leither-rpc/1"
_SERVER_SIG = b"leither-rpc/1 server"
_CLIENT_SIG = b"leither-rpc/1 client"
_HS_INFO = b"leither-rpc/1 handshake"
_SESSION_INFO = b"leither-rpc/1 session"

OWNER = "owner"
PEER = "peer"
GUEST = "guest"
ROLES = (OWNER, PEER, GUEST)


# ---- frame codec -------------------------------------------------------------------------


def frame_header(length):
    """The 4-byte header for a body of ``length`` bytes."""
    if length <= 0 or length > 0xFFFFFFFF:
        raise DecodeError("frame length %d out of range" % length)
    return struct.pack(">I", length)


def parse_header(header, limit):
    """Body length from a 4-byte header; DecodeError if empty or over ``limit`` bytes."""
    if len(header) != HEADER_LEN:
        raise DecodeError("truncated frame header")
    length = struct.unpack(">I", header)[0]
    if length == 0:
        raise DecodeError("empty frame")
    if length > limit:
        raise DecodeError("frame of %d bytes over the limit of %d" % (length, limit))
    return length


def encode_frame(body):
    """Header and body as one bytes object (for small frames and tests)."""
    return frame_header(len(body)) + body


def split_frame(data, limit):
    """(body, rest) from a buffer holding a whole frame; DecodeError if it is not whole."""
    length = parse_header(bytes(data[:HEADER_LEN]), limit)
    if len(data) < HEADER_LEN + length:
        raise DecodeError("truncated frame body")
    return bytes(data[HEADER_LEN:HEADER_LEN + length]), data[HEADER_LEN + length:]


def decode_array(body, size=None):
    """CBOR body that must be an array (of ``size`` items if given)."""
    obj = cbor.loads(body)
    if not isinstance(obj, list):
        raise DecodeError("frame is not a CBOR array")
    if size is not None and len(obj) != size:
        raise DecodeError("frame array has %d items, want %d" % (len(obj), size))
    return obj


class _ViewDecoder(cbor._BufferDecoder):
    """Decodes byte strings as memoryviews into the frame (no copy); all else as cbor does."""

    def item(self, depth):
        at = self.pos
        if at < self.end:
            ib = self.data[at]
            if ib >> 5 == 2 and (ib & 31) < 28:  # a definite-length byte string
                ai = ib & 31
                size = 0 if ai < 24 else 1 << (ai - 24)
                start = at + 1 + size
                if start > self.end:
                    raise DecodeError("CBOR: truncated input")
                n = ai if ai < 24 else int.from_bytes(bytes(self.data[at + 1:start]), "big")
                if n > self.max_len:
                    raise DecodeError("CBOR: string longer than the limit")
                self.budget -= n
                if self.budget < 0 or start + n > self.end:
                    raise DecodeError("CBOR: truncated or over the allocation limit")
                self.pos = start + n
                return self.data[start:start + n]
        return super().item(depth)


def decode_array_views(body, size):
    """Like decode_array, but byte strings come back as memoryviews into ``body``: for a
    request whose handler uses its data before returning (a put), no frame-sized copy. The
    views are valid only while ``body`` is not reused."""
    decoder = _ViewDecoder(False, cbor.MAX_DEPTH, cbor.MAX_LEN, cbor.MAX_ITEMS, cbor.MAX_TOTAL)
    decoder.data = memoryview(body)
    decoder.pos = 0
    decoder.end = len(body)
    obj = decoder.run()
    if decoder.pos != decoder.end:
        raise DecodeError("CBOR: bytes after the item")
    if not isinstance(obj, list) or len(obj) != size:
        raise DecodeError("frame is not a CBOR array of %d items" % size)
    return obj


def _check_msgid(msgid):
    if not isinstance(msgid, int) or isinstance(msgid, bool) or msgid < 0 or msgid > MAX_MSGID:
        raise DecodeError("bad msgid")


def encode_request(msgid, method, params):
    return cbor.dumps([msgid, method, params])


def decode_request(body):
    """(msgid, method, params) from a request body; DecodeError if malformed."""
    msg = decode_array(body, 3)
    _check_msgid(msg[0])
    method = msg[1]
    if not isinstance(method, str) or not method or len(method) > MAX_METHOD:
        raise DecodeError("bad method name")
    return msg[0], method, msg[2]


def encode_result(msgid, result):
    return cbor.dumps([msgid, 0, result])


def encode_error(msgid, code, msg):
    return cbor.dumps([msgid, 1, {"code": code, "msg": msg}])


def decode_reply(body, views=False):
    """(msgid, ok, value) from a reply body; value is the result or the {"code","msg"} map.
    views=True: byte strings as memoryviews into body (see decode_array_views)."""
    msg = decode_array_views(body, 3) if views else decode_array(body, 3)
    _check_msgid(msg[0])
    status, value = msg[1], msg[2]
    if status == 0 and not isinstance(status, bool):
        return msg[0], True, value
    if status == 1 and not isinstance(status, bool):
        if (not isinstance(value, dict) or not isinstance(value.get("code"), str)
                or not isinstance(value.get("msg"), str)):
            raise DecodeError("bad error reply")
        return msg[0], False, value
    raise DecodeError("bad reply status")


# ---- sealed channel ----------------------------------------------------------------------


def _direction_key(enc_key, mac_key):
    """One direction's key material in one object (a board keeps one per session per
    direction): AES key (16) || HMAC inner pad (64) || HMAC outer pad (64), RFC 2104."""
    if len(mac_key) > 64:
        mac_key = hashlib.sha256(mac_key).digest()
    out = bytearray(16 + 128)
    out[:16] = enc_key
    for i in range(64):
        k = mac_key[i] if i < len(mac_key) else 0
        out[16 + i] = k ^ 0x36
        out[80 + i] = k ^ 0x5C
    return bytes(out)


def _tag(material, counter_bytes, ct):
    """HMAC-SHA256(key, counter || ct)[:TAG_LEN], streamed so the ciphertext is not copied."""
    view = memoryview(material)
    inner = hashlib.sha256(view[16:80])
    inner.update(counter_bytes)
    inner.update(ct)
    outer = hashlib.sha256(view[80:144])
    outer.update(inner.digest())
    return outer.digest()[:TAG_LEN]


def _counter_bytes(n):
    if n >= _MAX_COUNTER:
        raise AuthError("frame counter exhausted; reconnect")
    return struct.pack(">Q", n)


def _ctr_inplace(key, counter, view, done=None):
    """XOR ``view`` (a writable buffer) with the AES-128-CTR keystream of iv = counter || 0^8.

    MicroPython: built on cryptolib's ECB in 256-byte batches, so sealing a frame needs no
    frame-sized allocation (the board's heap fragments; see leither.server). CPython: one
    pycryptodome call and a copy back. Same keystream as leither.crypto.CTR (tested).
    ``done``: a list, first item the bytes of view already XORed; a MemoryError leaves it
    at the batch that failed (the batches before it XORed in place, the rest untouched), so
    the same call again goes on from there instead of XORing the first ones twice.
    """
    if not IS_MICROPYTHON:
        view[:] = crypto.CTR(key, counter + bytes(8)).crypt(bytes(view))
        return
    import cryptolib

    ecb = cryptolib.aes(key, 1)
    blocks, stream = _ctr_buffers()
    for j in range(0, _CTR_BATCH, 16):
        blocks[j:j + 8] = counter
    size = len(view)
    pos = done[0] if done else 0
    while pos < size:
        take = min(_CTR_BATCH, size - pos)
        try:
            _ctr_batch(ecb, blocks, stream, view, pos, take)
        except MemoryError:
            # A batch writes into view only as its last step: short of heap before that,
            # the batch is untouched and can be done again once garbage is collected.
            gc.collect()
            _ctr_batch(ecb, blocks, stream, view, pos, take)
        pos += take
        if done is not None:
            done[0] = pos


_ctr_bufs = []  # [counter blocks, keystream]: _CTR_BATCH bytes each, made once


def _ctr_buffers():
    """The two batch buffers every frame's CTR shares: _ctr_inplace never yields, so one
    pair serves all sessions, and a frame costs no 512 bytes of garbage."""
    if not _ctr_bufs:
        _ctr_bufs.append(bytearray(_CTR_BATCH))
        _ctr_bufs.append(bytearray(_CTR_BATCH))
    return _ctr_bufs[0], _ctr_bufs[1]


def _ctr_batch(ecb, blocks, stream, view, pos, take):
    """XOR view[pos:pos + take] with its keystream (AES blocks pos // 16 on)."""
    block = pos >> 4
    for j in range(0, take, 16):
        struct.pack_into(">Q", blocks, j + 8, block)
        block += 1
    ecb.encrypt(blocks, stream)
    mixed = int.from_bytes(view[pos:pos + take], "big") ^ int.from_bytes(
        stream if take == _CTR_BATCH else memoryview(stream)[:take], "big")
    view[pos:pos + take] = mixed.to_bytes(take, "big")


class Channel:
    """A sealed, counted channel: ``seal`` for frames we send, ``open`` for frames we get.

    ``seal_into``/``open_inplace`` work inside a caller's buffer (no frame-sized copies);
    ``seal``/``seal_parts``/``open`` return new bytes.
    """

    def __init__(self, send_enc, send_mac, recv_enc, recv_mac):
        self._send = _direction_key(send_enc, send_mac)
        self._recv = _direction_key(recv_enc, recv_mac)
        self.sent = 0  # frames sealed so far (the next frame's counter)
        self.received = 0  # frames opened (or refused) so far
        self._opening = None  # [bytes decrypted, body] of a checked frame cut short

    def seal(self, plaintext):
        """Body (ciphertext || tag) of the next outgoing frame."""
        body = bytearray(len(plaintext) + TAG_LEN)
        body[:len(plaintext)] = plaintext
        self._seal(memoryview(body), len(plaintext))
        return bytes(body)

    def seal_parts(self, plaintext):
        """(ciphertext, tag) of the next outgoing frame."""
        body = self.seal(plaintext)
        return body[:-TAG_LEN], body[-TAG_LEN:]

    def seal_into(self, frame, length):
        """Seal in place a frame whose plaintext sits at frame[4:4 + length]: encrypts it,
        writes the tag after it and the header before it; returns the frame's total size."""
        view = memoryview(frame)
        self._seal(view[HEADER_LEN:HEADER_LEN + length + TAG_LEN], length)
        struct.pack_into(">I", frame, 0, length + TAG_LEN)
        return HEADER_LEN + length + TAG_LEN

    def _seal(self, body, length):
        # The counter advances only once the frame is sealed: a MemoryError half-way (a board
        # short of heap) leaves the channel as it was, and the caller may seal a frame again.
        counter = _counter_bytes(self.sent)
        ct = body[:length]
        _ctr_inplace(self._send[:16], counter, ct)
        body[length:length + TAG_LEN] = _tag(self._send, counter, ct)
        self.sent += 1

    def open(self, body):
        """Plaintext of the next incoming frame; AuthError if it is not that frame, intact."""
        return bytes(self.open_inplace(bytearray(body)))

    def open_inplace(self, body):
        """Check and decrypt a frame body held in a writable buffer; returns a memoryview
        of the plaintext inside it. AuthError if it is not the next frame, intact."""
        n = len(body) - TAG_LEN
        if n < 1:
            raise DecodeError("sealed frame too short")
        view = memoryview(body)
        counter = _counter_bytes(self.received)
        # Short of heap half-way, part of the frame is decrypted in place: _opening keeps
        # [how far, that body], and the caller's next try with the same body goes on from
        # there (checking the tag again over half-decrypted bytes failed it: a soak's session
        # was dropped so). Any other buffer is a fresh copy of the frame: checked from the top.
        done = self._opening
        if done is None or done[1] is not body:
            self._opening = None
            tag = _tag(self._recv, counter, view[:n])  # a MemoryError here changes nothing
            if not crypto.equal(tag, view[n:]):
                self.received += 1  # the session is dead after a bad frame
                raise AuthError("frame failed authentication (altered, replayed or reordered)")
            done = self._opening = [0, body]
        _ctr_inplace(self._recv[:16], counter, view[:n], done)
        self._opening = None
        self.received += 1  # only now: short of heap before this, the caller may try again
        return view[:n]


def _channel_from(okm, is_client):
    okm = memoryview(okm)
    c2s_enc, c2s_mac = okm[0:16], okm[16:48]
    s2c_enc, s2c_mac = okm[48:64], okm[64:96]
    if is_client:
        return Channel(c2s_enc, c2s_mac, s2c_enc, s2c_mac)
    return Channel(s2c_enc, s2c_mac, c2s_enc, c2s_mac)


def _hash(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.digest()


def _bytes32(value, what):
    if not isinstance(value, bytes) or len(value) != 32:
        raise DecodeError("%s must be 32 bytes" % what)
    return value


def _bytes64(value, what):
    if not isinstance(value, bytes) or len(value) != 64:
        raise DecodeError("%s must be 64 bytes" % what)
    return value


# ---- handshake ---------------------------------------------------------------------------


class ClientHandshake:
    """Client side: ``hello()`` -> msg 1; ``reply(msg2)`` -> msg 3; ``finish(msg4)``.

    After ``reply`` the node is authenticated: ``node_key`` and ``node_id`` are set.
    After ``finish``: ``channel``, ``role`` and ``max_frame`` are set.
    """

    def __init__(self, seed, expected_node_id=None):
        self._seed = seed
        self._pub = crypto.sign_public(seed)
        self._expected = expected_node_id
        self._eph = None
        self._h = None
        self._dh = None
        self.node_key = None
        self.node_id = None
        self.channel = None
        self.role = None
        self.max_frame = None

    def hello(self):
        self._eph = crypto.dh_keypair()
        body = cbor.dumps([PROTOCOL, VERSION, self._eph[1]])
        self._h = _hash(_hash(_LABEL), body)
        return body

    def reply(self, msg2):
        """Check the node's message 2 and return the sealed message 3."""
        if self._h is None or self._dh is not None:
            raise AuthError("handshake out of order")
        h1, self._h = self._h, None  # single use: a bad message 2 ends the handshake
        msg = decode_array(msg2, 3)
        _refused(msg2, msg)
        eph_s = _bytes32(msg[0], "ephemeral key")
        node_key = _bytes32(msg[1], "node key")
        sig = _bytes64(msg[2], "signature")
        h2 = _hash(h1, eph_s, node_key)
        if not crypto.verify(node_key, _SERVER_SIG + h2, sig):
            raise AuthError("node signature does not verify")
        node_id = ids.make_id(node_key)
        if self._expected is not None and node_id != self._expected:
            raise AuthError("node ID %s is not the expected %s" % (node_id, self._expected))
        self._dh = crypto.dh(self._eph[0], eph_s)
        self._eph = None
        self.node_key = node_key
        self.node_id = node_id
        hs = crypto.hkdf(self._dh, h2, _HS_INFO, 48)
        hs_channel = Channel(hs[:16], hs[16:48], bytes(16), bytes(32))
        h3 = _hash(h2, self._pub)
        sig_c = crypto.sign(self._seed, _CLIENT_SIG + h3)
        self._h = h3
        return hs_channel.seal(cbor.dumps([self._pub, sig_c]))

    def finish(self, msg4):
        """Open the node's message 4: learn the role; the channel is then ready."""
        if self._dh is None or self.channel is not None:
            raise AuthError("handshake out of order")
        dh, self._dh = self._dh, None  # single use
        _refused(msg4)
        channel = _channel_from(crypto.hkdf(dh, self._h, _SESSION_INFO, 96), True)
        msg = decode_array(channel.open(msg4), 3)
        if (not isinstance(msg[0], str) or msg[0] != "ok" or not isinstance(msg[1], str)
                or msg[1] not in ROLES or not isinstance(msg[2], int)):
            raise DecodeError("bad handshake confirmation")
        self.role = msg[1]
        self.max_frame = max(HANDSHAKE_MAX_FRAME, min(msg[2], MAX_FRAME))
        self.channel = channel
        return channel


def _refused(frame, msg=None):
    """Raise what a plain ``["error", code, msg]`` frame in place of message 2 or 4 says:
    RPCError busy (retry later) or AuthError; return if the frame is not one."""
    if msg is None:
        if bytes(frame[:7]) != b"\x83\x65error":  # the array's head and its first text
            return
        try:
            msg = decode_array(frame, 3)
        except DecodeError:
            return
    if isinstance(msg[0], str) and msg[0] == "error" and isinstance(msg[2], str):
        if msg[1] == "busy":  # out of slots or heap for now: the caller may retry
            raise RPCError("busy", msg[2])
        raise AuthError("node refused the handshake: %s" % msg[2])


class ServerHandshake:
    """Node side: ``respond(msg1)`` -> msg 2; ``verify(msg3)`` -> client key; ``accept``."""

    def __init__(self, seed, node_key=None):
        self._seed = seed
        self._pub = node_key if node_key is not None else crypto.sign_public(seed)
        self._h = None
        self._dh = None
        self.client_key = None

    def respond(self, msg1):
        """Check the client's hello and return message 2 (the node's signed key share)."""
        if self._h is not None:
            raise AuthError("handshake out of order")
        msg = decode_array(msg1, 3)
        if not isinstance(msg[0], str) or msg[0] != PROTOCOL:
            raise DecodeError("not a leither-rpc hello")
        if not isinstance(msg[1], int) or isinstance(msg[1], bool) or msg[1] != VERSION:
            raise DecodeError("unsupported protocol version %r" % (msg[1],))
        eph_c = _bytes32(msg[2], "ephemeral key")
        priv, eph_s = crypto.dh_keypair()
        self._dh = crypto.dh(priv, eph_c)
        h2 = _hash(_hash(_hash(_LABEL), msg1), eph_s, self._pub)
        self._h = h2
        return cbor.dumps([eph_s, self._pub, crypto.sign(self._seed, _SERVER_SIG + h2)])

    def verify(self, msg3):
        """Open message 3 and check the client's signature; return its static public key."""
        if self._dh is None or self.client_key is not None:
            raise AuthError("handshake out of order")
        dh, self._dh = self._dh, None  # single use: a failed message 3 ends the handshake
        hs = crypto.hkdf(dh, self._h, _HS_INFO, 48)
        hs_channel = Channel(bytes(16), bytes(32), hs[:16], hs[16:48])
        msg = decode_array(hs_channel.open(msg3), 2)
        client_key = _bytes32(msg[0], "client key")
        sig = _bytes64(msg[1], "client signature")
        h3 = _hash(self._h, client_key)
        if not crypto.verify(client_key, _CLIENT_SIG + h3, sig):
            raise AuthError("client signature does not verify")
        self._h = h3
        self._dh = dh
        self.client_key = client_key
        return client_key

    def accept(self, role, max_frame):
        """(channel, message 4) telling the client its role and our inbound frame limit."""
        if self.client_key is None:
            raise AuthError("handshake out of order")
        channel = _channel_from(crypto.hkdf(self._dh, self._h, _SESSION_INFO, 96), False)
        self._dh = None
        return channel, channel.seal(cbor.dumps(["ok", role, max_frame]))


_SMALL_READ = const(64)  # bytes: reads up to this use readexactly; larger go into one buffer


async def read_exact(reader, n):
    """Exactly n bytes from an asyncio stream, or EOFError. The one stream helper both ends of
    a session share. MicroPython reads larger bodies into one preallocated buffer: its
    readexactly concatenates per packet (quadratic in bytes for a slow sender)."""
    if n > _SMALL_READ and IS_MICROPYTHON:
        buf = bytearray(n)
        await read_into(reader, memoryview(buf))
        return buf
    data = await reader.readexactly(n)
    if len(data) != n:  # some MicroPython versions return short at EOF
        raise EOFError("EOF")
    return data


async def read_into(reader, view):
    """Fill ``view`` (a writable memoryview) from an asyncio stream, or EOFError: no buffer
    of the frame's size is made on MicroPython."""
    n = len(view)
    if not IS_MICROPYTHON:
        view[:] = await reader.readexactly(n)  # IncompleteReadError is an EOFError
        return
    got = 0
    while got < n:
        k = await reader.readinto(view[got:])
        if not k:
            raise EOFError("EOF")
        got += k
