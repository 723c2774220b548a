# The live set of a mark-and-sweep collection (leither.store's sweep, leither.history's mark,
# a partner's sweep for its owner through leither.vault): a Bloom filter with no false
# negatives, so a block it calls dead is dead.
"""``LiveSet``: the live-set filter of a collection (also offered as ``store.LiveSet``)."""

import os

from .compat import const

LIVE_MAX_BITS = const(131072)  # largest LiveSet filter: 16 KiB


class LiveSet:
    """Live-set filter for sweep(): no false negatives; salted anew each run, so a block kept
    by a false positive is caught by a later run. Bits: 16 per expected block, a power of two
    between 8 Ki and 128 Ki (16 KiB of RAM at most). Keys are SHA-256 hashes or sealed names:
    uniform bytes, so three 24-bit slices of them are the probes. A partner sweeping for its
    owner rebuilds the owner's filter from (bits, salt): ValueError if they cannot be one.
    ``least``: the smallest filter a fragmented heap may get (a node's own mark takes 2 Ki
    bits, 256 B, rather than fail; a partner's is 8 Ki); ``most``: the largest it asks for
    (a board's own mark: 32 Ki bits, see leither.history)."""

    def __init__(self, expected=0, bits=None, salt=None, least=8192, most=LIVE_MAX_BITS):
        if bits is None:
            n = 8192
            while n < 16 * expected and n < most:
                n *= 2
            while bits is None:
                try:
                    bits = bytearray(n >> 3)
                except MemoryError:
                    # A fragmented heap has no such run: a smaller filter only keeps more
                    # garbage until a later run (no false negatives either way).
                    if n <= least:
                        raise
                    n >>= 1
        n = len(bits) * 8
        if n < min(least, 8192) or n > LIVE_MAX_BITS or n & (n - 1):
            raise ValueError("live-set filter of %d bits" % n)
        if salt is None:
            salt = os.urandom(1)[0] % 20
        if not isinstance(salt, int) or not 0 <= salt < 20:
            raise ValueError("live-set salt %r" % (salt,))
        self.mask = n - 1
        self.bits = bits
        self.salt = salt  # which key bytes feed the probes

    def _probes(self, h):
        s = self.salt
        for k in range(3):
            p = s + 4 * k
            yield ((h[p] << 16) | (h[p + 1] << 8) | h[p + 2]) & self.mask

    def add(self, h):
        for bit in self._probes(h):
            self.bits[bit >> 3] |= 1 << (bit & 7)

    def has(self, h):
        for bit in self._probes(h):
            if not self.bits[bit >> 3] & (1 << (bit & 7)):
                return False
        return True
