# How the CLI prints: JSON for scripts (raw numbers), tables and live progress for people
# (human units), drawn by rich. Colour and live bars only on a terminal; NO_COLOR honoured (rich
# reads it); piped output is plain text with no trailing blanks, so scripts and tests can read it.
"""Output helpers shared by every verb."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Iterable, Sequence, TextIO

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import (
    Progress as RichProgress,
)
from rich.table import Table

PLAIN_WIDTH = 400  # columns a table may take when piped (no wrapping of IDs and paths)
# Piped tables: header, a line of '-' under it, no other rules (plain ASCII for scripts).
_PLAIN_HEAD = box.Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)


def console(out: TextIO | None = None, stderr: bool = False) -> Console:
    """A rich console on `out` (default stdout, or stderr): colour only on a terminal."""
    stream = out or (sys.stderr if stderr else sys.stdout)
    tty = _isatty(stream)
    return Console(file=stream, highlight=False, soft_wrap=not tty,
                   width=None if tty else PLAIN_WIDTH, no_color="NO_COLOR" in os.environ or None)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def print_json(data: Any, out: TextIO | None = None) -> None:
    """One JSON document on stdout; bytes become hex so every result is printable."""

    def default(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value).hex()
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    print(json.dumps(data, indent=2, sort_keys=True, default=default), file=out or sys.stdout)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
                out: TextIO | None = None) -> None:
    """Columns sized to their widest cell under a header line; None prints as '-'."""
    con = console(out)
    table = Table(box=box.SIMPLE_HEAD if con.is_terminal else _PLAIN_HEAD, show_edge=False,
                  pad_edge=False, header_style="bold")
    for header in headers:
        table.add_column(str(header), no_wrap=not con.is_terminal, overflow="fold")
    for row in rows:
        table.add_row(*("-" if c is None else str(c) for c in row))
    if con.is_terminal:
        con.print(table)
        return
    with con.capture() as captured:
        con.print(table)
    stream = out or sys.stdout
    for line in captured.get().splitlines():
        if line.strip():
            stream.write(line.rstrip() + "\n")


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_duration(seconds: float | None) -> str:
    """'42 s', '5 min', '3 h 20 min', '2 d 4 h'."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def human_ago(when: float | None, now: float | None = None) -> str:
    """'12 s ago', 'never' for a time in seconds since the epoch."""
    if not when:
        return "never"
    return human_duration(max(0.0, (now or time.time()) - when)) + " ago"


def human_time(ms: Any) -> str:
    """A wall-clock time given in ms since the epoch, local: '2026-12-02 06:01:07'."""
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(ms) / 1000))


class Progress:
    """A live progress line (bytes, rate, ETA) on stderr, only when stderr is a terminal (or
    force=True). update(n) adds bytes; advance_to(done, total) sets them (a poll)."""

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None,
                 force: bool = False) -> None:
        self.total = max(total, 0)
        self.done = 0
        stream = stream or sys.stderr
        self.enabled = force or _isatty(stream) or os.environ.get("LEITHER_PROGRESS") == "1"
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        if self.enabled:
            con = Console(file=stream, highlight=False, force_terminal=True if force or
                          os.environ.get("LEITHER_PROGRESS") == "1" else None,
                          no_color="NO_COLOR" in os.environ or None)
            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
                TransferSpeedColumn(), TimeRemainingColumn(), TimeElapsedColumn(),
                console=con, refresh_per_second=5, transient=False)
            self._bar.start()
            self._task = self._bar.add_task(label, total=self.total or None)

    def update(self, n: int) -> None:
        self.advance_to(self.done + n)

    def advance_to(self, done: int, total: int | None = None) -> None:
        self.done = max(0, done)
        if total is not None:
            self.total = max(total, 0)
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self.done, total=self.total or None)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
