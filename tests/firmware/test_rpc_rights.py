# Rights of non-owners over a real store through the node's API (MMSetRight, then calls by a
# member's key): READ reads and nothing else, WRITE writes, ADMIN releases; MMList pages; the
# facts a peer may read. Dispatch without sockets, on both interpreters.
import sys

if sys.implementation.name == "micropython" and ".frozen" not in sys.path:
    sys.path.append(".frozen")  # asyncio is frozen into the unix port; MICROPYPATH hides it

import asyncio

from leither import api, ids, mimei, rpc, server

from testutil import rmtree, tmpdir

# A store, the API, the server's dispatch and a few MiMei in one heap (the store's buffers and
# pure-Python Ed25519 for signed versions are most of it, and dispatch() makes a reply
# buffer per call); 320K passes on the 64-bit port.
MP_HEAP = "384K"

NODE_SEED = bytes(range(1, 33))
OWNER = bytes(range(33, 65))
READER = bytes(range(65, 97))  # public keys only matter as 32-byte strings here
WRITER = bytes(range(97, 129))
ADMIN = bytes(range(129, 161))
PEER = bytes(range(161, 193))


def check(cond, msg="check failed"):
    """An assert that survives mpy-cross -O1, which drops assert statements."""
    if not cond:
        raise AssertionError(msg)


class Node:
    def __init__(self):
        self.dir = tmpdir("rights")
        from leither import identity

        self.store = mimei.Store(self.dir + "/store", identity.load_identity(self.dir))
        self.srv = server.Server(NODE_SEED, owner_key=OWNER, max_frame=4096,
                                 log=lambda msg: None,
                                 facts_provider=lambda name: {"backup": ["MIDS"]}[name])
        self.srv.peer_keys.add(PEER)
        api.API(self.store).register(self.srv)

    def call(self, key, method, params=None):
        caller = server.Caller(key, self.srv.role_of(key), "127.0.0.1:5")
        reply = asyncio.run(self.srv.dispatch(caller, 9, method, params))
        msgid, ok, value = rpc.decode_reply(reply)
        check(msgid == 9)
        return ok, value

    def ok(self, key, method, params=None):
        ok, value = self.call(key, method, params)
        check(ok, "%s refused: %r" % (method, value))
        return value

    def refused(self, key, method, params=None):
        ok, value = self.call(key, method, params)
        check(not ok and value["code"] == "forbidden", "%s: %r" % (method, value))

    def close(self):
        self.store.close()
        rmtree(self.dir)


def test_read_member_reads_only_write_member_writes():
    node = Node()
    try:
        mid = node.ok(OWNER, "MMCreate", {"app": "t"})
        db = node.ok(OWNER, "MMCreate", {"app": "t", "mark": "db", "type": "db"})
        node.ok(OWNER, "MFSetData", {"mid": mid, "data": b"owner's"})
        node.ok(OWNER, "MMBackup", {"mid": mid})
        node.ok(OWNER, "Set", {"mid": db, "args": ["k", "v"]})
        for target in (mid, db):
            node.ok(OWNER, "MMSetRight", {"mid": target, "member": ids.make_id(READER),
                                          "rights": mimei.READ})
            node.ok(OWNER, "MMSetRight", {"mid": target, "member": ids.make_id(WRITER),
                                          "rights": mimei.WRITE})
            node.ok(OWNER, "MMSetRight", {"mid": target, "member": ids.make_id(ADMIN),
                                          "rights": mimei.ADMIN})
        # READ: reads what it was given...
        check(node.ok(READER, "MFGetData", {"mid": mid}) == b"owner's")
        check(node.ok(READER, "Get", {"mid": db, "args": ["k"]}) in (b"v", "v"))
        check(node.ok(READER, "MMInfo", {"mid": mid})["id"] == mid)
        # ...and writes nothing: not the file, not the db, not a release.
        node.refused(READER, "MFSetData", {"mid": mid, "data": b"reader's"})
        node.refused(READER, "MFTruncate", {"mid": mid, "size": 0})
        node.refused(READER, "Set", {"mid": db, "args": ["k", "x"]})
        node.refused(READER, "Del", {"mid": db, "args": ["k"]})
        node.refused(READER, "MMRelease", {"mid": mid})
        check(node.ok(OWNER, "MFGetData", {"mid": mid}) == b"owner's")
        check(node.ok(OWNER, "Get", {"mid": db, "args": ["k"]}) in (b"v", "v"))
        # WRITE writes, but does not release (that is ADMIN's).
        node.ok(WRITER, "MFSetData", {"mid": mid, "data": b"writer!"})
        check(node.ok(OWNER, "MFGetData", {"mid": mid}) == b"writer!")
        node.ok(WRITER, "Set", {"mid": db, "args": ["k", "w"]})
        check(node.ok(OWNER, "Get", {"mid": db, "args": ["k"]}) in (b"w", "w"))
        node.refused(WRITER, "MMRelease", {"mid": mid})
        node.refused(ADMIN, "MFSetData", {"mid": mid, "data": b"admin's"})
        node.ok(ADMIN, "MMRelease", {"mid": mid})
        # Nobody but the owner changes rights, and a stranger gets nothing.
        node.refused(WRITER, "MMSetRight", {"mid": mid, "member": ids.make_id(WRITER),
                                            "rights": mimei.ALL})
        node.refused(PEER, "MFGetData", {"mid": mid})
    finally:
        node.close()


def test_mmlist_pages_follow_a_cursor():
    node = Node()
    try:
        made = sorted(node.ok(OWNER, "MMCreate", {"app": "t", "mark": str(i)})
                      for i in range(7))
        seen = []
        cursor = None
        pages = 0
        while True:
            page = node.ok(OWNER, "MMList", {"cursor": cursor, "limit": 3})
            check(len(page["items"]) <= 3)
            seen.extend(item["id"] for item in page["items"])
            pages += 1
            cursor = page["next"]
            if cursor is None:
                break
        check(seen == made and pages == 3, "%r %d" % (seen, pages))
        check(sorted(i["id"] for i in node.ok(OWNER, "MMList", {})) == made)  # old form
        ok, err = node.call(OWNER, "MMList", {"limit": 0})
        check(not ok and err["code"] == "bad_request")
        # A page never outgrows a frame: with a tiny frame budget, fewer items per page.
        node.srv.max_frame = 600
        api_small = api.API(node.store, max_data=500)
        page = api_small.mm_list(None, {"limit": 100})
        check(0 < len(page["items"]) < 7 and page["next"] is not None)
    finally:
        node.close()


def test_peer_reads_counts_not_provider_facts():
    node = Node()
    try:
        check(node.ok(OWNER, "GetVar", "backup") == ["MIDS"])
        node.refused(PEER, "GetVar", "backup")  # plain MiMei IDs stay with the owner
        node.refused(READER, "GetVar", "backup")
        check(node.ok(PEER, "GetVar", "connections") == 0)
        check(node.ok(PEER, "GetVar", "id") == node.srv.node_id)
        low = node.ok(READER, "GetVar", "heap_low")
        check(low is None or isinstance(low, int))
    finally:
        node.close()
