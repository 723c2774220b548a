# A long call to a node (a restore pulls every version from the partner in one request) gives no
# bytes back until it ends. Meanwhile a second session reads the node's log ring (GetLog) and a
# live line shows the elapsed time and what the node last said, so nothing looks hung. Only on a
# terminal (or LEITHER_PROGRESS=1); scripts get the result alone.
"""Live activity line for a long node call."""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from leither.errors import LeitherError
from leither_host.errors import CliError

POLL_S = 0.5  # seconds between GetLog polls


@contextmanager
def node_activity(ref: str, label: str) -> Iterator[None]:
    """Show `label`, the elapsed time and the node's latest log line while the body runs."""
    wanted = os.environ.get("LEITHER_PROGRESS") == "1"
    if not (wanted or _tty(sys.stderr)):
        yield
        return
    from rich.console import Console

    con = Console(file=sys.stderr, force_terminal=True if wanted else None, highlight=False,
                  no_color="NO_COLOR" in os.environ or None)
    start = time.monotonic()
    stop = threading.Event()
    last = [""]
    ok = False

    def text() -> str:
        line = f" | node: {last[0][:100]}" if last[0] else ""
        return f"{label}: {time.monotonic() - start:.0f} s{line}"

    with con.status(text()) as status:
        def tick() -> None:
            while not stop.wait(POLL_S):
                status.update(text())

        threads = [threading.Thread(target=_poll, args=(ref, stop, last), daemon=True),
                   threading.Thread(target=tick, daemon=True)]
        for t in threads:
            t.start()
        try:
            yield
            ok = True
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=2)
    if ok:
        con.print(f"{label}: done in {time.monotonic() - start:.1f} s")


def _tty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False


def _poll(ref: str, stop: threading.Event, last: list[str]) -> None:
    """Follow the node's log into last[0] until stop; any failure just ends the following."""
    from leither_host.nodes import open_node

    try:
        session, _ = open_node(ref, timeout=5.0, failover=False)
    except (CliError, LeitherError, OSError):
        return
    try:
        after = 0
        while not stop.is_set():
            reply = session.call("GetLog", {"after": after, "tail": 1} if not after
                                 else {"after": after}, 10.0)
            if reply["lines"]:
                after = reply["lines"][-1][0]
                last[0] = str(reply["lines"][-1][2])
            stop.wait(POLL_S)
    except (CliError, LeitherError, OSError, KeyError, TypeError):
        return
    finally:
        try:
            session.close()
        except (CliError, LeitherError, OSError, RuntimeError):
            pass
