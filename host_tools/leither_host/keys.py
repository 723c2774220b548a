# The host's own identity: the Ed25519 key pair the `leither` command signs RPC handshakes with,
# and therefore the key a node records as its owner when the host claims it.
"""Host identity key pair under the XDG config directory (private key file mode 0600)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from leither import crypto, ids
from leither_host.errors import CliError
from leither_host.paths import write_private

KEY_FILE = "host.key"  # 64 hex digits: the 32-byte Ed25519 seed; mode 0600
PUB_FILE = "host.pub"  # 64 hex digits: the public key (for people and scripts; not secret)


def config_dir() -> Path:
    """$LEITHER_HOME/config, else $XDG_CONFIG_HOME/leither, else ~/.config/leither: the one
    layout every host tool shares (leither_host.paths)."""
    from leither_host.paths import config_dir as shared

    return shared()


@dataclass(frozen=True)
class HostKey:
    """An Ed25519 key pair: ``seed`` is the private part; ``id`` is the member/host ID."""

    seed: bytes
    public: bytes

    @property
    def id(self) -> str:
        return ids.make_id(self.public)

    @classmethod
    def from_seed(cls, seed: bytes) -> HostKey:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(bytes(seed), crypto.sign_public(seed))

    @classmethod
    def generate(cls) -> HostKey:
        return cls.from_seed(crypto.random(32))


def load(directory: Path | None = None) -> HostKey:
    """The saved host key; CliError if missing, unreadable, malformed or not private."""
    path = (directory or config_dir()) / KEY_FILE
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except FileNotFoundError:
        raise CliError(f"no host key at {path}") from None
    except OSError as err:
        raise CliError(f"cannot read host key {path}: {err.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CliError(f"host key {path} is readable by others (mode {mode & 0o777:o}); "
                       f"run: chmod 600 {path}")
    try:
        seed = bytes.fromhex(text)
        return HostKey.from_seed(seed)
    except ValueError:
        raise CliError(f"host key {path} is not 64 hex digits") from None


def load_or_create(directory: Path | None = None) -> HostKey:
    """The host key, made (and saved with mode 0600) the first time."""
    folder = directory or config_dir()
    path = folder / KEY_FILE
    if path.exists():
        return load(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(folder, 0o700)
    except OSError:
        pass  # a folder we do not own (e.g. LEITHER_HOME=/shared): the file mode still holds
    key = HostKey.generate()
    write_private(path, (key.seed.hex() + "\n").encode())
    (folder / PUB_FILE).write_text(key.public.hex() + "\n")
    return key
