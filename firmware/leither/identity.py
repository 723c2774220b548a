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

    private: the file holds a secret (a key, a token): it is created mode 0600 before its
    first byte is written, so no reader ever sees the secret in a wider-mode file."""
    tmp = path + ".tmp"
    if private:
        f = _open_private(tmp)
    else:
        f = open(tmp, "wb")
    with f:
        f.write(data)
        fsync(f)
    os.rename(tmp, path)


def _open_private(path):
    """A new file at path, empty, mode 0600, open for writing.

    CPython: os.open with the mode (O_EXCL after removing a leftover: an existing file keeps
    its old mode). MicroPython has no os.open, chmod nor umask: on the unix port the empty
    file is made by a shell with umask 077, then opened (truncating keeps its mode); a board's
    own filesystem (LittleFS, FAT) has no modes at all, and there plain open is all there is."""
    try:
        os.remove(path)
    except OSError:
        pass
    if not IS_MICROPYTHON:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        return os.fdopen(os.open(path, flags, 0o600), "wb")
    if _posix_modes(path):
        if "'" in path:
            raise StoreError("no quote allowed in a secret's path %s" % path)
        os.system("umask 077 && : > '%s'" % path)
        if os.stat(path)[0] & 0o077:
            raise StoreError("could not create %s private (mode %o)" % (path, os.stat(path)[0]))
    return open(path, "wb")


def _posix_modes(path):
    """True where path lies on a POSIX filesystem with modes (MicroPython's unix port)."""
    return hasattr(os, "system") and sys.platform in ("linux", "darwin")


def tighten(path):
    """Make an existing secret file 0600 (one written by an older version, or by a tool, with
    0644): chmod on CPython, rewritten private on the unix MicroPython (no chmod there)."""
    try:
        wide = os.stat(path)[0] & 0o077
    except OSError:
        return
    if not wide:
        return
    if not IS_MICROPYTHON:
        os.chmod(path, 0o600)
    elif _posix_modes(path):
        write_atomic(path, read_file(path), private=True)


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
