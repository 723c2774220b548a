# MiMei storage: IDs, file working copy, signed versions, release/restore/delete, refs, rights,
# retention, collection, import between nodes, db MiMei, damage and full disk.
from leither import cbor, crypto, ids, mimei, store
from leither.errors import StoreError

from testutil import raises, random_bytes, rmtree, tmpdir


def check(cond, msg="check failed"):
    """An assert that survives mpy-cross -O1, which drops assert statements."""
    if not cond:
        raise AssertionError(msg)

# Measured on the 64-bit unix port: imports (cbor, crypto with pure-Python Ed25519, ids, store,
# mimei, this module) take ~67 KB of heap, Ed25519's comb table 17 KB more at first use, the
# store's pool of tree buffers 24 KB; two stores open at once in the import test. The same
# bytecode is about half that on a 32-bit board.
MP_HEAP = "256K"  # 192K passes alone; margin for heap layouts that vary run to run

SEED = bytes(range(32))
SEED2 = bytes(range(1, 33))


class FakeDB:
    """A tiny stand-in with the leither.db.DB storage interface: one dict in one file."""

    def __init__(self, path):
        self.path = path
        try:
            with open(path + "/data", "rb") as f:
                self.d = cbor.loads(f.read())
        except OSError:
            self.d = {}

    def Set(self, key, value):
        self.d[key] = value
        store.write_file(self.path + "/data", cbor.dumps(self.d))

    def Get(self, key):
        return self.d.get(key)

    def export(self):
        yield cbor.dumps(self.d)  # deterministic: keys sorted whatever the insertion order

    @classmethod
    def restore(cls, path, pieces):
        data = b"".join(bytes(p) for p in pieces)
        cbor.loads(data)
        store.write_file(path + "/data", data)

    def close(self):
        pass


def _store(d, seed=SEED):
    return mimei.Store(d, seed, db_class=FakeDB)


def test_ids_are_stable_and_auto_marks_differ():
    d = tmpdir("id")
    try:
        s = _store(d)
        node = ids.make_id(crypto.sign_public(SEED))
        check(s.node_id == node)
        mid = s.create("app", "txt", "m1")
        check(mid == ids.make_id(cbor.dumps([node, "app", "txt", "m1"])))
        check(s.create("app", "txt", "m1") == mid)
        check(s.create("app", "txt", "m2") != mid)
        a = s.create("app", "txt", "{{auto}}")
        b = s.create("app", "txt", "{{auto}}")
        check(a != b and len(s.list()) == 4)
        raises(StoreError, s.create, "app", "", "", "movie")
        raises(StoreError, s.info, "not an id")
        raises(StoreError, s.info, ids.make_id(b"nothing"))
        info = s.info(mid)
        check(info["type"] == "file" and info["author"] == node and info["size"] == 0)
        s.close()
    finally:
        rmtree(d)


def test_file_write_read_truncate_stat():
    d = tmpdir("fi")
    try:
        s = _store(d)
        m = s.open(s.create("app", "bin", "f"))
        check(m.set_data(0, b"hello world") == 11)
        check(m.set_data(6, b"WORLD") == 11)
        check(m.get_data(0, 100) == b"hello WORLD")
        check(m.set_data(5000, b"far") == 5003)  # the gap reads as zeros
        check(m.get_data(4998, 10) == b"\x00\x00far")
        check(m.get_data(100, 4) == bytes(4))
        check(m.size() == 5003 and m.stat()["size"] == 5003)
        m.truncate(5)
        check(m.get_data(0, 100) == b"hello" and m.size() == 5)
        raises(StoreError, m.set_data, -1, b"x")
        raises(StoreError, m.db)
        s.close()
        s = _store(d)
        check(s.get_data(m.id, 0, 100) == b"hello")
        s.close()
    finally:
        rmtree(d)


def test_versions_release_restore_delete():
    d = tmpdir("ve")
    try:
        s = _store(d)
        mid = s.create("app", "", "v")
        s.set_data(mid, 0, b"one")
        r1 = s.backup(mid)
        s.set_data(mid, 0, b"TWO!")
        r2 = s.backup(mid)
        check((r1["n"], r2["n"]) == (1, 2))
        h1 = crypto.sha256(cbor.dumps(r1))
        check(r2["prev"] == h1 and r1["prev"] is None)
        check(r2["mid"] == mid and r2["type"] == "file" and r2["size"] == 4)
        check(r2["author"] == s.node_id and r2["key"] == s.public)
        vers = s.versions(mid)
        check([v["n"] for v in vers] == [1, 2] and vers[0]["hash"] == h1)
        check(s.get_data(mid, 0, 10, 1) == b"one")
        check(s.get_data(mid, 0, 10, "1") == b"one")
        check(s.get_data(mid, 0, 10, h1) == b"one")
        check(s.get_data(mid, 0, 10, "last") == b"TWO!")
        raises(StoreError, s.get_data, mid, 0, 10, "release")
        check(s.release(mid, 1) == 1)
        check(s.get_data(mid, 0, 10, "release") == b"one")
        check(s.info(mid)["release"] == 1 and s.info(mid)["last"] == 2)
        s.restore(mid, "release")
        check(s.get_data(mid, 0, 10) == b"one")
        check(s.verify(mid, 1)["n"] == 1 and s.verify(mid, "last")["n"] == 2)
        check(s.del_versions(mid, [1]) == 1)
        check([v["n"] for v in s.versions(mid)] == [2] and s.info(mid)["release"] is None)
        raises(StoreError, s.get_data, mid, 0, 10, 1)
        raises(StoreError, s.del_versions, mid, [7])
        r3 = s.backup(mid)
        check(r3["n"] == 3 and r3["prev"] == crypto.sha256(cbor.dumps(r2)))
        s.close()
        s = _store(d)
        check(s.get_data(mid, 0, 10, 3) == b"one" and s.get_data(mid, 0, 10, 2) == b"TWO!")
        s.close()
    finally:
        rmtree(d)


def test_record_is_signed_and_checked():
    d = tmpdir("rc")
    try:
        s = _store(d)
        mid = s.create("app", "", "r")
        s.backup(mid)
        data = s.record_bytes(mid, 1)
        rec = mimei.check_record(data)
        check(cbor.dumps(rec) == data)
        check(crypto.verify(s.public, mimei.record_body(rec), rec["sig"]))
        rec["size"] = 99
        raises(StoreError, mimei.check_record, cbor.dumps(rec))
        rec = mimei.check_record(data)
        rec["author"] = ids.make_id(b"someone else")
        raises(StoreError, mimei.check_record, cbor.dumps(rec))
        raises(StoreError, mimei.check_record, b"\xa0")
        s.close()
    finally:
        rmtree(d)


def test_refs_and_rights():
    d = tmpdir("rr")
    try:
        s = _store(d)
        a = s.create("app", "", "a")
        b = s.create("app", "", "b")
        check(s.add_ref(a, b) == 1 and s.add_ref(a, b) == 2)
        check(s.get_ref(a) == {b: 2})
        check(s.del_ref(a, b) == 1 and s.del_ref(a, b) == 0)
        check(s.get_ref(a) == {})
        raises(StoreError, s.del_ref, a, b)
        member = ids.make_id(b"member")
        check(s.get_right(a, member) == 0)
        s.set_right(a, member, mimei.READ | mimei.BACKUP)
        check(s.get_right(a, member) == 9)
        check(s.get_right(a, s.node_id) == mimei.ALL)
        raises(StoreError, s.set_right, a, member, 16)
        s.set_right(a, member, 0)
        check(s.get_right(a, member) == 0)
        s.close()
    finally:
        rmtree(d)


def test_thin_keeps_last_and_staggered_history():
    hour = 3600000
    day = 24 * hour
    now = 400 * day
    # 60 versions: one every 2 hours over the last 5 days, then one a day back to 60 days.
    vers = []
    n = 0
    for k in range(60, 5, -1):
        n += 1
        vers.append((n, now - k * day))
    for k in range(60, 0, -1):
        n += 1
        vers.append((n, now - k * 2 * hour))
    keep = mimei.thin(vers, now, keep_last=5)
    for v in vers[-5:]:
        check(v[0] in keep)
    times = [t for (num, t) in vers if num in keep]
    # Younger than a day (beyond the last 5): at most one per hour bucket.
    young = [t for t in times[:-5] if now - t < day]
    check(len(young) == len({t // hour for t in young}))
    # Between a day and 30 days: one per day; beyond 30 days: one per week.
    mid = [t for t in times if day <= now - t < 30 * day]
    check(len(mid) == len({t // day for t in mid}))
    old = [t for t in times if now - t >= 30 * day]
    check(len(old) == len({t // (7 * day) for t in old}) and len(old) >= 4)
    check(len(keep) < len(vers))
    check(mimei.thin(vers[:3], now, keep_last=5) == {1, 2, 3})


def test_retain_and_collect_free_space():
    d = tmpdir("gc")
    try:
        s = _store(d)
        mid = s.create("app", "", "g")
        for i in range(6):
            s.set_data(mid, 0, random_bytes(3000, seed=i))
            s.backup(mid)
        s.release(mid, 2)
        dropped = s.retain(mid, keep_last=2, now=10 ** 13)  # all old: one per week bucket
        check(2 not in dropped and 6 not in dropped and 5 not in dropped)
        check(len(dropped) >= 2)
        s.blocks._seal()  # the collector only compacts sealed packs
        before = s.blocks.used()
        res = s.collect()
        check(res["packs"] >= 1 and s.blocks.used() < before)
        for v in s.versions(mid):
            s.verify(mid, v["n"])
        check(s.get_data(mid, 0, 3000, 2) == random_bytes(3000, seed=1))
        s.close()
        s = _store(d)
        check(s.get_data(mid, 0, 3000) == random_bytes(3000, seed=5))
        # maintain(): retention on every MiMei, then collection.
        res = s.maintain(keep_last=1, now=10 ** 13)
        check(res["deleted"] >= 1 and [v["n"] for v in s.versions(mid)][-1] == 6)
        check(2 in [v["n"] for v in s.versions(mid)])  # the release stays
        s.close()
    finally:
        rmtree(d)


def test_import_version_between_nodes():
    d1 = tmpdir("ia")
    d2 = tmpdir("ib")
    try:
        a = _store(d1)
        b = _store(d2, SEED2)
        mid = a.create("app", "", "imp")
        a.set_data(mid, 0, random_bytes(4500, seed=9))
        a.backup(mid)
        data = a.record_bytes(mid, 1)
        # Without the blocks the import is refused and nothing is committed.
        raises(StoreError, b.import_version, data)
        check(not b.exists(mid))
        # The record stays pending: blocks put now survive a collection until it completes.
        for h in a.blocks_of(mid, 1):
            b.put_block(a.get_block(h))
        b.blocks._seal()
        b.collect(min_dead=0.0)
        rec = b.import_version(data)
        check(rec["n"] == 1 and b.verify(mid, 1))
        check(b.get_data(mid, 0, 4500, 1) == random_bytes(4500, seed=9))
        check(b.import_version(data)["n"] == 1)  # again: nothing to do
        check(list(b.missing(rec["root"])) == [])
        check(sorted(b.blocks_of(mid, 1)) == sorted(a.blocks_of(mid, 1)))
        # Pulling blocks with fetch; a fetch that returns wrong bytes is caught.
        a.set_data(mid, 0, b"second")
        a.backup(mid)
        raises(StoreError, b.import_version, a.record_bytes(mid, 2), lambda h: b"junk")
        check(b.import_version(a.record_bytes(mid, 2), fetch=a.get_block)["n"] == 2)
        check(b.get_data(mid, 0, 6, 2) == b"second")
        b.restore(mid, 2)  # a replacement node: the version becomes its working copy
        check(b.get_data(mid, 0, 6) == b"second")
        b.collect()
        check(b.verify(mid, 1) and b.verify(mid, 2))
        a.close()
        b.close()
    finally:
        rmtree(d1)
        rmtree(d2)


def test_db_mimei_backup_restore():
    d = tmpdir("db")
    try:
        s = _store(d)
        one = s.create("app", "", "db1", "db")
        two = s.create("app", "", "db2", "db")
        s.db(one).Set("a", "1")
        s.db(one).Set("b", "2")
        s.db(two).Set("b", "2")
        s.db(two).Set("a", "1")
        r1 = s.backup(one)
        check(s.backup(two)["root"] == r1["root"])  # same content, any write order
        s.db(one).Set("a", "changed")
        s.restore(one, 1)
        check(s.db(one).Get("a") == "1")
        raises(StoreError, s.set_data, one, 0, b"x")
        check(s.verify(one, 1)["type"] == "db")
        s.close()
    finally:
        rmtree(d)


def test_altered_block_is_an_error_not_wrong_data():
    d = tmpdir("al")
    try:
        s = _store(d)
        mid = s.create("app", "", "al")
        s.set_data(mid, 0, b"A" * 4096 + b"tail")
        s.backup(mid)
        s.blocks._seal()
        s.close()
        import os

        pack = d + "/blocks/" + next(n for n in os.listdir(d + "/blocks") if n.endswith(".pk"))
        with open(pack, "r+b") as f:
            f.seek(40)  # inside the first record's data (the "A" chunk)
            f.write(b"B")
        s = _store(d)
        raises(StoreError, s.get_data, mid, 0, 10)
        raises(StoreError, s.verify, mid, 1)
        check(s.get_data(mid, 4096, 10) == b"tail")
        s.close()
    finally:
        rmtree(d)

