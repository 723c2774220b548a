# The ESP32 stand-in: MicroPython's unix port compiled 32-bit (MICROPY_FORCE_32BIT=1) with the
# firmware and asyncio frozen in from boards/<board>/manifest.py, the manifest a real ESP32
# image freezes. Pointers are 4 bytes and bytecode stays out of the heap as on the board, so
# its heap figures are the board's (the 64-bit registry binary loads every .mpy into its heap).
#
# Source: --micropython-src DIR|TARBALL, else $LEITHER_MICROPYTHON_SRC, else shared/micropython/
# beside the repo (or beside the directory holding a git worktree of it). A tarball is
# extracted once into build/micropython/. The binary lands in build/standin/<board>/ and is
# rebuilt only when the firmware, the board's manifest or the source changes (a stamp of their
# hashes); MicroPython's own make then recompiles only what changed (seconds after the first
# ~1 min build on 2 cores).
"""Build the 32-bit frozen MicroPython that stands in for a board (`leither build`)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from leither_host.build import BOARDS, FIRMWARE, REPO
from leither_host.errors import CliError

SRC_ENV = "LEITHER_MICROPYTHON_SRC"
BUILD_DIR = REPO / "build"
MAKE_TIMEOUT_S = 1800  # a first build takes ~1 min on 2 idle cores; a loaded machine far more
# The unix port as the README of shared/micropython builds it: 32-bit, no libffi (its 32-bit
# headers are not part of gcc-multilib), no btree (not on our ESP32 image either), and not
# standalone (the system's mbedtls is not used; lib/mbedtls in the tarball is).
MAKE_FLAGS = ["MICROPY_FORCE_32BIT=1", "MICROPY_PY_FFI=0", "MICROPY_PY_BTREE=0",
              "MICROPY_STANDALONE=0"]


class Unavailable(CliError):
    """The stand-in cannot be built here (no source, no 32-bit compiler): say why."""


@dataclass
class Standin:
    board: str
    binary: Path
    source: Path
    rebuilt: bool


def find_source(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The MicroPython source (a tree or a tarball) to build from, or Unavailable saying
    where it looked."""
    looked: list[str] = []
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    elif os.environ.get(SRC_ENV):
        candidates.append(Path(os.environ[SRC_ENV]))
    else:
        # ../shared/micropython of the repo; a worktree (/work/wt/NAME) sits one level deeper.
        candidates += [REPO.parent / "shared" / "micropython",
                       REPO.parent.parent / "shared" / "micropython"]
    for path in candidates:
        looked.append(str(path))
        found = _source_in(path)
        if found is not None:
            return found
        if explicit:
            raise Unavailable(f"no MicroPython source at {path} (want a source tree with "
                              "ports/unix, or a micropython-*.tar.gz)")
    raise Unavailable("no MicroPython source (looked in " + ", ".join(looked) +
                      f"); pass --micropython-src DIR|TARBALL or set ${SRC_ENV}")


def _source_in(path: Path) -> Path | None:
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return path
    if (path / "ports" / "unix").is_dir() and (path / "py").is_dir():
        return path
    if path.is_dir():
        tarballs = sorted(path.glob("micropython-*.tar.gz"))
        if tarballs:
            return tarballs[-1]
    return None


def source_tree(source: Path) -> Path:
    """A tree to build in: the tree itself, or the tarball extracted once into build/."""
    if source.is_dir():
        return source
    digest = _file_hash(source)
    dest = BUILD_DIR / "micropython" / source.name.split(".tar")[0]
    stamp = dest / ".leither-source"
    if stamp.exists() and stamp.read_text().strip() == digest:
        return _top_dir(dest)
    if dest.exists():
        shutil.rmtree(dest)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent if dest.parent.exists()
                                else _mkdir(dest.parent)))
    try:
        with tarfile.open(source) as tar:
            tar.extractall(tmp, filter="data")
        (tmp / ".leither-source").write_text(digest + "\n")
        tmp.chmod(0o755)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _top_dir(dest)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _top_dir(dest: Path) -> Path:
    if (dest / "ports" / "unix").is_dir():
        return dest
    subdirs = [p for p in dest.iterdir() if p.is_dir() and (p / "ports" / "unix").is_dir()]
    if len(subdirs) != 1:
        raise Unavailable(f"{dest}: the tarball holds no MicroPython tree with ports/unix")
    return subdirs[0]


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_compiler() -> None:
    """A C compiler that links 32-bit programs (Debian: gcc-multilib), or Unavailable."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise Unavailable("no gcc: the stand-in is compiled from source (apt-get install "
                          "gcc-multilib)")
    with tempfile.TemporaryDirectory(prefix="leither-m32-") as tmp:
        src = Path(tmp) / "t.c"
        src.write_text("#include <stdio.h>\nint main(void) { return 0; }\n")
        proc = subprocess.run([gcc, "-m32", str(src), "-o", str(Path(tmp) / "t")],
                              capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise Unavailable("gcc cannot build 32-bit programs (apt-get install gcc-multilib)")


def manifest_for(board: str) -> Path:
    path = BOARDS / board / "manifest.py"
    if not path.is_file():
        raise CliError(f"board {board!r} has no manifest.py: nothing to freeze")
    return path


def _inputs_hash(board: str, tree: Path, source: Path) -> str:
    """What the binary is made of: firmware sources, the board's files, the source's identity,
    the flags. A change in any of them rebuilds."""
    h = hashlib.sha256()
    for path in sorted((FIRMWARE / "leither").rglob("*.py")):
        h.update(path.relative_to(FIRMWARE).as_posix().encode() + b"\0" + path.read_bytes())
    for path in sorted((BOARDS / board).iterdir()):
        if path.is_file():
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    ident = _file_hash(source) if source.is_file() else str(tree.resolve())
    h.update(ident.encode() + b"\0" + " ".join(MAKE_FLAGS).encode())
    return h.hexdigest()


def out_dir(board: str) -> Path:
    return BUILD_DIR / "standin" / board


def binary_path(board: str = "esp32") -> Path:
    return out_dir(board) / "micropython"


def build_standin(board: str = "esp32", src: str | os.PathLike[str] | None = None,
                  jobs: int = 2, force: bool = False) -> Standin:
    """The stand-in binary for board, built (or found up to date) under build/standin/."""
    source = find_source(src)
    manifest = manifest_for(board)
    out = _mkdir(out_dir(board))
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # test workers and `make` may ask at the same time
        tree = source_tree(source)
        key = _inputs_hash(board, tree, source)
        stamp = out / "stamp"
        binary = out / "micropython"
        if not force and binary.exists() and stamp.exists() and stamp.read_text() == key:
            return Standin(board, binary, tree, rebuilt=False)
        check_compiler()
        # The board manifest is included with standin=True (asyncio from extmod, port/unix).
        wrapper = out / "manifest.py"
        wrapper.write_text(f"include({str(manifest)!r}, standin=True)\n")
        log = out / "build.log"
        # mpy-cross first, on its own: made from the port's make it would inherit our BUILD=
        # and FROZEN_MANIFEST= (command-line variables reach sub-makes) and build into obj/.
        _make(["make", "-C", str(tree / "mpy-cross"), f"-j{max(1, jobs)}"], log, "w")
        argv = ["make", "-C", str(tree / "ports" / "unix"), f"-j{max(1, jobs)}", *MAKE_FLAGS,
                f"FROZEN_MANIFEST={wrapper}", f"BUILD={out / 'obj'}", "PROG=micropython"]
        _make(argv, log, "a")
        tmp = binary.with_suffix(".tmp")
        shutil.copy2(out / "obj" / "micropython", tmp)
        os.replace(tmp, binary)
        stamp.write_text(key)
        return Standin(board, binary, tree, rebuilt=True)


def _make(argv: list[str], log: Path, mode: str) -> None:
    with log.open(mode) as f:
        f.write(" ".join(argv) + "\n")
        f.flush()
        try:
            proc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT,
                                  timeout=MAKE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise CliError(f"building the stand-in timed out; see {log}") from None
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise CliError(f"building the stand-in failed (full log {log}):\n{tail}")


def firmware_command(board: str, tree: Path) -> str | None:
    """The command that builds a real firmware image for board from a MicroPython checkout
    with that port (and its toolchain: ESP-IDF for ESP32), or None when tree lacks the port."""
    if board != "esp32" or not (tree / "ports" / "esp32").is_dir():
        return None
    board_dir = BOARDS / "esp32" / "mpboard"
    return (f"make -C {tree / 'ports' / 'esp32'} BOARD_DIR={board_dir} "
            f"FROZEN_MANIFEST={manifest_for(board)}   # needs ESP-IDF (. $IDF_PATH/export.sh)")
