# `leither flash`: firmware and config onto a board (MicroPython over serial; Pi Zero bundle).
"""The flash verb."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from pathlib import Path

from leither_host.commands.build import parts_arg
from leither_host.errors import CliError
from leither_host.flash import flash_micropython, pizero_bundle
from leither_host.output import Progress, print_json

EXAMPLES = """examples:
  leither flash --board esp32 --port /dev/ttyUSB0 --name kitchen \\
      --wifi-ssid home --wifi-password ...
      # the board runs Leither frozen into its firmware, or from its ROMFS partition
      # (MicroPython 1.25+, partitions-4MiB-romfs.csv): see boards/esp32/README.md
  leither flash --board esp32 --port /dev/ttyUSB0 --name big --parts all
      # a bigger ROMFS partition: every part (pairing also needs UDP 5353 free of ESP-IDF)
  leither flash --board unix --port /tmp/board/tty --name sim1    # unix MicroPython on a pty
  leither flash --board pizero --name garage --wifi-ssid home     # dist/pizero-garage.tar.gz
The claim token is printed and remembered: `leither claim NAME` uses it.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flash", help="write the firmware and config to a board", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", required=True, help="esp32, unix or pizero")
    p.add_argument("--port", help="serial port of a MicroPython board (e.g. /dev/ttyUSB0)")
    p.add_argument("--name", required=True, help="the node's name on the network")
    p.add_argument("--wifi-ssid", help="Wi-Fi network to join")
    p.add_argument("--wifi-password", default=os.environ.get("LEITHER_WIFI_PASSWORD"),
                   help="Wi-Fi password (or $LEITHER_WIFI_PASSWORD)")
    p.add_argument("--rpc-port", type=int, default=4800, help="the node's RPC port")
    p.add_argument("--token", help="claim token to install (default: a fresh random one)")
    p.add_argument("--out", type=Path, help="pizero: where the bundle goes (default dist/)")
    p.add_argument("--no-reset", action="store_true", help="do not reset the board afterwards")
    p.add_argument("--parts", type=parts_arg, metavar="PART,...",
                   help="optional parts the bundle carries (db, mdns_responder, backup, or all; "
                        "default: the board's bundle_parts); a firmware with Leither frozen "
                        "in has them all")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    token = args.token or os.urandom(8).hex()
    if args.board == "pizero":
        result = pizero_bundle(args.name, token, args.wifi_ssid, args.wifi_password,
                               args.rpc_port, args.out)
    else:
        if not args.port:
            raise CliError(f"--port is needed to flash a {args.board} board")
        if not Path(args.port).exists():
            raise CliError(f"no serial port {args.port}")
        say = (lambda msg: print(f"flash: {msg}", file=sys.stderr)) if not args.json else None
        bar: list[Progress] = []  # made at the first copy: the total is known then

        def copied(done: int, total: int) -> None:
            if not bar:
                bar.append(Progress(total, "flash"))
            bar[0].advance_to(done, total)

        try:
            result = flash_micropython(args.board, args.port, args.name, token,
                                       args.wifi_ssid, args.wifi_password, args.rpc_port,
                                       reset=not args.no_reset, progress=say,
                                       on_bytes=None if args.json else copied,
                                       parts=args.parts)
        finally:
            for b in bar:
                b.close()
    if args.json:
        print_json(asdict(result))
    elif args.board == "pizero":
        print(f"wrote {result.target} ({result.bytes} bytes): copy it to the Pi, untar, run "
              f"install.sh as root")
        print(f"claim token: {result.claim_token}")
    else:
        where = {"copy": "code copied to /lib",
                 "frozen": "code frozen in the board's firmware",
                 "romfs": f"code in the ROMFS partition ({result.rom_image_bytes} bytes)"}
        print(f"flashed {result.name} ({args.board}) on {result.target}: "
              f"{where.get(result.mode, result.mode)}; {result.files} files, "
              f"{result.bytes} bytes, {result.verified} verified by SHA-256")
        print(f"claim token: {result.claim_token}")
    return 0
