# Replies built in place: the frame buffer a reply is encoded, sealed and sent from, bulk
# results written straight into it, and the wire error code of every failure a handler raises.
"""Reply encoding for leither.server (frame buffer, Bulk results, error codes)."""

from . import cbor, rpc
from .compat import const
from .errors import (
    AuthError,
    DecodeError,
    LeitherError,
    PairingError,
    ProofError,
    QuotaError,
    RPCError,
    StoreError,
)

CBOR_NO_HEAP = "CBOR: out of memory decoding the item"  # leither.cbor's MemoryError, reworded
REPLY_OVERHEAD = const(64)  # bytes of CBOR around a bulk result ([id, 0, h'..'] + tag)


def error_code(err):
    """Wire error code for an exception a handler raised."""
    if isinstance(err, RPCError):
        return err.code
    if isinstance(err, MemoryError) or str(err).endswith(CBOR_NO_HEAP):
        return "busy"  # the heap ran short (also when a decode below said so in its words)
    if isinstance(err, QuotaError):
        return "quota"
    if isinstance(err, StoreError):
        return "store"
    if isinstance(err, DecodeError):
        return "bad_request"
    if isinstance(err, AuthError):
        return "forbidden"
    if isinstance(err, ProofError):
        return "proof"
    if isinstance(err, PairingError):
        return "pairing"
    if isinstance(err, LeitherError):
        return "error"
    if isinstance(err, (KeyError, TypeError, ValueError, IndexError)):
        return "bad_request"  # a handler tripping over missing or mistyped params
    return "internal"


class Bulk:
    """A handler result of ``length`` bytes that ``fill(view)`` writes straight into the reply
    frame (``view`` is a memoryview of exactly ``length`` bytes; fill it all, or raise).

    For bulk reads on a board: returning bytes costs a frame-sized allocation per call, and
    under load a fragmented heap has no such hole left; a Bulk costs nothing. The client sees
    an ordinary byte string. ``length`` must fit ``Server.max_data``.
    """

    def __init__(self, length, fill):
        self.length = length
        self.fill = fill


_REPLY_OK_HEAD = b"\x83"  # CBOR array of 3 items: [msgid, 0, result]


class _Overflow(Exception):
    pass


class FrameBuffer:
    """A frame being built in place: header room, CBOR written by cbor.dump, tag room."""

    def __init__(self, max_frame):
        self.buf = bytearray(rpc.HEADER_LEN + max_frame)
        self.view = memoryview(self.buf)
        self.limit = rpc.HEADER_LEN + max_frame - rpc.TAG_LEN
        self.pos = rpc.HEADER_LEN

    def write(self, data):
        end = self.pos + len(data)
        if end > self.limit:
            raise _Overflow()
        self.view[self.pos:end] = data
        self.pos = end


def encode_reply(out, msgid, ok, value, on_failure):
    """Write the reply [msgid, 0|1, value] into ``out`` (a FrameBuffer); a result that does
    not fit or encode becomes an error reply. MemoryError propagates (the caller answers
    busy)."""
    out.pos = rpc.HEADER_LEN
    try:
        if ok and isinstance(value, Bulk):
            out.write(_REPLY_OK_HEAD)
            out.write(cbor.dumps(msgid))
            out.write(b"\x00")
            out.write(cbor.encode_head(cbor.BYTES, value.length))
            end = out.pos + value.length
            if end > out.limit:
                raise _Overflow()
            got = value.fill(out.view[out.pos:end])
            if got is not None and got != value.length:
                raise RPCError("internal", "bulk result filled %d of %d bytes"
                               % (got, value.length))
            out.pos = end
            return
        cbor.dump([msgid, 0 if ok else 1, value], out)
        return
    except MemoryError:
        raise
    except _Overflow:
        error = {"code": "too_big", "msg": "result over %d bytes; ask for less"
                 % (out.limit - rpc.HEADER_LEN - REPLY_OVERHEAD)}
    except LeitherError as err:  # a Bulk fill that failed (a store error...)
        error = {"code": error_code(err), "msg": (err.msg if isinstance(err, RPCError)
                                                 else str(err))[:200]}
    except Exception as err:  # noqa: BLE001 - a result CBOR cannot carry is a node bug
        on_failure(err)
        error = {"code": "internal", "msg": "result does not encode"}
    out.pos = rpc.HEADER_LEN
    cbor.dump([msgid, 1, error], out)


def peek_msgid(plain):
    """The msgid of a request [msgid, ...] whose rest may not decode; 0 if even that fails."""
    try:
        if len(plain) < 2 or plain[0] != 0x83:
            return 0
        ai = plain[1]
        if ai < 24:
            return ai
        size = {24: 1, 25: 2, 26: 4}.get(ai)
        if size is None or len(plain) < 2 + size:
            return 0
        return int.from_bytes(bytes(plain[2:2 + size]), "big")
    except Exception:  # noqa: BLE001 - best effort on a request that failed anyway
        return 0
