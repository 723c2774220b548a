# `leither flash` end to end against a real MicroPython: the unix port on a pty (socat) stands
# in for a board on a serial port. Flash it, boot the flashed files, discover it, claim it.
# The board and the CLI each live in a network namespace of their own on a bridge, so mDNS
# and RPC cross a (simulated) LAN and nothing leaves the machine.
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from leither_host import lan as lanmod

SOCAT = shutil.which("socat")


def leither(home: Path, *args: str, netns: str | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "leither_host", *args]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    proc = subprocess.run(argv, env=dict(os.environ, LEITHER_HOME=str(home)),
                          capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, f"leither {' '.join(args)}: {proc.stderr}{proc.stdout}"
    return proc


@pytest.mark.skipif(lanmod.available() is not None, reason=f"{lanmod.available()}")
@pytest.mark.skipif(SOCAT is None, reason="socat not installed (apt-get install socat)")
def test_flash_boot_discover_claim(tmp_path: Path) -> None:
    micropython = str(Path(sys.executable).parent / "micropython")
    device = tmp_path / "device"  # the board's filesystem: the unix port's working directory
    device.mkdir()
    home = tmp_path / "home"
    tty = tmp_path / "tty"
    with lanmod.LAN(hosts=0) as lan:
        board_host = lan.add_host("board")
        cli_host = lan.add_host("cli")
        # The board's serial console: micropython's REPL on a pty, as a USB serial port is.
        socat = lan.popen(board_host, [SOCAT, f"PTY,link={tty},raw,echo=0",
                                       f"EXEC:{micropython} -X heapsize=512K"
                                       ",pty,raw,echo=0,stderr"],
                          cwd=device, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not tty.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tty.exists(), "socat did not make the pty"
        out = json.loads(leither(home, "flash", "--board", "unix", "--port", str(tty),
                                 "--name", "flashed1", "--json").stdout)
        assert out["files"] > 20 and out["verified"] == out["files"]
        token = out["claim_token"]
        assert json.loads((device / "data" / "config.json").read_text())["claim_token"] == token
        assert (device / "lib" / "leither" / "node.mpy").exists()
        assert (device / "main.py").exists()
        socat.wait(10)  # the reset ends the unix port's REPL session
        # A wrong port is a clear error.
        bad = leither(home, "flash", "--board", "unix", "--port", str(tmp_path / "nope"),
                      "--name", "x", check=False)
        assert bad.returncode == 1 and "no serial port" in bad.stderr
        # Power on: the board boots the flashed main.py from its own filesystem.
        log = open(tmp_path / "board.log", "wb")
        env = {k: v for k, v in os.environ.items() if k != "MICROPYPATH"}
        lan.popen(board_host, [micropython, "-X", "heapsize=512K", "main.py"], cwd=device,
                  stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if b"ready" in (tmp_path / "board.log").read_bytes():
                break
            time.sleep(0.1)
        boot_log = (tmp_path / "board.log").read_text()
        assert "ready" in boot_log, boot_log
        found = []
        for _attempt in range(3):
            found = json.loads(leither(home, "discover", "--timeout", "3", "--json",
                                       netns=cli_host.netns).stdout)
            if any(n["name"] == "flashed1" for n in found):
                break
        node = [n for n in found if n["name"] == "flashed1"]
        assert node and node[0]["host"] == board_host.ip and node[0]["port"] == 4800
        claimed = json.loads(leither(home, "claim", "flashed1", "--json",
                                     netns=cli_host.netns).stdout)
        assert claimed["node"] == node[0]["id"] and claimed["role"] == "owner"
        status = json.loads(leither(home, "status", "flashed1", "--json",
                                    netns=cli_host.netns).stdout)
        assert status["role"] == "owner" and status["name"] == "flashed1"


def test_pizero_bundle(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = json.loads(leither(home, "flash", "--board", "pizero", "--name", "garage",
                             "--wifi-ssid", "home", "--out", str(tmp_path), "--json").stdout)
    bundle = Path(out["target"])
    assert bundle.name == "pizero-garage.tar.gz" and bundle.exists()
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        config = json.load(tar.extractfile("leither-garage/config.json"))  # type: ignore[arg-type]
        unit = tar.extractfile("leither-garage/leither.service").read().decode()  # type: ignore[union-attr]
        wheel_name = [n for n in names if n.endswith(".whl")][0]
        tar.extract(wheel_name, tmp_path)
    assert {"leither-garage/install.sh", "leither-garage/leither.service"} <= set(names)
    assert config["name"] == "garage" and config["board"] == "pizero"
    assert config["claim_token"] == out["claim_token"] and config["wifi"]["ssid"] == "home"
    assert "-m leither" in unit and "--board pizero" in unit
    with zipfile.ZipFile(tmp_path / wheel_name) as wheel:
        files = wheel.namelist()
    assert "leither/node.py" in files and "leither/port/pizero.py" in files
    assert not [f for f in files if f.startswith("leither_host/")]  # the node alone


# -- small-heap boards: code frozen in the firmware or in ROMFS, never copied -----------------


def _serial_board(tmp_path: Path, argv: list[str], env: dict[str, str]
                  ) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """A MicroPython REPL on a pty (socat), its working directory standing for its flash."""
    assert SOCAT is not None
    device = tmp_path / "device"
    device.mkdir()
    tty = tmp_path / "tty"
    # A session of its own: closing it must end socat's child too (see _close_board).
    socat = subprocess.Popen([SOCAT, f"PTY,link={tty},raw,echo=0",
                              f"EXEC:{' '.join(argv)},pty,raw,echo=0,stderr"], cwd=device,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.monotonic() + 10
    while not tty.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tty.exists(), "socat did not make the pty"
    return socat, device, tty


def _close_board(socat: subprocess.Popen[bytes]) -> None:
    """End socat and the MicroPython it runs: killed alone, socat would leave its child
    spinning on a closed pty."""
    import signal

    try:
        os.killpg(socat.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    socat.wait(10)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(SOCAT is None, reason="socat not installed (apt-get install socat)")
def test_flash_esp32_with_frozen_firmware_writes_only_config(tmp_path: Path) -> None:
    from conftest import esp32_heap, esp32_standin

    standin = esp32_standin()
    env = dict(os.environ, MICROPYPATH=".frozen")
    socat, device, tty = _serial_board(tmp_path, [str(standin), "-X",
                                                  f"heapsize={esp32_heap()}"], env)
    home = tmp_path / "home"
    rpc_port = _free_port()
    try:
        (device / "lib" / "leither").mkdir(parents=True)  # an older flash's copy
        (device / "lib" / "leither" / "node.mpy").write_bytes(b"old")
        out = json.loads(leither(home, "flash", "--board", "esp32", "--port", str(tty),
                                 "--name", "frozen1", "--rpc-port", str(rpc_port),
                                 "--json").stdout)
    finally:
        _close_board(socat)  # the stand-in has no machine.reset(): the session stays up
    assert out["mode"] == "frozen" and out["files"] == 2 and out["verified"] == 2
    assert not (device / "lib" / "leither").exists()  # removed, never written
    assert "sys.path" not in (device / "main.py").read_text()
    config = json.loads((device / "data" / "config.json").read_text())
    assert config["board"] == "esp32" and config["claim_token"] == out["claim_token"]
    # Power on. The stand-in has no ESP32 pins or Wi-Fi: its node uses the unix port's files.
    config["board"] = "unix"
    (device / "data" / "config.json").write_text(json.dumps(config))
    log = open(tmp_path / "board.log", "wb")
    node = subprocess.Popen([str(standin), "-X", f"heapsize={esp32_heap()}", "main.py"],
                            cwd=device, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while b" ready" not in (tmp_path / "board.log").read_bytes():
            assert node.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "board.log").read_text()
            time.sleep(0.1)
        status = json.loads(leither(home, "status", f"127.0.0.1:{rpc_port}", "--json").stdout)
        assert status["name"].startswith("frozen1") and not status["claimed"]
    finally:
        node.kill()
        node.wait(10)


@pytest.mark.skipif(SOCAT is None, reason="socat not installed (apt-get install socat)")
def test_flash_esp32_refuses_a_firmware_without_leither_or_romfs(tmp_path: Path) -> None:
    micropython = str(Path(sys.executable).parent / "micropython")  # stock: no frozen node
    env = {k: v for k, v in os.environ.items() if k != "MICROPYPATH"}
    socat, device, tty = _serial_board(tmp_path, [micropython, "-X", "heapsize=512K"], env)
    try:
        proc = leither(tmp_path / "home", "flash", "--board", "esp32", "--port", str(tty),
                       "--name", "stock1", check=False)
    finally:
        _close_board(socat)
    assert proc.returncode == 1
    assert "neither Leither frozen in nor a ROMFS partition" in proc.stderr
    assert "leither build --board esp32" in proc.stderr
    assert not (device / "lib").exists() and not (device / "main.py").exists()


@pytest.mark.skipif(SOCAT is None, reason="socat not installed (apt-get install socat)")
def test_flash_reports_bytes_as_the_files_go(tmp_path: Path) -> None:
    from leither_host.flash import flash_micropython

    micropython = str(Path(sys.executable).parent / "micropython")
    env = {k: v for k, v in os.environ.items() if k != "MICROPYPATH"}
    socat, device, tty = _serial_board(tmp_path, [micropython, "-X", "heapsize=512K"], env)
    seen: list[tuple[int, int]] = []
    try:
        result = flash_micropython("unix", str(tty), "prog1", "0123456789abcdef", None, None,
                                   4800, reset=False,
                                   on_bytes=lambda done, total: seen.append((done, total)))
    finally:
        _close_board(socat)
    total = result.bytes
    assert result.verified == result.files > 20
    # One report as each file starts, then the whole: never backwards, ending at the total.
    assert len(seen) == result.files + 1 and all(t == total for _d, t in seen)
    assert [d for d, _t in seen] == sorted(d for d, _t in seen) and seen[-1] == (total, total)
    assert seen[0][0] == 0 and 0 < seen[len(seen) // 2][0] < total
