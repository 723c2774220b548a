"""Property and fuzz tests of leither.cbor (CPython only), checked against cbor2.

* round trip through dumps/loads, dump/load, in default and canonical mode;
* our encoding equals cbor2's canonical encoding where the two orders agree (map keys of one
  major type), and otherwise equals a reference built from cbor2's item encodings with keys
  sorted bytewise as RFC 8949 §4.2.1 says;
* whatever cbor2 encodes, canonical or not, decodes with ours to the same value;
* mutated, truncated and random encodings raise only DecodeError; what the canonical mode
  accepts re-encodes to the very same bytes.

FUZZ_EXAMPLES (env) sets the number of fuzz examples; `make fuzz` uses 20000.
"""
from __future__ import annotations

import io
import os

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leither import cbor
from leither.errors import DecodeError

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
PROPS = settings(max_examples=150, deadline=None)
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

EDGE_INTS = [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1,
             -1, -24, -25, -256, -257, -(2**32), -(2**32) - 1, -(2**64)]
ints = st.one_of(st.sampled_from(EDGE_INTS), st.integers(-(2**64), 2**64 - 1))
leaves = st.one_of(st.none(), st.booleans(), ints, st.binary(max_size=40), st.text(max_size=20))
keys = st.one_of(st.none(), st.booleans(), ints, st.binary(max_size=12), st.text(max_size=12))
# Keys of one major type: there RFC 8949 bytewise order and cbor2's length-first order agree.
one_type_keys = st.sampled_from([st.text(max_size=12), st.binary(max_size=12),
                                 st.integers(0, 2**64 - 1), st.integers(-(2**64), -1)])


def containers(children, key_strategy):
    return st.one_of(st.lists(children, max_size=6),
                     st.dictionaries(key_strategy, children, max_size=6))


values = st.recursive(leaves, lambda kids: containers(kids, keys), max_leaves=30)
one_type_values = st.recursive(
    leaves,
    lambda kids: st.one_of(st.lists(kids, max_size=6),
                           one_type_keys.flatmap(lambda k: st.dictionaries(k, kids, max_size=6))),
    max_leaves=30)


def array_head(n: int) -> bytes:
    """cbor2's own array head for n items (None encodes as the single byte f6)."""
    return cbor2.dumps([None] * n)[:-n] if n else b"\x80"


def reference(value: object) -> bytes:
    """RFC 8949 §4.2.1 from cbor2's item encodings, map keys sorted by their encoded bytes."""
    if isinstance(value, dict):
        head = array_head(len(value))
        pairs = sorted((reference(k), reference(v)) for k, v in value.items())
        return bytes([head[0] | 0x20]) + head[1:] + b"".join(k + v for k, v in pairs)
    if isinstance(value, list):
        return array_head(len(value)) + b"".join(reference(item) for item in value)
    return cbor2.dumps(value, canonical=True)


@PROPS
@given(values)
def test_round_trip(value):
    data = cbor.dumps(value)
    assert cbor.loads(data) == value
    assert cbor.loads(data, canonical=True) == value
    assert cbor.load(io.BytesIO(data)) == value
    stream = io.BytesIO()
    cbor.dump(value, stream)
    assert stream.getvalue() == data


@PROPS
@given(one_type_values)
def test_equals_cbor2_canonical(value):
    expected = cbor2.dumps(value, canonical=True)
    assert cbor.dumps(value) == expected
    assert cbor.loads(expected, canonical=True) == value


@PROPS
@given(values)
def test_equals_bytewise_reference(value):
    assert cbor.dumps(value) == reference(value)


@PROPS
@given(values)
def test_decodes_what_cbor2_encodes(value):
    assert cbor.loads(cbor2.dumps(value, canonical=True)) == value
    assert cbor.loads(cbor2.dumps(value)) == value  # insertion-ordered keys


def test_mixed_key_types_follow_rfc8949_not_cbor2():
    # Documented difference: cbor2 sorts keys length-first (RFC 7049), RFC 8949 bytewise.
    value = {1000: 1, "a": 2}
    assert cbor.dumps(value) == bytes.fromhex("a21903e8016161" "02")
    assert cbor2.dumps(value, canonical=True) == bytes.fromhex("a2616102" "1903e801")
    assert cbor.loads(cbor2.dumps(value, canonical=True)) == value
    try:
        cbor.loads(cbor2.dumps(value, canonical=True), canonical=True)
        raise AssertionError("length-first order passed the canonical check")
    except DecodeError:
        pass


def decode_checked(data: bytes) -> None:
    """Decode hostile bytes every way: only success or DecodeError may come out."""
    for canonical in (False, True):
        try:
            result = cbor.loads(data, canonical=canonical)
        except DecodeError:
            continue
        if canonical:
            assert cbor.dumps(result) == data  # canonical decoding is one-to-one
        else:
            assert cbor.loads(cbor.dumps(result)) == result
    try:
        cbor.load(io.BytesIO(data))
    except DecodeError:
        pass


@st.composite
def mutated(draw):
    data = bytearray(cbor.dumps(draw(values)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=9))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 9))]
        elif kind == "truncate":
            del data[at:]
        elif kind == "dup":
            data[at:at] = data[at:at + draw(st.integers(1, 9))]
    return bytes(data)


@FUZZ
@given(mutated())
def test_fuzz_mutated_encodings(data):
    decode_checked(data)


@FUZZ
@given(st.binary(max_size=80))
def test_fuzz_random_bytes(data):
    decode_checked(data)


@FUZZ
@given(st.lists(st.sampled_from([0x18, 0x19, 0x1A, 0x1B, 0x5B, 0x7A, 0x9B, 0xBA, 0xC2, 0xC3,
                                 0xD8, 0x81, 0xA1, 0x61, 0x41, 0xF5, 0xF6, 0xFF, 0x00, 0x80]),
                max_size=40).map(bytes))
def test_fuzz_structural_bytes(data):
    # Heads, tags and containers only: deep nesting and huge declared sizes, quickly.
    decode_checked(data)


@PROPS
@given(st.one_of(st.integers(2**64, 2**1000), st.integers(-(2**1000), -(2**64) - 1)))
def test_ints_beyond_64_bits_refused(value):
    # cbor2 writes them as bignums (tags 2/3); we refuse both ways, at the decoder first.
    for data in (cbor2.dumps(value), cbor2.dumps({"offset": value, "data": b""})):
        for canonical in (False, True):
            try:
                cbor.loads(data, canonical=canonical)
                raise AssertionError("a bignum decoded")
            except DecodeError:
                pass
    try:
        cbor.dumps(value)
        raise AssertionError("an int beyond 64 bits encoded")
    except ValueError:
        pass
