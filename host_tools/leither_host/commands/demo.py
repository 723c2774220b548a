# `leither demo`: the whole story on simulated boards (see leither_host.demo).
"""The demo verb."""

from __future__ import annotations

import argparse

from leither_host.demo import run_demo

EXAMPLES = """examples:
  leither demo                 # ESP32 boards (the 32-bit stand-in at the board's heap);
                               # a namespaced LAN when root
  leither demo --board unix    # unix MicroPython boards (1 MB heap)
  leither demo --cpython       # CPython boards
  leither demo --loopback      # boards on loopback even as root
  leither demo --keep          # leave the boards running afterwards
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="tell the whole story on simulated boards", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpython", action="store_true", help="CPython boards (default MicroPython)")
    p.add_argument("--board", choices=("esp32", "unix"),
                   help="simulated board kind (default esp32: the 32-bit stand-in at the "
                        "ESP32-WROOM's heap, unix where it cannot be built)")
    p.add_argument("--loopback", action="store_true", help="no namespaces, even as root")
    p.add_argument("--keep", action="store_true", help="leave the boards running")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    run_demo(interpreter="cpython" if args.cpython else "micropython",
             use_lan=False if args.loopback else None, keep=args.keep, board=args.board)
    return 0
