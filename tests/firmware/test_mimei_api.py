# The storage methods as a client meets them, through the node's API and the server's dispatch
# (no sockets): a staged whole-file put (MFSetData "stage", MFCommit) leaves cur untouched until
# the commit and needs the write right; offsets past the tree's bound are a clear error and a
# far one is a hole; big db collections page with Hscan/Sscan. Both interpreters.
import sys

if sys.implementation.name == "micropython" and ".frozen" not in sys.path:
    sys.path.append(".frozen")  # asyncio is frozen into the unix port; MICROPYPATH hides it

import asyncio

from leither import api, apicalls, mimei, rpc, server, store

from testutil import rmtree, tmpdir

# As test_rpc_rights.py: a store, the API, the server's dispatch and the db engine in one
# 64-bit heap. Passes from 400K; 20% headroom (ci/mp_heap_margin.py).
MP_HEAP = "512K"

NODE_SEED = bytes(range(1, 33))
OWNER = bytes(range(33, 65))
READER = bytes(range(65, 97))
WRITER = bytes(range(97, 129))


def check(cond, msg="check failed"):
    """An assert that survives mpy-cross -O1, which drops assert statements."""
    if not cond:
        raise AssertionError(msg)


class Node:
    def __init__(self):
        from leither.db import DB

        self.dir = tmpdir("mmapi")
        self.store = mimei.Store(self.dir + "/store", NODE_SEED, db_class=DB)
        self.srv = server.Server(NODE_SEED, owner_key=OWNER, max_frame=8192,
                                 log=lambda msg: None)
        api.API(self.store).register(self.srv)

    def call(self, key, method, params=None):
        caller = server.Caller(key, self.srv.role_of(key), "127.0.0.1:5")
        reply = asyncio.run(self.srv.dispatch(caller, 7, method, params))
        msgid, ok, value = rpc.decode_reply(reply)
        check(msgid == 7)
        return ok, value

    def ok(self, key, method, params=None):
        ok, value = self.call(key, method, params)
        check(ok, "%s refused: %r" % (method, value))
        return value

    def error(self, key, method, params=None):
        ok, value = self.call(key, method, params)
        check(not ok, "%s accepted" % method)
        return value["code"]

    def close(self):
        self.store.close()
        rmtree(self.dir)


def test_staged_put_commits_in_one_step_and_needs_write():
    node = Node()
    try:
        mid = node.ok(OWNER, "MMCreate", {"app": "api", "ext": "bin"})
        node.ok(OWNER, "MFSetData", {"mid": mid, "data": b"old content"})
        for pos in range(0, 9000, 3000):
            node.ok(OWNER, "MFSetData", {"mid": mid, "offset": pos, "data": b"N" * 3000,
                                         "sync": False, "stage": True})
            check(bytes(node.ok(OWNER, "MFGetData", {"mid": mid})) == b"old content")
        check(node.error(OWNER, "MFCommit", {"mid": mid, "size": 8999}) != "forbidden")
        check(node.ok(OWNER, "MFCommit", {"mid": mid, "size": 9000}) == 9000)
        check(bytes(node.ok(OWNER, "MFGetData", {"mid": mid, "length": 10})) == b"N" * 10)
        check(node.ok(OWNER, "MFGetSize", {"mid": mid}) == 9000)
        check(node.error(OWNER, "MFCommit", {"mid": mid}) != "forbidden")  # nothing staged
        # A discarded stage never shows.
        node.ok(OWNER, "MFSetData", {"mid": mid, "data": b"xyz", "stage": True})
        node.ok(OWNER, "MFCommit", {"mid": mid, "discard": True})
        check(node.ok(OWNER, "MFGetSize", {"mid": mid}) == 9000)
        # Rights: a READ member may neither stage nor commit; a WRITE member may do both.
        from leither import ids

        for key, bits in ((READER, mimei.READ), (WRITER, mimei.WRITE)):
            node.ok(OWNER, "MMSetRight", {"mid": mid, "member": ids.make_id(key),
                                          "rights": bits})
        check(node.error(READER, "MFSetData", {"mid": mid, "data": b"r",
                                               "stage": True}) == "forbidden")
        check(node.error(READER, "MFCommit", {"mid": mid}) == "forbidden")
        node.ok(WRITER, "MFSetData", {"mid": mid, "data": b"by writer", "stage": True})
        check(node.ok(WRITER, "MFCommit", {"mid": mid}) == 9)
        check(bytes(node.ok(READER, "MFGetData", {"mid": mid})) == b"by writer")
    finally:
        node.close()


def test_far_offsets_are_holes_or_clear_errors():
    node = Node()
    try:
        mid = node.ok(OWNER, "MMCreate", {"app": "api", "ext": "far"})
        before = node.store.blocks.count()
        check(node.ok(OWNER, "MFSetData", {"mid": mid, "offset": 1 << 32, "data": b"x"})
              == (1 << 32) + 1)
        check(node.store.blocks.count() - before < 12, "the hole was written out")
        check(bytes(node.ok(OWNER, "MFGetData", {"mid": mid, "offset": (1 << 32) - 1,
                                                 "length": 4})) == b"\x00x")
        node.error(OWNER, "MFSetData", {"mid": mid, "offset": store.MAX_SIZE, "data": b"x"})
        node.error(OWNER, "MFTruncate", {"mid": mid, "size": store.MAX_SIZE + 1})
        node.error(OWNER, "MFSetData", {"mid": mid, "offset": -1, "data": b"x"})
        check(node.ok(OWNER, "MFGetSize", {"mid": mid}) == (1 << 32) + 1)
    finally:
        node.close()


def test_db_collections_page_over_rpc():
    node = Node()
    try:
        mid = node.ok(OWNER, "MMCreate", {"app": "api", "type": "db"})
        members = ["m%03d" % i for i in range(300)]
        node.ok(OWNER, "Sadd", {"mid": mid, "args": ["s"] + members})
        check(node.error(OWNER, "Smembers", {"mid": mid, "args": ["s"]}) != "forbidden")
        seen = []
        cursor = ""
        while True:
            cursor, page = node.ok(OWNER, "Sscan", {"mid": mid, "args": ["s", cursor, 100]})
            seen.extend(page)
            if cursor == "":
                break
        check(seen == members)
        node.ok(OWNER, "Hset", {"mid": mid, "args": ["h", "a", "1", "b", "2"]})
        check(node.ok(OWNER, "Hscan", {"mid": mid, "args": ["h", "", 1]}) == ["a", ["a", "1"]])
    finally:
        node.close()


def test_the_store_opens_at_the_first_call_that_needs_it():
    # A node hands the API a function that opens its store: registering the methods and
    # serving other calls must not open it (nor load the storage code); the first MiMei call
    # does, once.
    opened = []
    n = Node()
    try:
        def open_store():
            opened.append(1)
            return n.store

        lazy = server.Server(NODE_SEED, owner_key=OWNER, max_frame=8192, log=lambda msg: None)
        api.API(open_store).register(lazy)
        n.srv = lazy
        check(n.ok(OWNER, "GetVar", "id") == lazy.node_id and not opened)
        mid = n.ok(OWNER, "MMCreate", {"app": "lazy"})
        check(opened == [1], "store opened %d times" % len(opened))
        n.ok(OWNER, "MFSetData", {"mid": mid, "data": b"abc"})
        check(n.ok(OWNER, "MFGetSize", {"mid": mid}) == 3 and opened == [1])
    finally:
        n.close()


def test_constants_kept_apart_from_the_storage_code_match_it():
    # leither.api and leither.node keep the storage code out of an idle node's heap, so they
    # hold their own copies of these.
    from leither import node

    check(api.RIGHT_BITS == {"read": mimei.READ, "write": mimei.WRITE, "admin": mimei.ADMIN,
                             "backup": mimei.BACKUP})
    check(apicalls.ALL_RIGHTS == mimei.ALL)
    check(node.STORE_RESERVE == mimei.RESERVE)
