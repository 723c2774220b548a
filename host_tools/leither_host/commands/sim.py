# `leither sim`: simulated boards as real processes (up, ls, press, kill, start, stop, link,
# down). Boards and their state live under --dir (default: the data dir's sim/).
"""The sim verb."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path
from typing import Any

from leither_host.errors import CliError
from leither_host.output import print_json, print_table
from leither_host.sim import DEFAULT_HEAP, SIM_KINDS, Sim

EXAMPLES = """examples:
  leither sim up 2                    # two MicroPython boards on loopback (ports 4800, 4801)
  sudo leither sim up 3 --lan         # each board in its own network namespace on a bridge
  leither sim up 2 --cpython          # CPython nodes instead of MicroPython
  leither sim up 2 --board esp32      # ESP32 boards: the 32-bit frozen MicroPython stand-in
                                      # at the ESP32-WROOM's heap (boards/esp32/board.json)
  leither sim ls
  leither sim press board1            # press the button (--long for a long press)
  leither sim kill board2             # pull the plug (no goodbye)
  leither sim start board2            # power it up again (--wipe: a fresh, empty board)
  leither sim link --rate 8mbit --loss 5     # LAN mode: shape every board's link
  leither sim exec -- leither status board1  # LAN mode: run a command on the CLI host
  leither sim down                    # stop everything and remove the namespaces
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="run simulated boards (up, ls, press, kill, start, down)",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, help="where the boards live (default: data dir/sim)")
    verbs = p.add_subparsers(dest="sim_verb", metavar="ACTION")
    verbs.required = True
    up = verbs.add_parser("up", help="start N boards")
    up.add_argument("count", type=int, nargs="?", default=2)
    up.add_argument("--cpython", action="store_true", help="CPython nodes (default MicroPython)")
    up.add_argument("--lan", action="store_true", help="network namespaces on a bridge (root)")
    up.add_argument("--board", default="unix", choices=SIM_KINDS,
                    help="unix (64-bit MicroPython or CPython) or esp32 (the 32-bit frozen "
                         "stand-in at the board's heap; built on first use)")
    up.add_argument("--heap", help=f"MicroPython heap per board (unix default {DEFAULT_HEAP}; "
                                   "esp32: the board's heap_bytes)")
    up.add_argument("--micropython-src", metavar="DIR|TARBALL",
                    help="esp32: MicroPython source for the stand-in (see `leither build`)")
    up.add_argument("--json", action="store_true")
    ls = verbs.add_parser("ls", help="list the boards")
    ls.add_argument("--json", action="store_true")
    for name, text in (("press", "press a board's button"), ("kill", "SIGKILL a board"),
                       ("start", "start a stopped board"), ("stop", "stop a board cleanly")):
        a = verbs.add_parser(name, help=text)
        a.add_argument("board")
        if name == "press":
            a.add_argument("--long", action="store_true", help="a long press")
        if name == "start":
            a.add_argument("--wipe", action="store_true", help="erase the board first")
    link = verbs.add_parser("link", help="shape the LAN: rate and loss (LAN mode)")
    link.add_argument("--rate", help="e.g. 8mbit; 'off' removes the limit")
    link.add_argument("--loss", type=int, help="percent of frames dropped on the bridge")
    ex = verbs.add_parser("exec", help="run a command where the CLI host lives (LAN mode)")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    verbs.add_parser("down", help="stop every board and clean up")
    p.set_defaults(func=run)


def _rows(sim: Sim) -> list[dict[str, Any]]:
    return [{"name": b.name, "pid": b.pid if sim.alive(b) else None,
             "running": sim.alive(b), "interpreter": b.interpreter, "board": b.kind,
             "heap": b.heap if b.interpreter == "micropython" else None,
             "address": f"{b.ip}:{b.port}", "netns": b.netns, "root": b.root,
             "led": sim.led(b.name)} for b in sim.boards]


def _remember(sim: Sim) -> None:
    """Put the boards in the fleet inventory, so verbs reach them by name without mDNS."""
    from leither_host.fleet import remember_boards

    remember_boards((b.name, b.root, b.ip, b.port, sim.alive(b), b.kind)
                    for b in sim.boards)


def run(args: argparse.Namespace) -> int:
    sim = Sim(args.dir)
    verb = args.sim_verb
    if verb == "up":
        if args.lan and os.geteuid() != 0:
            raise CliError("--lan needs root (network namespaces); without it boards share "
                           "loopback")
        sim.up(args.count, "cpython" if args.cpython else "micropython", args.lan, args.heap,
               kind=args.board, micropython_src=args.micropython_src)
        _remember(sim)
        if args.json:
            print_json(_rows(sim))
        else:
            for b in sim.boards:
                what = b.interpreter if b.kind == "unix" else f"{b.kind} stand-in, heap {b.heap}"
                print(f"{b.name}: {what} at {b.ip}:{b.port}  claim token {b.claim_token}")
    elif verb == "ls":
        rows = _rows(sim)
        if args.json:
            print_json(rows)
        elif not rows:
            print("no simulated boards: `leither sim up`")
        else:
            print_table(["name", "state", "board", "interpreter", "address", "led", "root"],
                        [(r["name"], "running" if r["running"] else "stopped", r["board"],
                          r["interpreter"], r["address"], r["led"], r["root"]) for r in rows])
    elif verb == "press":
        sim.press(args.board, args.long)
        print(f"pressed {args.board}'s button" + (" (long)" if args.long else ""))
    elif verb == "kill":
        sim.kill(args.board)
        print(f"killed {args.board}")
    elif verb == "stop":
        sim.stop(args.board)
        print(f"stopped {args.board}")
    elif verb == "start":
        sim.start(args.board, wipe=args.wipe)
        _remember(sim)
        print(f"started {args.board}" + (" (wiped)" if args.wipe else ""))
    elif verb == "link":
        if args.rate is None and args.loss is None:
            raise CliError("sim link needs --rate and/or --loss")
        sim.link(args.rate, args.loss)
        print("link: " + ", ".join(x for x in (args.rate and f"rate {args.rate}",
                                               args.loss is not None and f"loss {args.loss}%")
                                   if x))
    elif verb == "exec":
        command = [c for c in args.command if c != "--"] if args.command else []
        if not command:
            raise CliError("sim exec needs a command")
        return subprocess.call(sim.cli_argv(command))
    elif verb == "down":
        count = sim.down()
        print(f"stopped {count} board(s); simulation removed")
    return 0
