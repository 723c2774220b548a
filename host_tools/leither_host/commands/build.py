# `leither build`: compile the firmware to .mpy for a board and report the bundle size; for a
# board with a freeze manifest (esp32) also build its 32-bit stand-in MicroPython and print the
# command that builds a real firmware image when the source is a full MicroPython checkout.
"""The build verb."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from leither_host import standin
from leither_host.build import BOARDS, board_config, build, parts_line
from leither_host.output import human_bytes, print_json, print_table

EXAMPLES = """examples:
  leither build                      # build/unix/ for the simulated board
  leither build --board esp32        # build/esp32/ (ready for `leither flash`) and the
                                     # 32-bit stand-in build/standin/esp32/micropython
  leither build --board esp32 --micropython-src ~/src/micropython   # a checkout: also prints
                                     # the command for a real ESP32 firmware image
  leither build --board esp32 --parts all  # the bundle with every optional part
  leither build --board esp32 --json
MicroPython source: --micropython-src DIR|TARBALL, $LEITHER_MICROPYTHON_SRC, or
../shared/micropython/ beside the repo. Without it (or without gcc-multilib) only the bundle
is built and the reason is printed.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="compile the firmware for a board (bundle, stand-in)",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", default="unix", help="board name under boards/ (default: unix)")
    p.add_argument("--out", type=Path, help="bundle directory (default: build/BOARD)")
    p.add_argument("--micropython-src", metavar="DIR|TARBALL",
                   help="MicroPython source for the stand-in and the firmware image")
    p.add_argument("--no-standin", action="store_true",
                   help="only the .mpy bundle, not the 32-bit stand-in")
    p.add_argument("--force", action="store_true", help="rebuild the stand-in even if current")
    p.add_argument("--parts", type=parts_arg, metavar="PART,...",
                   help="optional parts the bundle carries (db, mdns_responder, backup, or all; "
                        "default: the board's bundle_parts)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def parts_arg(text: str) -> list[str]:
    """--parts db,... (or all, or none); checked against the firmware's parts by build()."""
    return [p for p in text.replace(" ", "").split(",") if p and p != "none"]


def run(args: argparse.Namespace) -> int:
    bundle = build(args.board, args.out, parts=args.parts)
    files = [(str(f.relative_to(bundle.path)), f.stat().st_size) for f in bundle.files]
    part_bytes = bundle.part_sizes()
    result: dict[str, object] = {"board": bundle.board, "path": str(bundle.path),
                                 "bytes": bundle.size,
                                 "files": [{"path": p, "bytes": n} for p, n in files],
                                 "parts": part_bytes, "left_out": bundle.left_out}
    limit = board_config(args.board).get("bundle_max_bytes")
    if limit:
        result["bundle_max_bytes"] = int(limit)
    notes: list[str] = []
    has_manifest = (BOARDS / args.board / "manifest.py").is_file()
    if has_manifest and not args.no_standin:
        try:
            made = standin.build_standin(args.board, args.micropython_src, force=args.force)
        except standin.Unavailable as err:
            result["standin"] = None
            result["standin_skipped"] = str(err)
            notes.append(f"stand-in not built: {err}")
        else:
            result["standin"] = str(made.binary)
            result["micropython_src"] = str(made.source)
            notes.append(f"stand-in {made.binary} ({'built' if made.rebuilt else 'up to date'}): "
                         f"`leither sim up N --board {args.board}` runs it")
            command = standin.firmware_command(args.board, made.source)
            result["firmware_command"] = command
            notes.append(_firmware_note(args.board, command))
    elif has_manifest and args.micropython_src:
        tree = standin.source_tree(standin.find_source(args.micropython_src))
        command = standin.firmware_command(args.board, tree)
        result["firmware_command"] = command
        notes.append(_firmware_note(args.board, command))
    if args.json:
        print_json(result)
        return 0
    print_table(["file", "bytes"], files)
    print(f"bundle {bundle.path}: {len(files)} files, {bundle.size} bytes "
          f"({human_bytes(bundle.size)})" + (f" of at most {limit} (board.json "
                                             "bundle_max_bytes)" if limit else ""))
    print(parts_line(part_bytes, bundle.left_out))
    if limit and bundle.size > int(limit):
        print(f"warning: the bundle is {bundle.size - int(limit)} bytes over the board's "
              "budget", file=sys.stderr)
    for note in notes:
        print(note, file=sys.stderr if note.startswith("stand-in not built") else sys.stdout)
    return 0


def _firmware_note(board: str, command: str | None) -> str:
    if command:
        return f"real {board} firmware image (frozen node):\n  {command}"
    return (f"for a real {board} firmware image, point --micropython-src at a full MicroPython "
            f"checkout (with ports/{board} and its toolchain); this source has the unix port only")
