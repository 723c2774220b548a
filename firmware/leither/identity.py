# A node's lasting identity and ownership, kept under its root: the Ed25519 seed made at first
# boot, the owner's public key once claimed, and the one-time claim token until then.
"""Node identity, owner and claim token on disk."""

import os

from leither import crypto, ids
from leither.compat import exists, fsync
from leither.errors import StoreError

_KEY_FILE = "node.key"  # 32-byte Ed25519 seed
_OWNER_FILE = "owner.pub"  # 32-byte Ed25519 public key of the owner
_TOKEN_FILE = "claim.token"  # the one-time claim token (text), removed once claimed
_TOKEN_BYTES = 8  # 64 bits, shown as 16 hex digits: enough against guessing over a LAN


def write_atomic(path, data, private=False):
    """Write a small file so that a crash leaves the old content or the new, never a mix."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        fsync(f)
    if private:
        try:
            os.chmod(tmp, 0o600)
        except (AttributeError, OSError):
            pass  # MicroPython: no permissions on the board's filesystem
    os.rename(tmp, path)


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
        return read_file(path).decode().strip()
    if not create:
        return None
    import binascii

    token = binascii.hexlify(crypto.random(_TOKEN_BYTES)).decode()
    write_atomic(path, token.encode())
    return token
