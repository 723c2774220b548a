# Flashing: put the firmware and a board's config on a device, over its serial REPL with
# mpremote, every file checked with SHA-256 on the board; a Pi Zero gets an install bundle.
#
# Where the code goes depends on the board's heap. A board with a small heap (board.json has
# "romfs_bytes": the ESP32-WROOM's ~110 KB) must never get .mpy files in /lib: imported from
# there every module's bytecode would live in that heap and the node could not even start.
# Such a board runs the node frozen into its firmware (then only main.py and the config are
# written) or from its ROMFS partition (MicroPython 1.25+; the bundle goes there as a ROMFS
# image with `mpremote romfs deploy`); a board with neither is refused with the way out.
# The unix port on a pty (a roomy heap) gets the .mpy bundle copied to /lib as before.
"""The work behind `leither flash`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from leither_host.build import board_config, build, parts_line
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

# For code frozen in the firmware (".frozen" on sys.path) or in ROMFS ("/rom/lib"): no path
# changes, so nothing on the filesystem can shadow it.
MAIN_PY_ROM = '''\
# Leither board entry, written by `leither flash`: boots the node (frozen into the firmware or
# in the ROMFS partition) with its saved config.
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
    mode: str = "copy"  # where the code went: "copy" (/lib), "frozen" (firmware), "romfs"
    rom_image_bytes: int = 0
    part_bytes: dict[str, int] = field(default_factory=dict)  # .mpy bytes per part written
    left_out: list[str] = field(default_factory=list)  # optional parts the code leaves out


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


def _mpremote(port: str, commands: list[list[str]], resume: bool,
              on_line: Callable[[str], None] | None = None) -> str:
    """Run one mpremote session; its stdout. on_line sees each stdout line as it comes
    (mpremote prints `cp SRC :DST` as it starts each copy: the flash's progress)."""
    argv = [mpremote_bin(), "connect", port]
    if resume:
        argv.append("resume")
    for i, cmd in enumerate(commands):
        if i:
            argv.append("+")
        argv += cmd
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(MPREMOTE_TIMEOUT_S, proc.kill)  # a hung link ends, not the CLI
    timer.start()
    try:
        assert proc.stdout is not None and proc.stderr is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
        err = proc.stderr.read()
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(lines)
    if proc.returncode == -signal.SIGKILL:
        raise CliError(f"mpremote timed out talking to {port}")
    if proc.returncode != 0:
        msg = (err.strip() or out.strip()).splitlines()
        raise CliError(f"mpremote on {port} failed: {msg[-1] if msg else proc.returncode}")
    return out


def flash_micropython(board: str, port: str, name: str, token: str, ssid: str | None,
                      password: str | None, rpc_port: int, resume: bool = True,
                      reset: bool = True, progress: Callable[[str], None] | None = None,
                      on_bytes: Callable[[int, int], None] | None = None,
                      parts: list[str] | None = None) -> FlashResult:
    """Put the node's code where the board runs it from (see the header), then main.py and
    config.json, and verify every file written. on_bytes(done, total) follows the copy.
    parts: the optional parts the bundle carries (default: the board's "bundle_parts")."""
    say = progress or (lambda _msg: None)
    result = FlashResult(board=board, name=name, claim_token=token, target=port)
    small_heap = "romfs_bytes" in board_config(board)
    code: list[tuple[Path, str]] = []
    if small_heap:
        _place_code(board, port, resume, result, say, parts)
    else:
        bundle = build(board, parts=parts)
        result.part_bytes, result.left_out = bundle.part_sizes(), bundle.left_out
        say(parts_line(result.part_bytes, result.left_out))
        code = [(f, f"{DEVICE_LIB}/{f.relative_to(bundle.path).as_posix()}")
                for f in bundle.files]
    with tempfile.TemporaryDirectory(prefix="leither-flash-") as tmp:
        staging = Path(tmp)
        (staging / "main.py").write_text(MAIN_PY_ROM if small_heap else MAIN_PY)
        (staging / "config.json").write_text(json.dumps(
            make_config(board, name, token, ssid, password, rpc_port)))
        plan: list[tuple[Path, str]] = [(staging / "main.py", "main.py"),
                                        (staging / "config.json", f"{DEVICE_ROOT}/config.json")]
        plan += code
        dirs = {DEVICE_ROOT} | ({DEVICE_LIB} if code else set())
        for _src, dst in code:
            parts = dst.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        existing = _mpremote(port, [["exec", _LIST_DIRS % sorted(dirs)]], resume)
        present = set(json.loads(existing.strip().splitlines()[-1])) if existing.strip() else set()
        commands = [["fs", "mkdir", f":{d}"] for d in sorted(dirs, key=len) if d not in present]
        commands += [["fs", "cp", "-f", str(src), f":{dst}"] for src, dst in plan]
        sizes = {str(src): src.stat().st_size for src, _ in plan}
        size = sum(sizes.values())
        say(f"writing {len(plan)} files ({size} bytes) to {port}")
        copied = [0, 0]  # bytes of the files whose copy finished, size of the one under way

        def follow(line: str) -> None:
            words = line.split()
            if on_bytes is not None and len(words) == 3 and words[0] == "cp":
                copied[0] += copied[1]  # a new copy starts: the one before it is done
                copied[1] = sizes.get(words[1], 0)
                on_bytes(copied[0], size)

        _mpremote(port, commands, resume=True, on_line=follow)
        if on_bytes is not None:
            on_bytes(size, size)
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


def _place_code(board: str, port: str, resume: bool, result: FlashResult,
                say: Callable[[str], None], parts: list[str] | None = None) -> None:
    """A small-heap board: use the Leither frozen into its firmware, or deploy the bundle to
    its ROMFS partition; refuse plainly when it has neither. A /lib/leither copy left by an
    older flash is removed: it would shadow the ROMFS modules and fill the heap."""
    out = _mpremote(port, [["exec", _PROBE]], resume)
    probe = json.loads(out.strip().splitlines()[-1])
    if probe.get("frozen"):
        say("the firmware has Leither frozen in: writing main.py and the config only")
        result.mode = "frozen"
    elif probe.get("rom", 0) > 0:
        from leither_host import romfs

        image = romfs.build_image(board, parts=parts)
        romfs.check_fits(image, probe.get("rom_size") or romfs.partition_bytes(board))
        say(f"deploying a ROMFS image of the bundle ({image.size} bytes, {image.files} "
            f"modules) to the board's ROMFS partition ({probe.get('rom_size')} bytes)")
        say(image.parts_line())
        result.part_bytes, result.left_out = image.part_bytes, image.left_out
        _mpremote(port, [["romfs", "--partition", "0", "deploy", str(image.path)]], True)
        result.mode = "romfs"
        result.rom_image_bytes = image.size
    else:
        raise CliError(
            f"this {board}'s MicroPython has neither Leither frozen in nor a ROMFS partition, "
            f"and copying the .mpy bundle would load all of its code into the board's "
            f"{board_config(board).get('heap_bytes')}-byte heap: the node could not run. "
            f"Flash a firmware with Leither frozen in (`leither build --board {board} "
            "--micropython-src CHECKOUT` prints the build command), or a MicroPython 1.25+ "
            "build with a ROMFS partition (partitions-4MiB-romfs.csv), then flash again")
    if probe.get("lib_copy"):
        say(f"removing the old {DEVICE_LIB}/leither copy from the board's filesystem")
        _mpremote(port, [["exec", _RM_TREE % f"{DEVICE_LIB}/leither"]], True)


# Run on the board: is Leither frozen in, how many ROMFS partitions (size of the first), is
# there a /lib/leither copy (json dict on the last line). Only .frozen is searched for the
# frozen check, so a copy on the filesystem cannot answer for it.
_PROBE = """import sys, os, json
_r = {"frozen": False, "rom": 0, "rom_size": 0, "lib_copy": False}
_p = sys.path[:]
sys.path[:] = [".frozen"]
try:
    import leither
    _r["frozen"] = True
except ImportError:
    pass
sys.path[:] = _p
for _m in [m for m in sys.modules if m == "leither" or m.startswith("leither.")]:
    del sys.modules[_m]
try:
    import vfs
    if hasattr(vfs, "rom_ioctl"):
        _r["rom"] = vfs.rom_ioctl(1)
        if _r["rom"] > 0:
            _d = vfs.rom_ioctl(2, 0)
            _r["rom_size"] = _d.ioctl(4, 0) * _d.ioctl(5, 0) if hasattr(_d, "ioctl") else len(_d)
except Exception:
    pass
try:
    os.stat("lib/leither")
    _r["lib_copy"] = True
except OSError:
    pass
print(json.dumps(_r))"""

# Run on the board: remove a directory tree.
_RM_TREE = """import os
def _rm(p):
    if os.stat(p)[0] & 0x4000:
        for _n in os.listdir(p):
            _rm(p + "/" + _n)
        os.rmdir(p)
    else:
        os.remove(p)
_rm(%r)"""

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
