# Sealing for paired backup (DESIGN §5): how a node's blocks look on its partner. Pure bytes in,
# bytes out — no files, no sockets — so the owner node, the partner, the restoring node and the
# host (failover reads) all share this one definition.
"""Sealed blocks: names that hide content hashes, AES-128-CTR + HMAC-SHA256 (encrypt-then-MAC).

Keys (``Keys(backup_key)``; the 32-byte backup key is the owner's, escrowed on the host)::

    enc(16) | name(32) | check(32) = HKDF-SHA256(backup_key, salt="leither-backup/1",
                                                 info="seal", 80)

* ``name(h) = HMAC(name_key, "b" || h)``: the partner stores and is asked for blocks under this
  32-byte name; without the name key it cannot link a name to a content hash (nor test a guess).
* ``seal(h, data) -> blob = ct || tag`` with ``ct = AES-128-CTR(enc, iv=name[:16])(data)`` and
  ``tag = HMAC(check_key, name || ct)``. The IV is derived from the name, so sealing is
  deterministic: the same block seals to the same blob (dedup on the partner, and the owner can
  recompute any blob to check an audit answer without keeping a copy).
* The partner is given ``check_key`` (never ``enc`` nor ``name``): it verifies every blob on
  arrival and at rest (bit rot, a truncated transfer) yet can neither read nor name the data.
  Authenticity against the partner itself comes from the name: ``open_blob`` decrypts and checks
  that the plaintext hashes to ``h`` (or, when ``h`` is unknown, that ``name(SHA-256(plain))``
  is the name asked for) — a partner without the name key cannot produce such a pair.
* ``mtag(mid)``: a 16-byte opaque tag for a MiMei in the partner's catalog.
* Audits: the owner sends a fresh nonce and a name; the partner answers
  ``HMAC(nonce, blob)`` (``audit_answer``), which only a holder of the blob can compute.
"""

from . import crypto
from .compat import const
from .errors import AuthError

NAME_LEN = const(32)  # bytes of a sealed block's name
TAG_LEN = const(32)  # bytes of HMAC-SHA256 at the end of a blob
MTAG_LEN = const(16)  # bytes of a MiMei's catalog tag
OVERHEAD = const(32)  # blob bytes over plaintext bytes (the tag; the IV is the name's)
_SALT = b"leither-backup/1"


class Keys:
    """The keys derived from one backup key (see the module docstring)."""

    def __init__(self, backup_key):
        if len(backup_key) != 32:
            raise AuthError("a backup key is 32 bytes")
        okm = crypto.hkdf(bytes(backup_key), _SALT, b"seal", 80)
        self.enc = okm[:16]
        self.name_key = okm[16:48]
        self.check = okm[48:80]  # the partner's verification key (given to it)
        self._ctr = None  # one CTR kept and reset per block: its buffers are made once

    def _stream(self, iv):
        """The CTR keystream at iv under enc (seal/open never yield, so one object serves)."""
        if self._ctr is None:
            self._ctr = crypto.CTR(self.enc, bytes(iv))
        else:
            self._ctr.reset(bytes(iv))
        return self._ctr

    def name(self, h):
        """The partner-side name of the block with SHA-256 h."""
        return crypto.hmac_sha256(self.name_key, b"b" + bytes(h))

    def mtag(self, mid):
        """The opaque catalog tag of a MiMei ID (text)."""
        return crypto.hmac_sha256(self.name_key, b"m" + mid.encode())[:MTAG_LEN]

    def seal(self, h, data, name=None, out=None):
        """(name, blob) for the block data whose SHA-256 is h. With out (a bytearray of at
        least len(data) + TAG_LEN bytes) the blob is written there and returned as a
        memoryview of it: no block-sized allocation on a board's hot path."""
        if name is None:
            name = self.name(h)
        size = len(data)
        if out is None:
            blob = bytearray(size + TAG_LEN)  # the one block-sized allocation (a board's heap
            # is fragmented: small pieces fit where another 4 KiB would not)
        elif len(out) < size + TAG_LEN:
            raise ValueError("seal: out holds %d bytes, the blob %d" % (len(out), size + TAG_LEN))
        else:
            blob = memoryview(out)[:size + TAG_LEN]
        self._stream(name[:16]).crypt_into(data, blob)
        view = memoryview(blob)
        mac = crypto.HMACSHA256(self.check, name)
        mac.update(view[:size])
        view[size:size + TAG_LEN] = mac.digest()
        return name, blob

    def seal_in_place(self, h, data, name=None):
        """Seal the block in data (a writable buffer holding exactly it) where it lies: data
        becomes the ciphertext; (name, tag), the blob being data + tag. No block-sized
        allocation at all (a board's push sends the blob in pieces anyway)."""
        if name is None:
            name = self.name(h)
        self._stream(name[:16]).crypt_into(data, data)  # in place
        mac = crypto.HMACSHA256(self.check, name)
        mac.update(data)
        return name, mac.digest()

    def open_blob(self, name, blob, h=None, out=None):
        """The plaintext of a blob fetched by name; AuthError unless it is genuine.

        With h (the content hash the caller expects) the plaintext must hash to h; without it,
        name(SHA-256(plaintext)) must equal name (so the name key vouches for the content).
        With out (a bytearray big enough) the plaintext is written there and returned as a
        memoryview of it (a restore opens thousands of blocks on a board's heap).
        """
        if not check(self.check, name, blob):
            raise AuthError("sealed block fails its tag")
        size = len(blob) - TAG_LEN
        if out is None:
            plain = bytearray(size)
        elif len(out) < size:
            raise ValueError("open_blob: out holds %d bytes, the block %d" % (len(out), size))
        else:
            plain = memoryview(out)[:size]
        self._stream(name[:16]).crypt_into(memoryview(blob)[:-TAG_LEN], plain)
        digest = crypto.sha256(plain)
        if h is not None:
            if not crypto.equal(digest, bytes(h)):
                raise AuthError("sealed block does not hold the block asked for")
        elif not crypto.equal(self.name(digest), bytes(name)):
            raise AuthError("sealed block does not match its name")
        return plain


class Opener:
    """Opens a blob that arrives in pieces, in order (a restoring board reads a sealed 4 KiB
    chunk in pieces of its partner's frame): ``feed(piece)`` for each, then ``done(h)`` ->
    the plaintext, a memoryview of out. Same checks as Keys.open_blob, no blob-sized buffer.
    It runs the Keys' one CTR: no other block is sealed or opened with them until done."""

    def __init__(self, keys, name, size, out):
        if not TAG_LEN < size <= len(out) + TAG_LEN:
            raise ValueError("Opener: a blob of %d bytes into %d" % (size, len(out)))
        self._size = size - TAG_LEN  # plaintext bytes
        self._out = memoryview(out)[:self._size]
        self._mac = crypto.HMACSHA256(keys.check, bytes(name))
        self._ctr = keys._stream(bytes(name)[:16])
        self._tag = bytearray(TAG_LEN)
        self._pos = 0  # blob bytes fed so far

    def feed(self, piece):
        piece = memoryview(piece)
        pos = self._pos
        if pos + len(piece) > self._size + TAG_LEN:
            raise AuthError("sealed block longer than it said")
        k = max(0, min(len(piece), self._size - pos))  # ciphertext bytes in this piece
        if k:
            self._mac.update(piece[:k])
            self._ctr.crypt_into(piece[:k], self._out[pos:pos + k])
        if k < len(piece):
            at = pos + k - self._size
            self._tag[at:at + len(piece) - k] = piece[k:]
        self._pos = pos + len(piece)

    def done(self, h):
        """The plaintext; AuthError unless the blob was whole, genuine and hashes to h."""
        if self._pos != self._size + TAG_LEN or not crypto.equal(self._mac.digest(),
                                                                  bytes(self._tag)):
            raise AuthError("sealed block fails its tag")
        if not crypto.equal(crypto.sha256(self._out), bytes(h)):
            raise AuthError("sealed block does not hold the block asked for")
        return self._out


def check(check_key, name, blob):
    """True if blob's tag is right for name under check_key (what a partner can verify)."""
    if len(blob) < TAG_LEN or len(name) != NAME_LEN:
        return False
    mac = crypto.HMACSHA256(check_key, bytes(name))
    mac.update(memoryview(blob)[:-TAG_LEN])
    return crypto.equal(mac.digest(), bytes(memoryview(blob)[-TAG_LEN:]))


def audit_answer(nonce, blob):
    """The answer to an audit challenge: HMAC(nonce, blob)."""
    return crypto.hmac_sha256(bytes(nonce), blob)
