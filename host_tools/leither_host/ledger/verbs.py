# What the ledger verbs (org, contract, receipts, settle, ledger) share: the --home/--org/--json
# options, opening the chosen organization, and printing a result as JSON or as a table.
"""Shared plumbing of the ledger CLI verbs."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from leither import ids
from leither.errors import DecodeError
from leither_host.errors import CliError
from leither_host.ledger.home import Home
from leither_host.ledger.org import Organization
from leither_host.output import print_json, print_table


def add_common(p: argparse.ArgumentParser, org: bool = True, key: bool = False) -> None:
    p.add_argument("--home", metavar="DIR",
                   help="keep keys, config and books under DIR (default: XDG dirs, or "
                        "$LEITHER_HOME)")
    if org:
        p.add_argument("--org", metavar="NAME",
                       help="organization (default: the configured or the only one)")
    if key:
        p.add_argument("--key", metavar="NAME", default="default",
                       help="your personal key under DATA/keys (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def add_books_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--books", metavar="DIR",
                   help="read a bookkeeper's books (`books serve --dir`, default "
                        "DATA/books/ORG_ID) instead of this host's organization")


def parser(sub: argparse._SubParsersAction, name: str, help: str, examples: str
           ) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".",
                          epilog=examples, formatter_class=argparse.RawDescriptionHelpFormatter)


def home(args: argparse.Namespace) -> Home:
    return Home.resolve(getattr(args, "home", None))


def open_org(args: argparse.Namespace) -> Organization:
    books = getattr(args, "books", None)
    if books:
        if not (Path(books) / "ledger.sqlite").exists():
            raise CliError(f"no books at {books}")
        return Organization(Path(books))
    h = home(args)
    name = h.default_org(getattr(args, "org", None))
    directory = h.org_dir(name)
    if not (directory / "ledger.sqlite").exists():
        known = ", ".join(h.orgs()) or "none"
        raise CliError(f"no organization {name!r} in {h.data} (known: {known})")
    return Organization(directory)


def member_key(org: Organization, ref: str) -> tuple[str, bytes]:
    """(member ID, 20-byte ledger key) from a member ID, an ID prefix, a member name, or
    "treasury"."""
    if ref == "treasury":
        return org.id, org.raw
    # By SQL, not a scan of every member: one lookup stays quick at 10^6 members.
    conn = org.db.conn
    found = [(i, bytes(r)) for i, r in conn.execute(
        "SELECT id, raw FROM members WHERE id=?", (ref,))] or \
        [(i, bytes(r)) for i, r in conn.execute(
            "SELECT id, raw FROM members WHERE name=? LIMIT 2", (ref,))] or \
        [(i, bytes(r)) for i, r in conn.execute(
            "SELECT id, raw FROM members WHERE substr(id, 1, ?)=? LIMIT 2", (len(ref), ref))]
    if len(found) == 1:
        return found[0][0], found[0][1]
    if len(found) > 1:
        raise CliError(f"{ref!r} matches several members: give more of the ID")
    try:
        return ref, ids.id_raw(ref)  # an account that is not (or no longer) a member
    except DecodeError:
        raise CliError(f"{ref!r} is not a member name, member ID or ID prefix") from None


def emit(args: argparse.Namespace, data: Any, headers: Sequence[str] | None = None,
         rows: Sequence[Sequence[Any]] | None = None,
         text: Callable[[], None] | None = None) -> None:
    """JSON with --json, else a table (headers/rows) and/or custom text."""
    if getattr(args, "json", False):
        print_json(data)
        return
    if headers is not None and rows is not None:
        print_table(headers, rows)
    if text is not None:
        text()


def read_input(path: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise CliError(f"no such file: {path}")
    return p.read_bytes()
