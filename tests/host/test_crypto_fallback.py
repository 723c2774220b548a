# leither.crypto on CPython finds pycryptodome as `Crypto` (PyPI) or `Cryptodome` (Debian's
# python3-pycryptodome, PyPI's pycryptodomex), takes the pure modules for any piece a release
# lacks, and runs entirely on them with neither installed. Each configuration runs in a child
# interpreter whose imports of the hidden names fail, against the same vectors as always: the
# firmware test modules for hashes, signatures and agreement, SP 800-38A for CTR. The pure
# AES-128 (leither.aes) is held to FIPS-197 and SP 800-38A and to pycryptodome.
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from Crypto.Cipher import AES as LibAES

from leither import crypto
from leither.aes import AES128

REPO = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 300  # one child runs three test modules, pure Python at worst

# SP 800-38A F.1.1 (ECB-AES128.Encrypt) and F.5.1 (CTR-AES128.Encrypt).
SP_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
SP_PLAIN = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a" "ae2d8a571e03ac9c9eb76fac45af8e51"
                         "30c81c46a35ce411e5fbc1191a0a52ef" "f69f2445df4f9b17ad2b417be66c3710")
SP_ECB = bytes.fromhex("3ad77bb40d7a3660a89ecaf32466ef97" "f5d3d58503b9699de785895a96fdbaaf"
                       "43b1cd7f598ece23881b00e3ed030688" "7b0c785e27e8ad3f8223207104725dd4")
SP_CTR_IV = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
SP_CTR = bytes.fromhex("874d6191b620e3261bef6864990db6ce" "9806f66b7970fdff8617187bb9fffdff"
                       "5ae4df3edbd5d35e5b4f09020db03eab" "1e031dda2fbe03d1792170a0f3009cee")


def test_aes_fips197_vectors() -> None:
    # FIPS-197 Appendix B (the worked cipher example) and Appendix C.1 (AES-128).
    assert AES128(SP_KEY).encrypt(bytes.fromhex("3243f6a8885a308d313198a2e0370734")) \
        == bytes.fromhex("3925841d02dc09fbdc118597196a0b32")
    key = bytes(range(16))
    plain = bytes.fromhex("00112233445566778899aabbccddeeff")
    assert AES128(key).encrypt(plain) == bytes.fromhex("69c4e0d86a7b0430d8cdb78070b4c55a")


def test_aes_sp800_38a_ecb_and_ctr() -> None:
    assert AES128(SP_KEY).encrypt(SP_PLAIN) == SP_ECB
    out = bytearray(len(SP_PLAIN))
    assert AES128(SP_KEY).encrypt(SP_PLAIN, out) is None and bytes(out) == SP_ECB
    ctr = crypto.CTRFromECB(SP_KEY, SP_CTR_IV, AES128(SP_KEY))
    assert ctr.crypt(SP_PLAIN[:7]) + ctr.crypt(SP_PLAIN[7:]) == SP_CTR


def test_aes_agrees_with_pycryptodome() -> None:
    for _ in range(100):
        key = os.urandom(16)
        data = os.urandom(16 * (1 + os.urandom(1)[0] % 8))
        assert AES128(key).encrypt(data) == LibAES.new(key, LibAES.MODE_ECB).encrypt(data)


def test_aes_bad_input() -> None:
    for size in (0, 15, 24, 32):
        with pytest.raises(ValueError):
            AES128(bytes(size))
    with pytest.raises(ValueError):
        AES128(SP_KEY).encrypt(bytes(17))
    with pytest.raises(ValueError):
        AES128(SP_KEY).encrypt(bytes(32), bytearray(16))


# The child: hide some names from import, load leither.crypto, report which backend serves
# each piece, then run the firmware crypto test modules and the CTR vectors on that backend.
CHILD = r"""
import json, sys

hidden = sys.argv[1].split(",") if sys.argv[1] else []


class Hide:
    def find_spec(self, name, path=None, target=None):
        if any(name == h or name.startswith(h + ".") for h in hidden):
            raise ModuleNotFoundError("hidden by the test: " + name, name=name)
        return None


sys.meta_path.insert(0, Hide())
from leither import crypto

report = {"backend": crypto.BACKEND, "namespace": crypto.PYCRYPTODOME,
          "ctr": crypto.CTR.__module__ + "." + crypto.CTR.__name__,
          "sign": crypto.sign.__module__ + "." + crypto.sign.__name__,
          "dh": crypto._dh.__module__ + "." + crypto._dh.__name__, "failed": [], "ran": 0}
# Cost, not coverage: these two drive the pure modules directly whatever the backend.
SLOW = {"test_sha512_million_a", "test_rfc7748_iterated_1000"}
for name in ("test_crypto_hash", "test_crypto_sign", "test_crypto_dh"):
    module = __import__(name)
    for attr in sorted(dir(module)):
        if attr.startswith("test_") and attr not in SLOW:
            try:
                getattr(module, attr)()
                report["ran"] += 1
            except BaseException as err:  # pytest.skip raises a BaseException
                if type(err).__name__ != "Skipped":
                    report["failed"].append("%s.%s: %r" % (name, attr, err))

key = bytes.fromhex(sys.argv[2])
iv, plain, cipher = (bytes.fromhex(a) for a in sys.argv[3:6])
ctr = crypto.CTR(key, iv)
if ctr.crypt(plain[:5]) + ctr.crypt(plain[5:40]) + ctr.crypt(plain[40:]) != cipher:
    report["failed"].append("CTR: SP 800-38A F.5.1")
wrap = crypto.CTR(key, b"\xff" * 16).crypt(bytes(48))
if wrap[16:32] != crypto.CTR(key, bytes(16)).crypt(bytes(16)):
    report["failed"].append("CTR: the counter does not wrap at 2^128")
print("REPORT " + json.dumps(report))
"""


def run_child(hidden: tuple[str, ...]) -> tuple[dict, list[str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "tests" / "firmware"), str(REPO / "firmware"), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, ",".join(hidden), SP_KEY.hex(), SP_CTR_IV.hex(),
         SP_PLAIN.hex(), SP_CTR.hex()],
        capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    report = json.loads([x for x in lines if x.startswith("REPORT ")][-1][len("REPORT "):])
    notices = [x for x in lines if x.startswith("leither: crypto:")]
    assert not report["failed"], report["failed"]
    assert report["ran"] >= 20, report
    return report, notices


LIB = "leither.cryptodome"
PURE = "leither.crypto"  # the pure sign/verify/_dh and CTRFromECB live in leither.crypto


def test_backend_crypto_namespace() -> None:
    report, notices = run_child(("Cryptodome",))
    assert report["namespace"] == "Crypto"
    assert report["ctr"] == f"{LIB}.CTR" and report["sign"] == f"{LIB}.sign"
    assert report["dh"] == f"{LIB}.dh"
    assert notices == []  # the full library: nothing to say


def test_backend_cryptodome_namespace() -> None:
    pytest.importorskip("Cryptodome", reason="pycryptodomex (the `Cryptodome` name) is a dev "
                        "dependency: make venv")
    report, notices = run_child(("Crypto",))
    assert report["namespace"] == "Cryptodome"
    assert report["ctr"] == f"{LIB}.CTR" and report["sign"] == f"{LIB}.sign"
    assert report["dh"] == f"{LIB}.dh"
    assert notices == []


def test_backend_release_without_x25519() -> None:
    # Debian 13's python3-pycryptodome (3.20) has AES and Ed25519 but no X25519 import:
    # X25519 alone goes pure, and the node says so once.
    report, notices = run_child(("Crypto.Protocol.DH", "Cryptodome"))
    assert report["namespace"] == "Crypto"
    assert report["ctr"] == f"{LIB}.CTR" and report["sign"] == f"{LIB}.sign"
    assert report["dh"] == f"{PURE}._dh"
    assert len(notices) == 1 and "lacks X25519" in notices[0], notices


def test_backend_pure_python() -> None:
    report, notices = run_child(("Crypto", "Cryptodome"))
    assert report["namespace"] is None and report["backend"].startswith("pure Python")
    assert report["ctr"] == f"{PURE}.CTRFromECB" and report["sign"] == f"{PURE}.sign"
    assert report["dh"] == f"{PURE}._dh"
    assert len(notices) == 1 and "no pycryptodome" in notices[0], notices
