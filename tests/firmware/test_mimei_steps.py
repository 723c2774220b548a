# Maintenance in steps (issue 10 row 3, "long jobs yield"): collect_steps/maintain_steps yield
# between small pieces of work so a node serves sessions meanwhile, and the writes made
# between the steps lose nothing -- above all a dead block that a new write dedups against
# after the mark (it must be kept, not swept). Both interpreters.
from leither import mimei
from leither.errors import StoreError

from testutil import rmtree, tmpdir

# As test_mimei_stage.py.
MP_HEAP = "272K"

SEED = bytes(range(32))


def check(cond, msg="check failed"):
    """An assert that survives mpy-cross -O1, which drops assert statements."""
    if not cond:
        raise AssertionError(msg)


def _content(n, salt):
    out = bytearray(n)
    for i in range(0, n, 4):
        v = (i // 4) * 2654435761 + salt
        out[i] = v & 255
        out[i + 1] = (v >> 8) & 255
        out[i + 2] = (v >> 16) & 255
        out[i + 3] = (v >> 24) & 255
    return out


def _finish(steps):
    try:
        while True:
            next(steps)
    except StopIteration as done:
        return done.args[0] if done.args else None


def _same(s, m, want, version="cur"):
    for pos in range(0, len(want), 4096):
        if s.get_data(m, pos, 4096, version) != want[pos:pos + 4096]:
            return False
    return s.size(m, version) == len(want)


def test_writes_between_steps_keep_what_they_reference():
    d = tmpdir("steps")
    try:
        s = mimei.Store(d, SEED)
        a = s.create("app", "", "a")
        old = _content(16384, 1)
        new = _content(16384, 2)
        s.set_data(a, 0, old)
        s.backup(a)
        s.set_data(a, 0, new)
        s.backup(a)
        s.del_versions(a, [1])  # old's chunks are dead now
        s.blocks.seal_open()  # ... and in a sealed pack: what a sweep may remove
        b = s.create("app", "", "b")
        steps = s.collect_steps(min_dead=0.0)
        next(steps)  # the mark is done: the sweep has begun
        # Between the steps: b gets old's content (every chunk a dedup hit on a dead block),
        # a gets a new version, and another MiMei comes and goes.
        s.set_data(b, 0, old)
        third = _content(6000, 3)
        s.set_data(a, 0, third)
        s.truncate(a, len(third))
        s.backup(a)
        c = s.create("app", "", "c")
        s.set_data(c, 0, b"short-lived")
        s.remove(c)
        result = _finish(steps)
        check(result["packs"] >= 1, "nothing was swept")
        check(_same(s, b, old), "a block referenced between the steps was swept")
        check(_same(s, a, third) and _same(s, a, new, 2) and _same(s, a, third, 3))
        for n in (2, 3):
            s.verify(a, n)
        s.close()
        s = mimei.Store(d, SEED)  # and after reopening
        check(_same(s, b, old) and _same(s, a, new, 2))
        # Now old's content is referenced by b only; a full collection keeps it.
        check(s.collect(min_dead=0.0)["packs"] >= 0 and _same(s, b, old))
        s.close()
    finally:
        rmtree(d)


def test_maintain_steps_yield_and_agree_with_maintain():
    d = tmpdir("steps2")
    try:
        s = mimei.Store(d, SEED)
        ids = []
        for k in range(3):
            m = s.create("app", "", "m%d" % k)
            ids.append(m)
            for v in range(3):
                s.set_data(m, 0, _content(9000, 10 * k + v))
                s.backup(m)
        s.blocks.seal_open()
        steps = s.maintain_steps(keep_last=1, now=mimei.time_ms(), min_dead=0.0)
        count = 0
        result = None
        try:
            while True:
                next(steps)
                count += 1
        except StopIteration as done:
            result = done.args[0] if done.args else None
        check(count >= 3, "maintenance did not yield")
        # keep_last=1 keeps v3, and v2 as the newest of its hour (see mimei.thin): v1 goes.
        check(result is not None and result["deleted"] == 3 and result["freed"] > 0)
        for k in range(3):
            check([v["n"] for v in s.versions(ids[k])] == [2, 3])
            s.verify(ids[k], 3)
            check(_same(s, ids[k], _content(9000, 10 * k + 2)))
        check(s.maintain(keep_last=1, min_dead=0.0)["deleted"] == 0)
        try:
            s.verify(ids[0], 1)
            raise AssertionError("a deleted version verified")
        except StoreError:
            pass
        s.close()
    finally:
        rmtree(d)


def test_maintenance_waits_while_the_heap_is_short():
    # Short of heap (memory.room_for_work says no), a step yields and waits -- at most
    # history.WAIT_STEPS times -- rather than start work that meets a MemoryError; the
    # blocking maintain() and collect() never wait.
    from leither import history, memory

    d = tmpdir("mwait")
    real = memory.room_for_work
    asked = [0]

    def short(need):
        asked[0] += 1
        return False

    try:
        s = mimei.Store(d, SEED)
        mid = s.create("app", "bin")
        s.set_data(mid, 0, _content(9000, 1))
        _finish(s.maintain_steps())
        memory.room_for_work = lambda need: True
        plain = 0
        for _ in s.maintain_steps():
            plain += 1
        memory.room_for_work = short
        waited = 0
        for _ in s.maintain_steps():
            waited += 1
        check(asked[0] > 0 and waited >= plain + history.WAIT_STEPS,
              "%d steps, %d when short" % (plain, waited))
        asked[0] = 0
        s.maintain()
        s.collect()
        check(asked[0] == 0, "the blocking runs asked %d times" % asked[0])
        s.close()
    finally:
        memory.room_for_work = real
        rmtree(d)
