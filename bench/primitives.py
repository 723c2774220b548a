# Speed of the primitives everything hashes, signs and seals with, on CPython and on the unix
# MicroPython at 64K heap, and the heap each workload needs on MicroPython. Prints one table.
"""Benchmark: CBOR, SHA-256, AES-128-CTR, Ed25519, X25519 on both interpreters.

    python bench/primitives.py [--quick]

Each workload is a small program (setup + one operation) run in a fresh process: under this
Python, under `micropython -X heapsize=64K` (MICROPYPATH=build/unix), and bisected for the
smallest MicroPython heap at which it still runs (bench/_mp.py). Rates are the best of five
timed slices (wall clock; the machine is shared): compare magnitudes, not the last digit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _mp

REPO = Path(__file__).resolve().parents[1]

# The program every workload runs in; SETUP and OP are filled in, MODE picks timing or a
# short run for the heap bisection. Must work on both interpreters.
_PROGRAM = """
import time
try:
    ticks, diff = time.ticks_us, time.ticks_diff
except AttributeError:
    def ticks():
        return int(time.perf_counter() * 1000000)
    def diff(a, b):
        return a - b
{setup}
def op():
    {op}
op()
if {timing}:
    # The best of 5 slices: other processes share the machine, a slow slice is noise.
    best_n, best_elapsed = 0, 0
    for _ in range(5):
        n = 0
        t0 = ticks()
        while True:
            op()
            n += 1
            elapsed = diff(ticks(), t0)
            if elapsed >= {slice_us} and n >= 2:
                break
        if best_n == 0 or elapsed * best_n < best_elapsed * n:
            best_n, best_elapsed = n, elapsed
    print("RESULT", best_n, best_elapsed, SIZE)
else:
    op()
    op()
    print("RESULT ok")
"""

_SMALL_RECORD = ('{"id": b"\\x01" * 20, "n": 5, "type": "file", "root": b"\\x02" * 32, '
                 '"size": 123456, "prev": b"\\x03" * 32, "time": 1764000000000, '
                 '"author": "4AyyyhobrQ6KECw6yZaZ2SoEccPu", "tags": ["a", "b"]}')
_CHUNK_RECORD = '{"hash": b"\\x07" * 32, "n": 9, "data": bytes(range(256)) * 16}'

def _lines(*lines: str) -> str:
    return "\n".join(lines)


# name -> (label, setup, op, kind): kind "rate" reports ops/s and MB/s of SIZE bytes per op,
# "ms" reports milliseconds per op.
WORKLOADS = {
    "cbor_small_enc": (
        "CBOR encode, small record",
        _lines("from leither import cbor", f"REC = {_SMALL_RECORD}",
               "SIZE = len(cbor.dumps(REC))"),
        "cbor.dumps(REC)", "rate"),
    "cbor_small_dec": (
        "CBOR decode, small record",
        _lines("from leither import cbor", f"ENC = cbor.dumps({_SMALL_RECORD})",
               "SIZE = len(ENC)"),
        "cbor.loads(ENC)", "rate"),
    "cbor_4k_enc": (
        "CBOR encode, 4 KiB-bytes record",
        _lines("from leither import cbor", f"REC = {_CHUNK_RECORD}",
               "SIZE = len(cbor.dumps(REC))"),
        "cbor.dumps(REC)", "rate"),
    "cbor_4k_dec": (
        "CBOR decode, 4 KiB-bytes record",
        _lines("from leither import cbor", f"ENC = cbor.dumps({_CHUNK_RECORD})",
               "SIZE = len(ENC)"),
        "cbor.loads(ENC)", "rate"),
    "sha256": (
        "SHA-256, 4 KiB",
        _lines("from leither import crypto", "D = bytes(4096)", "SIZE = 4096"),
        "crypto.sha256(D)", "rate"),
    "hmac": (
        "HMAC-SHA256, 4 KiB",
        _lines("from leither import crypto", "D = bytes(4096)", "SIZE = 4096"),
        "crypto.hmac_sha256(b'k' * 32, D)", "rate"),
    "aes_ctr": (
        "AES-128-CTR, 4 KiB",
        _lines("from leither import crypto", "C = crypto.CTR(bytes(16), bytes(16))",
               "D = bytes(4096)", "SIZE = 4096"),
        "C.crypt(D)", "rate"),
    "ed25519_sign": (
        "Ed25519 sign (64-byte msg, same key)",
        _lines("from leither import crypto", "S = bytes(range(32))", "M = b'x' * 64",
               "SIZE = 64"),
        "crypto.sign(S, M)", "ms"),
    "ed25519_verify": (
        "Ed25519 verify (64-byte msg)",
        _lines("from leither import crypto", "S = bytes(range(32))", "M = b'x' * 64",
               "SIZE = 64", "PUB = crypto.sign_public(S)", "SIG = crypto.sign(S, M)"),
        "assert crypto.verify(PUB, M, SIG)", "ms"),
    "x25519": (
        "X25519 shared secret",
        _lines("from leither import crypto", "A = crypto.dh_keypair()",
               "B = crypto.dh_keypair()", "SIZE = 32"),
        "crypto.dh(A[0], B[1])", "ms"),
    "x25519_keygen": (
        "X25519 key pair",
        _lines("from leither import crypto", "SIZE = 32"),
        "crypto.dh_keypair()", "ms"),
}


def program(name: str, timing: bool, budget_s: float) -> str:
    _label, setup, op, _kind = WORKLOADS[name]
    return _PROGRAM.format(setup=setup, op=op, timing=timing,
                           slice_us=int(budget_s * 200000))


def parse(out: str) -> tuple[int, int, int] | None:
    for line in out.splitlines():
        if line.startswith("RESULT ") and line != "RESULT ok":
            _, n, elapsed, size = line.split()
            return int(n), int(elapsed), int(size)
    return None


def time_cpython(name: str, budget_s: float) -> tuple[int, int, int] | None:
    env = dict(os.environ, PYTHONPATH=str(REPO / "firmware"))
    proc = subprocess.run([sys.executable, "-c", program(name, True, budget_s)],
                          capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    return parse(proc.stdout) if proc.returncode == 0 else None


def time_micropython(name: str, budget_s: float) -> tuple[int, int, int] | None:
    ok, out = _mp.run(program(name, True, budget_s), heap="64K")
    return parse(out) if ok else None


def cell(result: tuple[int, int, int] | None, kind: str) -> str:
    if result is None:
        return "failed"
    n, elapsed_us, size = result
    if kind == "ms":
        return f"{elapsed_us / n / 1000:.2f} ms/op"
    ops = n * 1000000 / elapsed_us
    return f"{ops:,.0f} ops/s {ops * size / 1e6:.2f} MB/s"


def available(name: str) -> bool:
    """CBOR rows need leither.cbor (written by a teammate)."""
    return not name.startswith("cbor") or (REPO / "firmware" / "leither" / "cbor.py").exists()


def main() -> int:
    quick = "--quick" in sys.argv
    budget = 0.2 if quick else 0.6  # seconds of timed operations per workload and interpreter
    _mp.build()
    rows = []
    for name, (label, _setup, _op, kind) in WORKLOADS.items():
        if not available(name):
            continue
        cpy = time_cpython(name, budget)
        mpy = time_micropython(name, budget)
        heap = _mp.min_heap(program(name, False, budget), low=2, high=64)
        rows.append((label, cell(cpy, kind), cell(mpy, kind),
                     "failed" if heap is None else f"{heap} KiB"))
        print(f"  measured {name}", file=sys.stderr)
    # The same program with nothing to do: what the harness itself needs of each figure.
    WORKLOADS["skeleton"] = ("", "SIZE = 0", "pass", "ms")
    base = _mp.min_heap(program("skeleton", False, budget), low=2, high=64)
    head = ("workload", f"CPython {sys.version.split()[0]}", "MicroPython (64K heap)",
            "MP heap needed")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(str(h).ljust(w) for h, w in zip(head, widths)))
    print(line)
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    print(line)
    print(f"MP heap needed: smallest -X heapsize that runs setup + 3 ops (1 KiB bisection); "
          f"the benchmark program alone (op = pass) needs {base} KiB.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
