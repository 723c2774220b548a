# Helpers for firmware tests that run unchanged under CPython (pytest) and MicroPython (mp_run).
"""Tiny test toolkit usable on both interpreters (no pytest in here)."""

import os


class Skip(Exception):
    """Raised by a test that cannot run here; both runners report it as skipped."""


def skip(reason):
    try:
        import pytest

        pytest.skip(reason)
    except ImportError:
        raise Skip(reason) from None


def raises(exc_type, fn, *args, **kwargs):
    """Call fn and return the exception it raised, which must be an exc_type."""
    try:
        fn(*args, **kwargs)
    except exc_type as err:
        return err
    raise AssertionError("%s not raised by %r" % (exc_type.__name__, fn))


_counter = [0]


def tmpdir(tag="t"):
    """A fresh empty directory under $TMPDIR (or /tmp); remove it with rmtree."""
    base = os.getenv("TMPDIR") or "/tmp"
    _counter[0] += 1
    path = "%s/leither-%s-%s-%d" % (base, tag, os.urandom(4).hex() if hasattr(b"", "hex")
                                    else "x", _counter[0])
    os.mkdir(path)
    return path


def rmtree(path):
    try:
        entries = os.listdir(path)
    except OSError:
        return
    for name in entries:
        full = path + "/" + name
        try:
            is_dir = os.stat(full)[0] & 0o170000 == 0o040000
        except OSError:
            continue
        if is_dir:
            rmtree(full)
        else:
            os.remove(full)
    os.rmdir(path)


def fragment(hole):
    """MicroPython only (gc.mem_free): fill the free heap with hole-byte blocks, then free
    every other one, so no free run of about twice hole bytes is left and a fresh allocation
    bigger than that fails. Returns what keeps the others alive (del it to end the holes)."""
    import gc

    gc.collect()
    keep = [None] * (gc.mem_free() // hole + 64)
    n = 0
    try:
        while n < len(keep):
            keep[n] = bytearray(hole)
            n += 1
    except MemoryError:
        pass
    for i in range(0, n, 2):
        keep[i] = None
    gc.collect()
    return keep


def unhex(s):
    import binascii

    return binascii.unhexlify(s.replace(" ", "").replace("\n", ""))


def random_bytes(n, seed=None):
    """Deterministic pseudo-random bytes (xorshift) when seeded, else os.urandom."""
    if seed is None:
        return os.urandom(n)
    out = bytearray(n)
    x = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1
    for i in range(n):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out[i] = x & 0xFF
    return bytes(out)
