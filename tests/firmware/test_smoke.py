# The firmware package imports and its shims behave the same on both interpreters.
from leither import compat, errors


def test_time_is_unix_ms():
    now = compat.time_ms()
    assert now > 1700000000000  # after Nov 2023
    assert now < 4102444800000  # before 2100


def test_ticks_monotonic():
    a = compat.ticks_ms()
    b = compat.ticks_ms()
    assert compat.ticks_diff(b, a) >= 0


def test_error_tree():
    err = errors.ProofError("bad", expected=b"a", computed=b"b")
    assert isinstance(err, errors.LeitherError)
    assert err.expected == b"a" and err.computed == b"b"
    assert issubclass(errors.QuotaError, errors.StoreError)
