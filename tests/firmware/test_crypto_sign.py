# Ed25519: RFC 8032 §7.1 vectors through the crypto facade (pycryptodome on CPython) and
# through the pure module leither.ed25519 on both interpreters; verify() refuses what it must.
from leither import crypto, ed25519

from testutil import raises, random_bytes, unhex

# Passes from 56K (its code and ours sit in the unix port's heap); 20% headroom
# so a shifted heap layout cannot fail it (ci/mp_heap_margin.py).
MP_HEAP = "80K"

_MSG_1023 = (
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98"
    "fa6e264bf09efe12ee50f8f54e9f77b1e355f6c50544e23fb1433ddf73be84d8"
    "79de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc"
    "1a858efcb8550ee3a5e1998bd177e93a7363c344fe6b199ee5d02e82d522c4fe"
    "ba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbef"
    "efd75499da96bd68a8a97b928a8bbc103b6621fcde2beca1231d206be6cd9ec7"
    "aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2"
    "d17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24"
    "554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc"
    "2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2cf65bd92dd597b07"
    "07e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51a"
    "ddd3b75a2b1ae0784504df543af8969be3ea7082ff7fc9888c144da2af58429e"
    "c96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c"
    "42f58c30c04aafdb038dda0847dd988dcda6f3bfd15c4b4c4525004aa06eeff8"
    "ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08"
    "d78ff4ef5d63653a65040cf9bfd4aca7984a74d37145986780fc0b16ac451649"
    "de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a3"
    "2ef5b52a1ecc820e308aa342721aac0943bf6686b64b2579376504ccc493d97e"
    "6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b5"
    "0d334ba77c225bc307ba537152f3f1610e4eafe595f6d9d90d11faa933a15ef1"
    "369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c"
    "0618983f8741c5ef68d3a101e8a3b8cac60c905c15fc910840b94c00a0b9d0"
)

# RFC 8032 §7.1: (secret seed, public key, message, signature). TEST SHA(abc) signs the
# 64-byte SHA-512 of "abc" as a plain message.
_VECTORS = (
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     ("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
     "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     ("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00")),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     ("6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
     "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a")),
    ("f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
     "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e", _MSG_1023,
     ("0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350"
     "aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03")),
    ("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     ("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
     "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"),
     ("dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
     "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704")),
)


def _check_vectors(public_key, sign, verify):
    for seed, public, msg, sig in _VECTORS:
        seed, public, msg, sig = unhex(seed), unhex(public), unhex(msg), unhex(sig)
        assert public_key(seed) == public
        assert sign(seed, msg) == sig
        assert verify(public, msg, sig) is True
        assert verify(public, msg + b"x", sig) is False


def test_rfc8032_facade():
    _check_vectors(crypto.sign_public, crypto.sign, crypto.verify)


def test_rfc8032_pure():
    _check_vectors(ed25519.public_key, ed25519.sign, ed25519.verify)


def test_curve_constants():
    p = ed25519.P
    assert ed25519.D == -121665 * pow(121666, p - 2, p) % p
    assert ed25519.D2 == 2 * ed25519.D % p
    assert ed25519.SQRT_M1 * ed25519.SQRT_M1 % p == p - 1
    x, y = ed25519.BX, ed25519.BY
    assert y == 4 * pow(5, p - 2, p) % p and x % 2 == 0
    assert (-x * x + y * y - 1 - ed25519.D * x * x * y * y) % p == 0  # B is on the curve
    # B has order L: (L-1)B + B = identity.
    minus_b = ed25519.base_mult(ed25519.L - 1)
    assert ed25519.is_identity(ed25519.add(minus_b, ed25519._cached(ed25519.BASE)))


def _comb_bytes():
    """The base-point comb table of leither.ed25519, computed from the curve arithmetic."""
    p = ed25519.P
    teeth = [ed25519.BASE]
    for _ in range(3):
        teeth.append(ed25519._double_times(teeth[-1], 64))
    out = b""
    for pattern in range(1, 16):
        point = ed25519.IDENTITY
        for j in range(4):
            if pattern >> j & 1:
                point = ed25519.add(point, ed25519._cached(teeth[j]))
        z_inv = pow(point[2], p - 2, p)
        x = point[0] * z_inv % p
        y = point[1] * z_inv % p
        out += ((y + x) % p).to_bytes(32, "little") + ((y - x) % p).to_bytes(32, "little")
        out += (ed25519.D2 * x * y % p).to_bytes(32, "little")
    return out


def test_comb_table():
    assert _comb_bytes() == ed25519._COMB
    # and base_mult agrees with plain double-and-add on a few scalars
    for k in (1, 2, 15, 2**64 + 1, 2**200 + 12345, ed25519.L - 1):
        assert ed25519.encode(ed25519.base_mult(k)) == ed25519.encode(
            ed25519.mult(k, ed25519.BASE))


def test_small_order_keys_refused():
    # The table is the torsion subgroup: L * Q over points Q of the curve gives all 8.
    found = []
    y = 2
    while len(found) < 8:
        q = ed25519.decode(y.to_bytes(32, "little"))
        y += 1
        if q is not None:
            t = ed25519.encode(ed25519.mult(ed25519.L, q))
            if t not in found:
                found.append(t)
    assert sorted(found) == sorted(ed25519.SMALL_ORDER)
    # Under such a key, R of small order and S = 0 pass the RFC 8032 equation for any
    # message; both backends refuse the key.
    for public in ed25519.SMALL_ORDER:
        for verify in _verifiers():
            assert not verify(public, b"any message", ed25519.SMALL_ORDER[0] + bytes(32))


def _verifiers():
    return (crypto.verify, ed25519.verify)


def test_verify_rejects_tampering():
    seed = random_bytes(32, seed=1)
    public = crypto.sign_public(seed)
    msg = b"leither"
    sig = crypto.sign(seed, msg)
    for verify in _verifiers():
        assert verify(public, msg, sig)
        for i in (0, 31, 32, 63):
            bad = bytearray(sig)
            bad[i] ^= 0x04
            assert not verify(public, msg, bytes(bad)), i
        other = crypto.sign_public(random_bytes(32, seed=2))
        assert not verify(other, msg, sig)
        assert verify(bytearray(public), memoryview(msg), bytearray(sig))


def test_verify_rejects_non_canonical_s():
    seed = random_bytes(32, seed=3)
    public = crypto.sign_public(seed)
    msg = b"m"
    sig = crypto.sign(seed, msg)
    s = int.from_bytes(sig[32:], "little")
    # S + L names the same scalar but is not canonical (RFC 8032 §5.1.7 step 1).
    high = sig[:32] + (s + ed25519.L).to_bytes(32, "little")
    for verify in _verifiers():
        assert not verify(public, msg, high)


def test_verify_rejects_malformed_without_raising():
    seed = random_bytes(32, seed=4)
    public = crypto.sign_public(seed)
    sig = crypto.sign(seed, b"")
    p = ed25519.P
    y_too_big = (p + 1).to_bytes(32, "little")  # non-canonical encoding of y = 1
    # y = 2 gives x^2 = 3 / (4d + 1), not a square: no point has it (checked below).
    not_on_curve = (2).to_bytes(32, "little")
    assert ed25519.decode(not_on_curve) is None
    assert ed25519.decode(y_too_big) is None
    x_zero_negative = (1 | 1 << 255).to_bytes(32, "little")  # y = 1 has x = 0 only
    assert ed25519.decode(x_zero_negative) is None
    for verify in _verifiers():
        assert not verify(public[:31], b"", sig)
        assert not verify(public, b"", sig[:63])
        assert not verify(public, b"", sig + b"\x00")
        assert not verify(not_on_curve, b"", sig)
        assert not verify(y_too_big, b"", sig)
        assert not verify(public, b"", not_on_curve + sig[32:])
        assert not verify(public, b"", y_too_big + sig[32:])
        assert not verify(x_zero_negative, b"", sig)
        assert not verify(None, b"", sig)
        assert not verify(public, b"", None)
        assert not verify(public, None, sig)
        assert not verify(b"", b"", b"")
        assert not verify(public, "", sig)  # text is not bytes, on both interpreters
    raises(TypeError, crypto.sign, seed, "text")
    raises(TypeError, ed25519.sign, seed, "text")


def test_sign_keypair():
    seed, public = crypto.sign_keypair()
    assert len(seed) == 32 and len(public) == 32
    assert crypto.verify(public, b"hi", crypto.sign(seed, b"hi"))
    seed2 = random_bytes(32, seed=5)
    assert crypto.sign_keypair(seed2) == (seed2, ed25519.public_key(seed2))
