# `leither mm`: MiMei on a node — create, list, put and get content, back up, list versions,
# release, restore, delete versions, references. One handler per sub-verb.
"""The mm verb."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

from leither import parts
from leither.errors import RPCError
from leither_host.client import ConnectError, SyncSession, collect_pages
from leither_host.errors import CliError
from leither_host.nodes import call, open_node
from leither_host.output import Progress, human_bytes, print_json, print_table

EXAMPLES = """examples:
  leither mm create board1 --app notes --ext txt            # prints the MiMei ID
  leither mm create board1 --app cfg --type db --mark '{{auto}}'
  leither mm ls board1
  leither mm put board1 MID ./photo.jpg                     # replaces cur with the file
  leither mm get board1 MID -o copy.jpg --version last
  leither mm backup board1 MID                              # a new immutable version
  leither mm versions board1 MID
  leither mm release board1 MID 2
  leither mm restore board1 MID 1                           # copy version 1 into cur
  leither mm rm-versions board1 MID 1 2
  leither mm ref board1 MID add OTHER_MID                   # add | del | ls
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mm", help="MiMei: create, ls, put, get, backup, versions, ...",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="mm_verb", metavar="ACTION")
    verbs.required = True

    def action(name: str, help_text: str, func: Callable[..., Any]) -> argparse.ArgumentParser:
        a = verbs.add_parser(name, help=help_text)
        a.add_argument("node", help="node name, ID prefix or host:port")
        a.add_argument("--json", action="store_true", help="print JSON")
        a.set_defaults(func=lambda args: _run(args, func))
        return a

    a = action("create", "create a MiMei (same app/ext/mark: same ID)", _create)
    a.add_argument("--app", required=True, help="application ID")
    a.add_argument("--ext", default="", help="extension, e.g. txt")
    a.add_argument("--mark", default="", help="mark; '{{auto}}' draws a random one")
    a.add_argument("--type", default="file", choices=("file", "db"))
    action("ls", "list the node's MiMei", _ls)
    a = action("put", "write a file (or stdin: -) into a MiMei's cur", _put)
    a.add_argument("mid")
    a.add_argument("file", help="file to upload, - for stdin")
    a.add_argument("--offset", type=int, help="write at this offset instead of replacing")
    a = action("get", "read a MiMei's content (cur or a version)", _get)
    a.add_argument("mid")
    a.add_argument("-o", "--output", help="write here instead of stdout")
    a.add_argument("--version", default="cur", help="cur, last, release or a number")
    a = action("backup", "make a new immutable version of cur", _backup)
    a.add_argument("mid")
    a = action("versions", "list a MiMei's versions", _versions)
    a.add_argument("mid")
    a = action("release", "mark a version as the release", _release)
    a.add_argument("mid")
    a.add_argument("version", nargs="?", default="last")
    a = action("restore", "copy a version into cur", _restore)
    a.add_argument("mid")
    a.add_argument("version")
    a = action("rm-versions", "delete versions (their blocks are collected)", _rm_versions)
    a.add_argument("mid")
    a.add_argument("versions", nargs="+")
    a = action("ref", "references: add, del, ls", _ref)
    a.add_argument("mid")
    a.add_argument("op", choices=("add", "del", "ls"))
    a.add_argument("other", nargs="?", help="the referenced MiMei (add, del)")


def _run(args: argparse.Namespace, func: Callable[[SyncSession, argparse.Namespace], Any]
         ) -> int:
    session, _record = open_node(args.node)
    with session:
        result = func(session, args)
    if result is not None:
        data, show = result
        if args.json:
            print_json(data)
        else:
            show(data)
    return 0


def _version_arg(text: str) -> str | int:
    return int(text) if text.isdigit() else text


APP_MAX = 64  # characters in an app ID
EXT_MAX = 16  # characters in an extension
MARK_MAX = 64  # characters in a mark
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def check_part(what: str, value: str, limit: int, empty_ok: bool) -> None:
    """App IDs and extensions name things in paths and listings: a short run of letters,
    digits, '.', '_' and '-'; refused here in our words rather than stored as given."""
    if not value:
        if empty_ok:
            return
        raise CliError(f"--{what} must not be empty")
    if len(value) > limit:
        raise CliError(f"--{what} is {len(value)} characters; at most {limit}")
    bad = sorted(set(value) - _NAME_CHARS)
    if bad:
        raise CliError(f"--{what} {value!r}: {''.join(bad)!r} not allowed (use letters, digits, "
                       f"'.', '_', '-')")


def _create(s: SyncSession, args: argparse.Namespace) -> Any:
    check_part("app", args.app, APP_MAX, empty_ok=False)
    check_part("ext", args.ext, EXT_MAX, empty_ok=True)
    if len(args.mark) > MARK_MAX:
        raise CliError(f"--mark is {len(args.mark)} characters; at most {MARK_MAX}")
    if args.type == "db":
        need_part(s, "db")
    mid = call(s, "MMCreate", {"app": args.app, "ext": args.ext, "mark": args.mark,
                               "type": args.type})
    # Same author, app, ext and mark: same ID. An existing MiMei of the other type is not
    # what was asked for: say so instead of handing it back.
    have = call(s, "MMInfo", {"mid": mid}).get("type")
    if have != args.type:
        raise CliError(f"a {have} MiMei with app {args.app!r}, ext {args.ext!r} and mark "
                       f"{args.mark!r} already exists ({mid}); give another --ext or --mark "
                       f"for the {args.type} MiMei")
    return {"mid": mid, "type": args.type}, lambda d: print(d["mid"])


def need_part(s: SyncSession, part: str) -> None:
    """Refuse before trying when the node's bundle left out an optional part (a ROMFS board
    without the db engine); the node would answer no_part in the same words."""
    try:
        have = s.call("GetVar", {"name": "parts"}, 30.0)
    except RPCError as err:
        if err.code == "not_found":
            return  # a node from before parts existed carries all of them
        raise CliError(f"GetVar: {err.msg} ({err.code})") from None
    if part not in have:
        raise CliError(f"cannot create a {part} MiMei: {parts.message(part)}")


def _ls(s: SyncSession, args: argparse.Namespace) -> Any:
    items = [_with_mid(r) for r in collect_pages(lambda method, params: call(s, method, params),
                                                 "MMList")]

    def show(rows: list[dict[str, Any]]) -> None:
        if not rows:
            print("no MiMei")
            return
        print_table(["mid", "type", "app", "ext", "size", "versions", "last", "release"],
                    [(r["mid"], r["type"], r["app"], r["ext"], human_bytes(r["size"]),
                      r["versions"], r["last"], r["release"]) for r in rows])
    return items, show


def _with_mid(row: dict[str, Any]) -> dict[str, Any]:
    """A MiMei's ID is `mid` in every verb's JSON (MMList says `id`)."""
    out = dict(row)
    if "id" in out:
        out["mid"] = out.pop("id")
    return out


def _put(s: SyncSession, args: argparse.Namespace) -> Any:
    if args.file == "-":
        source = sys.stdin.buffer
        total = 0
    else:
        path = Path(args.file)
        if not path.is_file():
            raise CliError(f"no such file: {args.file}")
        source = path.open("rb")
        total = path.stat().st_size
    offset = args.offset or 0
    written = 0
    step = max(1024, s.session.max_data - 256)
    # A whole-file put is staged beside cur and swapped in by MFCommit at the end: cut off
    # anywhere, it leaves cur as it was (issue 10 row 12). A put at --offset patches in place.
    stage = args.offset is None
    start = time.monotonic()
    restarts = 0
    try:
        with Progress(total, f"put {args.mid[:8]}") as bar:
            # Every piece but the last goes with sync=False (no durable commit per piece on
            # the node); the last one (or MFCommit) commits them all. One piece read ahead
            # tells the last. A staged put sends its first piece even when it is empty.
            data = source.read(step)
            first = stage  # the first staged piece starts the stage: sent even when empty
            while data or first:
                following = source.read(step) if data else b""
                params = {"mid": args.mid, "offset": offset + written, "data": data,
                          "sync": not following and not stage}
                if stage:
                    params["stage"] = True
                try:
                    s.call("MFSetData", params)
                except ConnectError as err:
                    raise CliError(f"MFSetData: {err}") from None
                except RPCError as err:
                    # A node short of memory may drop the unsynced pieces it had taken and
                    # says so ("were lost"): a staged put from a file starts over from byte 0.
                    if (not stage or "were lost" not in err.msg or restarts >= _PUT_RESTARTS
                            or not source.seekable()):
                        raise CliError(f"MFSetData: {err.msg} ({err.code})") from None
                    restarts += 1
                    source.seek(0)
                    bar.advance_to(0, total)
                    written, first, data = 0, True, source.read(step)
                    continue
                first = False
                written += len(data)
                bar.update(len(data))
                data = following
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    if stage:
        size = call(s, "MFCommit", {"mid": args.mid, "size": written})
    else:
        size = call(s, "MFGetSize", {"mid": args.mid})
    elapsed = time.monotonic() - start
    result = {"mid": args.mid, "written": written, "size": size, "seconds": round(elapsed, 3)}
    return result, lambda d: print(f"wrote {human_bytes(d['written'])} to {d['mid']} "
                                   f"in {d['seconds']:.2f} s (size {human_bytes(d['size'])})")


_PUT_RESTARTS = 3  # whole-file restarts of a staged put whose pieces the node lost


def _get(s: SyncSession, args: argparse.Namespace) -> Any:
    version = _version_arg(args.version)
    if args.output:
        folder = Path(args.output).resolve().parent
        if not folder.is_dir():
            raise CliError(f"cannot write {args.output}: no directory {folder}")
        if Path(args.output).is_dir():
            raise CliError(f"cannot write {args.output}: it is a directory; give a file name")
    size = call(s, "MFGetSize", {"mid": args.mid, "version": version})
    out = open(args.output, "wb") if args.output else sys.stdout.buffer
    offset = 0
    try:
        with Progress(size, f"get {args.mid[:8]}", force=False) as bar:
            while offset < size:
                data = call(s, "MFGetData", {"mid": args.mid, "offset": offset,
                                             "length": size - offset, "version": version})
                if not data:
                    raise CliError(f"node returned no data at offset {offset} of {size}")
                out.write(data)
                offset += len(data)
                bar.update(len(data))
    finally:
        if args.output:
            out.close()
        else:
            out.flush()
    if args.output or args.json:
        result = {"mid": args.mid, "version": args.version, "bytes": offset,
                  "output": args.output}
        return result, lambda d: print(f"read {human_bytes(d['bytes'])} into {d['output']}")
    return None


def _backup(s: SyncSession, args: argparse.Namespace) -> Any:
    rec = dict(call(s, "MMBackup", {"mid": args.mid}, timeout=120))
    # A version is named by its number and its hash (the hash of its signed record), as
    # `mm versions` lists it; the tree root is the content's, shown apart as `root`.
    listed = [v for v in call(s, "MMVersions", {"mid": args.mid}) if v["n"] == rec["n"]]
    rec["mid"] = args.mid
    rec["hash"] = bytes(listed[0]["hash"]).hex() if listed else None
    rec["root"] = bytes(rec["root"]).hex() if rec.get("root") is not None else None
    return rec, lambda d: print(f"version {d['n']} of {args.mid}: {human_bytes(d['size'])}, "
                                f"hash {(d['hash'] or '-')[:16]}")


def _versions(s: SyncSession, args: argparse.Namespace) -> Any:
    info = call(s, "MMInfo", {"mid": args.mid})
    rows = call(s, "MMVersions", {"mid": args.mid})

    def show(vs: list[dict[str, Any]]) -> None:
        if not vs:
            print("no versions yet: `leither mm backup` makes one")
            return
        print_table(["n", "hash", "size", "time", "tags"],
                    [(v["n"], bytes(v["hash"]).hex()[:16], human_bytes(v["size"]),
                      time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v["time"] / 1000)),
                      " ".join(t for t, on in (("last", v["n"] == info["last"]),
                                               ("release", v["n"] == info["release"])) if on))
                     for v in vs])
    return rows, show


def _release(s: SyncSession, args: argparse.Namespace) -> Any:
    n = call(s, "MMRelease", {"mid": args.mid, "version": _version_arg(args.version)})
    return {"mid": args.mid, "release": n}, lambda d: print(f"released version {d['release']}")


def _restore(s: SyncSession, args: argparse.Namespace) -> Any:
    info = call(s, "MMRestore", {"mid": args.mid, "version": _version_arg(args.version)},
                timeout=120)
    return _with_mid(info), lambda d: print(f"restored version {args.version} into cur "
                                             f"({human_bytes(d['size'])})")


def _rm_versions(s: SyncSession, args: argparse.Namespace) -> Any:
    versions = [_version_arg(v) for v in args.versions]
    count = call(s, "MMDelVers", {"mid": args.mid, "versions": versions}, timeout=120)
    return {"mid": args.mid, "deleted": count}, lambda d: print(f"deleted {d['deleted']} "
                                                                f"version(s)")


def _ref(s: SyncSession, args: argparse.Namespace) -> Any:
    if args.op in ("add", "del") and not args.other:
        raise CliError(f"mm ref {args.op} needs the referenced MiMei ID")
    if args.op == "add":
        count = call(s, "MMAddRef", {"mid": args.mid, "ref": args.other})
        return {"ref": args.other, "count": count}, lambda d: print(f"{d['ref']}: {d['count']}")
    if args.op == "del":
        count = call(s, "MMDelRef", {"mid": args.mid, "ref": args.other})
        return {"ref": args.other, "count": count}, lambda d: print(f"{d['ref']}: {d['count']}")
    refs = call(s, "MMGetRef", {"mid": args.mid})
    return refs, lambda d: print_table(["ref", "count"], sorted(d.items())) if d else \
        print("no references")
