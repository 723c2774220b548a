# The RPC server's dispatch (leither.server) without sockets: roles, rights hook, built-in
# GetVar and Claim (once, constant-time, persisted first), error codes, sync and async handlers.
import sys

if sys.implementation.name == "micropython" and ".frozen" not in sys.path:
    sys.path.append(".frozen")  # asyncio is frozen into the unix port; MICROPYPATH hides it

import asyncio

from leither import crypto, ids, rpc, server
from leither.errors import QuotaError, RPCError, StoreError

from testutil import raises

# Passes from 132K (its code and ours sit in the unix port's heap); 20% headroom
# so a shifted heap layout cannot fail it (ci/mp_heap_margin.py).
MP_HEAP = "176K"

NODE_SEED = bytes(range(1, 33))
OWNER = bytes(range(33, 65))  # public keys only matter as 32-byte strings here
PEER = bytes(range(65, 97))
STRANGER = bytes(range(97, 129))


def call(srv, caller, method, params=None, msgid=1):
    """(ok, value) of one call through the server's dispatch."""
    reply = asyncio.run(srv.dispatch(caller, msgid, method, params))
    got_id, ok, value = rpc.decode_reply(reply)
    assert got_id == msgid
    return ok, value


def make(**kwargs):
    kwargs.setdefault("max_frame", 2048)  # bytes; several servers live at once in a test
    srv = server.Server(NODE_SEED, log=lambda msg: None, **kwargs)
    srv.peer_keys.add(PEER)
    return srv


def caller(srv, key):
    return server.Caller(key, srv.role_of(key), "test")


def test_roles_from_keys():
    srv = make(owner_key=OWNER)
    assert srv.role_of(OWNER) == "owner"
    assert srv.role_of(PEER) == "peer"
    assert srv.role_of(STRANGER) == "guest"
    assert make().role_of(OWNER) == "guest"  # unclaimed: nobody is the owner
    assert srv.node_id == ids.make_id(crypto.sign_public(NODE_SEED))


def test_getvar_public_and_private_facts():
    facts = {"name": "leither-abc", "board": "unix", "secret": 42}
    srv = make(owner_key=OWNER, facts_provider=lambda name: facts[name])
    guest = caller(srv, STRANGER)
    result = call(srv, guest, "GetVar", "id")
    assert result == (True, srv.node_id)
    result = call(srv, guest, "GetVar", {"name": "board"})
    assert result == (True, "unix")
    result = call(srv, guest, "GetVar", "role")
    assert result == (True, "guest")
    ok, err = call(srv, guest, "GetVar", "secret")
    assert not ok and err["code"] == "forbidden"
    result = call(srv, caller(srv, OWNER), "GetVar", "secret")
    assert result == (True, 42)
    ok, err = call(srv, caller(srv, OWNER), "GetVar", "nothing")
    assert not ok and err["code"] == "not_found"
    ok, err = call(srv, guest, "GetVar", 5)
    assert not ok and err["code"] == "bad_request"


def test_method_roles_and_rights_hook():
    srv = make(owner_key=OWNER)
    srv.register("MMCreate", lambda c, p: "made " + p, ("owner",), right="write")
    srv.register("Backup", lambda c, p: c.role, ("owner", "peer"))
    result = call(srv, caller(srv, OWNER), "MMCreate", "x")
    assert result == (True, "made x")
    for key in (PEER, STRANGER):
        ok, err = call(srv, caller(srv, key), "MMCreate", "x")
        assert not ok and err["code"] == "forbidden"
    result = call(srv, caller(srv, PEER), "Backup")
    assert result == (True, "peer")
    ok, err = call(srv, caller(srv, STRANGER), "Backup")
    assert not ok and err["code"] == "forbidden"
    seen = []

    def rights(key, right, method, params):
        seen.append((key, right, method, params))
        return key == STRANGER and right == "write" and params == "shared"

    srv.rights = rights
    result = call(srv, caller(srv, STRANGER), "MMCreate", "shared")
    assert result == (True, "made shared")
    ok, _ = call(srv, caller(srv, STRANGER), "MMCreate", "private")
    assert not ok
    ok, _ = call(srv, caller(srv, STRANGER), "Backup")  # no right named: roles only
    assert not ok
    assert seen[0] == (STRANGER, "write", "MMCreate", "shared")

    def broken(key, right, method, params):
        raise ValueError("hook bug")

    srv.rights = broken
    ok, err = call(srv, caller(srv, STRANGER), "MMCreate", "shared")
    assert not ok and err["code"] == "forbidden"


def test_method_tables_resolve_per_call():
    srv = make(owner_key=OWNER)
    asked = []

    def resolve(name):
        asked.append(name)
        if name.startswith("Tab"):
            return (lambda c, p, n: n + ":" + p), ("owner",), "read"
        return None

    srv.add_table(resolve)
    srv.register("TabFixed", lambda c, p: "registered " + p, ("owner",))
    assert call(srv, caller(srv, OWNER), "TabOne", "x") == (True, "TabOne:x")
    assert call(srv, caller(srv, OWNER), "TabFixed", "x") == (True, "registered x")
    ok, err = call(srv, caller(srv, PEER), "TabOne", "x")
    assert not ok and err["code"] == "forbidden"
    srv.rights = lambda key, right, method, params: right == "read" and params == "ok"
    assert call(srv, caller(srv, PEER), "TabTwo", "ok") == (True, "TabTwo:ok")
    ok, err = call(srv, caller(srv, OWNER), "Other")
    assert not ok and err["code"] == "no_method"
    assert asked == ["TabOne", "TabOne", "TabTwo", "Other"]


def test_error_codes_and_async_handlers():
    srv = make(owner_key=OWNER)
    owner = caller(srv, OWNER)

    def fail(c, p):
        raise p

    async def later(c, p):
        await asyncio.sleep(0)
        return {"got": p}

    srv.register("Fail", fail)
    srv.register("Later", later)
    cases = [(RPCError("nope", "custom"), "nope", "custom"), (QuotaError("full"), "quota", "full"),
             (StoreError("gone"), "store", "gone"), (KeyError("id"), "bad_request", None),
             (ZeroDivisionError("x"), "internal", None)]
    for exc, code, msg in cases:
        ok, err = call(srv, owner, "Fail", exc)
        assert not ok and err["code"] == code
        if msg is not None:
            assert err["msg"] == msg
    result = call(srv, owner, "Later", [1, 2])
    assert result == (True, {"got": [1, 2]})
    ok, err = call(srv, owner, "Nope")
    assert not ok and err["code"] == "no_method"
    ok, err = call(srv, owner, 7)
    assert not ok and err["code"] == "bad_request"
    result = call(srv, caller(srv, STRANGER), "Ping", b"abc", msgid=rpc.MAX_MSGID)
    assert result == (True, b"abc")


def test_result_too_big_becomes_an_error():
    srv = make(owner_key=OWNER, max_frame=2048)
    srv.register("Huge", lambda c, p: b"x" * (srv.max_frame + 1))
    srv.register("Fits", lambda c, p: b"x" * srv.max_data)
    ok, err = call(srv, caller(srv, OWNER), "Huge")
    assert not ok and err["code"] == "too_big"
    ok, data = call(srv, caller(srv, OWNER), "Fits")
    assert ok and len(data) == srv.max_data


def test_unencodable_result_is_internal():
    srv = make(owner_key=OWNER)
    srv.register("Obj", lambda c, p: object())
    ok, err = call(srv, caller(srv, OWNER), "Obj")
    assert not ok and err["code"] == "internal"


def test_claim_once():
    saved = []
    srv = make(claim_token="5eb0c1a7d2f3e4a5", on_claim=saved.append, claim_backoff_ms=0)
    first = caller(srv, STRANGER)
    assert first.role == "guest"
    ok, err = call(srv, first, "Claim", {"token": "5eb0c1a7d2f3e4a6"})
    assert not ok and err["code"] == "bad_token"
    assert saved == [] and srv.owner_key is None
    ok, result = call(srv, first, "Claim", {"token": "5eb0c1a7d2f3e4a5"})
    assert ok and result["owner"] == ids.make_id(STRANGER) and result["node"] == srv.node_id
    assert saved == [STRANGER] and srv.owner_key == STRANGER
    assert first.role == "owner"  # this session is the owner's from now on
    assert srv.role_of(STRANGER) == "owner"
    for key in (PEER, STRANGER):  # nobody claims twice, the owner included
        ok, err = call(srv, caller(srv, key), "Claim", {"token": "5eb0c1a7d2f3e4a5"})
        assert not ok and err["code"] == "claimed"
    assert saved == [STRANGER]
    result = call(srv, caller(srv, PEER), "GetVar", "claimed")
    assert result == (True, True)


def test_claim_refusals():
    srv = make()  # no token: cannot be claimed over the network
    ok, err = call(srv, caller(srv, STRANGER), "Claim", {"token": "x"})
    assert not ok and err["code"] == "no_token"
    srv = make(claim_token="abc", claim_backoff_ms=60000)
    ok, err = call(srv, caller(srv, STRANGER), "Claim", {"token": 5})
    assert not ok and err["code"] == "bad_request"
    ok, err = call(srv, caller(srv, STRANGER), "Claim", {"token": "abd"})
    assert not ok and err["code"] == "bad_token"
    # Right after a wrong guess even the right token waits (guessing costs a second a try).
    ok, err = call(srv, caller(srv, STRANGER), "Claim", {"token": "abc"})
    assert not ok and err["code"] == "busy"
    assert srv.owner_key is None


def test_claim_not_taken_when_persisting_fails():
    def broken(key):
        raise OSError(28, "no space")

    srv = make(claim_token="abc", on_claim=broken)
    ok, err = call(srv, caller(srv, STRANGER), "Claim", "abc")
    assert not ok and err["code"] == "internal"
    assert srv.owner_key is None and srv.claim_token == "abc"


def test_register_validates():
    srv = make()
    raises(ValueError, srv.register, "", lambda c, p: None)
    raises(ValueError, srv.register, "X", lambda c, p: None, ("admin",))


def test_bulk_results_fill_the_frame_in_place():
    srv = make(owner_key=OWNER)
    owner = caller(srv, OWNER)

    def fill_from(offset):
        def fill(view):
            for i in range(len(view)):
                view[i] = (offset + i) & 0xFF
        return fill

    srv.register("Read", lambda c, p: server.Bulk(p["length"], fill_from(p["offset"])))
    result = call(srv, owner, "Read", {"offset": 250, "length": 10}, msgid=77)
    assert result == (True, bytes((250 + i) & 0xFF for i in range(10)))
    result = call(srv, owner, "Read", {"offset": 0, "length": 0})
    assert result == (True, b"")
    ok, data = call(srv, owner, "Read", {"offset": 0, "length": srv.max_data})
    assert ok and len(data) == srv.max_data
    ok, err = call(srv, owner, "Read", {"offset": 0, "length": srv.max_data + 64})
    assert not ok and err["code"] == "too_big"

    def broken(view):
        raise StoreError("block 3 fails its hash")

    srv.register("Broken", lambda c, p: server.Bulk(4, broken))
    ok, err = call(srv, owner, "Broken")
    assert not ok and err == {"code": "store", "msg": "block 3 fails its hash"}
    srv.register("Short", lambda c, p: server.Bulk(4, lambda view: 2))
    ok, err = call(srv, owner, "Short")
    assert not ok and err["code"] == "internal"
