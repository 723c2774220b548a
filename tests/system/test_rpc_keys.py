# The host identity key the RPC client authenticates with: where it lives, that it is private
# (mode 0600 from the first byte), stable across runs, and refused when others can read it.
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from leither import crypto, ids
from leither_host import keys
from leither_host.errors import CliError


def test_location_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LEITHER_HOME", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert keys.config_dir() == tmp_path / "xdg" / "leither"
    monkeypatch.setenv("LEITHER_HOME", str(tmp_path / "home"))
    assert keys.config_dir() == tmp_path / "home" / "config"
    monkeypatch.delenv("LEITHER_HOME")
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert keys.config_dir() == tmp_path / ".config" / "leither"


def test_created_private_and_stable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LEITHER_HOME", str(tmp_path / "cfg"))
    old_umask = os.umask(0)  # even a permissive umask must not leak the key
    try:
        key = keys.load_or_create()
    finally:
        os.umask(old_umask)
    folder = tmp_path / "cfg" / "config"
    path = folder / keys.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert key.public == crypto.sign_public(key.seed)
    assert key.id == ids.make_id(key.public)
    assert (folder / keys.PUB_FILE).read_text().strip() == key.public.hex()
    again = keys.load_or_create()
    assert again == key
    assert not list(folder.glob("*.tmp"))


def test_refuses_readable_or_corrupt_keys(tmp_path: Path) -> None:
    key = keys.load_or_create(tmp_path)
    path = tmp_path / keys.KEY_FILE
    path.chmod(0o644)
    with pytest.raises(CliError, match="readable by others"):
        keys.load(tmp_path)
    path.chmod(0o600)
    assert keys.load(tmp_path) == key
    path.write_text("not hex\n")
    with pytest.raises(CliError, match="64 hex digits"):
        keys.load(tmp_path)
    with pytest.raises(CliError, match="no host key"):
        keys.load(tmp_path / "missing")


def test_from_seed_checks_length() -> None:
    with pytest.raises(ValueError):
        keys.HostKey.from_seed(b"short")
    assert keys.HostKey.generate() != keys.HostKey.generate()
