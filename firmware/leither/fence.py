# Fencing after a restore (DESIGN §5, "incarnation"): a restore makes a second board with the
# dead board's identity. If the old board comes back, the two must never both write into the
# node's history on the partner. The node's identity carries an incarnation number that each
# restore advances; the partner keeps the newest it has seen and serves only that one; the old
# board, told so, stops serving as that ID.
"""Incarnations: signed records, the restoring side (``advance``), the replaced side (``learn``).

An incarnation record is a deterministic-CBOR map ``{"id": node ID, "n": incarnation (1, 2,
...), "t": ms since the Unix epoch of the restore, "sig": Ed25519}``, the signature by the node
key over ``b"leither-incarnation/1" + CBOR({"id", "n", "t"})``. A board with no record is
incarnation 0 (never restored). The record lives in ``<root>/incarnation.cbor``; it is sent in
every ``BKHello`` and the partner keeps the newest one per vault (``Vault.fence``).

The signature is the node key's, so neither the partner nor anyone on the path can make a board
believe it was replaced, nor advance a node's incarnation: ``learn`` checks the newer record
against the board's own public key before it gives up its ID. (Both boards hold that key; the
fence protects the history from an honest old board coming back, which is what happens when a
"dead" board is repaired or found, not from a stolen key.)

A replaced board keeps the newer record in ``<root>/replaced.cbor`` and, until its root is
wiped, serves nothing but ``GetVar`` (every other call answers ``replaced``), shows the LED
"error" pattern and pushes nothing. GetVar ``replaced``: None, or ``{"time": ms since the Unix
epoch of the restore that replaced it, "incarnation": the newer incarnation, "was": this
board's}``; GetVar ``incarnation``: this board's number.
"""

from . import cbor, crypto, ids
from .compat import time_ms
from .errors import AuthError, DecodeError, LeitherError
from .identity import read_file, write_atomic

DOMAIN = b"leither-incarnation/1"
FILE = "incarnation.cbor"
REPLACED_FILE = "replaced.cbor"
MAX_RECORD = 256  # bytes: a record encodes to ~130; bounds hostile input before decoding


def _log(line):
    print("leither: fence: " + line)


def make(seed, n, t_ms):
    """The encoded incarnation record n of the node with Ed25519 seed, made at t_ms."""
    body = {"id": ids.make_id(crypto.sign_public(seed)), "n": n, "t": t_ms}
    body["sig"] = crypto.sign(seed, DOMAIN + cbor.dumps(body))
    return cbor.dumps(body)


def check(public, data):
    """The {"id", "n", "t"} of a record signed by public's node; DecodeError if malformed,
    AuthError if not that node's or not signed by it."""
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_RECORD:
        raise DecodeError("an incarnation record is at most %d bytes" % MAX_RECORD)
    r = cbor.loads(bytes(data))
    if (not isinstance(r, dict) or len(r) != 4 or type(r.get("n")) is not int
            or type(r.get("t")) is not int or not isinstance(r.get("sig"), bytes)
            or not 0 < r["n"] < (1 << 31) or r["t"] < 0):
        raise DecodeError("not an incarnation record")
    if r.get("id") != ids.make_id(public):
        raise AuthError("incarnation record of another node")
    sig = r.pop("sig")
    if not crypto.verify(bytes(public), DOMAIN + cbor.dumps(r), sig):
        raise AuthError("incarnation record not signed by the node")
    return r


def date_text(ms):
    """ms since the Unix epoch as "YYYY-MM-DD HH:MM UTC" (for people and logs)."""
    import time

    secs = ms // 1000
    if time.gmtime(0)[0] == 2000:  # bare-metal MicroPython counts from 2000
        secs -= 946684800
    t = time.gmtime(secs)
    return "%04d-%02d-%02d %02d:%02d UTC" % (t[0], t[1], t[2], t[3], t[4])


# ---- this board's side -------------------------------------------------------------------


def incarnation(node):
    """(n, record or None) of this board, from <root>/incarnation.cbor."""
    try:
        data = read_file(node.root + "/" + FILE)
    except OSError:
        return 0, None
    try:
        return check(node.identity.public, data)["n"], data
    except LeitherError as err:
        _log("ignoring a bad %s: %s" % (FILE, err))
        return 0, None


def load_replaced(node):
    """The GetVar "replaced" fact of this board, or None (read at boot)."""
    try:
        data = read_file(node.root + "/" + REPLACED_FILE)
    except OSError:
        return None
    try:
        r = check(node.identity.public, data)
    except LeitherError as err:
        _log("ignoring a bad %s: %s" % (REPLACED_FILE, err))
        return None
    return {"time": r["t"], "incarnation": r["n"], "was": incarnation(node)[0]}


def message(node_id, replaced):
    return "node %s was replaced by a restore on %s (incarnation %d; this board is %d)" % (
        node_id, date_text(replaced["time"]), replaced["incarnation"], replaced["was"])


async def learn(svc, client):
    """The partner answered "replaced": fetch the newer record (BKFence) and, if the node key
    signed it and it is newer than this board's, stop serving as this ID for good."""
    node = svc.node
    try:
        reply = await client.call("BKFence", {}, 5000)
        data = reply.get("record") if isinstance(reply, dict) else None
        r = check(node.identity.public, data)
    except (LeitherError, OSError) as err:
        _log("the partner says this board was replaced, without proof (%s): carrying on" % err)
        return False
    was = svc.incarnation[0]
    if r["n"] <= was:
        _log("the partner's incarnation %d is not newer than this board's %d" % (r["n"], was))
        return False
    write_atomic(node.root + "/" + REPLACED_FILE, bytes(data))
    svc.replaced = {"time": r["t"], "incarnation": r["n"], "was": was}
    _log(message(node.identity.id, svc.replaced) + ": serving no more")
    refuse(node, svc.replaced)
    show(node, svc.replaced)
    return True


def refuse(node, replaced):
    """Every RPC but GetVar answers "replaced" from now on (leither.server's refusal)."""
    server = node.server
    if server is not None:
        server.refusal = {"code": "replaced", "msg": message(node.identity.id, replaced)}


def show(node, replaced):
    led = getattr(node, "led", None)
    if led is not None:
        led.show("error")


# ---- the restoring side ------------------------------------------------------------------


async def advance(client, seed, call_ms=15000):
    """Make the node's incarnation on the partner (client: a session as that node) one newer
    than any it has seen; the new record (bytes). Done first in a restore: from then on the
    old board cannot push, even while the restore runs."""
    public = crypto.sign_public(seed)
    reply = await client.call("BKFence", {}, call_ms)
    newest = 0
    data = reply.get("record") if isinstance(reply, dict) else None
    if data is not None:
        newest = check(public, data)["n"]
    record = make(seed, newest + 1, time_ms())
    await client.call("BKFence", {"record": record}, call_ms)
    return record


def save(root, record):
    """Keep this board's incarnation record (a restore, before the identity is written)."""
    write_atomic(root + "/" + FILE, record)
