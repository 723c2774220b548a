# Secrets kept private where files have POSIX modes: CPython (a Pi, a host), and MicroPython's
# unix port (the stand-in and simulated boards). A board's own filesystem (LittleFS, FAT) has
# no modes: leither.identity never imports this there, and the ESP32 bundle leaves it out
# (board.json exclude_ports) while the stand-in, a unix build, carries it with port.unix.
"""Create and tighten 0600 files for secrets (keys, tokens) on both interpreters."""

import os

from ..compat import IS_MICROPYTHON
from ..errors import StoreError


def open_private(path):
    """A new file at path, empty, mode 0600, open for writing.

    CPython: os.open with the mode (O_EXCL after removing a leftover: an existing file keeps
    its old mode). MicroPython has no os.open, chmod nor umask: on the unix port the empty
    file is made by a shell with umask 077, then opened (truncating keeps its mode)."""
    try:
        os.remove(path)
    except OSError:
        pass
    if not IS_MICROPYTHON:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        return os.fdopen(os.open(path, flags, 0o600), "wb")
    if "'" in path:
        raise StoreError("no quote allowed in a secret's path %s" % path)
    os.system("umask 077 && : > '%s'" % path)
    if os.stat(path)[0] & 0o077:
        raise StoreError("could not create %s private (mode %o)" % (path, os.stat(path)[0]))
    return open(path, "wb")


def tighten(path):
    """Make an existing secret file 0600: chmod on CPython, rewritten private on the unix
    MicroPython (no chmod there)."""
    try:
        wide = os.stat(path)[0] & 0o077
    except OSError:
        return
    if not wide:
        return
    if not IS_MICROPYTHON:
        os.chmod(path, 0o600)
    else:
        from ..identity import read_file, write_atomic

        write_atomic(path, read_file(path), private=True)
