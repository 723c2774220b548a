# Properties of MiMei file storage: any sequence of writes, truncates, backups and restores
# agrees with a plain bytearray model; equal content always has the same root (the Merkle tree
# is canonical); manifests are deterministic CBOR that cbor2 decodes to the same value.
from __future__ import annotations

import os
import shutil
import tempfile

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leither import mimei, store

SEED = bytes(range(32))
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))

# Offsets reach past 126 chunks so that trees of two levels are grown, patched and cut.
_offsets = st.one_of(st.integers(0, 20000), st.integers(126 * 4096 - 5000, 126 * 4096 + 5000))
_op = st.one_of(
    st.tuples(st.just("write"), _offsets, st.binary(min_size=0, max_size=9000)),
    st.tuples(st.just("fill"), _offsets, st.integers(0, 255), st.integers(1, 20000)),
    st.tuples(st.just("truncate"), _offsets),
    st.tuples(st.just("backup")),
    st.tuples(st.just("restore"), st.integers(0, 10)),
    # A staged whole-file put (offset 0 starts it afresh), committed or dropped.
    st.tuples(st.just("stage"), st.sampled_from([0, 0, 1]), st.binary(min_size=0, max_size=9000),
              st.booleans()),
    st.tuples(st.just("commit")),
    st.tuples(st.just("discard")),
)


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(_op, min_size=1, max_size=12))
def test_file_agrees_with_bytearray_model(ops: list[tuple]) -> None:
    root = tempfile.mkdtemp(prefix="leither-props-")
    try:
        s = mimei.Store(root, SEED)
        mid = s.create("props", "", "m")
        model = bytearray()
        staged: bytearray | None = None
        versions: list[bytes] = []
        for op in ops:
            if op[0] == "stage":
                offset = 0 if op[1] == 0 or staged is None else len(staged)
                if op[1] and staged is None:
                    try:
                        s.set_data(mid, 7, op[2], op[3], True)
                        raise AssertionError("a stage began past offset 0")
                    except store.StoreError:
                        continue
                s.set_data(mid, offset, op[2], op[3], True)
                staged = (bytearray() if offset == 0 else staged) + op[2]
            elif op[0] == "commit":
                if staged is None:
                    try:
                        s.commit(mid)
                        raise AssertionError("a commit with nothing staged")
                    except store.StoreError:
                        continue
                assert s.commit(mid) == len(staged)
                model, staged = staged, None
            elif op[0] == "discard":
                s.discard(mid)
                staged = None
            elif op[0] in ("write", "fill"):
                offset = op[1]
                data = op[2] if op[0] == "write" else bytes([op[2]]) * op[3]
                s.set_data(mid, offset, data)
                if data:
                    if offset > len(model):
                        model.extend(bytes(offset - len(model)))
                    model[offset:offset + len(data)] = data
            elif op[0] == "truncate":
                s.truncate(mid, op[1])
                del model[op[1]:]
                model.extend(bytes(op[1] - len(model)))
            elif op[0] == "backup":
                s.backup(mid)
                versions.append(bytes(model))
            elif versions:
                n = op[1] % len(versions) + 1
                s.restore(mid, n)
                model = bytearray(versions[n - 1])
            assert s.size(mid) == len(model)
            assert s.stat(mid)["staged"] == (None if staged is None else len(staged))
        assert bytes(s.get_data(mid, 0, len(model) + 10)) == bytes(model)
        # Reads of ranges across chunk edges.
        for start in (0, 4095, 4096, len(model) // 3, max(0, len(model) - 1)):
            assert bytes(s.get_data(mid, start, 5000)) == bytes(model[start:start + 5000])
        # Canonical: the patched tree has the root of the same content built in one go.
        built, size = store.build(s.blocks, [bytes(model)])
        assert size == len(model)
        assert s._state(mid)["root"] == built
        for n, content in enumerate(versions, 1):
            assert bytes(s.get_data(mid, 0, len(content) + 1, n)) == content
            s.verify(mid, n)
        s.close()
        # Everything survives a reopen, and a collection keeps every version whole.
        s = mimei.Store(root, SEED)
        s.blocks._seal()
        s.collect(min_dead=0.0)
        assert bytes(s.get_data(mid, 0, len(model) + 10)) == bytes(model)
        for n, content in enumerate(versions, 1):
            assert bytes(s.get_data(mid, 0, len(content) + 1, n)) == content
        s.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.integers(1, 8), st.integers(0, 2 ** 40),
       st.lists(st.binary(min_size=32, max_size=32), max_size=store.FANOUT))
def test_manifest_matches_cbor2(level: int, size: int, hashes: list[bytes]) -> None:
    joined = b"".join(hashes)
    data = store.encode_manifest(level, size, joined)
    assert data == cbor2.dumps([level, size, joined], canonical=True)
    got = store.decode_manifest(data)
    assert (got[0], got[1], bytes(got[2])) == (level, size, joined)


@settings(max_examples=EXAMPLES * 3, deadline=None)
@given(st.binary(max_size=200))
def test_manifest_decoder_takes_hostile_bytes(data: bytes) -> None:
    try:
        level, size, hashes = store.decode_manifest(data)
    except store.StoreError:
        return
    # Whatever it accepts is exactly what the encoder writes.
    assert store.encode_manifest(level, size, bytes(hashes)) == data


_far = st.one_of(st.integers(0, 3 * 4096), st.integers(0, 1 << 36))


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.tuples(_far, st.binary(min_size=1, max_size=5000)), min_size=1, max_size=6))
def test_sparse_writes_read_back_and_stay_small(writes: list[tuple[int, bytes]]) -> None:
    # Writes anywhere up to 64 GiB: holes read as zeros, each write adds a bounded number of
    # blocks (chunks it covers plus a few per tree level), the tree walks in few steps.
    root = tempfile.mkdtemp(prefix="leither-props-")
    try:
        s = mimei.Store(root, SEED)
        mid = s.create("props", "", "sparse")
        for offset, data in writes:
            before = s.blocks.count()
            s.set_data(mid, offset, data)
            assert s.blocks.count() - before <= 2 + len(data) // 4096 + 4 * 5
        size = max(o + len(d) for o, d in writes)
        assert s.size(mid) == size

        def expect(start: int, n: int) -> bytes:
            out = bytearray(max(0, min(n, size - start)))
            for offset, data in writes:  # later writes over earlier ones, as stored
                lo, hi = max(offset, start), min(offset + len(data), start + len(out))
                if lo < hi:
                    out[lo - start:hi - start] = data[lo - offset:hi - offset]
            return bytes(out)

        for offset, data in writes:
            for start in (max(0, offset - 10), max(0, offset + len(data) - 3), offset // 2):
                assert bytes(s.get_data(mid, start, 40)) == expect(start, 40)
        assert sum(1 for _ in s.blocks_of(mid, s.backup(mid)["n"])) < 60 * len(writes) + 300
        s.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
