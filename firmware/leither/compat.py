# The few things that differ between MicroPython and CPython and are not hardware:
# time in ms, durable writes, const. Board hardware lives in leither.port.*.
"""Interpreter shims shared by the core."""

import sys
import time

IS_MICROPYTHON = sys.implementation.name == "micropython"

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


if IS_MICROPYTHON:
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    sleep_ms = time.sleep_ms
    # MicroPython's time() counts seconds from its own epoch: 2000 on bare-metal ports,
    # 1970 on unix. Ports with the 2000 epoch must add this offset (seconds).
    _EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0

    def time_ms():
        """Wall-clock time, integer ms since the Unix epoch."""
        if hasattr(time, "time_ns"):
            return time.time_ns() // 1000000 + _EPOCH_OFFSET * 1000
        return (int(time.time()) + _EPOCH_OFFSET) * 1000

else:

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def sleep_ms(ms):
        time.sleep(ms / 1000)

    def time_ms():
        """Wall-clock time, integer ms since the Unix epoch."""
        return time.time_ns() // 1000000


def fsync(f):
    """Push a file's written bytes to the device (or, where the port cannot, to the OS)."""
    f.flush()
    fileno = getattr(f, "fileno", None)
    if fileno is not None:
        try:
            import os

            os.fsync(fileno())
        except (AttributeError, OSError):
            # MicroPython has no os.fsync; flush() hands the bytes to the OS (unix port)
            # or to the filesystem driver, which commits them on close (LittleFS, FAT).
            pass


def exists(path):
    import os

    try:
        os.stat(path)
        return True
    except OSError:
        return False


def makedirs(path):
    """mkdir -p that works on both interpreters."""
    import os

    parts = path.split("/")
    cur = "/" if path.startswith("/") else ""
    for part in parts:
        if not part:
            continue
        cur = cur + part if cur.endswith("/") or not cur else cur + "/" + part
        try:
            os.mkdir(cur)
        except OSError:
            pass


def file_names(path):
    """The names of the files in path (no temp files), one at a time: a list of 200 MiMei
    names would hold ~13 KiB of a board's heap (MicroPython's ilistdir makes none)."""
    import os

    if hasattr(os, "ilistdir"):  # MicroPython
        for entry in os.ilistdir(path):
            if not entry[0].endswith(".tmp"):
                yield entry[0]
    else:
        for name in os.listdir(path):
            if not name.endswith(".tmp"):
                yield name
