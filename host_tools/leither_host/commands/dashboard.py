# `leither dashboard`: serve the local web page (leither_host.dashboard) until Ctrl-C.
"""The dashboard verb."""

from __future__ import annotations

import argparse
import sys

from leither_host.errors import CliError

EXAMPLES = """examples:
  leither dashboard                   # http://127.0.0.1:8765/#token=... (open the printed link)
  leither dashboard --port 0          # any free port
  leither dashboard --open            # ... and open it in the web browser
  leither dashboard --poll 10         # poll the fleet every 10 s (default 3)

Every API call needs the token the dashboard prints (the printed link carries it). It listens
on 127.0.0.1 only; --host 0.0.0.0 serves other machines too (the token still guards it).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="serve a local web page: fleet, MiMei, pairing, "
                       "backups, ledger", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                   "127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0: any)")
    p.add_argument("--poll", type=float, default=3.0, metavar="SECONDS",
                   help="seconds between polls of the fleet (default 3)")
    p.add_argument("--open", action="store_true", help="open the page in the web browser")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise CliError("--port takes 0 to 65535")
    if not 0.5 <= args.poll <= 3600:
        raise CliError("--poll takes 0.5 to 3600 seconds")
    try:
        from leither_host.dashboard.server import serve
    except ImportError as err:
        raise CliError(f"the dashboard needs aiohttp ({err}): pip install aiohttp") from None

    def announce(line: str) -> None:
        print(line, flush=True)
        if args.open and line.startswith("leither dashboard: "):
            import webbrowser

            webbrowser.open(line.split(": ", 1)[1])

    serve(args.host, args.port, args.poll, announce=announce)
    print("dashboard stopped", file=sys.stderr)
    return 0
