# pycryptodome behind leither.crypto on CPython. The same library goes by two names: `Crypto`
# (PyPI's pycryptodome, what pip installs) and `Cryptodome` (Debian's python3-pycryptodome and
# PyPI's pycryptodomex, which install beside the old PyCrypto). Each piece is looked up on its
# own because an older release has AES but not Ed25519 (3.15) or X25519 (3.19): what is missing
# is None here and leither.crypto takes the pure module for it. Never imported on MicroPython.
"""pycryptodome's AES-CTR, Ed25519 and X25519 under either namespace, where present."""

import importlib

from .ed25519 import SMALL_ORDER as _SMALL_ORDER

_AES_BLOCK = 16  # bytes


def _find():
    """(namespace, AES module) of the first pycryptodome found, or (None, None)."""
    for namespace in ("Crypto", "Cryptodome"):
        try:
            return namespace, importlib.import_module(namespace + ".Cipher.AES")
        except ImportError:
            continue
    return None, None


def _piece(module, needed):
    """namespace.module if it imports and has the attribute needed, else None."""
    if NAMESPACE is None:
        return None
    try:
        found = importlib.import_module(NAMESPACE + "." + module)
    except ImportError:
        return None
    return found if hasattr(found, needed) else None


NAMESPACE, AES = _find()
VERSION = getattr(importlib.import_module(NAMESPACE), "__version__", "?") if NAMESPACE else None
eddsa = _piece("Signature.eddsa", "import_private_key")
DH = _piece("Protocol.DH", "import_x25519_private_key")


class CTR:
    """AES-128-CTR over a 16-byte IV (the whole block is the counter); crypt() streams."""

    def __init__(self, key, iv):
        if len(key) != 16:
            raise ValueError("AES-128-CTR needs a 16-byte key and a 16-byte IV")
        self._key = bytes(key)
        self.reset(iv)

    def reset(self, iv):
        """Start the keystream again at counter iv (same key), as leither.crypto's CTR."""
        if len(iv) != _AES_BLOCK:
            raise ValueError("AES-128-CTR needs a 16-byte key and a 16-byte IV")
        self._cipher = AES.new(self._key, AES.MODE_CTR, nonce=b"", initial_value=bytes(iv))

    def crypt(self, data):
        """Encrypt or decrypt data (the same operation) and advance the keystream."""
        return self._cipher.encrypt(data)

    def crypt_into(self, data, out):
        """out[:len(data)] = data XOR the keystream (out may be data itself)."""
        memoryview(out)[:len(data)] = self._cipher.encrypt(bytes(data))


def _signer(seed):
    if len(seed) != 32:
        raise ValueError("Ed25519 seed must be 32 bytes")
    return eddsa.import_private_key(bytes(seed))


def sign_public(seed):
    """The Ed25519 public key (32 bytes) of a 32-byte seed."""
    return _signer(seed).public_key().export_key(format="raw")


def sign(seed, msg):
    """The 64-byte Ed25519 signature of msg by the key of seed."""
    return eddsa.new(_signer(seed), "rfc8032").sign(bytes(msg))


def verify(public, msg, signature):
    """True if signature is a valid Ed25519 signature of msg by public; never raises."""
    try:
        if len(public) != 32 or len(signature) != 64:
            return False
        public = bytes(public)
        if public in _SMALL_ORDER:  # pycryptodome accepts forgeries under these keys
            return False
        key = eddsa.import_public_key(public)
        eddsa.new(key, "rfc8032").verify(bytes(msg), bytes(signature))
        return True
    except (ValueError, TypeError):
        return False


def dh_public(private):
    """The X25519 public key of a 32-byte private key."""
    if len(private) != 32:
        raise ValueError("X25519 private key must be 32 bytes")
    key = DH.import_x25519_private_key(bytes(private))
    return key.public_key().export_key(format="raw")


def dh(private, public):
    """The raw X25519 shared secret (all zeros for a small-order peer key)."""
    if len(private) != 32 or len(public) != 32:
        raise ValueError("X25519 keys must be 32 bytes")
    ours = DH.import_x25519_private_key(bytes(private))
    try:
        theirs = DH.import_x25519_public_key(bytes(public))
        return bytes(DH.key_agreement(static_priv=ours, static_pub=theirs, kdf=_same))
    except ValueError:  # pycryptodome refuses the small-order points (a zero result)
        return bytes(32)


def _same(secret):
    return secret


def serve(names):
    """Put the pieces this release has into leither.crypto's namespace `names` (CTR,
    sign_public, sign, verify, _dh_public, _dh; PYCRYPTODOME, BACKEND) and say once, on
    stdout, which run on pure Python: a node that runs slower says why."""
    slow = []  # the pieces that run on pure Python here
    if AES is not None:
        names["CTR"] = CTR
    else:
        slow.append("AES")
    if eddsa is not None:
        names.update(sign_public=sign_public, sign=sign, verify=verify)
    else:
        slow.append("Ed25519")
    if DH is not None:
        names.update(_dh_public=dh_public, _dh=dh)
    else:
        slow.append("X25519")
    names["PYCRYPTODOME"] = NAMESPACE
    if NAMESPACE is None:
        names["BACKEND"] = "pure Python (no pycryptodome)"
        print("leither: crypto: no pycryptodome (neither Crypto nor Cryptodome): pure-Python "
              "AES, Ed25519 and X25519, slower; apt-get install python3-pycryptodome")
        return
    names["BACKEND"] = "pycryptodome %s (%s)" % (VERSION, NAMESPACE)
    if slow:
        names["BACKEND"] += "; pure Python " + "/".join(slow)
        print("leither: crypto: pycryptodome %s (%s) lacks %s: pure Python for it, slower"
              % (VERSION, NAMESPACE, " and ".join(slow)))
