# How the CLI prints: JSON for scripts, aligned tables and progress bars for people.
"""Output helpers shared by every verb."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Iterable, Sequence, TextIO


def print_json(data: Any, out: TextIO | None = None) -> None:
    """One JSON document on stdout; bytes become hex so every result is printable."""

    def default(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value).hex()
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    print(json.dumps(data, indent=2, sort_keys=True, default=default), file=out or sys.stdout)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
                out: TextIO | None = None) -> None:
    """Left-aligned columns sized to their widest cell."""
    cells = [[str(c) for c in headers]]
    cells += [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    stream = out or sys.stdout
    for n, row in enumerate(cells):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip(), file=stream)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=stream)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class Progress:
    """A one-line progress bar with rate and ETA, on stderr, only when it is a terminal."""

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None,
                 force: bool = False) -> None:
        self.total = max(total, 0)
        self.label = label
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = force or self.stream.isatty()
        self.start = time.monotonic()
        self._last_draw = 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last_draw > 0.1 or self.done >= self.total):
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-6)
        rate = self.done / elapsed
        frac = self.done / self.total if self.total else 1.0
        width = 30
        bar = "#" * int(frac * width)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        self.stream.write(
            f"\r{self.label} [{bar:<{width}}] {frac * 100:5.1f}% "
            f"{human_bytes(rate)}/s ETA {eta:4.0f}s"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
