# The one error tree of the firmware: every failure a caller can act on is one of these.
"""Exceptions raised by the Leither core."""


class LeitherError(Exception):
    """Base of every error the core raises on purpose."""


class DecodeError(LeitherError):
    """Malformed, truncated or over-limit input (CBOR, DNS, frames)."""


class StoreError(LeitherError):
    """Storage failed: corrupt block, missing version, full disk, bad request."""


class QuotaError(StoreError):
    """A write would pass the space granted."""


class AuthError(LeitherError):
    """A key, signature, seal or right did not check out."""


class PairingError(LeitherError):
    """Pairing could not complete (overlap, timeout, wrong code)."""


class ProofError(LeitherError):
    """A Merkle proof does not lead to the expected root."""

    def __init__(self, msg, expected=None, computed=None):
        super().__init__(msg)
        self.expected = expected
        self.computed = computed


class RPCError(LeitherError):
    """An RPC call failed on the node: carries the wire code and message."""

    def __init__(self, code, msg):
        super().__init__("%s: %s" % (code, msg))
        self.code = code
        self.msg = msg
