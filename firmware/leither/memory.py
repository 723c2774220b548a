# The node's heap budget: how much is free, the lowest it has been, whether a new session may
# start, and the frame size a heap can afford. MicroPython only measures; on CPython the
# figures are None (the OS pages memory in; see resident_kib for what a host can report).
"""Heap accounting for the node (free heap, low-water mark, frame size from the budget)."""

import gc

from .compat import IS_MICROPYTHON, const

# Free heap (bytes) below which new sessions are refused with "busy": a session costs ~2.5 KB
# (asyncio stream and task, keys, caller) and its handshake ~3 KB of short-lived big-int
# garbage, and a request in flight up to two frames. Old sessions keep what is left.
LOW_HEAP = const(12288)
# The ESP32's heap comes in separate areas (64,000 + ~48,000 bytes on a WROOM): no object
# made after boot may need one block larger than this (bytes).
MAX_BLOCK = const(16384)
MIN_FRAME = const(4096)  # bytes: below this a bulk transfer is mostly per-frame overhead
# Heap bytes per byte of frame: the node holds a reply buffer, an inbound buffer and the
# decoded copy of one request (3 frames), the store's 4 KiB buffers and its code's objects
# (~40 KiB frozen); 14 leaves a 112 KB heap 4 KiB frames and a 160 KB one 8 KiB frames.
_HEAP_PER_FRAME = const(14)

_low = [None]  # lowest free heap (bytes) seen after a collection; None until measured
_busy = [0]  # requests and sessions answered "busy" for lack of heap
_trim = [False]  # a "busy" happened since the node last handed its caches back


def free():
    """Free heap in bytes (garbage counted as used: cheap, pessimistic), or None (CPython)."""
    if not IS_MICROPYTHON:
        return None
    return gc.mem_free()


def total():
    """Heap size in bytes, or None (CPython)."""
    if not IS_MICROPYTHON:
        return None
    return gc.mem_free() + gc.mem_alloc()


def collect():
    """Collect garbage now (before big work) and note the low-water mark; free bytes or None."""
    gc.collect()
    if not IS_MICROPYTHON:
        return None
    left = gc.mem_free()
    if _low[0] is None or left < _low[0]:
        _low[0] = left
    return left


def low_water():
    """The least free heap (bytes) seen after a collection since boot, or None."""
    return _low[0]


def note_busy():
    _busy[0] += 1
    _trim[0] = True


def trim_due():
    """True once after a "busy" answer: time to hand caches back before the next request."""
    due = _trim[0]
    _trim[0] = False
    return due


def busy_count():
    return _busy[0]


def room_for_session(need=LOW_HEAP):
    """May a new session start (``need`` bytes free)? Collects first when the heap looks
    short. Always True on CPython."""
    if not IS_MICROPYTHON or gc.mem_free() >= need:
        return True
    return collect() >= need


def room_for_work(need):
    """Is there ``need`` bytes of free heap for a request's handler? Collects first when
    short. Checked before the handler runs, so that a "busy" answer means nothing was done
    (a MemoryError half-way through a handler may cost the store its unsynced writes)."""
    if not IS_MICROPYTHON or gc.mem_free() >= need:
        return True
    return collect() >= need


def frame_for_heap(heap=None):
    """Largest frame (bytes, a power of two) a heap of ``heap`` bytes affords the node;
    the interpreter's own heap when None; rpc.MAX_FRAME's 64 KiB on CPython."""
    if heap is None:
        heap = total()
    if heap is None:
        return 65536
    frame = MIN_FRAME
    # At most half a block: the frame buffers carry a header and a request decoded from one
    # is copied out (MFSetData aside), so neither may come near MAX_BLOCK.
    while frame * 2 * _HEAP_PER_FRAME <= heap and frame * 4 <= MAX_BLOCK:
        frame *= 2
    return frame


def tune():
    """gc thresholds for a node: collect after every ~1/8 of the heap is allocated, so the
    garbage of a few requests is freed before a frame-sized block is needed (the default
    waits until the heap is full, by then cut into small holes)."""
    if IS_MICROPYTHON and hasattr(gc, "threshold"):
        gc.threshold(max(4096, (total() or 0) // 8))


def unload(names):
    """Forget the modules ``names`` (under leither, e.g. "db"): the function and class objects
    a frozen module makes when imported go back to the heap, and the next import makes them
    again (a few ms). Only for modules of which no object is alive any more (the caller knows:
    the db engine once no db is open), else their code would be held twice. MicroPython only
    (CPython's modules cost no board heap); returns the count forgotten."""
    if not IS_MICROPYTHON:
        return 0
    import sys

    package = sys.modules.get("leither")
    count = 0
    for name in names:
        if sys.modules.pop("leither." + name, None) is not None:
            count += 1
        try:
            delattr(package, name)  # the package holds its imported submodules too
        except (AttributeError, KeyError, TypeError):  # MicroPython: KeyError when absent
            pass
    return count


def resident_kib():
    """Resident memory of this process in KiB where the OS tells it (Linux), else None."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * 4
