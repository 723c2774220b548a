# `leither db`: call any db method of a db MiMei, redis-cli style.
"""The db verb."""

from __future__ import annotations

import argparse
from typing import Any

from leither_host.errors import CliError
from leither_host.nodes import call, open_node
from leither_host.output import print_json

# Argument positions the db reads as integers (scores, counts, indices); the rest stay text.
NUMERIC: dict[str, set[int]] = {
    "IncrBy": {1}, "HincrBy": {2}, "ZincrBy": {1}, "Lrange": {1, 2}, "Lindex": {1}, "Lset": {1},
    "Zrange": {1, 2}, "Zrevrange": {1, 2}, "Zrangebyscore": {1, 2, 3, 4}, "Zcount": {1, 2},
}
EXAMPLES = """examples:
  leither db board1 MID Set greeting hello
  leither db board1 MID Get greeting
  leither db board1 MID Hset user:1 name ada
  leither db board1 MID Zadd scores 10 alice 7 bob
  leither db board1 MID Zrange scores 0 -1
  leither db board1 MID Lrange log 0 -1 --json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="call a db MiMei's method (Set, Hget, Zadd, ...)",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("node", help="node name, ID prefix or host:port")
    p.add_argument("mid", help="the db MiMei's ID")
    p.add_argument("method", help="Leither db method name, e.g. Hset")
    p.add_argument("args", nargs="*", help="the method's arguments")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def convert(method: str, args: list[str]) -> list[Any]:
    numeric = NUMERIC.get(method, set())
    out: list[Any] = []
    for i, arg in enumerate(args):
        wants_int = i in numeric or (method == "Zadd" and i % 2 == 1)
        if wants_int:
            try:
                out.append(int(arg))
            except ValueError:
                raise CliError(f"{method}: argument {i + 1} ({arg!r}) must be an integer"
                               ) from None
        else:
            out.append(arg)
    return out


def _show(value: Any, indent: str = "") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            print(f"{indent}{_text(k)}: {_text(v)}")
    elif isinstance(value, (list, tuple)):
        if not value:
            print(f"{indent}(empty)")
        for i, v in enumerate(value, 1):
            print(f"{indent}{i}) {_text(v)}")
    else:
        print(f"{indent}{_text(value)}")


def _text(value: Any) -> str:
    if value is None:
        return "(nil)"
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return " ".join(_text(v) for v in value)
    return str(value)


def run(args: argparse.Namespace) -> int:
    session, _record = open_node(args.node)
    with session:
        result = call(session, args.method, {"mid": args.mid,
                                             "args": convert(args.method, args.args)})
    if args.json:
        print_json(result)
    else:
        _show(result)
    return 0
