# A restore (leither.restore) from a partner with a board's 4 KiB frames, through a stand-in
# for the partner session that hands replies over as views into one kept frame (as rpcclient
# does) and can run out of heap mid-call: every version and block comes back, a MemoryError
# half-way is a step done again, never a restore lost. Runs under CPython and MicroPython.
import asyncio

from test_backup_engine import _bk, _Caller, _close, _Node, _pair, _write

from leither import backup, cbor, crypto, restore, rpc
from leither.rpcclient import ConnectError

from testutil import raises, rmtree, tmpdir

MP_HEAP = "512K"  # three stores, two services and the backup modules, as .mpy in the heap
_FRAME = 4096  # the partner's frames, as a board at 111,936 bytes has them


class _Fake:
    """The partner session as rpcclient.Client has it after keep_frame: replies decoded in
    one kept buffer (views die at the next call); calls whose numbers are in fail raise
    MemoryError (a board short of heap mid-call), after which the session must be closed."""

    def __init__(self, svc, caller, log):
        self.svc = svc
        self.caller = caller
        self.log = log
        self.max_frame = _FRAME
        self.closed = False
        self.kept_frame = None
        log["sessions"].append(self)

    def keep_frame(self, limit=None, buf=None):
        room = min(self.max_frame, limit or self.max_frame)
        self.kept_frame = buf if buf is not None and len(buf) >= room else bytearray(room)
        self.log["frames"] += buf is None or buf is not self.kept_frame
        return room

    async def call(self, method, params=None, timeout_ms=0, views=False):
        if self.closed:
            raise ConnectError("closed")
        self.log["calls"] += 1
        if self.log["calls"] in self.log["fail"]:
            self.closed = True  # what the caller must do anyway; a later call would fail
            raise MemoryError()
        body = cbor.dumps([1, 0, _bk(self.svc, method, self.caller, cbor.loads(cbor.dumps(
            params)))])
        assert len(body) + rpc.TAG_LEN <= self.max_frame, (method, len(body))
        frame = self.kept_frame
        if views and frame is not None and len(body) <= len(frame):
            frame[:len(body)] = body
            frame[len(body):] = bytes(len(frame) - len(body))  # stale views would see zeros
            return rpc.decode_reply(memoryview(frame)[:len(body)], True)[2]
        return cbor.loads(body)[2]

    async def close(self, abort=False):
        self.closed = True


def _restore(fail, put_fails=(), restore_fails=()):
    """Push 3 MiMei (2 versions of one) from a to b, restore a onto a fresh c with the given
    failing call numbers, failing block puts and failing steps of putting each MiMei's last
    version in place (store.restore); (log, a, c, mids) after checking."""
    root = tmpdir("restore")
    try:
        a, b, sa, sb, _sessions = _pair(root)
        b.server.max_data = _FRAME - rpc.TAG_LEN - 64
        mids = [_write(a, "r%d" % i, 3 + i, b"r%d" % i) for i in range(3)]
        a.store.set_data(mids[0], 100, b"second version")
        a.store.backup(mids[0])
        assert asyncio.run(sa.push_all())
        log = {"calls": 0, "fail": set(fail), "frames": 0, "connects": 0, "sessions": [],
               "restores": 0}

        async def connect(host, port, seed, expected_node_id=None, timeout_ms=0,
                          max_reply=0):
            assert expected_node_id == b.identity.id
            log["connects"] += 1
            return _Fake(sb, _Caller(crypto.sign_public(seed), "peer"), log)

        c = _Node(root + "/c", crypto.random(32), a.owner)
        sc = backup.Service(c)
        real_put = c.store.put_block
        puts = [0]

        def put_block(data):
            puts[0] += 1
            if puts[0] in put_fails:
                raise MemoryError()
            return real_put(data)

        c.store.put_block = put_block
        real_restore = c.store.restore

        def store_restore(mid, version):
            # The partner session is closed by now, its buffers given back: a db MiMei's
            # engine needs its page buffers here (a board's restore failed for them).
            assert log["sessions"] and all(f.closed for f in log["sessions"])
            log["restores"] += 1
            if log["restores"] in restore_fails:
                raise MemoryError()
            return real_restore(mid, version)

        c.store.restore = store_restore
        real_connect = restore.rpcclient.connect
        restore.rpcclient.connect = connect
        try:
            result = asyncio.run(restore.run(c, sc, {
                "seed": a.identity.seed, "key": bytes(range(32)),
                "partner": {"id": b.identity.id, "addr": "x", "port": 1}}))
        finally:
            restore.rpcclient.connect = real_connect
        assert result["id"] == a.identity.id and result["mimei"] == 3
        assert result["versions"] == 4 and result["incarnation"] == 1
        for mid in mids:
            want = [v["n"] for v in a.store.versions(mid)]
            assert [v["n"] for v in c.store.versions(mid)] == want
            for n in want:
                assert list(c.store.blocks_of(mid, n)) == list(a.store.blocks_of(mid, n))
                for h in c.store.blocks_of(mid, n):
                    assert crypto.sha256(c.store.get_block(h)) == h
            size = a.store.size(mid)
            assert c.store.size(mid) == size
            for off in range(0, size, 4096):
                assert c.store.get_data(mid, off, 4096) == a.store.get_data(mid, off, 4096)
        _close(a, b, c)
        return log
    finally:
        rmtree(root)


def test_restore_from_small_frames_in_one_kept_frame():
    log = _restore(())
    assert log["connects"] == 1 and log["frames"] == 1


def test_a_memory_error_mid_call_reconnects_and_the_restore_goes_on():
    # Calls 3 (the first catalog page), 9 and 10 (two in a row) and 20 fail.
    log = _restore((3, 9, 10, 20))
    assert log["connects"] == 5
    assert log["frames"] == 1  # the kept frame is handed on to each new session


def test_a_memory_error_storing_a_block_is_a_step_done_again():
    _restore((), put_fails=(2, 7, 8))


def test_putting_the_versions_in_place_comes_after_the_session_and_is_done_again():
    log = _restore((), restore_fails=(1, 3, 4))
    assert log["restores"] == 6  # 3 MiMei, 3 steps done again


def test_a_restore_short_of_heap_for_good_says_so():
    err = raises(MemoryError, _restore, tuple(range(5, 200)))
    assert err is not None


def test_progress_lines_say_how_far_and_how_long():
    from leither.compat import ticks_diff

    p = restore._Progress(8_000_000)
    t0 = p.start
    assert p.show(1000, 1, t0 + 1000) is None  # not before _PROGRESS_MS
    line = p.show(2_000_000, 20, t0 + 4000)  # 4 s in
    assert "20 versions" in line and "2000 KB of 8000 KB (25%)" in line, line
    assert "~12 s left" in line and "500 KB/s" in line, line
    assert p.show(2_000_001, 20, t0 + 5000) is None  # the next one waits again
    assert ticks_diff(p.last, t0) == 4000
    unknown = restore._Progress(None)
    line = unknown.show(4000, 1, unknown.start + 4000)
    assert "4 KB" in line and "%" not in line and "left" not in line, line
