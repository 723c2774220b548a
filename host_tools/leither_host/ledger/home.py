# Where the ledger verbs keep keys, organizations and config: XDG directories by default
# ($XDG_DATA_HOME/leither, $XDG_CONFIG_HOME/leither), or one directory given by `--home DIR` or
# $LEITHER_HOME (tests use it to run in a temp dir; DIR/data and DIR/config, as in
# leither_host.paths). Private keys are written mode 0600.
#
#   CONFIG/host.key               the host's own key: personal key "default" (leither_host.keys)
#   DATA/keys/NAME.key            other personal Ed25519 seeds (--key NAME)
#   DATA/orgs/ORG/org.key         an organization's key (held by its supervisors' host)
#   DATA/orgs/ORG/ledger.sqlite   its books (see db.py)
#   DATA/orgs/ORG/reports/        per-epoch member reports (JSON), also kept in the database
#   CONFIG/config.json            {"org": default organization name}
"""Home directories of the host tools' ledger state."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from leither_host.errors import CliError
from leither_host.ledger.records import load_or_make_key

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Home:
    data: Path
    config: Path

    @classmethod
    def resolve(cls, override: str | os.PathLike | None = None) -> Home:
        chosen = override or os.environ.get("LEITHER_HOME")
        if chosen:
            # The same layout as leither_host.paths: DIR/data and DIR/config.
            base = Path(chosen).expanduser()
            return cls(base / "data", base / "config")
        data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
        config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        return cls(data / "leither", config / "leither")

    def key_path(self, name: str = "default") -> Path:
        return self.data / "keys" / f"{check_name(name, 'key')}.key"

    def key(self, name: str = "default", create: bool = True) -> tuple[bytes, bytes]:
        """(seed, public) of a personal key, made on first use when create. "default" is the
        host's own key (the one that claims and owns nodes), so the supervisor of an
        organization and the owner of its nodes are one member."""
        if name == "default":
            from leither_host import keys

            if not create and not (self.config / keys.KEY_FILE).exists():
                raise CliError(f"no host key in {self.config}")
            host = keys.load_or_create(self.config)
            return host.seed, host.public
        path = self.key_path(name)
        if not path.exists() and not create:
            raise CliError(f"no key named {name!r} (expected {path})")
        return load_or_make_key(path, create)

    def org_dir(self, name: str) -> Path:
        return self.data / "orgs" / check_name(name, "organization")

    def orgs(self) -> list[str]:
        base = self.data / "orgs"
        return sorted(p.name for p in base.iterdir() if (p / "ledger.sqlite").exists()) \
            if base.is_dir() else []

    def config_values(self) -> dict:
        path = self.config / "config.json"
        if not path.exists():
            return {}
        try:
            loaded = json.loads(path.read_text())
        except ValueError as err:
            raise CliError(f"{path}: not valid JSON ({err})") from None
        return loaded if isinstance(loaded, dict) else {}

    def set_config(self, **values: object) -> None:
        current = self.config_values()
        current.update(values)
        self.config.mkdir(parents=True, exist_ok=True)
        tmp = self.config / "config.json.tmp"
        tmp.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.config / "config.json")

    def default_org(self, chosen: str | None) -> str:
        """The organization a verb works on: --org, else the configured one, else the only one."""
        if chosen:
            return chosen
        configured = self.config_values().get("org")
        if isinstance(configured, str) and configured:
            return configured
        found = self.orgs()
        if len(found) == 1:
            return found[0]
        if not found:
            raise CliError("no organization yet: run `leither org create NAME` first")
        raise CliError(f"several organizations ({', '.join(found)}): choose one with --org")


def check_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise CliError(f"bad {what} name {name!r}: use letters, digits, '.', '_' or '-'")
    return name
