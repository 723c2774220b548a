# Where the host keeps its keys, config and data: the XDG directories, or one LEITHER_HOME
# for tests and for people who want everything in one place.
"""Host directories."""

from __future__ import annotations

import os
from pathlib import Path


def _home_override() -> Path | None:
    home = os.environ.get("LEITHER_HOME")
    return Path(home) if home else None


def config_dir() -> Path:
    """Keys and settings: $XDG_CONFIG_HOME/leither (or $LEITHER_HOME/config)."""
    override = _home_override()
    base = override / "config" if override else Path(
        os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "leither"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    return base


def data_dir() -> Path:
    """Inventory, ledger, receipts: $XDG_DATA_HOME/leither (or $LEITHER_HOME/data)."""
    override = _home_override()
    base = override / "data" if override else Path(
        os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "leither"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    return base


def write_private(path: Path, data: bytes) -> None:
    """Write a secret atomically, readable by its owner only from the first byte (mode 0600):
    a fresh temporary file (O_EXCL, so no leftover or planted file is reused with other modes),
    fsync, then rename over path; the parent is made mode 0700 if missing."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
