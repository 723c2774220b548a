# The Pi bundle's parts, checked without a Pi: the wheel is the node alone and a valid wheel
# (RECORD hashes), install.sh parses, the unit passes systemd's own checks. The bundle running
# on a Pi's userland is tests/system/test_pizero_emul.py.
from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from leither_host import pibundle


def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, bytes]]:
    monkeypatch.setenv("LEITHER_HOME", str(tmp_path / "home"))
    made = pibundle.write_bundle("shed", "00112233aabbccdd", "home", "secret", 4801, tmp_path)
    target = Path(made.target)
    assert target.name == "pizero-shed.tar.gz" and made.bytes == target.stat().st_size
    with tarfile.open(target) as tar:
        members = {m.name: m for m in tar.getmembers()}
        files = {name: tar.extractfile(m).read()  # type: ignore[union-attr]
                 for name, m in members.items() if m.isfile()}
    assert members["leither-shed/config.json"].mode == 0o600  # Wi-Fi password, claim token
    assert members["leither-shed/install.sh"].mode == 0o755
    return target, files


def test_wheel_is_the_node_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _target, files = make(tmp_path, monkeypatch)
    wheels = [n for n in files if n.endswith(".whl")]
    assert wheels == ["leither-shed/leither_node-0.1.0-py3-none-any.whl"]
    with zipfile.ZipFile(io.BytesIO(files[wheels[0]])) as wheel:
        names = wheel.namelist()
        contents = {n: wheel.read(n) for n in names}
    code = [n for n in names if not n.startswith("leither_node-0.1.0.dist-info/")]
    assert code and all(n.startswith("leither/") for n in code)
    assert {"leither/node.py", "leither/port/pizero.py", "leither/aes.py",
            "leither/cryptodome.py", "leither/__main__.py"} <= set(code)
    assert "leither/port/unix.py" not in code and "leither/port/esp32.py" not in code
    # Every firmware module but the excluded ports is in it, byte for byte.
    firmware = Path(pibundle.FIRMWARE)
    for path in (firmware / "leither").rglob("*.py"):
        rel = path.relative_to(firmware).as_posix()
        if rel not in ("leither/port/unix.py", "leither/port/esp32.py"):
            assert contents[rel] == path.read_bytes(), rel
    record = contents["leither_node-0.1.0.dist-info/RECORD"].decode().splitlines()
    assert len(record) == len(names)
    for line in record:
        name, digest, size = line.rsplit(",", 2)
        if name.endswith("/RECORD"):
            continue
        want = base64.urlsafe_b64encode(hashlib.sha256(contents[name]).digest()).rstrip(b"=")
        assert digest == "sha256=" + want.decode() and int(size) == len(contents[name])
    meta = contents["leither_node-0.1.0.dist-info/METADATA"].decode()
    assert "Name: leither-node" in meta and "Version: 0.1.0" in meta


def test_config_and_reproducible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target, files = make(tmp_path, monkeypatch)
    config = json.loads(files["leither-shed/config.json"])
    assert config == {"name": "shed", "board": "pizero", "claim_token": "00112233aabbccdd",
                      "port": 4801, "wifi": {"ssid": "home", "password": "secret"}}
    first = target.read_bytes()
    again = pibundle.write_bundle("shed", "00112233aabbccdd", "home", "secret", 4801, tmp_path)
    # Same inputs, same tar members (gzip's own header carries a time; compare the content).
    with tarfile.open(fileobj=io.BytesIO(first)) as a, tarfile.open(again.target) as b:
        assert [(m.name, m.mode, m.size) for m in a.getmembers()] == \
            [(m.name, m.mode, m.size) for m in b.getmembers()]
    assert not list(tmp_path.glob("*.whl")) and not list(tmp_path.glob("*.tmp"))


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
def test_install_sh_parses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _target, files = make(tmp_path, monkeypatch)
    script = tmp_path / "install.sh"
    script.write_bytes(files["leither-shed/install.sh"])
    for shell in ("sh", "dash", "bash"):
        if shutil.which(shell):
            done = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
            assert done.returncode == 0, (shell, done.stderr)
    text = script.read_text()
    assert "apt-get install" in text and "--target \"$PREFIX/deps\"" in text
    assert "useradd --system" in text and "usermod -a -G gpio" in text
    assert "install -d -m 0700" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_passes_systemd_checks(tmp_path: Path) -> None:
    unit = tmp_path / "leither.service"
    unit.write_text(pibundle.SYSTEMD_UNIT)
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    # verify exits 0 on unknown keys and only says so: any complaint about the unit fails.
    complaints = [line for line in (done.stdout + done.stderr).splitlines()
                  if "leither.service" in line]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr
    for setting in ("NoNewPrivileges=yes", "ProtectSystem=strict", "Restart=on-failure",
                    "ReadWritePaths=/var/lib/leither", "User=leither"):
        assert setting in pibundle.SYSTEMD_UNIT
