# The pairing window state machine (leither.pairwin.Machine) fed made-up mDNS views and a
# made-up clock: who initiates, the settle time, overlap (also sticky), a closed window, expiry.
from leither import ids, pairwin
from leither.errors import PairingError

from testutil import raises

# Passes from 60K (its code and ours sit in the unix port's heap); 20% headroom
# so a shifted heap layout cannot fail it (ci/mp_heap_margin.py).
MP_HEAP = "80K"

ME = ids.make_id(b"me")
A = ids.make_id(b"node a")
B = ids.make_id(b"node b")
T0 = 1000000


def node(node_id, pair="1"):
    return {"id": node_id, "name": "n", "port": 4800, "addresses": ["10.0.0.9"],
            "txt": {"id": node_id, "pair": pair}}


def opened(now=T0):
    m = pairwin.Machine(ME)
    assert m.press(now)
    assert m.state == pairwin.OPEN and m.window_open(now)
    return m


def test_single_candidate_after_settle_and_lower_id_initiates():
    m = opened()
    assert m.observe([node(A)], T0 + 500) is None  # our window is too young to be sure
    assert not m.ready_for(A)
    action = m.observe([node(A)], T0 + pairwin.SETTLE_MS)
    mine, theirs = ids.id_raw(ME), ids.id_raw(A)
    assert action == (pairwin.INITIATE if mine < theirs else pairwin.WAIT)
    assert m.ready_for(A) and not m.ready_for(B)
    # The other side decides the opposite: exactly one of them connects.
    other = pairwin.Machine(A)
    other.press(T0)
    back = other.observe([node(ME)], T0 + pairwin.SETTLE_MS)
    assert {action, back} == {pairwin.INITIATE, pairwin.WAIT}


def test_own_and_unpaired_nodes_ignored():
    m = opened()
    view = [node(ME), node(A, pair="0"), {"id": "not base58 0OIl"}, {"txt": {}}, "junk"]
    assert m.observe(view, T0 + 1000) is None
    assert m.observe(view, T0 + 3000) is None
    assert m.candidate is None and m.state == pairwin.OPEN


def test_two_candidates_overlap_aborts():
    m = opened()
    assert m.observe([node(A), node(B)], T0 + 1000) == pairwin.OVERLAP
    assert m.state == pairwin.OVERLAP and not m.window_open(T0 + 1000)
    assert A in m.reason and B in m.reason
    assert m.observe([node(A)], T0 + 2000) is None  # aborted: nothing more happens


def test_overlap_is_sticky_within_the_window():
    # A was in the window and left it (pair=0: it aborted its own window); B then shows up.
    m = opened()
    m.observe([node(A)], T0 + 500)
    assert m.observe([node(A, pair="0")], T0 + 1500) is None
    assert m.observe([node(A, pair="0"), node(B)], T0 + 2500) == pairwin.OVERLAP


def test_candidate_that_left_is_not_paired_with():
    m = opened()
    m.observe([node(A)], T0 + 1000)
    assert m.observe([node(A, pair="0")], T0 + 2000) is None
    assert not m.ready_for(A)
    # Unseen for longer than FRESH_MS: not paired with either.
    m2 = opened()
    m2.observe([node(A)], T0 + 1000)
    assert m2.observe([], T0 + 1000 + pairwin.FRESH_MS + 1) is None
    assert m2.ready is None


def test_closed_window_never_pairs():
    m = pairwin.Machine(ME)
    assert m.state == pairwin.IDLE and not m.window_open(T0)
    assert m.observe([node(A)], T0) is None
    assert m.observe([node(A)], T0 + 5000) is None
    assert not m.ready_for(A)
    raises(PairingError, m.begin, T0)


def test_window_expires():
    m = opened()
    assert not m.expire(T0 + pairwin.WINDOW_MS - 1)
    assert m.expire(T0 + pairwin.WINDOW_MS)
    assert m.state == pairwin.IDLE and m.reason == "timeout"
    assert m.observe([node(A)], T0 + pairwin.WINDOW_MS + 5000) is None
    paired = pairwin.Machine(ME, paired=True)
    assert paired.state == pairwin.PAIRED
    paired.press(T0)
    paired.expire(T0 + pairwin.WINDOW_MS)
    assert paired.state == pairwin.PAIRED  # the old partner stays until a new one replaces it


def test_exchange_states():
    m = opened()
    m.observe([node(A)], T0)
    m.observe([node(A)], T0 + 1000)
    m.begin(T0 + 1000)
    assert m.state == pairwin.PAIRING and m.window_open(T0 + 1000)
    assert not m.press(T0 + 1100)  # a press does not break a running exchange
    assert m.observe([node(A), node(B)], T0 + 1200) is None  # no views mid-exchange
    assert not m.stale(T0 + 1000 + pairwin.STEP_MS)
    assert m.stale(T0 + 1001 + pairwin.STEP_MS)
    m.resume(T0 + 1500)
    assert m.state == pairwin.OPEN
    m.begin(T0 + 1600)
    m.done()
    assert m.state == pairwin.PAIRED and m.paired and not m.window_open(T0 + 1700)
    m.unpaired()
    assert m.state == pairwin.IDLE and not m.paired
    m.press(T0 + 2000)
    m.abort(pairwin.FAILED, "bad signature")
    assert m.state == pairwin.FAILED and m.reason == "bad signature"
    m.press(T0 + 3000)
    assert m.state == pairwin.OPEN and m.reason is None


def test_seen_is_bounded():
    m = opened()
    names = [ids.make_id(bytes([i])) for i in range(18)]  # two over the bound of 16
    view = [{"id": n, "txt": {"pair": "1"}} for n in names]
    assert m.observe(view, T0 + 100) == pairwin.OVERLAP
    assert m.reason.startswith("session overlap: 16 nodes") and m.reason.endswith(", ...)")
    view = None
    m.press(T0 + 200)
    m.observe([{"id": n, "txt": {"pair": "0"}} for n in names], T0 + 300)
    assert len(m.seen) == 16
