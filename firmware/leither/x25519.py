# X25519 key agreement (RFC 7748 §5) in plain Python, for MicroPython where no C library
# offers it. CPython uses pycryptodome through leither.crypto; the tests hold the two to the
# RFC vectors and to each other.
#
# The Montgomery ladder works on the u-coordinate alone with big ints (the C part of the
# interpreter does the 255-bit arithmetic). The public key (k * 9) takes the faster road
# through the Edwards comb of leither.ed25519: u = (1 + y) / (1 - y) maps B to u = 9.
# Not constant time (Python ints are not), as ed25519.py explains.
"""Pure-Python X25519: x25519(scalar, u) and public_key(scalar)."""

P = 2**255 - 19  # the field prime (RFC 7748 §4.1)
_A24 = 121665  # (486662 - 2) / 4, RFC 7748 §5


def _clamp(scalar):
    """decodeScalar25519 (RFC 7748 §5): clear bits 0-2 and 255, set bit 254."""
    if len(scalar) != 32:
        raise ValueError("X25519 scalar must be 32 bytes")
    k = int.from_bytes(scalar, "little")
    return (k & ((1 << 254) - 8)) | (1 << 254)


def x25519(scalar, u):
    """The 32-byte u-coordinate of scalar * u; all-zero output for small-order u."""
    if len(u) != 32:
        raise ValueError("X25519 point must be 32 bytes")
    k = _clamp(scalar)
    # RFC 7748 §5: mask the top bit; values >= P are taken mod P (non-canonical is allowed).
    x1 = (int.from_bytes(u, "little") & ((1 << 255) - 1)) % P
    x2, z2, x3, z3 = 1, 0, x1, 1
    swap = 0
    for t in range(254, -1, -1):
        bit = (k >> t) & 1
        if swap ^ bit:
            x2, x3 = x3, x2
            z2, z3 = z3, z2
        swap = bit
        a = x2 + z2
        aa = a * a % P
        b = x2 - z2
        bb = b * b % P
        e = aa - bb
        da = (x3 - z3) * a % P
        cb = (x3 + z3) * b % P
        x3 = (da + cb) * (da + cb) % P
        z3 = (da - cb) * (da - cb) % P * x1 % P
        x2 = aa * bb % P
        z2 = e * (aa + _A24 * e) % P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, P - 2, P) % P).to_bytes(32, "little")


def public_key(scalar):
    """X25519(scalar, 9): the public key of a 32-byte private scalar."""
    from . import ed25519

    point = ed25519.base_mult(_clamp(scalar))
    y, z = point[1], point[2]
    # u = (1 + y) / (1 - y) = (Z + Y) / (Z - Y) in projective coordinates.
    return ((z + y) * pow((z - y) % P, P - 2, P) % P).to_bytes(32, "little")
