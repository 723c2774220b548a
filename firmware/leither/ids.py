# IDs of nodes, members and MiMei (DESIGN §2): base58btc(SHA-256(x)[:20]), Bitcoin alphabet.
# The 20 raw bytes are also the ledger's sparse-Merkle-tree key, so both forms are offered.
"""base58btc and the 160-bit IDs: make_id(data) -> str, id_raw(id) -> 20 bytes."""

import hashlib

from .errors import DecodeError

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"  # Bitcoin's, no 0OIl
RAW_ID_SIZE = 20  # bytes: 160 bits of SHA-256 (DESIGN §2)
_MAX_B58 = 256  # characters: b58decode refuses longer input (IDs are 27-28; hostile input)


def b58encode(data):
    """base58btc text of bytes; each leading zero byte becomes a leading '1'."""
    zeros = 0
    for byte in data:
        if byte:
            break
        zeros += 1
    n = int.from_bytes(bytes(data), "big")
    digits = []
    while n:
        n, rem = divmod(n, 58)
        digits.append(ALPHABET[rem])
    digits.append("1" * zeros)
    digits.reverse()
    return "".join(digits)


def b58decode(text):
    """The bytes a base58btc string encodes; DecodeError on a character outside the alphabet."""
    if not isinstance(text, str):
        raise DecodeError("base58 input must be text")
    if len(text) > _MAX_B58:
        raise DecodeError(f"base58 text longer than {_MAX_B58} characters")
    zeros = 0
    while zeros < len(text) and text[zeros] == "1":
        zeros += 1
    n = 0
    for char in text:
        value = ALPHABET.find(char)
        if value < 0:
            raise DecodeError(f"not a base58 character: {char!r}")
        n = n * 58 + value
    size = 0
    rest = n
    while rest:
        rest >>= 8
        size += 1
    return bytes(zeros) + n.to_bytes(size, "big")


def raw_id(data):
    """The 20-byte raw ID of data: SHA-256(data)[:20]."""
    return hashlib.sha256(data).digest()[:RAW_ID_SIZE]


def make_id(data):
    """The text ID of data: base58btc(SHA-256(data)[:20])."""
    return b58encode(raw_id(data))


def id_raw(text):
    """The 20 raw bytes of a text ID; DecodeError if it is not base58 of exactly 20 bytes."""
    raw = b58decode(text)
    if len(raw) != RAW_ID_SIZE:
        raise DecodeError(f"an ID is 20 bytes, this one is {len(raw)}")
    return raw
