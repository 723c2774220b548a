# The pairing service's exchange over real RPC on loopback, on both interpreters: the plain
# path saves the same pairing on both nodes; when R's answer to PairConfirm is lost (the link
# drops after R saved), I asks R with PairCheck and saves the pairing too, so no node is left
# paired one-sidedly; when the link drops before R saved, neither keeps anything and I's
# window stays open. PairCheck tells nobody but the partner that it is paired.
import asyncio

from leither import pairing, pairrun, pairwin, rpcclient, server
from leither.compat import IS_MICROPYTHON, ticks_ms
from leither.identity import Identity
from leither.rpc import GUEST, OWNER, PEER

from test_pairing_rpcclient import free_port
from testutil import rmtree, tmpdir

# Two pairing services, a server, the client and the handshake crypto in one heap (code and
# all in the unix port's heap); 20% headroom over the smallest passing heap.
MP_HEAP = "264K"

I_SEED = bytes(range(1, 33))
R_SEED = bytes(range(101, 133))
STRANGER_SEED = bytes(range(201, 233))
ANYONE = (OWNER, PEER, GUEST)


class FakeNode:
    """What pairing.Service uses of a node: root, identity, server.peer_keys, no mDNS/LED."""

    def __init__(self, seed, root):
        self.root = root
        self.identity = Identity(seed)
        self.server = server.Server(seed, log=lambda msg: None, max_frame=4096)
        self.mdns = None
        self.led = None
        self.store = None
        self.config = {"pair_quota": 1000}
        self.announced = 0

    def announce(self):
        self.announced += 1

    def show_idle_led(self):
        pass


def _ready(svc, other, port):
    """Open svc's window and let it see `other` alone with pair=1 past the settle time."""
    now = ticks_ms()
    svc.machine.press(now)
    view = {"id": other.identity.id, "txt": {"pair": "1"}, "addresses": ["127.0.0.1"],
            "port": port}
    svc.machine.observe([view], now + pairwin.SETTLE_MS)
    assert svc.machine.ready == other.identity.id


async def _pair(confirm_wrapper=None):
    """Run one exchange I -> R; returns (i_service, r_service, i_node, r_node, roots)."""
    roots = (tmpdir("pi"), tmpdir("pr"))
    i_node, r_node = FakeNode(I_SEED, roots[0]), FakeNode(R_SEED, roots[1])
    i_svc, r_svc = pairing.Service(i_node), pairing.Service(r_node)
    r_svc.register(r_node.server)
    if confirm_wrapper is not None:
        r_node.server.register("PairConfirm", confirm_wrapper(r_svc._rpc_confirm), ANYONE)
    port = free_port()
    await r_node.server.start("127.0.0.1", port)
    try:
        _ready(i_svc, r_node, port)
        _ready(r_svc, i_node, 0)
        await pairrun.initiate(i_svc, i_svc.machine.candidate)
    finally:
        await r_node.server.stop()
    return i_svc, r_svc, i_node, r_node, roots, port


def _check_paired(i_svc, r_svc, i_node, r_node):
    for svc, node, other in ((i_svc, i_node, r_node), (r_svc, r_node, i_node)):
        saved = pairing.load_partner(node.root)
        assert saved is not None and saved["peer_id"] == other.identity.id
        assert svc.partner["peer_id"] == other.identity.id
        assert svc.machine.state == pairwin.PAIRED
        assert other.identity.public in node.server.peer_keys
    assert i_svc.partner["secret"] == r_svc.partner["secret"]
    assert i_svc.partner["tag"] == r_svc.partner["tag"]
    assert i_svc.code == r_svc.code and len(i_svc.code) == 6


def _cleanup(roots):
    for root in roots:
        rmtree(root)


def test_exchange_saves_the_same_pairing_on_both():
    i_svc, r_svc, i_node, r_node, roots, _ = asyncio.run(_pair())
    try:
        _check_paired(i_svc, r_svc, i_node, r_node)
    finally:
        _cleanup(roots)


def _link_cut(after_saving):
    """A PairConfirm handler factory for R whose connection drops before the answer leaves:
    after R's pairing code ran (and saved), or before it ran at all."""
    def wrap(confirm):
        def handler(caller, params):
            if after_saving:
                confirm(caller, params)
            raise asyncio.CancelledError()  # the server drops the connection, no answer

        return handler

    return wrap


def test_lost_confirm_answer_is_recovered_with_pair_check():
    i_svc, r_svc, i_node, r_node, roots, _ = asyncio.run(_pair(_link_cut(after_saving=True)))
    try:
        _check_paired(i_svc, r_svc, i_node, r_node)
    finally:
        _cleanup(roots)


def test_link_lost_before_r_saved_leaves_both_unpaired():
    i_svc, r_svc, i_node, r_node, roots, _ = asyncio.run(_pair(_link_cut(after_saving=False)))
    try:
        assert i_svc.partner is None and r_svc.partner is None
        assert pairing.load_partner(i_node.root) is None
        assert pairing.load_partner(r_node.root) is None
        assert i_svc.machine.state == pairwin.OPEN  # the window carries on
        assert r_node.identity.public not in i_node.server.peer_keys
    finally:
        _cleanup(roots)


def test_pair_check_answers_only_the_partner_with_its_tag():
    async def body():
        i_svc, r_svc, i_node, r_node, roots, port = await _pair()
        await r_node.server.start("127.0.0.1", port)
        tag = i_svc.partner["tag"]
        answers = []
        try:
            for seed, sent in ((I_SEED, tag), (I_SEED, bytes(16)), (STRANGER_SEED, tag)):
                client = await rpcclient.connect("127.0.0.1", port, seed,
                                                 expected_node_id=r_node.identity.id)
                try:
                    answers.append((await client.call("PairCheck", {"tag": sent}))["paired"])
                finally:
                    await client.close()
            client = await rpcclient.connect("127.0.0.1", port, STRANGER_SEED)
            try:
                await client.call("PairCheck", {"tag": b"short"})
                answers.append("accepted a malformed tag")
            except Exception as err:  # noqa: BLE001 - the RPC error for a bad field
                answers.append(getattr(err, "code", repr(err)))
            finally:
                await client.close()
        finally:
            await r_node.server.stop()
            _cleanup(roots)
        return answers

    assert asyncio.run(body()) == [True, False, False, "bad_request"]


def test_the_window_code_is_loaded_by_a_press_and_forgotten_after():
    import sys

    import leither

    root = tmpdir("pw")
    node = FakeNode(I_SEED, root)
    svc = pairing.Service(node)
    svc.machine.window_ms = 300  # no mDNS here: the window just runs out

    async def run():
        assert svc.open_window()
        assert "leither.pairrun" in sys.modules and svc.machine.window_open(ticks_ms())
        while svc._task is not None and not svc._task.done():
            await asyncio.sleep(0.1)
        assert svc.machine.state == pairwin.IDLE and svc.machine.reason == "timeout"
        # The window is over: on a board its code is out of sys.modules and of the package
        # (leither.memory.unload; CPython keeps it, it costs no board heap there), and the
        # next press loads it again.
        if IS_MICROPYTHON:
            assert "leither.pairrun" not in sys.modules
            assert "leither.pairproto" not in sys.modules and not hasattr(leither, "pairrun")
        assert svc.open_window() and "leither.pairrun" in sys.modules
        await svc.stop()
        while svc.machine.window_open(ticks_ms()):  # a stopped window still runs its time
            await asyncio.sleep(0.05)
        # Unpair (loads the code, nothing to unpair here) forgets it again, without error.
        assert await svc._rpc_unpair(None, {}) == {"unpaired": None, "told": False}
        assert ("leither.pairrun" in sys.modules) is not IS_MICROPYTHON

    try:
        asyncio.run(run())
    finally:
        rmtree(root)
