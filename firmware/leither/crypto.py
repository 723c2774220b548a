# The cryptographic primitives the node hashes, signs, agrees keys and seals with (DESIGN §2):
# SHA-256, HMAC-SHA256, HKDF-SHA256, AES-128-CTR, Ed25519, X25519 — one API on both
# interpreters. The backend is chosen once, at import, piece by piece:
#   CPython      AES-CTR, Ed25519 and X25519 from pycryptodome (C, constant time), found as
#                `Crypto` (PyPI's pycryptodome) or `Cryptodome` (Debian's python3-pycryptodome,
#                PyPI's pycryptodomex). A piece the installed release lacks (Ed25519 before 3.15,
#                X25519 before 3.19) or a machine with neither package falls back to the pure
#                modules below, slower, and says so once on stdout.
#   MicroPython  leither.ed25519 / leither.x25519 (pure Python big ints) and CTR built on
#                cryptolib's AES ECB (C); CPython's last resort is leither.aes (pure AES-128).
# SHA-256 from hashlib (C) on both; HMAC and HKDF are pure Python on both (MicroPython has no
# hmac module).
"""Hashes, MACs, key derivation, AES-128-CTR, Ed25519 signatures and X25519 agreement."""

import hashlib
import os
import struct
import sys

from .errors import AuthError

_MICROPYTHON = sys.implementation.name == "micropython"

_SHA256_BLOCK = 64  # bytes, the HMAC block size of SHA-256 (RFC 2104 §2)
_SHA256_SIZE = 32  # bytes of a SHA-256 digest
_AES_BLOCK = 16  # bytes
_CTR_BATCH = 512  # bytes of keystream made per ECB call: 32 blocks, a speed/RAM balance
_XOR_PIECE = 128  # bytes XORed per big-int step: its temporaries fit a fragmented heap
_U64_MAX = (1 << 64) - 1
_IPAD = int.from_bytes(b"\x36" * _SHA256_BLOCK, "big")
_OPAD = int.from_bytes(b"\x5c" * _SHA256_BLOCK, "big")


def sha256(data):
    """SHA-256 digest (32 bytes) of data."""
    return hashlib.sha256(data).digest()


def random(n):
    """n bytes from the operating system's CSPRNG (os.urandom; a board's hardware RNG)."""
    return os.urandom(n)


def equal(a, b):
    """a == b for byte strings, in time that depends only on their lengths."""
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b):
        diff |= x ^ y
    return diff == 0


class HMACSHA256:
    """Incremental HMAC-SHA256 (RFC 2104): update(data) any number of times, then digest().

    After digest() the object is final (as MicroPython's hashlib objects are): digest() again
    returns the same MAC, update() raises ValueError, on both interpreters.
    """

    digest_size = _SHA256_SIZE

    def __init__(self, key, msg=None):
        if len(key) > _SHA256_BLOCK:
            key = sha256(key)
        padded = int.from_bytes(bytes(key) + bytes(_SHA256_BLOCK - len(key)), "big")
        self._inner = hashlib.sha256((padded ^ _IPAD).to_bytes(_SHA256_BLOCK, "big"))
        self._outer_key = (padded ^ _OPAD).to_bytes(_SHA256_BLOCK, "big")
        self._mac = None
        if msg:
            self._inner.update(msg)

    def update(self, data):
        if self._mac is not None:
            raise ValueError("HMAC is final")
        self._inner.update(data)

    def digest(self):
        if self._mac is None:
            outer = hashlib.sha256(self._outer_key)
            outer.update(self._inner.digest())
            self._mac = outer.digest()
        return self._mac


def hmac_sha256(key, msg):
    """HMAC-SHA256 of msg under key (32 bytes)."""
    return HMACSHA256(key, msg).digest()


def hkdf(ikm, salt, info, length):
    """HKDF-SHA256 (RFC 5869): length bytes (at most 8160) from ikm, salt and info.

    An empty or None salt means 32 zero bytes, as the RFC says.
    """
    if length < 0 or length > 255 * _SHA256_SIZE:
        raise ValueError("HKDF length must be 0..8160")
    prk = hmac_sha256(salt or bytes(_SHA256_SIZE), ikm)
    out = bytearray(length)  # allocated once: growing it block by block fragments the heap
    block = b""
    counter = 1
    info = info or b""
    for pos in range(0, length, _SHA256_SIZE):
        mac = HMACSHA256(prk, block)
        mac.update(info)
        mac.update(bytes((counter,)))
        block = mac.digest()
        take = min(_SHA256_SIZE, length - pos)
        out[pos:pos + take] = block[:take]
        counter += 1
    return bytes(out)


class CTRFromECB:
    """AES-128-CTR built on an AES ECB object (cryptolib.aes(key, 1) on a board, the pure
    leither.aes on CPython without pycryptodome).

    The counter is the whole 16-byte block, big-endian, starting at iv and wrapping at 2^128
    (NIST SP 800-38A §B.1, as pycryptodome's CTR with nonce=b"" does). The keystream carries
    over between crypt() calls, partial blocks included. Each refill encrypts _CTR_BATCH bytes
    of counter blocks in one ECB call. All buffers are made once per object and reset(iv)
    starts a new stream in them: a board seals thousands of blocks on a fragmented heap, so
    the hot path allocates nothing bigger than one _XOR_PIECE (see crypt_into).
    """

    def __init__(self, key, iv, ecb=None):
        if len(key) != 16:
            raise ValueError("AES-128-CTR needs a 16-byte key and a 16-byte IV")
        if ecb is None:
            ecb = _default_ecb(bytes(key))
        self._ecb = ecb
        self._keystream = bytearray(_CTR_BATCH)  # counter blocks, encrypted in place
        self._view = memoryview(self._keystream)
        self.reset(iv)

    def reset(self, iv):
        """Start the keystream again at counter iv (same key, same buffers)."""
        if len(iv) != _AES_BLOCK:
            raise ValueError("AES-128-CTR needs a 16-byte key and a 16-byte IV")
        self._hi, self._lo = struct.unpack(">QQ", bytes(iv))
        self._used = _CTR_BATCH  # keystream bytes already consumed from _keystream

    def _refill(self):
        # Counter blocks written into the batch buffer as two 64-bit halves: small ints only,
        # no batch-sized temporaries (the 128-bit counter wraps at 2^128, halves carry).
        blocks = self._keystream
        hi = self._hi
        lo = self._lo
        for pos in range(0, _CTR_BATCH, _AES_BLOCK):
            struct.pack_into(">QQ", blocks, pos, hi, lo)
            lo += 1
            if lo > _U64_MAX:
                lo = 0
                hi = (hi + 1) & _U64_MAX
        self._hi = hi
        self._lo = lo
        self._ecb.encrypt(blocks, blocks)  # ECB goes block by block: in place is safe
        self._used = 0

    def crypt_into(self, data, out):
        """out[:len(data)] = data XOR the keystream (out may be data itself: in place)."""
        if isinstance(data, str):  # MicroPython's memoryview takes str; CPython's does not
            raise TypeError("bytes expected, not str")
        size = len(data)
        source = memoryview(data)
        target = memoryview(out)
        pos = 0
        while pos < size:
            if self._used == _CTR_BATCH:
                self._refill()
            used = self._used
            take = min(_CTR_BATCH - used, size - pos, _XOR_PIECE)
            mixed = int.from_bytes(source[pos:pos + take], "big") ^ int.from_bytes(
                self._view[used:used + take], "big")
            target[pos:pos + take] = mixed.to_bytes(take, "big")
            pos += take
            self._used = used + take

    def crypt(self, data):
        """Encrypt or decrypt data (the same operation) and advance the keystream."""
        if isinstance(data, str):
            raise TypeError("bytes expected, not str")
        out = bytearray(len(data))
        self.crypt_into(data, out)
        return bytes(out)


def _default_ecb(key):
    """The interpreter's raw AES-128 ECB encryptor: cryptolib (C) on MicroPython, else pure."""
    if _MICROPYTHON:
        import cryptolib

        return cryptolib.aes(key, 1)
    from .aes import AES128

    return AES128(key)


# The pure curve code: MicroPython's always, CPython's where pycryptodome lacks it (replaced by
# leither.cryptodome.serve). Those modules cost ~20 KB of a board's heap once imported: only
# code that signs or agrees keys pays for them (imported on first use; later a sys.modules
# lookup).
def sign_public(seed):
    """The Ed25519 public key (32 bytes) of a 32-byte seed."""
    from . import ed25519

    return ed25519.public_key(seed)


def sign(seed, msg):
    """The 64-byte Ed25519 signature of msg by the key of seed."""
    from . import ed25519

    return ed25519.sign(seed, msg)


def verify(public, msg, signature):
    """True if signature is a valid Ed25519 signature of msg by public; never raises."""
    from . import ed25519

    return ed25519.verify(public, msg, signature)


def _dh_public(private):
    from . import x25519

    return x25519.public_key(private)


def _dh(private, public):
    from . import x25519

    return x25519.x25519(private, public)


CTR = CTRFromECB
PYCRYPTODOME = None  # on CPython: "Crypto" or "Cryptodome", the name pycryptodome was found by
BACKEND = "cryptolib AES, pure Ed25519/X25519"  # what serves, for logs and benches
if not _MICROPYTHON:  # pycryptodome's C pieces replace the pure ones where it has them
    from .cryptodome import serve

    serve(globals())


def sign_keypair(seed=None):
    """(seed, public): a new Ed25519 key pair, or the pair of a given 32-byte seed."""
    if seed is None:
        seed = random(32)
    return seed, sign_public(seed)


def dh_keypair():
    """(private, public): a new X25519 key pair (32 bytes each)."""
    private = random(32)
    return private, _dh_public(private)


def dh_public(private):
    """The X25519 public key of a 32-byte private key."""
    return _dh_public(private)


def dh(private, public):
    """The 32-byte X25519 shared secret; AuthError if it is all zeros (small-order peer key)."""
    shared = _dh(private, public)
    if equal(shared, bytes(32)):
        raise AuthError("X25519 shared secret is zero (bad peer key)")
    return shared
