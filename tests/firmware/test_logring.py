# The node's log ring (leither.logring) and its own name (leither.naming), on both interpreters:
# the ring stays within its byte bound however much is logged, hands out lines by sequence so a
# follower misses none it could have had and learns how many it did miss; every line the node
# prints lands in it; GetLog and SetName check their parameters; SetName keeps the name in
# config.json, where the node reads it at boot.
import asyncio
import json

from leither import logring, naming
from leither.errors import RPCError

from testutil import raises, rmtree, tmpdir


def test_ring_is_bounded_and_counts_what_it_dropped():
    ring = logring.Ring(1000)
    for i in range(200):
        ring.add("line %d %s" % (i, "x" * (i % 50)))
    assert ring.size <= 1000
    kept = ring.lines
    assert kept[-1][0] == 200 and kept[-1][2].startswith("line 199")
    # Sequence numbers are consecutive: nothing vanishes from the middle.
    assert [s for s, t, x in kept] == list(range(kept[0][0], 201))
    assert all(t > 1600000000000 for s, t, x in kept)  # wall-clock ms
    got = ring.since(0, 1000)
    assert got["dropped"] == kept[0][0] - 1 and got["last"] == 200
    assert [x[0] for x in got["lines"]] == [s for s, t, x in kept]
    tail = ring.since(195, 3)
    assert [x[0] for x in tail["lines"]] == [196, 197, 198] and tail["dropped"] == 0
    assert ring.since(200)["lines"] == [] and ring.since(200)["next"] == 200
    long = logring.Ring(100000)
    long.add("y" * 1000)
    assert len(long.lines[0][2]) == logring.LINE_MAX and long.lines[0][2].endswith("...")


def test_printed_lines_land_in_the_ring_and_get_log_serves_them():
    ring = logring.install()
    assert logring.install() is ring  # once per process
    print("leither: test line one\nleither: test line two")
    lines = [x[2] for x in ring.lines]
    assert lines[-2:] == ["leither: test line one", "leither: test line two"]

    svc = logring.Service(None)
    reply = svc._get_log(None, {"after": 0, "tail": 2})
    assert [x[2] for x in reply["lines"]] == lines[-2:]
    after = reply["next"]
    print("leither: test line three")
    more = svc._get_log(None, {"after": after})
    assert [x[2] for x in more["lines"]] == ["leither: test line three"]
    for bad in ({"after": -1}, {"after": "0"}, {"limit": 0}, {"tail": -3}):
        err = raises(RPCError, svc._get_log, None, bad)
        assert err.code == "bad_request"


class FakeNode:
    def __init__(self, root):
        self.root = root
        self.config = {"name": "board1", "port": 4800}
        self.name = "board1"
        self.mdns = None


def test_set_name_checks_and_keeps_the_name():
    root = tmpdir("naming")
    try:
        node = FakeNode(root)
        svc = naming.Service(node)
        out = asyncio.run(svc._set_name(None, {"name": "kitchen-2"}))
        assert out == {"name": "kitchen-2", "old": "board1"} and node.name == "kitchen-2"
        with open(root + "/config.json") as f:
            saved = json.load(f)
        assert saved == {"name": "kitchen-2", "port": 4800}  # the rest of the config kept
        for bad in ("", "a/b", "x" * 64, "-a", "caf\u00e9", 7, None):
            err = raises(RPCError, asyncio.run, svc._set_name(None, {"name": bad}))
            assert err.code == "bad_request"
        assert node.name == "kitchen-2"
    finally:
        rmtree(root)
