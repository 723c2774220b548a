# Optional parts (leither.parts): a node knows which it carries without importing them, and a
# request for one its bundle left out is answered "no_part" in words a user can act on, with
# nothing stored. The ROMFS image without the db engine is run for real in
# tests/system/test_romfs.py; here a part is "left out" by naming modules that do not exist.
import os
import sys

from leither import mimei, parts
from leither.errors import RPCError

from testutil import raises, rmtree, tmpdir

# Imports (cbor, crypto, ids, store, mimei and the db engine) and one store on the 64-bit
# unix port: passes from 184K; 20% headroom (ci/mp_heap_margin.py).
MP_HEAP = "232K"

SEED = bytes(range(32))


def check(cond, msg="check failed"):
    """An assert that survives mpy-cross -O1, which drops assert statements."""
    if not cond:
        raise AssertionError(msg)


def _without_db(body):
    saved = parts.PARTS["db"]
    parts.PARTS["db"] = (("no_such_db_module",), saved[1])
    try:
        body()
    finally:
        parts.PARTS["db"] = saved


def test_the_full_bundle_carries_every_part():
    check(parts.present() == sorted(parts.PARTS), repr(parts.present()))
    check(hasattr(parts.load("db"), "DB"))


def test_a_left_out_part_is_refused_plainly():
    def body():
        check("db" not in parts.present())
        err = raises(parts.MissingPart, parts.load, "db")
        check(isinstance(err, RPCError) and err.code == "no_part")
        check("has no db engine" in err.msg and "frozen firmware" in err.msg, err.msg)

    _without_db(body)


def test_creating_a_db_mimei_without_the_engine_stores_nothing():
    d = tmpdir("parts")
    try:
        s = mimei.Store(d, SEED)
        kept = s.create("app", "", "file1")  # file MiMei need no part

        def body():
            err = raises(parts.MissingPart, s.create, "app", "", "db1", "db")
            check(err.code == "no_part")
            check(s.list() == [kept], repr(s.list()))
            check(os.listdir(d + "/db") == [], "a db directory was left behind")

        _without_db(body)
        db = s.create("app", "", "db1", "db")  # with the engine back, the same call works
        s.db(db).Set("k", "v")
        check(s.db(db).Get("k") == "v")
    finally:
        rmtree(d)



def test_without_the_responder_the_node_browses_only():
    from leither import mdns

    saved = parts.PARTS["mdns_responder"]
    loaded = sys.modules.pop("leither.mdnsresp", None)
    # As on a bundle without it: the module does not import, and no file of it is there.
    parts.PARTS["mdns_responder"] = (("no_such_responder",), saved[1])
    sys.modules["leither.mdnsresp"] = None
    lines = []
    try:
        m = mdns.make("n", 4800, {"id": "a"}, ["10.0.0.2"], log=lines.append)
        # The part is on disk but its import fails: that is a bug to see, not a missing part.
        parts.PARTS["mdns_responder"] = saved
        raises(ImportError, mdns.make, "n", 4800, {"id": "a"}, ["10.0.0.2"])
    finally:
        parts.PARTS["mdns_responder"] = saved
        del sys.modules["leither.mdnsresp"]
        if loaded is not None:
            sys.modules["leither.mdnsresp"] = loaded
    check(type(m) is mdns.Querier and not m.responding, repr(m))
    check(len(lines) == 1 and "no mDNS responder" in lines[0] and "not advertised" in lines[0],
          repr(lines))
    m = mdns.make("n", 4800, {"id": "a"}, ["10.0.0.2"], log=lines.append)
    check(m.responding and type(m).__name__ == "MDNS")  # the part is here: the full responder


def test_a_left_out_parts_methods_are_answered_no_part():
    from leither.rpc import GUEST, OWNER, PEER

    resolve = parts.refuse(["mdns_responder", "backup"])
    for name in ("PairOpen", "PairHello", "Unpair", "BackupStatus", "BackupRestore", "BKPut",
                 "GetReceipts"):
        entry = resolve(name)
        check(entry is not None, name)
        handler, roles, right = entry
        check(set(roles) == {OWNER, PEER, GUEST} and right is None, repr(roles))
        err = raises(parts.MissingPart, handler, None, {}, name)
        check(err.code == "no_part" and "has no pairing and backup" in err.msg, err.msg)
    for name in ("MMCreate", "GetVar", "GetLog", "SetName", "DbSet"):
        check(resolve(name) is None, name)  # not the part's: "no method" stays the server's
    check(parts.refuse(["db"])("BackupStatus") is None)

