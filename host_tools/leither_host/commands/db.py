# `leither db`: call any db method of a db MiMei, redis-cli style. The methods, their arguments
# and which are numbers are known here, so a method is matched whatever its case (`get` is Get),
# `leither db --help` lists them all, and a wrong call is answered with the method's usage in our
# words before anything reaches the node.
"""The db verb."""

from __future__ import annotations

import argparse
import difflib
from typing import Any

from leither_host.errors import CliError
from leither_host.nodes import call, open_node
from leither_host.output import print_json

# name: (arguments, fewest, most (None: any), argument positions read as integers,
#        "pairs": the arguments after KEY go in twos). Writes are marked in WRITES.
METHODS: dict[str, tuple[str, int, int | None, frozenset[int], bool]] = {
    "Scan": ("[CURSOR [COUNT]]", 0, 2, frozenset({1}), False),
    "Exists": ("KEY [KEY ...]", 1, None, frozenset(), False),
    "Type": ("KEY", 1, 1, frozenset(), False),
    "Get": ("KEY", 1, 1, frozenset(), False),
    "Set": ("KEY VALUE", 2, 2, frozenset(), False),
    "Del": ("KEY [KEY ...]", 1, None, frozenset(), False),
    "Incr": ("KEY", 1, 1, frozenset(), False),
    "IncrBy": ("KEY N", 2, 2, frozenset({1}), False),
    "Strlen": ("KEY", 1, 1, frozenset(), False),
    "Hget": ("KEY FIELD", 2, 2, frozenset(), False),
    "Hset": ("KEY FIELD VALUE [FIELD VALUE ...]", 3, None, frozenset(), True),
    "Hmset": ("KEY FIELD VALUE [FIELD VALUE ...]", 3, None, frozenset(), True),
    "Hmget": ("KEY FIELD [FIELD ...]", 2, None, frozenset(), False),
    "Hdel": ("KEY FIELD [FIELD ...]", 2, None, frozenset(), False),
    "Hlen": ("KEY", 1, 1, frozenset(), False),
    "Hgetall": ("KEY", 1, 1, frozenset(), False),
    "Hkeys": ("KEY", 1, 1, frozenset(), False),
    "Hscan": ("KEY [CURSOR [COUNT]]", 1, 3, frozenset({2}), False),
    "HincrBy": ("KEY FIELD N", 3, 3, frozenset({2}), False),
    "Lpush": ("KEY VALUE [VALUE ...]", 2, None, frozenset(), False),
    "Rpush": ("KEY VALUE [VALUE ...]", 2, None, frozenset(), False),
    "Lpop": ("KEY", 1, 1, frozenset(), False),
    "Rpop": ("KEY", 1, 1, frozenset(), False),
    "Lrange": ("KEY START STOP", 3, 3, frozenset({1, 2}), False),
    "Lindex": ("KEY INDEX", 2, 2, frozenset({1}), False),
    "Llen": ("KEY", 1, 1, frozenset(), False),
    "Lset": ("KEY INDEX VALUE", 3, 3, frozenset({1}), False),
    "Sadd": ("KEY MEMBER [MEMBER ...]", 2, None, frozenset(), False),
    "Srem": ("KEY MEMBER [MEMBER ...]", 2, None, frozenset(), False),
    "Scard": ("KEY", 1, 1, frozenset(), False),
    "Smembers": ("KEY", 1, 1, frozenset(), False),
    "Sscan": ("KEY [CURSOR [COUNT]]", 1, 3, frozenset({2}), False),
    "Sismember": ("KEY MEMBER", 2, 2, frozenset(), False),
    "Sinter": ("KEY [KEY ...]", 1, None, frozenset(), False),
    "Sunion": ("KEY [KEY ...]", 1, None, frozenset(), False),
    "Sdiff": ("KEY [KEY ...]", 1, None, frozenset(), False),
    "Zadd": ("KEY SCORE MEMBER [SCORE MEMBER ...]", 3, None, frozenset(), True),
    "Zrem": ("KEY MEMBER [MEMBER ...]", 2, None, frozenset(), False),
    "ZincrBy": ("KEY N MEMBER", 3, 3, frozenset({1}), False),
    "Zscore": ("KEY MEMBER", 2, 2, frozenset(), False),
    "Zrank": ("KEY MEMBER", 2, 2, frozenset(), False),
    "Zcard": ("KEY", 1, 1, frozenset(), False),
    "Zcount": ("KEY MIN MAX", 3, 3, frozenset({1, 2}), False),
    "Zrange": ("KEY START STOP [WITHSCORES]", 3, 4, frozenset({1, 2}), False),
    "Zrevrange": ("KEY START STOP [WITHSCORES]", 3, 4, frozenset({1, 2}), False),
    "Zrangebyscore": ("KEY MIN MAX [WITHSCORES [OFFSET COUNT]]", 3, 6,
                      frozenset({1, 2, 4, 5}), False),
    "Zrevrangebyscore": ("KEY MAX MIN [WITHSCORES [OFFSET COUNT]]", 3, 6,
                         frozenset({1, 2, 4, 5}), False),
    "Begin": ("", 0, 0, frozenset(), False),
    "Commit": ("", 0, 0, frozenset(), False),
    "Rollback": ("", 0, 0, frozenset(), False),
}
WRITES = {"Set", "Del", "Incr", "IncrBy", "Hset", "Hmset", "Hdel", "HincrBy", "Lpush", "Rpush",
          "Lpop", "Rpop", "Lset", "Sadd", "Srem", "Zadd", "Zrem", "ZincrBy", "Begin", "Commit",
          "Rollback"}


def _firmware_methods() -> None:
    """Any db method the firmware serves that the table above lacks (added since) is still
    listed and callable, with its arguments passed as given."""
    from leither.api import DB_READ, DB_WRITE

    for name in DB_READ + DB_WRITE:
        if name not in METHODS:
            METHODS[name] = ("[ARG ...]", 0, None, frozenset(), False)
            if name in DB_WRITE:
                WRITES.add(name)


_firmware_methods()
_WITHSCORES = {"withscores": True, "1": True, "true": True, "0": False, "false": False}
EXAMPLES = """examples:
  leither db board1 MID Set greeting hello
  leither db board1 MID get greeting            # method names in any case
  leither db board1 MID Hset user:1 name ada
  leither db board1 MID Zadd scores 10 alice 7 bob
  leither db board1 MID Zrange scores 0 -1 withscores
  leither db board1 MID Lrange log 0 -1 --json
"""


def _method_list() -> str:
    width = max(len(m) for m in METHODS)
    lines = [f"  {m:<{width}}  {usage}{'   (writes)' if m in WRITES else ''}"
             for m, (usage, *_rest) in METHODS.items()]
    return "methods (any case):\n" + "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="call a db MiMei's method (Set, Hget, Zadd, ...)",
                       epilog=_method_list() + "\n\n" + EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("node", help="node name, ID prefix or host:port")
    p.add_argument("mid", help="the db MiMei's ID")
    p.add_argument("method", help="db method, e.g. Hset (listed below; any case)")
    p.add_argument("args", nargs="*", help="the method's arguments")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def method_name(text: str) -> str:
    """The method's proper name, whatever case it was typed in; CliError naming the close
    ones (or pointing at the list) otherwise."""
    by_lower = {m.lower(): m for m in METHODS}
    found = by_lower.get(text.lower())
    if found:
        return found
    close = difflib.get_close_matches(text.lower(), list(by_lower), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(by_lower[c] for c in close)}?" if close else ""
    raise CliError(f"no db method {text!r}{hint} (`leither db --help` lists them)")


def convert(method: str, args: list[str]) -> list[Any]:
    """The arguments as the node takes them; CliError with the method's usage if the count or
    a number is wrong."""
    method = method_name(method)
    usage, fewest, most, numeric, pairs = METHODS[method]
    n = len(args)
    if n < fewest or (most is not None and n > most) or (pairs and (n - 1) % 2):
        got = f"{n} argument{'s' if n != 1 else ''}"
        raise CliError(f"usage: {method} {usage}".rstrip() + f" (got {got})")
    out: list[Any] = []
    for i, arg in enumerate(args):
        if method in ("Zrange", "Zrevrange", "Zrangebyscore", "Zrevrangebyscore") and i == 3:
            if arg.lower() not in _WITHSCORES:
                raise CliError(f"{method}: argument 4 is WITHSCORES (or 0/1), not {arg!r}")
            out.append(_WITHSCORES[arg.lower()])
        elif i in numeric or (method == "Zadd" and i % 2 == 1):
            try:
                out.append(int(arg))
            except ValueError:
                raise CliError(f"{method}: argument {i + 1} ({arg!r}) must be an integer; "
                               f"usage: {method} {usage}") from None
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
    method = method_name(args.method)
    params = {"mid": args.mid, "args": convert(method, args.args)}
    session, _record = open_node(args.node)
    with session:
        result = call(session, method, params)
    if args.json:
        print_json(result)
    else:
        _show(result)
    return 0
