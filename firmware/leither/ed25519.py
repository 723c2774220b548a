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
    from .sha512 import sha512 as _sha512

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

# The 8 points of small order (the torsion subgroup), canonically encoded. A public key among
# them accepts a forged signature of any message (R of small order, S = 0) under the RFC 8032
# check, so verify() refuses them, as libsodium does; crypto.verify does so on CPython too.
# (The tests recompute them as L * Q for points Q of the curve.)
SMALL_ORDER = (
    b"\x00" * 32,
    b"\x00" * 31 + b"\x80",
    b"\x01" + b"\x00" * 31,
    b"\xec" + b"\xff" * 30 + b"\x7f",
    (b"\x26\xe8\x95\x8f\xc2\xb2\x27\xb0\x45\xc3\xf4\x89\xf2\xef\x98\xf0"
    b"\xd5\xdf\xac\x05\xd3\xc6\x33\x39\xb1\x38\x02\x88\x6d\x53\xfc\x05"),
    (b"\x26\xe8\x95\x8f\xc2\xb2\x27\xb0\x45\xc3\xf4\x89\xf2\xef\x98\xf0"
    b"\xd5\xdf\xac\x05\xd3\xc6\x33\x39\xb1\x38\x02\x88\x6d\x53\xfc\x85"),
    (b"\xc7\x17\x6a\x70\x3d\x4d\xd8\x4f\xba\x3c\x0b\x76\x0d\x10\x67\x0f"
    b"\x2a\x20\x53\xfa\x2c\x39\xcc\xc6\x4e\xc7\xfd\x77\x92\xac\x03\x7a"),
    (b"\xc7\x17\x6a\x70\x3d\x4d\xd8\x4f\xba\x3c\x0b\x76\x0d\x10\x67\x0f"
    b"\x2a\x20\x53\xfa\x2c\x39\xcc\xc6\x4e\xc7\xfd\x77\x92\xac\x03\xfa"),
)

_TEETH = 4  # comb teeth for the base point: 2^4 - 1 = 15 precomputed points
_SPACING = 64  # bits between teeth: 4 * 64 = 256 bits cover every scalar below 2^256
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


# The comb of the base point: for each 4-bit pattern j = 1..15 the point
# sum(bit_i(j) * 2^(64 i) * B), affine, as (y+x, y-x, 2dxy) mod P, three 32-byte little-endian
# numbers each (1440 bytes). Made by _comb_bytes() in tests/firmware/test_crypto_sign.py,
# which checks it against the curve arithmetic above. As bytes it costs 1.4 KB of heap where
# 45 big ints in tuples cost ~7 KB, and no first-use build (which peaked at +14 KB).
_COMB = (
    b"\x85\x3b\x8c\xf5\xc6\x93\xbc\x2f\x19\x0e\x8c\xfb\xc6\x2d\x93\xcf"
    b"\xc2\x42\x3d\x64\x98\x48\x0b\x27\x65\xba\xd4\x33\x3a\x9d\xcf\x07"
    b"\x3e\x91\x40\xd7\x05\x39\x10\x9d\xb3\xbe\x40\xd1\x05\x9f\x39\xfd"
    b"\x09\x8a\x8f\x68\x34\x84\xc1\xa5\x67\x12\xf8\x98\x92\x2f\xfd\x44"
    b"\x68\xaa\x7a\x87\x05\x12\xc9\xab\x9e\xc4\xaa\xcc\x23\xe8\xd9\x26"
    b"\x8c\x59\x43\xdd\xcb\x7d\x1b\x5a\xa8\x65\x0c\x9f\x68\x7b\x11\x6f"
    b"\x15\xf5\xd1\x77\xe7\x65\x2a\xcd\xf1\x60\xaa\x8f\x87\x91\x89\x54"
    b"\xe5\x06\xbc\xda\xbc\x3b\xb7\xb1\xfb\xc9\x7c\xa9\xcb\x78\x48\x65"
    b"\xfe\xb0\xf6\x8d\xc7\x8e\x13\x51\x1b\xf5\x75\xe5\x89\xda\x97\x53"
    b"\xb9\xf1\x7a\x71\x1d\x7a\x20\x09\x50\xd6\x20\x2b\xba\xfd\x02\x21"
    b"\xa1\xe6\x5c\x05\x05\xe4\x9e\x96\x29\xad\x51\x12\x68\xa7\xbc\x36"
    b"\x15\xa4\x7d\xaa\x17\xf5\x1a\x3a\xba\xb2\xec\x29\xdb\x25\xd7\x0a"
    b"\xe8\x59\x1e\x60\x85\xc5\x55\x00\x60\x0e\x48\x66\x2b\x34\x93\x87"
    b"\x4c\xe4\x45\xfe\xd0\xaa\x14\x3e\x2b\xcf\x13\x48\xe6\xd8\xea\x26"
    b"\xa4\x62\x84\x9c\xb6\xb8\x75\xcb\xd7\x1c\xd3\x67\xc5\x6f\xd8\x2d"
    b"\xf6\x42\x13\x88\xec\x72\x19\xcd\x2f\x2f\xc1\x0f\x97\xb5\x75\x09"
    b"\x43\xa7\x5b\xda\x03\x23\xcf\x63\x6e\xba\xf1\x52\x81\x9d\xbf\x04"
    b"\xda\x67\x73\xaa\xd0\x90\x37\x33\xea\xc5\xf6\x9d\x47\x70\x46\x53"
    b"\xa2\x8e\xad\xac\xbf\x04\x3b\x58\x84\xe8\x8b\x14\xe8\x43\xb7\x29"
    b"\xdb\xc5\x10\x08\x3b\x58\x1e\x2b\xaa\xbb\xb3\x8e\xe5\x49\x54\x2b"
    b"\x47\xbe\x3d\xeb\x62\x75\x3a\x5f\xb8\xa0\xbd\x8e\x54\x38\xea\xf7"
    b"\x99\x72\x74\x45\x31\xe5\xc3\x00\x51\xd5\x27\x16\xe7\xe9\x04\x13"
    b"\xfe\x9c\xdc\x6a\xd2\x14\x98\x78\x0b\xdd\x48\x8b\x3f\xab\x1b\x3c"
    b"\x0a\xc6\x79\xf9\xff\xe1\x0f\xda\x93\xd6\x2d\x7c\x2d\xde\x68\x44"
    b"\x48\x67\xbc\xe3\x8d\x27\x18\x21\xf7\x0e\xb2\xd0\x60\xfd\x1f\xe7"
    b"\x98\xb1\x7b\xc6\x51\xbe\x51\xf5\x4d\x3d\x54\xd0\x64\x36\xa1\x26"
    b"\xee\x39\xa3\x13\x3b\x2d\x52\x29\x29\x95\xd8\x6c\x50\x25\x52\x85"
    b"\xf1\xf0\xf4\xac\xd4\x3a\xea\xdf\x2e\x74\x42\x79\xba\x6b\xd7\x49"
    b"\x1d\xe6\x56\x8d\x33\x42\xfa\x14\x9a\x29\x51\xc3\x46\x39\x1d\x19"
    b"\x85\xb1\xad\xa7\x6d\x57\x7d\x24\xc2\xed\xfc\xa8\xe3\xaf\x1f\x4e"
    b"\x4c\x04\x6a\x23\x3d\x05\xe7\x15\xe3\x87\x8d\x3b\xb1\xbc\xdd\x3c"
    b"\x28\xa8\x21\xd3\xd2\x60\x99\x51\xa4\xbb\xc5\x0f\x0f\x9a\x55\x4e"
    b"\x1c\x70\x12\x9c\x76\xe8\x00\xfe\x5f\x3b\x9c\x03\x0a\xdc\xdc\x95"
    b"\x1b\xeb\x02\x0c\x4b\x45\x69\xc1\x0c\x53\x87\x5f\xd3\x21\x70\x72"
    b"\x1e\x24\xdf\x27\x07\x04\x71\xa5\x36\x0d\x90\xb2\xaa\xef\x45\xdf"
    b"\xde\x9a\xa6\x60\x5c\xdb\x6e\xfe\x1d\xc0\xbb\x07\x30\xb7\xfc\x64"
    b"\xca\x90\xd3\x6f\xcc\x58\xef\x38\xfc\x98\x1a\x17\x75\x65\x78\xef"
    b"\x5f\xd6\x42\xc4\x8f\xb7\x50\x88\xef\x86\xd0\x6f\x6d\xc6\x34\x6f"
    b"\x04\xdc\x98\x38\xb4\xcb\xf3\x93\x27\xb7\x07\x43\xb2\xff\x91\x07"
    b"\x1d\x98\x34\xce\x96\x80\xbd\xd7\x6d\x9f\x84\x8b\x8e\x8b\x59\x0b"
    b"\x89\xf6\xc2\x0c\x8a\xc1\xcf\x11\x2a\xce\x29\xb5\x07\x46\x11\x81"
    b"\x40\x59\x0b\xc0\x46\xc0\x9b\x0a\xc8\x66\xac\xb1\xb0\x28\x21\x41"
    b"\xc0\x1a\x0c\xc8\x9d\xcc\x6d\xa6\x36\xa4\x38\x1b\xf4\x5c\xa0\x97"
    b"\xc6\xd7\xdb\x95\xbe\xf3\xeb\xa7\xab\x7d\x7e\x8d\xf6\xb8\xa0\x7d"
    b"\xa6\x75\x56\x38\x14\x20\x78\xef\xe8\xa9\xfd\xaa\x30\x9f\x64\xa2"
    b"\xcb\xa8\xdf\x5c\x50\xeb\xd1\x4c\xb3\xc0\x4d\x1d\xba\x5a\x11\x46"
    b"\x76\xda\xb5\xc3\x53\x19\x0f\xd4\x9b\x9e\x11\x21\x73\x6f\xac\x1d"
    b"\x60\x59\xb2\xfe\x21\x60\xcc\x03\x4b\x4b\x67\x83\x7e\x88\x5f\x5a"
    b"\xf4\xc1\xa2\x0c\x18\x60\x8d\x0a\x40\xdf\x68\xcc\xdb\xb0\x5e\x81"
    b"\x99\x4e\x2f\xb8\x47\x7a\xe6\xd7\xc0\x15\x7f\x60\x90\x28\xa0\x45"
    b"\x84\xf1\x41\xfd\xd1\x66\xf3\xfe\x1e\xe1\xcf\x01\x11\x4a\x69\x8b"
    b"\x4d\xa7\x50\x01\x5e\xe1\x39\x4b\xba\x51\xd3\x6a\x3d\xf0\x13\x40"
    b"\xcc\x65\xe0\x6e\xdc\x82\x02\xbd\x46\xe6\x4a\x22\xfd\x94\xb9\x36"
    b"\x74\xe8\xbc\xfe\xd8\x9a\x4e\x53\x4f\x6e\xf0\xd9\xc1\x55\x22\x48"
    b"\x00\xf8\xce\x71\xcf\xea\x03\x3c\xbb\xfe\x8a\xca\x44\x75\x36\x90"
    b"\x77\xc4\x29\x6a\x28\xea\x3f\x38\x62\x54\x65\xbc\xb0\x93\x85\x4e"
    b"\x8c\x63\xe5\xa3\x4a\x11\xde\x12\x0d\xf2\xc4\x29\xa9\x4a\x2a\xba"
    b"\xa3\x13\x8b\x7b\x9d\xd2\xb0\x56\x44\x79\x9b\x7b\x49\x1a\xb9\x6b"
    b"\x06\xd2\xe7\xc5\x46\xe6\x49\x2a\x45\xc4\x63\x92\xcd\xf9\x3e\xb1"
    b"\x9e\x52\xab\xed\xe8\x6c\xab\x50\x9b\xe3\xeb\xb0\x79\x7d\xcf\x20"
    b"\x48\x5c\xe7\x8a\x4e\x8f\xd2\xcb\x60\x0b\x00\x44\x91\x02\xde\x3c"
    b"\x70\x21\xbc\x98\xc8\xb9\x3b\x37\x86\x08\x57\x9f\x53\x88\x11\x7c"
    b"\xca\x7d\xfe\xf0\x9d\x93\xb4\x7d\xce\x51\xa9\xcb\x0f\xb9\x0e\xf5"
    b"\x1d\x1d\x7e\x35\x1c\xe6\x8b\x09\x9d\x46\x99\x88\x37\x62\x35\x02"
    b"\x03\x4c\x5a\xe1\xfa\xef\xf6\x20\x05\x8e\x77\x3c\x94\x0a\x47\x2f"
    b"\x67\xde\x99\xfc\x03\x0a\xf5\x79\x83\x14\x06\xd1\x88\x01\xd2\x38"
    b"\xdf\x15\x63\x0e\xad\x11\xe8\x23\x90\xb2\xae\xe2\x05\x0d\x65\x0b"
    b"\x6c\x58\x5d\xa7\x59\x0f\xba\xb7\xee\x4d\x1f\x5e\xd4\xed\x3e\x04"
    b"\x17\x32\x07\xc7\xf2\x47\xc1\xf6\x0c\xd2\xaf\xf3\x19\xb9\x51\xc6"
    b"\x02\xf8\x41\x70\xfd\xdb\x8f\x25\x3e\x07\x45\x4f\xa9\x4f\x3c\x17"
    b"\xc4\xf9\x8d\x92\x60\xea\x71\x3d\x2d\x56\x73\x33\x06\x78\x7e\x5b"
    b"\xb2\x52\x95\xa2\x4c\x51\xb0\xd9\x72\xc4\x3c\x99\x24\x70\x2a\x1e"
    b"\x1f\x81\x5c\xd4\xbc\x0f\x1a\x60\x03\x08\xec\x92\x7d\xbc\xb7\x24"
    b"\x7f\x40\xd2\x17\x2b\xe6\xca\xa0\x26\x5b\x22\x06\xee\x43\xcb\x5f"
    b"\xa4\xfb\x09\x35\xb9\x09\x05\x31\x75\x1b\x63\x05\x76\xb3\x8d\x0d"
    b"\x87\x1c\x40\x52\xba\xcc\xde\x97\x73\xe7\xb2\x11\xf4\x49\x46\x04"
    b"\x5f\x21\x98\x95\xad\x24\x0d\x0c\x8c\x62\x36\xcc\x26\x90\x7f\x1b"
    b"\xea\xdc\x16\x70\x55\x2f\x8e\x33\x8f\xe5\xc0\x5c\xfa\x1b\x8a\x0c"
    b"\x4c\x10\x1d\x68\xb5\x03\xe7\x8d\x45\xcb\x63\x12\x59\x7a\x2f\x3d"
    b"\x63\x6c\xe5\x1c\x17\x0c\x71\xae\xca\xe6\xc3\xfc\x7e\x7c\x85\x6b"
    b"\xc0\x01\x28\x8b\xb4\x56\xd2\x79\xc4\x0f\x40\x3c\xac\xbe\x9f\x7e"
    b"\x41\xba\x33\x47\x1d\xab\x51\xa7\xca\x8a\x41\xdd\xf5\x2b\xde\x09"
    b"\x7f\x68\xf0\xef\xf3\x0f\xf1\x3b\xa2\x7b\xe3\xf1\x34\xea\xba\x5e"
    b"\x4d\x03\x66\x1d\x26\x61\x9e\xe4\xca\x42\xb2\xc3\x2a\x6e\x46\x5b"
    b"\x42\xb8\xfb\x47\x67\xeb\x7e\x13\x8b\x1a\x81\x60\x75\x5c\xdf\x79"
    b"\x9a\xc8\xf8\x71\x6f\xa7\x2b\x5a\xc2\xff\xc8\x3b\x56\x2a\x95\x09"
    b"\x3c\xf8\x7e\xdc\x4b\xcb\xa8\xa2\x26\xc2\x93\x5f\xfa\xc6\xb5\x96"
    b"\xa5\xe3\x64\x06\x1b\xeb\xeb\xd4\x2f\xcf\xc6\xe5\xdc\x4a\x9b\x40"
    b"\xc4\x50\x43\x83\xb9\x3d\xd5\x44\xb4\x05\xf5\xa5\x05\x93\x29\x89"
    b"\x2f\xff\x49\x59\xa2\xfa\x22\xfb\x64\x7d\x65\x04\xa7\x68\xb9\x69"
)


def _add_affine(point, ypx2, ymx2, t2d2):
    """point + an affine point given as (y+x, y-x, 2dxy): add-2008-hwcd-3 with Z2 = 1."""
    x1, y1, z1, t1 = point
    a = (y1 - x1) * ymx2 % P
    b = (y1 + x1) * ypx2 % P
    c = t1 * t2d2 % P
    d = 2 * z1
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def base_mult(k):
    """k * B for 0 <= k < 2^256, with the comb (63 doublings, at most 64 additions)."""
    comb = memoryview(_COMB)
    parts = [(k >> (_SPACING * j)) for j in range(_TEETH)]
    acc = IDENTITY
    for i in range(_SPACING - 1, -1, -1):
        if i != _SPACING - 1:
            acc = double(acc)
        pattern = 0
        for j in range(_TEETH):
            pattern |= ((parts[j] >> i) & 1) << j
        if pattern:
            at = 96 * (pattern - 1)
            acc = _add_affine(acc, int.from_bytes(comb[at:at + 32], "little"),
                              int.from_bytes(comb[at + 32:at + 64], "little"),
                              int.from_bytes(comb[at + 64:at + 96], "little"))
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
        if isinstance(part, str):  # MicroPython would hash its UTF-8; CPython refuses
            raise TypeError("bytes expected, not str")
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
    that both interpreters accept exactly the same signatures. Non-canonical S (S >= L),
    encodings that name no point and public keys of small order are rejected.
    """
    try:
        if len(public) != 32 or len(signature) != 64:
            return False
        public = bytes(public)
        r_enc = bytes(signature[:32])
        s = int.from_bytes(bytes(signature[32:]), "little")
        if s >= L or public in SMALL_ORDER:
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
