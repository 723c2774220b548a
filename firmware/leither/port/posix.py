# What only a POSIX host needs (CPython on a Pi or a PC, MicroPython's unix port: the stand-in
# and simulated boards): secrets kept private where files have modes, this host's addresses
# from Linux's tables, CPython's datagram receive. A board (lwIP, LittleFS/FAT) never imports
# this: the ESP32 bundle leaves it out (board.json exclude_ports) while the stand-in, a unix
# build, carries it with port.unix.
"""POSIX-host pieces: 0600 files for secrets, local IPv4 addresses, CPython's recvfrom."""

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


def local_ipv4():
    """Linux: this network namespace's local IPv4 addresses but loopback, from the kernel's
    table (/proc/net/fib_trie), best first (may be empty)."""
    found = []
    try:
        with open("/proc/net/fib_trie") as f:
            last = None
            for line in f:
                line = line.strip()
                if line.startswith("|--"):
                    last = line[3:].strip()
                elif (line.startswith("/32 host LOCAL") and last
                      and not last.startswith("127.") and last not in found):
                    found.append(last)
    except OSError:
        pass
    return found


async def recvfrom(sock, size):
    """CPython: wait for one datagram on a non-blocking socket: (bytes, (ip, port))."""
    import asyncio

    data, addr = await asyncio.get_running_loop().sock_recvfrom(sock, size)
    return data, (addr[0], addr[1])
