# `leither build --board esp32`: the 32-bit stand-in MicroPython with the firmware frozen in from
# the ESP32 manifest, found from the source options, cached, and saying why when it cannot be.
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from leither.parts import PARTS
from leither_host import standin
from leither_host.build import REPO, build

from conftest import esp32_heap


def run_mp(binary: Path, code: str, heap: int, cwd: Path) -> str:
    env = dict(os.environ, MICROPYPATH=".frozen")
    proc = subprocess.run([str(binary), "-X", f"heapsize={heap}", "-c", code], env=env,
                          capture_output=True, text=True, timeout=60, cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_source_not_found_says_where_it_looked(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(standin.Unavailable, match="no MicroPython source at"):
        standin.find_source(tmp_path / "nothing")
    monkeypatch.setenv(standin.SRC_ENV, str(tmp_path))  # a directory without a source
    with pytest.raises(standin.Unavailable, match=standin.SRC_ENV):
        standin.find_source()
    tarball = tmp_path / "micropython-9.9.9-src.tar.gz"
    tarball.write_bytes(b"")
    assert standin.find_source() == tarball  # a directory holding the tarball
    tree = tmp_path / "checkout"
    (tree / "ports" / "unix").mkdir(parents=True)
    (tree / "py").mkdir()
    assert standin.find_source(tree) == tree


def test_firmware_command_only_for_a_checkout_with_the_port(tmp_path: Path) -> None:
    assert standin.firmware_command("esp32", tmp_path) is None  # unix-only source
    (tmp_path / "ports" / "esp32").mkdir(parents=True)
    command = standin.firmware_command("esp32", tmp_path)
    assert command is not None
    assert f"-C {tmp_path / 'ports' / 'esp32'}" in command
    assert f"BOARD_DIR={REPO / 'boards' / 'esp32' / 'mpboard'}" in command
    assert (REPO / "boards" / "esp32" / "mpboard" / "mpconfigboard.cmake").is_file()


def test_inputs_hash_follows_firmware_and_board(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    firmware = tmp_path / "firmware"
    shutil.copytree(REPO / "firmware" / "leither", firmware / "leither")
    monkeypatch.setattr(standin, "FIRMWARE", firmware)
    tree = tmp_path / "src"
    tree.mkdir()
    before = standin._inputs_hash("esp32", tree, tree)
    assert standin._inputs_hash("esp32", tree, tree) == before  # nothing changed: no rebuild
    node = firmware / "leither" / "node.py"
    node.write_text(node.read_text() + "\n# changed\n")
    assert standin._inputs_hash("esp32", tree, tree) != before


def test_standin_is_32_bit_with_the_esp32_bundle_frozen(esp32_micropython: Path,
                                                         tmp_path: Path) -> None:
    again = standin.build_standin("esp32")  # cached: nothing changed since the fixture built it
    assert again.binary == esp32_micropython and not again.rebuilt
    out = run_mp(esp32_micropython, "import sys, asyncio, leither.node, leither.port.unix\n"
                 "print(sys.maxsize, sys.path)", esp32_heap(), tmp_path)
    maxsize, path = out.split(" ", 1)
    assert int(maxsize) == 2**31 - 1 and ".frozen" in path
    # The frozen modules are the ESP32 bundle's with every optional part (the ROMFS bundle
    # leaves some out), with the unix port (and posix file modes) in place of the ESP32 one.
    frozen_c = (standin.out_dir("esp32") / "obj" / "frozen_content.c").read_text()
    frozen = set(re.findall(r'"(leither/[a-z0-9_/]+)\.py"', frozen_c))
    bundle = build("esp32", tmp_path / "full", parts=["all"])
    mods = {f.relative_to(bundle.path).with_suffix("").as_posix() for f in bundle.files}
    assert frozen == (mods - {"leither/port/esp32"}) | {"leither/port/unix",
                                                        "leither/port/posix"}
    # ... and the frozen node says it carries them all (GetVar "parts").
    out = run_mp(esp32_micropython, "from leither import parts\nprint(parts.present())",
                 esp32_heap(), tmp_path)
    assert out.strip() == repr(sorted(PARTS))


def test_build_verb_reports_the_standin(esp32_micropython: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "leither_host", "build", "--board", "esp32",
                           "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["standin"] == str(esp32_micropython) and out["bytes"] > 0
    assert out["firmware_command"] is None  # the shared source is the unix port only


def test_build_verb_without_source_says_why(tmp_path: Path) -> None:
    env = dict(os.environ, **{standin.SRC_ENV: str(tmp_path)})
    proc = subprocess.run([sys.executable, "-m", "leither_host", "build", "--board", "esp32"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr  # the bundle is still built
    assert "stand-in not built: no MicroPython source" in proc.stderr


def test_sim_runs_esp32_boards_at_the_boards_heap(esp32_micropython: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from leither_host.sim import Sim

    monkeypatch.setenv("LEITHER_HOME", str(tmp_path / "home"))
    sim = Sim(tmp_path / "sim")
    try:
        (board,) = sim.up(1, kind="esp32", prefix=f"st{os.getpid() % 10000}b")
        assert board.kind == "esp32" and board.heap == str(esp32_heap())
        argv = open(f"/proc/{board.pid}/cmdline", "rb").read().split(b"\0")
        assert argv[0].decode() == str(esp32_micropython)
        assert f"heapsize={esp32_heap()}".encode() in argv
        env = open(f"/proc/{board.pid}/environ", "rb").read().split(b"\0")
        assert b"MICROPYPATH=.frozen" in env  # nothing on disk may shadow the frozen code
        assert Sim(tmp_path / "sim").board(board.name).kind == "esp32"  # kept in sim.json
        with pytest.raises(Exception, match="MicroPython"):
            Sim(tmp_path / "sim2").up(1, "cpython", kind="esp32")
    finally:
        sim.down()
