# Ed25519 signatures (RFC 8032 §5.1) in plain Python, for MicroPython where no C library
# offers them. CPython uses pycryptodome through leither.crypto; this module is the reference
# the tests hold against pycryptodome and the RFC vectors on both interpreters.
#
# Speed on a board comes from big-int arithmetic done in C: points are in extended twisted
# Edwards coordinates (X:Y:Z:T), so no inversion happens inside a scalar multiplication;
# the fixed base point uses a 4-tooth comb (63 doublings instead of 252), any other point
# a signed radix-16 window. Verification does the two products apart: one joint (Straus)
# pass is ~5% faster but needs a second base table (4 KB more heap, measured).
#
# Not constant time: Python big ints are not. A board's signing key is exposed to timing
# only through its own network latency jitter; this is the accepted trade for pure Python.
"""Pure-Python Ed25519: public_key(seed), sign(seed, msg), verify(pub, msg, sig)."""

try:
    from hashlib import sha512 as _sha512
except ImportError:  # MicroPython: hashlib has no sha512
    from leither.sha512 import sha512 as _sha512

P = 2**255 - 19  # the field prime (RFC 8032 §5.1)
L = 2**252 + 27742317777372353535851937790883648493  # order of the base point
# d = -121665/121666 mod P; 2d; sqrt(-1) = 2^((P-1)/4) mod P (checked by the tests).
D = 0x52036CEE2B6FFE738CC740797779E89800700A4D4141D8AB75EB4DCA135978A3
D2 = 0x2406D9DC56DFFCE7198E80F2EEF3D13000E0149A8283B156EBD69B9426B2F159
SQRT_M1 = 0x2B8324804FC1DF0B2B4D00993DFBD7A72F431806AD2FE478C4EE1B274A0EA0B0
# The base point B: y = 4/5, x the even root (RFC 8032 §5.1).
BX = 0x216936D3CD6E53FEC0A4E231FDD6DC5C692CC7609525A7B2C9562D608F25D51A
BY = 0x6666666666666666666666666666666666666666666666666666666666666658
BASE = (BX, BY, 1, BX * BY % P)
IDENTITY = (0, 1, 1, 0)

_TEETH = 4  # comb teeth for the base point: 2^4 - 1 = 15 precomputed points (~3 KB)
_SPACING = 64  # bits between teeth: 4 * 64 = 256 bits cover every scalar below 2^256
_comb = None  # the base point comb table, built on first use (about 200 doublings)
_key_cache = None  # (seed, scalar, prefix, public) of the last signing seed (one entry)


def _cached(point):
    """The form of a point that additions take: (Y+X, Y-X, 2Z, 2dT)."""
    x, y, z, t = point
    return ((y + x) % P, (y - x) % P, 2 * z % P, D2 * t % P)


def add(point, cached, negate=False):
    """point + cached (or point - cached), extended coordinates (add-2008-hwcd-3)."""
    x1, y1, z1, t1 = point
    if negate:  # -(X, Y, Z, T) = (-X, Y, Z, -T): swap Y+X with Y-X, negate 2dT
        ymx2, ypx2, z2, t2 = cached
        c = -t1 * t2 % P
    else:
        ypx2, ymx2, z2, t2 = cached
        c = t1 * t2 % P
    a = (y1 - x1) * ymx2 % P
    b = (y1 + x1) * ypx2 % P
    d = z1 * z2 % P
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def double(point):
    """2 * point (dbl-2008-hwcd with a = -1)."""
    x1, y1, z1 = point[0], point[1], point[2]
    a = x1 * x1 % P
    b = y1 * y1 % P
    c = 2 * z1 * z1 % P
    e = (x1 + y1) * (x1 + y1) - a - b
    g = b - a
    f = g - c
    h = -a - b
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _double_times(point, n):
    """2^n * point; T is only computed on the last doubling (the others never read it)."""
    x1, y1, z1 = point[0], point[1], point[2]
    for _ in range(n - 1):
        a = x1 * x1 % P
        b = y1 * y1 % P
        c = 2 * z1 * z1 % P
        e = (x1 + y1) * (x1 + y1) - a - b
        g = b - a
        f = g - c
        h = -a - b
        x1 = e * f % P
        y1 = g * h % P
        z1 = f * g % P
    return double((x1, y1, z1))


def is_identity(point):
    x, y, z = point[0], point[1], point[2]
    return x % P == 0 and (y - z) % P == 0


def encode(point):
    """The 32-byte encoding: y little-endian with the sign of x in the top bit."""
    x, y, z = point[0], point[1], point[2]
    zi = pow(z, P - 2, P)
    x = x * zi % P
    y = y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def decode(data):
    """The point a 32-byte encoding names, or None if it names none (RFC 8032 §5.1.3)."""
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= P:  # non-canonical encoding
        return None
    yy = y * y % P
    u = yy - 1
    v = (D * yy + 1) % P
    v3 = v * v * v % P
    x = u * v3 * pow(u * v3 * v3 * v % P, (P - 5) // 8, P) % P
    vxx = v * x * x % P
    if vxx != u % P:
        if vxx != -u % P:
            return None
        x = x * SQRT_M1 % P
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def _radix16(k):
    """k (0 <= k < 2^256) as 65 signed digits in [-8, 8] of base 16, least significant first."""
    digits = [0] * 65
    carry = 0
    for i in range(64):
        e = ((k >> (4 * i)) & 15) + carry
        carry = (e + 8) >> 4
        digits[i] = e - (carry << 4)
    digits[64] = carry
    return digits


def _window_table(point):
    """Cached forms of 1*point .. 8*point."""
    first = _cached(point)
    table = [first]
    acc = point
    for _ in range(7):
        acc = add(acc, first)
        table.append(_cached(acc))
    return table


def _build_comb():
    """Cached forms of sum(bit_j * 2^(64 j) * B) for the 15 non-zero 4-bit patterns."""
    teeth = [BASE]
    for _ in range(_TEETH - 1):
        teeth.append(_double_times(teeth[-1], _SPACING))
    table = [None] * (1 << _TEETH)
    points = [None] * (1 << _TEETH)
    for pattern in range(1, 1 << _TEETH):
        low = pattern & -pattern
        tooth = teeth[_bit_index(low)]
        rest = pattern ^ low
        point = tooth if rest == 0 else add(points[rest], _cached(tooth))
        points[pattern] = point
        table[pattern] = _cached(point)
    return table


def _bit_index(power_of_two):
    n = 0
    while power_of_two > 1:
        power_of_two >>= 1
        n += 1
    return n


def base_mult(k):
    """k * B for 0 <= k < 2^256, with the comb table."""
    global _comb
    if _comb is None:
        _comb = _build_comb()
    table = _comb
    parts = [(k >> (_SPACING * j)) for j in range(_TEETH)]
    acc = IDENTITY
    for i in range(_SPACING - 1, -1, -1):
        if i != _SPACING - 1:
            acc = double(acc)
        pattern = 0
        for j in range(_TEETH):
            pattern |= ((parts[j] >> i) & 1) << j
        if pattern:
            acc = add(acc, table[pattern])
    return acc


def mult(k, point):
    """k * point for 0 <= k < 2^255 (signed radix-16 window, 8 cached multiples)."""
    digits = _radix16(k)
    table = _window_table(point)
    acc = IDENTITY
    for i in range(64, -1, -1):
        if i != 64:
            acc = _double_times(acc, 4)
        e = digits[i]
        if e > 0:
            acc = add(acc, table[e - 1])
        elif e < 0:
            acc = add(acc, table[-e - 1], True)
    return acc


def _hash_int(*parts):
    h = _sha512()
    for part in parts:
        h.update(part)
    return int.from_bytes(h.digest(), "little")


def _expand(seed):
    """(secret scalar, prefix, public key) of a 32-byte seed (RFC 8032 §5.1.5)."""
    global _key_cache
    cached = _key_cache
    if cached is not None and cached[0] == seed:
        return cached[1], cached[2], cached[3]
    if len(seed) != 32:
        raise ValueError("Ed25519 seed must be 32 bytes")
    h = _sha512(seed).digest()
    scalar = int.from_bytes(h[:32], "little")
    scalar &= (1 << 254) - 8  # clear the 3 low bits and bit 255
    scalar |= 1 << 254
    prefix = h[32:]
    public = encode(base_mult(scalar))
    # One entry: a node signs with its own key over and over; caching it halves sign().
    _key_cache = (bytes(seed), scalar, prefix, public)
    return scalar, prefix, public


def public_key(seed):
    """The 32-byte public key of a 32-byte seed."""
    return _expand(bytes(seed))[2]


def sign(seed, msg):
    """The 64-byte signature R || S of msg by the key of seed (RFC 8032 §5.1.6)."""
    scalar, prefix, public = _expand(bytes(seed))
    r = _hash_int(prefix, msg) % L
    r_enc = encode(base_mult(r))
    k = _hash_int(r_enc, public, msg) % L
    s = (r + k * scalar) % L
    return r_enc + s.to_bytes(32, "little")


def verify(public, msg, signature):
    """True if signature is a valid signature of msg by public; never raises on bad input.

    Cofactored check [8]([S]B - [k]A - R) = 0, as pycryptodome and RFC 8032 §5.1.7 do, so
    that both interpreters accept exactly the same signatures. Non-canonical S (S >= L) and
    encodings that name no point are rejected.
    """
    try:
        if len(public) != 32 or len(signature) != 64:
            return False
        public = bytes(public)
        r_enc = bytes(signature[:32])
        s = int.from_bytes(bytes(signature[32:]), "little")
        if s >= L:
            return False
        a = decode(public)
        r = decode(r_enc)
        if a is None or r is None:
            return False
        k = _hash_int(r_enc, public, msg) % L
        neg_a = (-a[0] % P, a[1], a[2], -a[3] % P)
        check = add(add(base_mult(s), _cached(mult(k, neg_a))), _cached(r), True)
        return is_identity(_double_times(check, 3))
    except (TypeError, ValueError):
        return False
