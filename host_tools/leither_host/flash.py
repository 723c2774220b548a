# Flashing: put the firmware and a board's config on a device. MicroPython boards (ESP32, the
# unix port on a pty) get the .mpy bundle over their serial REPL with mpremote, checked file by
# file with SHA-256 on the board; a Pi Zero gets an install bundle (wheel, systemd unit, config).
"""The work behind `leither flash`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from leither_host.build import build
from leither_host.errors import CliError
from leither_host.paths import data_dir

DEVICE_LIB = "lib"  # on the board: modules under /lib (on sys.path on ESP32; main.py adds it)
DEVICE_ROOT = "data"  # the node's root on the board's filesystem
MPREMOTE_TIMEOUT_S = 300  # one mpremote run: a 60 KB bundle over 115200 baud takes ~10 s

MAIN_PY = '''\
# Leither board entry, written by `leither flash`: boots the node with its saved config.
import sys

if "lib" not in sys.path:
    sys.path.insert(1, "lib")
from leither.node import main

main(["--root", "%s"])
''' % DEVICE_ROOT

@dataclass
class FlashResult:
    board: str
    name: str
    claim_token: str
    files: int = 0
    bytes: int = 0
    verified: int = 0
    target: str = ""
    extras: dict[str, str] = field(default_factory=dict)


def make_config(board: str, name: str, token: str, ssid: str | None,
                password: str | None, port: int) -> dict[str, object]:
    config: dict[str, object] = {"name": name, "board": board, "claim_token": token,
                                 "port": port}
    if ssid:
        config["wifi"] = {"ssid": ssid, "password": password or ""}
    return config


def remember_token(name: str, token: str) -> None:
    """Keep the claim token of a flashed board so `leither claim NAME` finds it."""
    path = data_dir() / "claim-tokens.json"
    tokens = json.loads(path.read_text()) if path.exists() else {}
    tokens[name] = token
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(tokens, f)
    os.replace(tmp, path)


def flashed_token(name: str) -> str | None:
    path = data_dir() / "claim-tokens.json"
    try:
        token = json.loads(path.read_text()).get(name)
    except (OSError, ValueError):
        return None
    return token if isinstance(token, str) else None


def mpremote_bin() -> str:
    here = Path(sys.executable).parent / "mpremote"
    if here.exists():
        return str(here)
    found = shutil.which("mpremote")
    if not found:
        raise CliError("mpremote not found: pip install mpremote")
    return found


def _mpremote(port: str, commands: list[list[str]], resume: bool) -> str:
    argv = [mpremote_bin(), "connect", port]
    if resume:
        argv.append("resume")
    for i, cmd in enumerate(commands):
        if i:
            argv.append("+")
        argv += cmd
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=MPREMOTE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise CliError(f"mpremote timed out talking to {port}") from None
    if proc.returncode != 0:
        msg = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise CliError(f"mpremote on {port} failed: {msg[-1] if msg else proc.returncode}")
    return proc.stdout


def flash_micropython(board: str, port: str, name: str, token: str, ssid: str | None,
                      password: str | None, rpc_port: int, resume: bool = True,
                      reset: bool = True, progress: Callable[[str], None] | None = None
                      ) -> FlashResult:
    """Copy the .mpy bundle, main.py and config.json to a MicroPython board and verify them."""
    say = progress or (lambda _msg: None)
    bundle = build(board)
    result = FlashResult(board=board, name=name, claim_token=token, target=port)
    with tempfile.TemporaryDirectory(prefix="leither-flash-") as tmp:
        staging = Path(tmp)
        (staging / "main.py").write_text(MAIN_PY)
        (staging / "config.json").write_text(json.dumps(
            make_config(board, name, token, ssid, password, rpc_port)))
        plan: list[tuple[Path, str]] = [(staging / "main.py", "main.py"),
                                        (staging / "config.json", f"{DEVICE_ROOT}/config.json")]
        dirs = {DEVICE_LIB, DEVICE_ROOT}
        for f in bundle.files:
            rel = f.relative_to(bundle.path).as_posix()
            plan.append((f, f"{DEVICE_LIB}/{rel}"))
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add(f"{DEVICE_LIB}/{'/'.join(parts[:i])}")
        existing = _mpremote(port, [["exec", _LIST_DIRS % sorted(dirs)]], resume)
        present = set(json.loads(existing.strip().splitlines()[-1])) if existing.strip() else set()
        commands = [["fs", "mkdir", f":{d}"] for d in sorted(dirs, key=len) if d not in present]
        commands += [["fs", "cp", "-f", str(src), f":{dst}"] for src, dst in plan]
        size = sum(s.stat().st_size for s, _ in plan)
        say(f"writing {len(plan)} files ({size} bytes) to {port}")
        _mpremote(port, commands, resume=True)
        result.files = len(plan)
        result.bytes = sum(src.stat().st_size for src, _ in plan)
        say("verifying SHA-256 of every file on the board")
        want = {dst: hashlib.sha256(src.read_bytes()).hexdigest() for src, dst in plan}
        out = _mpremote(port, [["exec", _HASH_FILES % sorted(want)]], resume=True)
        got = json.loads(out.strip().splitlines()[-1])
        bad = [p for p, h in want.items() if got.get(p) != h]
        if bad:
            raise CliError(f"verification failed on the board for {len(bad)} file(s): "
                           f"{', '.join(bad[:5])}")
        result.verified = len(want)
    if reset:
        say("resetting the board")
        try:
            _mpremote(port, [["reset"] if board != "unix" else ["soft-reset"]], resume=True)
        except CliError:
            pass  # the unix port exits on soft reset, dropping the link: that is the reset
    remember_token(name, token)
    return result


# Run on the board: which of these directories exist (json list on the last line).
_LIST_DIRS = """import os, json
def _d(p):
    try:
        return os.stat(p)[0] & 0x4000 != 0
    except OSError:
        return False
print(json.dumps([p for p in %r if _d(p)]))"""

# Run on the board: SHA-256 of each file, read in 1 KiB pieces (json dict on the last line).
_HASH_FILES = """import hashlib, binascii, json
_r = {}
for _p in %r:
    try:
        _h = hashlib.sha256()
        with open(_p, 'rb') as _f:
            while True:
                _b = _f.read(1024)
                if not _b:
                    break
                _h.update(_b)
        _r[_p] = binascii.hexlify(_h.digest()).decode()
    except OSError:
        _r[_p] = None
print(json.dumps(_r))"""


def pizero_bundle(name: str, token: str, ssid: str | None, password: str | None,
                  rpc_port: int, out_dir: Path | None = None) -> FlashResult:
    """dist/pizero-NAME.tar.gz: the Pi install bundle (leither_host.pibundle)."""
    from leither_host.pibundle import write_bundle

    return write_bundle(name, token, ssid, password, rpc_port, out_dir)
