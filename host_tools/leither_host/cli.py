# The `leither` command: a table of verbs (a module each in leither_host.commands), one error path.
"""Entry point of the `leither` command."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Sequence

from leither.errors import LeitherError
from leither_host import __version__
from leither_host.errors import CliError

# Help lists verbs in this order; a module in commands/ not named here is listed after them.
VERB_ORDER = [
    "discover", "build", "flash", "claim", "status", "mm", "db", "pair", "backup", "restore",
    "sim", "demo", "org", "contract", "receipts", "settle", "ledger",
]


def _verb_modules() -> list[str]:
    import leither_host.commands as package

    found = [m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")]
    return sorted(found, key=lambda n: (VERB_ORDER.index(n) if n in VERB_ORDER else 99, n))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leither",
        description="Discover, flash, claim and manage Leither boards; settle their work.",
        epilog="Run `leither VERB --help` for a verb's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"leither {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for name in _verb_modules():
        module = importlib.import_module(f"leither_host.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("leither: interrupted", file=sys.stderr)
        return 130
    except (CliError, LeitherError, OSError) as err:
        print(f"leither: {err}", file=sys.stderr)
        return 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
