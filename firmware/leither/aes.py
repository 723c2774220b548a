# AES-128 encryption (FIPS-197) in plain Python, for the one place no C AES exists: CPython
# without pycryptodome (a board whose OS ships neither Crypto nor Cryptodome and cannot build
# it). leither.crypto runs CTR over it (CTRFromECB); MicroPython always has cryptolib.
#
# The classic 32-bit "T-table" form: SubBytes, ShiftRows and MixColumns of a round fused into
# four 256-entry word tables, built at first use from the S-box, which is itself computed
# (multiplicative inverse in GF(2^8) then the affine map, FIPS-197 §5.1.1) rather than typed in.
# Not constant time (table lookups by secret index): acceptable only as the slow fallback.
"""Pure-Python AES-128 ECB encryption with cryptolib's interface: AES128(key).encrypt(src, dst)."""

import struct

_BLOCK = 16  # bytes per AES block
_ROUNDS = 10  # AES-128 (FIPS-197 §5, Nk = 4)
_POLY = 0x11B  # x^8 + x^4 + x^3 + x + 1, the field's reduction polynomial (FIPS-197 §4.2)

_tables = []  # [sbox, t0, t1, t2, t3], made by the first AES128


def _xtime(b):
    """b * x in GF(2^8) (FIPS-197 §4.2.1)."""
    b <<= 1
    return b ^ _POLY if b & 0x100 else b


def _make_tables():
    # Powers of the generator 3 give log/antilog tables, hence inverses: 1/g^i = g^(255-i).
    exp = [0] * 255
    log = [0] * 256
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x ^= _xtime(x)  # x * 3 = x * 2 + x
    sbox = bytearray(256)
    for a in range(256):
        inv = exp[(255 - log[a]) % 255] if a else 0
        s = inv
        for _ in range(4):  # affine map: b ^ rotl(b,1) ^ rotl(b,2) ^ rotl(b,3) ^ rotl(b,4)
            inv = ((inv << 1) | (inv >> 7)) & 0xFF
            s ^= inv
        sbox[a] = s ^ 0x63
    t0 = []
    for a in range(256):
        s = sbox[a]
        s2 = _xtime(s)
        # One column of MixColumns (FIPS-197 §5.1.3) applied to (s, 0, 0, 0): 2s, s, s, 3s.
        t0.append((s2 << 24) | (s << 16) | (s << 8) | (s2 ^ s))
    t1 = [(w >> 8) | ((w & 0xFF) << 24) for w in t0]
    t2 = [(w >> 8) | ((w & 0xFF) << 24) for w in t1]
    t3 = [(w >> 8) | ((w & 0xFF) << 24) for w in t2]
    _tables.extend((bytes(sbox), t0, t1, t2, t3))


def _expand(key, sbox):
    """The 44 round-key words of a 16-byte key (FIPS-197 §5.2)."""
    words = list(struct.unpack(">4I", key))
    rcon = 1
    for i in range(4, 4 * (_ROUNDS + 1)):
        w = words[i - 1]
        if i % 4 == 0:
            w = ((w << 8) & 0xFFFFFFFF) | (w >> 24)  # RotWord
            w = ((sbox[w >> 24] << 24) | (sbox[(w >> 16) & 0xFF] << 16)
                 | (sbox[(w >> 8) & 0xFF] << 8) | sbox[w & 0xFF])  # SubWord
            w ^= rcon << 24
            rcon = _xtime(rcon)
        words.append(words[i - 4] ^ w)
    return words


class AES128:
    """AES-128 in ECB mode, encryption only (all CTR needs)."""

    def __init__(self, key):
        if len(key) != 16:
            raise ValueError("AES-128 needs a 16-byte key")
        if not _tables:
            _make_tables()
        self._rk = _expand(bytes(key), _tables[0])

    def encrypt_block(self, block):
        """The 16-byte ciphertext of one 16-byte block."""
        sbox, t0, t1, t2, t3 = _tables
        rk = self._rk
        s0, s1, s2, s3 = struct.unpack(">4I", block)
        s0 ^= rk[0]
        s1 ^= rk[1]
        s2 ^= rk[2]
        s3 ^= rk[3]
        for r in range(4, 4 * _ROUNDS, 4):  # rounds 1..9: the fused tables
            s0, s1, s2, s3 = (
                t0[s0 >> 24] ^ t1[(s1 >> 16) & 0xFF] ^ t2[(s2 >> 8) & 0xFF] ^ t3[s3 & 0xFF]
                ^ rk[r],
                t0[s1 >> 24] ^ t1[(s2 >> 16) & 0xFF] ^ t2[(s3 >> 8) & 0xFF] ^ t3[s0 & 0xFF]
                ^ rk[r + 1],
                t0[s2 >> 24] ^ t1[(s3 >> 16) & 0xFF] ^ t2[(s0 >> 8) & 0xFF] ^ t3[s1 & 0xFF]
                ^ rk[r + 2],
                t0[s3 >> 24] ^ t1[(s0 >> 16) & 0xFF] ^ t2[(s1 >> 8) & 0xFF] ^ t3[s2 & 0xFF]
                ^ rk[r + 3])
        # The last round has no MixColumns: SubBytes and ShiftRows byte by byte.
        return struct.pack(
            ">4I",
            ((sbox[s0 >> 24] << 24) | (sbox[(s1 >> 16) & 0xFF] << 16)
             | (sbox[(s2 >> 8) & 0xFF] << 8) | sbox[s3 & 0xFF]) ^ rk[40],
            ((sbox[s1 >> 24] << 24) | (sbox[(s2 >> 16) & 0xFF] << 16)
             | (sbox[(s3 >> 8) & 0xFF] << 8) | sbox[s0 & 0xFF]) ^ rk[41],
            ((sbox[s2 >> 24] << 24) | (sbox[(s3 >> 16) & 0xFF] << 16)
             | (sbox[(s0 >> 8) & 0xFF] << 8) | sbox[s1 & 0xFF]) ^ rk[42],
            ((sbox[s3 >> 24] << 24) | (sbox[(s0 >> 16) & 0xFF] << 16)
             | (sbox[(s1 >> 8) & 0xFF] << 8) | sbox[s2 & 0xFF]) ^ rk[43])

    def encrypt(self, src, dst=None):
        """ECB-encrypt src (a multiple of 16 bytes) into dst if given (as cryptolib does),
        else return the ciphertext."""
        size = len(src)
        if size % _BLOCK:
            raise ValueError("AES ECB data must be a multiple of 16 bytes")
        out = dst if dst is not None else bytearray(size)
        if len(out) < size:
            raise ValueError("AES ECB output buffer too small")
        view = memoryview(src)
        for pos in range(0, size, _BLOCK):
            out[pos:pos + _BLOCK] = self.encrypt_block(view[pos:pos + _BLOCK])
        return None if dst is not None else bytes(out)
