# `leither build`: compile the firmware to .mpy for a board and report the bundle size.
"""The build verb."""

from __future__ import annotations

import argparse
from pathlib import Path

from leither_host.build import build
from leither_host.output import human_bytes, print_json, print_table

EXAMPLES = """examples:
  leither build                      # build/unix/ for the simulated board
  leither build --board esp32        # build/esp32/, ready for `leither flash`
  leither build --board esp32 --json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="compile the firmware to .mpy for a board",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", default="unix", help="board name under boards/ (default: unix)")
    p.add_argument("--out", type=Path, help="output directory (default: build/BOARD)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    bundle = build(args.board, args.out)
    files = [(str(f.relative_to(bundle.path)), f.stat().st_size) for f in bundle.files]
    if args.json:
        print_json({"board": bundle.board, "path": str(bundle.path), "bytes": bundle.size,
                    "files": [{"path": p, "bytes": n} for p, n in files]})
    else:
        print_table(["file", "bytes"], files)
        print(f"bundle {bundle.path}: {len(files)} files, {bundle.size} bytes "
              f"({human_bytes(bundle.size)})")
    return 0
