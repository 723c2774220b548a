# A node's lasting identity and ownership, kept under its root: the Ed25519 seed made at first
# boot, the owner's public key once claimed, and the one-time claim token until then.
"""Node identity, owner and claim token on disk."""

import os
import sys

from . import crypto, ids
from .compat import IS_MICROPYTHON, exists, fsync
from .errors import StoreError

_KEY_FILE = "node.key"  # 32-byte Ed25519 seed
_OWNER_FILE = "owner.pub"  # 32-byte Ed25519 public key of the owner
_TOKEN_FILE = "claim.token"  # the one-time claim token (text), removed once claimed
_TOKEN_BYTES = 8  # 64 bits, shown as 16 hex digits: enough against guessing over a LAN


def write_atomic(path, data, private=False):
    """Write a small file so that a crash leaves the old content or the new, never a mix.

    private: the file holds a secret (a key, a token): where files have modes it is created
    0600 before its first byte is written, so no reader ever sees the secret in a wider-mode
    file (leither.port.posix)."""
    tmp = path + ".tmp"
    modes = _modes() if private else None
    with modes.open_private(tmp) if modes else open(tmp, "wb") as f:
        f.write(data)
        fsync(f)
    os.rename(tmp, path)


def _modes():
    """leither.port.posix where files have POSIX modes (CPython; MicroPython's unix port),
    else None: a board's own filesystem (LittleFS, FAT) has no modes (nor its bundle that
    module)."""
    if IS_MICROPYTHON and not (hasattr(os, "system") and sys.platform in ("linux", "darwin")):
        return None
    from .port import posix

    return posix


def tighten(path):
    """Make an existing secret file 0600 where files have modes (one written by an older
    version, or by a tool, with 0644)."""
    modes = _modes()
    if modes is not None:
        modes.tighten(path)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


class Identity:
    """The node's key pair: seed (private, 32 bytes), public key and node ID."""

    def __init__(self, seed):
        self.seed = seed
        self.public = crypto.sign_public(seed)
        self.raw_id = ids.raw_id(self.public)
        self.id = ids.make_id(self.public)

    def sign(self, message):
        return crypto.sign(self.seed, message)


def load_identity(root):
    """The node's identity, made and saved on first boot."""
    path = root + "/" + _KEY_FILE
    if exists(path):
        tighten(path)
        seed = read_file(path)
        if len(seed) != 32:
            raise StoreError("corrupt node key %s (%d bytes)" % (path, len(seed)))
        return Identity(seed)
    seed, _ = crypto.sign_keypair()
    write_atomic(path, seed, private=True)
    return Identity(seed)


def load_owner(root):
    """The owner's public key, or None while the node is unclaimed."""
    path = root + "/" + _OWNER_FILE
    if not exists(path):
        return None
    key = read_file(path)
    if len(key) != 32:
        raise StoreError("corrupt owner key %s" % path)
    return key


def save_owner(root, public_key):
    write_atomic(root + "/" + _OWNER_FILE, bytes(public_key))
    try:
        os.remove(root + "/" + _TOKEN_FILE)
    except OSError:
        pass


def claim_token(root, create=True):
    """The claim token: the one written at flash, else one made (and kept) at first boot."""
    path = root + "/" + _TOKEN_FILE
    if exists(path):
        tighten(path)
        return read_file(path).decode().strip()
    if not create:
        return None
    import binascii

    token = binascii.hexlify(crypto.random(_TOKEN_BYTES)).decode()
    write_atomic(path, token.encode(), private=True)
    return token
