# The push engine of leither.backup between two in-process services (no sockets): the owner's
# calls go straight to the partner's handlers through a fake session that can lose a reply.
# Checks: everything arrives sealed and once, a lost reply resumes without resending, the
# quota, and who may push or read. Runs under CPython and MicroPython.
import asyncio

from leither import backup, backup_push, cbor, crypto, ids, mimei, seal
from leither.errors import AuthError, DecodeError, QuotaError, RPCError
from leither.identity import Identity
from leither.rpcclient import ConnectError

from testutil import raises, rmtree, tmpdir

MP_HEAP = "576K"  # two stores, two services and the whole backup module, as .mpy in the heap


class _Server:
    def __init__(self):
        self._methods = {}
        self._tables = []
        self.zero_copy = set()
        self._conns = []
        self.max_data = 60000

    def register(self, name, fn, roles, right=None):
        self._methods[name] = (fn, roles, right)

    def add_table(self, resolve):
        self._tables.append(resolve)

    def resolve(self, name):
        for table in self._tables:
            entry = table(name)
            if entry is not None:
                return entry
        raise KeyError(name)


class _Caller:
    def __init__(self, key, role):
        self.key = key
        self.id = ids.make_id(key)
        self.role = role
        self.addr = "127.0.0.1:1"


class _Node:
    def __init__(self, root, seed, owner):
        self.root = root
        self.config = {}
        self.identity = Identity(seed)
        self.store = mimei.Store(root + "/store", self.identity)
        self.owner = owner
        self.port = 4800
        self.services = []
        self.server = _Server()
        self.partner = None


class _Session:
    """Calls the partner's handlers as a peer, one at a time (call) or pipelined (send, then
    receive in order). Loses the reply of request number lose_at (the session is cut after
    it: nothing sent later arrives); answers "busy" without running requests numbered in busy
    (as a partner short of heap does); check(method, params) runs before each request."""

    def __init__(self, partner_service, caller):
        self.svc = partner_service
        self.caller = caller
        self.max_frame = 8192
        self.closed = False
        self.calls = 0
        self.lose_at = None
        self.busy = ()
        self.check = None
        self.lock = asyncio.Lock()
        self.answers = []  # (msgid, result, error) of requests sent, not received yet
        self.most = 0  # requests in flight at once, at most

    def _run(self, method, params):
        self.calls += 1
        if self.closed:
            raise ConnectError("session closed")
        if self.calls in self.busy:
            return None, RPCError("busy", "short of heap")
        # Through CBOR both ways, as on the wire (a memoryview blob arrives as bytes).
        params = cbor.loads(cbor.dumps(params))
        if self.check is not None:
            self.check(method, params)
        try:
            result = cbor.loads(cbor.dumps(_bk(self.svc, method, self.caller, params)))
        except (RPCError, QuotaError, AuthError) as err:  # raised at its answer
            return None, err
        if self.lose_at is not None and self.calls >= self.lose_at:
            self.lose_at = None
            self.closed = True
            return None, ConnectError("reply lost")
        return result, None

    async def call(self, method, params=None, timeout_ms=0):
        result, err = self._run(method, params)
        if err is not None:
            raise err
        return result

    async def send(self, method, params=None):
        result, err = self._run(method, params)
        self.answers.append((self.calls, result, err))
        self.most = max(self.most, len(self.answers))
        return self.calls

    async def receive(self, msgid, method="", timeout_ms=0):
        got, result, err = self.answers.pop(0)
        assert got == msgid
        if err is not None:
            if isinstance(err, ConnectError):
                self.answers = []
            raise err
        return result

    async def close(self, abort=False):
        self.closed = True

    def keep_frame(self, limit=None, buf=None):  # a board's kept request frame (rpcclient)
        room = min(self.max_frame, limit or self.max_frame)
        self.kept_frame = buf if buf is not None and len(buf) >= room + 4 else bytearray(
            room + 4)
        return room


def _bk(svc, method, caller, params):
    """A BK* call as the partner's server runs it (through the table backup registered)."""
    handler, _roles, _right = svc.node.server.resolve(method)
    return handler(caller, params, method)


def _pair(root):
    owner = crypto.random(32)
    a = _Node(root + "/a", crypto.random(32), crypto.sign_public(owner))
    b = _Node(root + "/b", crypto.random(32), crypto.sign_public(owner))
    a.partner = {"peer_id": b.identity.id, "peer_key": b.identity.public, "addr": "x",
                 "port": 1, "quota_to_peer": 1 << 30}
    b.partner = {"peer_id": a.identity.id, "peer_key": a.identity.public, "addr": "x",
                 "port": 1, "quota_to_peer": 1 << 30}
    sa, sb = backup.Service(a), backup.Service(b)
    a.services.append(sa)
    b.services.append(sb)
    sa.register(a.server)
    sb.register(b.server)
    sa.set_key(bytes(range(32)))
    sessions = []
    _link(sa, sb, sessions)
    return a, b, sa, sb, sessions


def _link(sa, sb, sessions, max_frame=8192):
    """sa's sessions to its partner sb: fake transport, the real BKHello (incarnation)."""

    async def open_session():
        s = _Session(sb, _Caller(sa.node.identity.public, "peer"))
        s.max_frame = max_frame
        sessions.append(s)
        await backup_push.hello(sa, s)
        s.lose_at = sa.lose_at
        sa.lose_at = None
        s.busy = getattr(sa, "busy_at", ())
        s.check = getattr(sa, "check", None)
        return s

    sa._open = open_session
    sa.lose_at = None


def _write(node, label, chunks, salt):
    mid = node.store.create("t", label)
    for i in range(chunks):
        node.store.set_data(mid, i * 4096, crypto.sha256(b"%s %d %d" % (salt, i, chunks)) * 128)
    node.store.backup(mid)
    return mid


def _close(*nodes):
    for n in nodes:
        for s in n.services:
            for v in s.vaults.values():
                v.close()
        n.store.close()


def test_push_is_sealed_complete_and_resumes_without_resending():
    root = tmpdir("bkeng")
    try:
        a, b, sa, sb, sessions = _pair(root)
        mids = [_write(a, "m%d" % i, 12 + i, b"v1") for i in range(3)]
        sa.lose_at = 4  # the first session's 4th call loses its reply (a BKPut)
        err = raises(ConnectError, asyncio.run, sa.push_all())
        assert "lost" in str(err) or "closed" in str(err)
        sa._client = None
        assert asyncio.run(sa.push_all())
        vault = sb.vaults[a.identity.id]
        assert vault.info["stats"]["dups"] == 0  # the lost batch was asked about, not resent
        keys = seal.Keys(bytes(range(32)))
        for mid in mids:
            for h in a.store.blocks_of(mid, "last"):
                name = keys.name(h)
                assert vault.has(name)
                assert keys.open_blob(name, vault.get(name), h) == a.store.get_block(h)
        st = sa.status()
        assert st["pending"] == 0 and all(m["partner_n"] == 1 for m in st["mimei"].values())
        entries = vault.entries(0, 64)
        assert len([e for e in entries if e[0] == 118]) == 3
        # A second version sends only the changed chunk, its manifest and the record.
        before = vault.info["stats"]["received"]
        a.store.set_data(mids[0], 4096 * 3, b"changed")
        a.store.backup(mids[0])
        assert asyncio.run(sa.push_all())
        assert vault.info["stats"]["received"] - before < 3 * 4096 + 1000
        # Audits pass; a wrong blob fails them.
        results = asyncio.run(sa.audit(4))
        assert results and all(r["ok"] for r in results)
        _close(a, b)
    finally:
        rmtree(root)


def test_pipelined_push_lists_only_whole_versions_past_busy_answers():
    # Requests go several at a time; a partner short of heap answers some "busy" and stores
    # nothing of them. Every catalog entry still names a version whose every blob is there
    # when it is listed, nothing is sent twice, and all of it arrives.
    root = tmpdir("bkpipe")
    try:
        a, b, sa, sb, sessions = _pair(root)
        mids = [_write(a, "b%d" % i, 4 + i, b"busy") for i in range(5)]
        keys = seal.Keys(bytes(range(32)))
        need = {}
        for mid in mids:
            names = [keys.name(h) for h in a.store.blocks_of(mid, "last")]
            need[names[0]] = names  # under the version record's name
        data = set()
        for names in need.values():
            data.update(names)
        listed = []
        again = []

        def check(method, params):
            vault = sb.vaults[a.identity.id]
            if method == "BKPut":  # a data blob the partner holds already: sent twice
                again.extend(i[0] for i in params["blocks"] if i[0] in data and vault.has(i[0]))
            if method == "BKCommit":
                for e in params["entries"]:
                    if e[0] == 118:
                        assert all(vault.has(n) for n in need[bytes(e[3])]), "torn commit"
                        listed.append(bytes(e[3]))

        sa.check = check
        sa.busy_at = (3, 4, 9, 12, 20)  # BKPuts in flight behind them still land
        assert asyncio.run(sa.push_all())
        assert sessions[0].most > 2  # pipelined, not lock-step
        assert not again
        assert sorted(listed) == sorted(need)  # each version listed once
        vault = sb.vaults[a.identity.id]
        for names in need.values():
            assert all(vault.has(n) for n in names)
        assert sa.status()["pending"] == 0
        _close(a, b)
    finally:
        rmtree(root)


def test_quota_and_who_may_push_or_read():
    root = tmpdir("bkquota")
    try:
        a, b, sa, sb, sessions = _pair(root)
        b.partner["quota_to_peer"] = 20000
        _write(a, "big", 20, b"q")
        raises(QuotaError, asyncio.run, sa.push_all())
        sa._client = None
        b.partner["quota_to_peer"] = 1 << 30
        assert asyncio.run(sa.push_all())
        stranger = _Caller(crypto.sign_public(crypto.random(32)), "guest")
        raises(AuthError, _bk, sb, "BKPut", stranger, {"blocks": []})
        raises(AuthError, _bk, sb, "BKHave", stranger, {"names": []})
        raises(AuthError, _bk, sb, "BKAudit", stranger, {"name": bytes(32), "nonce": bytes(16)})
        raises(AuthError, _bk, sb, "BKList", stranger, {"node": a.identity.id})
        raises(AuthError, _bk, sb, "BKGet", stranger, {"node": a.identity.id, "names": []})
        # The owner of the partner's data may read it (failover), not push it.
        owner = _Caller(a.owner, "owner")
        assert _bk(sb, "BKList", owner, {"node": a.identity.id})["total"] >= 2
        raises(AuthError, _bk, sb, "BKPut", owner, {"blocks": []})
        _close(a, b)
    finally:
        rmtree(root)


def test_prune_drops_what_the_owner_deleted_and_keeps_the_rest():
    root = tmpdir("bkprune")
    try:
        a, b, sa, sb, sessions = _pair(root)
        # ~720 KiB in three MiMei, two versions of the first.
        mids = [_write(a, "p%d" % i, 60, b"x%d" % i) for i in range(3)]
        a.store.set_data(mids[0], 0, b"second version")
        a.store.backup(mids[0])
        with open(a.root + "/pair.cbor", "wb") as f:
            f.write(b"the pairing record, pushed as a 'p' entry")
        assert asyncio.run(sa.push_all())
        vault = sb.vaults[a.identity.id]
        keys = seal.Keys(bytes(range(32)))
        used = vault.used()
        count = vault.entries_count()
        assert asyncio.run(sa.prune()) == (0, 0)  # nothing deleted: nothing asked
        assert vault.entries_count() == count
        # A tombstone for a version still here (a crash between the note and the deletion)
        # drops nothing.
        sa._tombstone(mids[2], [1])
        assert asyncio.run(sa.prune()) == (0, 0)
        a.store.del_versions(mids[0], [1])
        a.store.remove(mids[1])
        dropped, freed = asyncio.run(sa.prune(min_dead=0.0))
        assert dropped == 3  # mids[0] v1, mids[1] v1 and its metadata
        tag0, tag1 = keys.mtag(mids[0]), keys.mtag(mids[1])
        left = vault.entries(0, 100)
        assert [e for e in left if e[1] == tag1] == []
        assert [e[2] for e in left if e[1] == tag0 and e[0] == 118] == [2]
        assert any(e[0] == 112 for e in left)  # the pairing record stays
        assert freed > 100000 and vault.used() < used - 100000
        # Everything a kept version needs is still there and opens.
        for mid in (mids[0], mids[2]):
            for h in a.store.blocks_of(mid, "last"):
                name = keys.name(h)
                assert keys.open_blob(name, vault.get(name), h) == a.store.get_block(h)
        # The push state of the removed MiMei went with it; the next pass pushes nothing.
        assert not asyncio.run(sa.push_all())
        # A deletion later on makes the engine prune by itself.
        a.store.del_versions(mids[2], [1])
        asyncio.run(sa.prune_if_due())
        assert [e for e in vault.entries(0, 100) if e[1] == keys.mtag(mids[2])
                and e[0] == 118] == []
        assert asyncio.run(sa.prune()) == (0, 0)  # the tombstones are spent
        _close(a, b)
    finally:
        rmtree(root)


def test_a_node_that_lost_its_store_never_erases_its_backup():
    import os

    root = tmpdir("bklost")
    try:
        a, b, sa, sb, sessions = _pair(root)
        mids = [_write(a, "l%d" % i, 8, b"z%d" % i) for i in range(3)]
        for mid in mids[1:]:
            a.store.set_data(mid, 0, b"v2")
            a.store.backup(mid)
        assert asyncio.run(sa.push_all())
        vault = sb.vaults[a.identity.id]
        keys = seal.Keys(bytes(range(32)))
        names = [keys.name(h) for h in a.store.blocks_of(mids[0], "last")]
        count = vault.entries_count()
        # mids[0] vanishes from the store without a deletion (a lost file, a bad card) ...
        for name in os.listdir(a.root + "/store/mm"):
            if backup_push.mid_of(name) == mids[0]:
                os.remove(a.root + "/store/mm/" + name)
        a.store._st_cache = None
        # ... and a real deletion comes later: only that one is dropped, and nothing is swept
        # while the partner lists a MiMei this node cannot account for.
        a.store.del_versions(mids[1], [1])
        assert asyncio.run(sa.prune(min_dead=0.0)) == (1, 0)
        assert vault.entries_count() == count - 1
        for name in names:
            assert vault.has(name)
        _close(a, b)
    finally:
        rmtree(root)


def test_a_version_lost_here_keeps_every_blob_on_the_partner():
    root = tmpdir("bklostv")
    try:
        a, b, sa, sb, sessions = _pair(root)
        kept = _write(a, "k", 6, b"k")
        mid = _write(a, "v", 6, b"v1")
        a.store.set_data(mid, 0, crypto.random(2 * 4096))  # v2 shares 4 of v1's 6 chunks
        a.store.backup(mid)
        a.store.set_data(kept, 0, crypto.random(4096))
        a.store.backup(kept)
        assert asyncio.run(sa.push_all())
        vault = sb.vaults[a.identity.id]
        keys = seal.Keys(bytes(range(32)))
        v1 = [(keys.name(h), crypto.sha256(keys.seal(h, a.store.get_block(h))[1]))
              for h in a.store.blocks_of(mid, 1)]
        # Version 1 of mid vanishes here with no tombstone (a torn state file, a bad card) ...
        on_delete = a.store.on_delete
        a.store.on_delete = None
        a.store.del_versions(mid, [1])
        a.store.on_delete = on_delete
        # ... then a real deletion in another MiMei: its entry goes, but no blob may be
        # swept while the partner lists a version this node cannot say which blobs it uses.
        a.store.del_versions(kept, [1])
        used = vault.used()
        assert asyncio.run(sa.prune(min_dead=0.0)) == (1, 0)
        assert vault.used() == used
        assert [e[2] for e in vault.entries(0, 100) if e[1] == keys.mtag(mid)
                and e[0] == 118] == [1, 2]
        for name, digest in v1:  # every blob of the lost version, byte for byte
            assert crypto.sha256(bytes(vault.get(name))) == digest
        _close(a, b)
    finally:
        rmtree(root)


def test_drop_and_sweep_are_the_partners_only():
    root = tmpdir("bkprune2")
    try:
        a, b, sa, sb, sessions = _pair(root)
        _write(a, "one", 2, b"y")
        assert asyncio.run(sa.push_all())
        stranger = _Caller(crypto.sign_public(crypto.random(32)), "guest")
        owner = _Caller(a.owner, "owner")
        for who in (stranger, owner):
            raises(AuthError, _bk, sb, "BKDrop", who, {"entries": []})
            raises(AuthError, _bk, sb, "BKSweep", who, {"run": True, "salt": 0})
        partner = _Caller(a.identity.public, "peer")
        raises(DecodeError, _bk, sb, "BKSweep", partner, {"run": True, "salt": 0})  # no filter
        raises(RPCError, _bk, sb, "BKSweep", partner, {"run": True, "salt": 0, "dead_pct": 0.5})
        raises(DecodeError, _bk, sb, "BKDrop", partner, {"entries": [[118, b"short", 1]]})
        assert _bk(sb, "BKDrop", partner, {"entries": []})["dropped"] == 0
        _close(a, b)
    finally:
        rmtree(root)


def test_tombstones_survive_a_torn_append():
    root = tmpdir("bktomb")
    try:
        a, b, sa, sb, sessions = _pair(root)
        mid = _write(a, "t", 2, b"t")
        a.store.set_data(mid, 0, b"v2")
        a.store.backup(mid)
        assert asyncio.run(sa.push_all())
        path = sa.dir + "/tombstones"
        with open(path, "wb") as f:
            f.write(b"\x01" * 10)  # a crash tore the first append
        a.store.del_versions(mid, [1])  # written over the torn bytes, aligned
        with open(path, "rb") as f:
            assert len(f.read()) == 24
        assert asyncio.run(sa.prune())[0] == 1
        _close(a, b)
    finally:
        rmtree(root)


def test_a_sweep_cut_short_is_owed_until_done():
    root = tmpdir("bkowed")
    try:
        a, b, sa, sb, sessions = _pair(root)
        mid = _write(a, "o", 6, b"o")
        a.store.set_data(mid, 0, crypto.random(3 * 4096))
        a.store.backup(mid)
        assert asyncio.run(sa.push_all())
        a.store.del_versions(mid, [1])
        cut_at = [True]
        real_open = sa._open

        async def open_cut():  # sessions whose BKSweep finds the link cut
            s = await real_open()
            call = s.call

            async def cutting(method, params=None, timeout_ms=0):
                if method == "BKSweep" and cut_at[0]:
                    raise ConnectError("link cut")
                return await call(method, params, timeout_ms)

            s.call = cutting
            return s

        sa._open = open_cut
        sa._client = None
        asyncio.run(sa.prune_if_due())  # logged, not raised: retried after the next push
        assert sa.state["sweep"]
        cut_at[0] = False
        sa._client = None
        asyncio.run(sa.prune_if_due())
        assert not sa.state["sweep"]
        assert asyncio.run(sa.prune()) == (0, 0)  # nothing owed any more
        _close(a, b)
    finally:
        rmtree(root)


def test_a_restore_fences_the_old_board_out():
    from leither import fence

    root = tmpdir("bkfence")
    try:
        a, b, sa, sb, sessions = _pair(root)
        mid = _write(a, "f", 4, b"f1")
        assert asyncio.run(sa.push_all())
        keys = seal.Keys(bytes(range(32)))
        vault = sb.vaults[a.identity.id]
        # Board c is restored as a: same seed; the restore's first step moves the fence.
        c = _Node(root + "/c", a.identity.seed, a.owner)
        c.partner = dict(a.partner)
        restoring = _Session(sb, _Caller(a.identity.public, "peer"))
        record = asyncio.run(fence.advance(restoring, a.identity.seed))
        assert fence.check(a.identity.public, record)["n"] == 1
        fence.save(c.root, record)
        sc = backup.Service(c)
        c.services.append(sc)
        sc.register(c.server)
        sc.set_key(bytes(range(32)))
        _link(sc, sb, [])
        assert sc.incarnation[0] == 1 and sc.fact("incarnation") == 1
        # The old board comes back with a version the history must never get.
        a.store.set_data(mid, 0, b"written on the old board")
        a.store.backup(mid)
        sa._client = None
        sa.hello_done = False
        err = raises(RPCError, asyncio.run, sa.push_all())
        assert err.code == "replaced" and "replaced by a restore on" in err.msg
        rep = sa.fact("replaced")
        assert rep == {"time": fence.check(a.identity.public, record)["t"], "incarnation": 1,
                       "was": 0}
        assert a.server.refusal["code"] == "replaced"
        assert [e[2] for e in vault.entries(0, 100) if e[1] == keys.mtag(mid)
                and e[0] == 118] == [1]
        # Its sessions, old or new, may neither push nor read as the node; the owner still
        # reads (failover) and sees one history.
        old = _Caller(a.identity.public, "peer")
        for method, params in (("BKPut", {"blocks": []}), ("BKCommit", {"entries": []}),
                               ("BKHave", {"names": []}), ("BKList", {}),
                               ("BKDrop", {"entries": []})):
            assert raises(RPCError, _bk, sb, method, old, params).code == "replaced"
        err = raises(RPCError, _bk, sb, "BKHello", old, {"check": keys.check, "inc": None})
        assert err.code == "replaced"
        owner = _Caller(a.owner, "owner")
        assert _bk(sb, "BKList", owner, {"node": a.identity.id})["total"] >= 2
        # After a reboot the old board stays replaced and pushes nothing.
        sa2 = backup.Service(a)
        sa2.register(a.server)
        assert sa2.fact("replaced") == rep and sa2.status()["state"] == "replaced"
        assert not asyncio.run(sa2.push_all())
        # The restored board carries the history on.
        new = _write(c, "after", 2, b"c")
        assert asyncio.run(sc.push_all())
        assert [e[2] for e in vault.entries(0, 100) if e[1] == keys.mtag(new)
                and e[0] == 118] == [1]
        assert sc.fact("replaced") is None and c.server.__dict__.get("refusal") is None
        # Nobody but the node key moves the fence; an old or equal record does not either.
        forged = fence.make(crypto.random(32), 5, 1)
        raises((AuthError, DecodeError), _bk, sb, "BKFence", restoring.caller, {"record": forged})
        stale = fence.make(a.identity.seed, 1, 2)
        assert raises(RPCError, _bk, sb, "BKFence", restoring.caller, {"record": stale}).code \
            == "replaced"
        assert _bk(sb, "BKFence", restoring.caller, {"record": record})["incarnation"] == 1
        # A partner claiming "replaced" without the node's signature changes nothing.
        sc2 = backup.Service(c)

        class _Liar:
            async def call(self, method, params=None, timeout_ms=0):
                return {"incarnation": 9, "record": forged}

        assert not asyncio.run(fence.learn(sc2, _Liar()))
        assert sc2.replaced is None
        _close(a, b, c)
    finally:
        rmtree(root)


def test_blobs_over_a_frame_go_in_pieces_and_come_back():
    # A board at 111,936 bytes of heap takes 4 KiB frames; a sealed 4 KiB chunk is 32 bytes
    # more: it travels in pieces both ways, and a cut between pieces loses nothing.
    root = tmpdir("bkpieces")
    try:
        a, b, sa, sb, sessions = _pair(root)
        _link(sa, sb, sessions, max_frame=4096)
        b.server.max_data = 4096 - 16 - 64
        mids = [_write(a, "p%d" % i, 5, b"p%d" % i) for i in range(2)]
        sa.lose_at = 3  # the first session loses the reply to a piece
        raises(ConnectError, asyncio.run, sa.push_all())
        sa._client = None
        assert asyncio.run(sa.push_all())
        vault = sb.vaults[a.identity.id]
        assert vault.info["stats"]["dups"] == 0
        keys = seal.Keys(bytes(range(32)))
        partner = _Caller(a.identity.public, "peer")
        _bk(sb, "BKHello", partner, {"check": keys.check, "inc": None})
        for mid in mids:
            hashes = list(a.store.blocks_of(mid, "last"))
            names = [keys.name(h) for h in hashes]
            in_pieces = 0
            for h, name in zip(hashes, names):
                got = _bk(sb, "BKGet", partner, {"names": [name]})
                blob = bytearray() if isinstance(got[0], int) else bytearray(got[0])
                while isinstance(got[0], int) and len(blob) < got[0]:
                    piece = _bk(sb, "BKGet", partner, {"names": [name], "offset": len(blob)})
                    assert piece["size"] == got[0] and 0 < len(piece["data"]) <= 4016
                    blob += piece["data"]
                in_pieces += isinstance(got[0], int)
                assert keys.open_blob(name, bytes(blob), h) == a.store.get_block(h)
            assert in_pieces >= 5  # the 5 chunks; manifests and records fit whole
        # Pieces out of order are refused, and nothing half-staged is ever stored.
        name, blob = keys.seal(crypto.sha256(b"x" * 4096), b"x" * 4096)
        params = {"blocks": [[name, bytes(blob[2000:]), 2000, len(blob)]]}
        assert raises(RPCError, _bk, sb, "BKPut", partner, params).code == "bad_request"
        assert not vault.has(name)
        _close(a, b)
    finally:
        rmtree(root)


def test_a_board_sends_a_chunk_in_two_even_pieces():
    # A board (its requests in one kept frame, 1 KiB batches) pushing to a board (4 KiB
    # frames): a sealed 4 KiB chunk goes in two requests, each over the partner's small frame
    # (2 KiB: read into its inbound buffer, no fresh block per piece). 1 KiB pieces took five
    # requests a chunk (wire 1.22x the payload); 3.9 KiB + 0.2 KiB would leave a small one.
    saved = backup_push._COLLECT, backup_push._BATCH
    backup_push._COLLECT, backup_push._BATCH = True, 1024
    root = tmpdir("bkhalves")
    try:
        a, b, sa, sb, sessions = _pair(root)
        _link(sa, sb, sessions, max_frame=4096)
        b.server.max_data = 4096 - 16 - 64
        requests = {}  # sealed name -> sizes of the requests its pieces came in

        def check(method, params):
            if method == "BKPut" and len(params["blocks"][0]) == 4:
                size = len(cbor.dumps([1000, method, params])) + 16  # + the frame's tag
                assert size <= 4096
                requests.setdefault(params["blocks"][0][0], []).append(size)

        sa.check = check
        mids = [_write(a, "h%d" % i, 5, b"h%d" % i) for i in range(2)]
        assert asyncio.run(sa.push_all())
        assert len(requests) == 10  # the chunks; records and manifests fit a batch
        for sizes in requests.values():
            assert len(sizes) == 2 and min(sizes) > 2048, sizes
        # A heap with no such block at the pass's start: the batch's frame, smaller pieces.
        requests.clear()
        keep = _Session.keep_frame

        def short(self, limit=None, buf=None):
            if limit > 2048:
                raise MemoryError("memory allocation failed, allocating %d bytes" % limit)
            return keep(self, limit, buf)

        _Session.keep_frame = short
        try:
            mid = _write(a, "small", 2, b"small")
            assert asyncio.run(sa.push_all())
        finally:
            _Session.keep_frame = keep
        assert len(requests) == 2
        for sizes in requests.values():
            assert len(sizes) == 5 and max(sizes) <= 1024 + 96 + 16, sizes
        for h in a.store.blocks_of(mid, "last"):
            assert sb.vaults[a.identity.id].has(seal.Keys(bytes(range(32))).name(h))
        keys = seal.Keys(bytes(range(32)))
        vault = sb.vaults[a.identity.id]
        for mid in mids:
            for h in a.store.blocks_of(mid, "last"):
                assert vault.has(keys.name(h))
        assert vault.info["stats"]["dups"] == 0
        _close(a, b)
    finally:
        backup_push._COLLECT, backup_push._BATCH = saved
        rmtree(root)
