"""util.progress - a one-line progress bar on stderr for long commands

SYNOPSIS
    from mta.util.progress import Progress
    bar = Progress(total_lines, "building virtual.lmdb")
    bar.update(4096); ...; bar.close()

DESCRIPTION
    Draws "label [#####     ]  42%" on one terminal line, redrawn at most
    ten times a second, and erases it on close(). When the stream is not
    a terminal (or total is 0) every method does nothing, so callers need
    no checks of their own. Also a context manager.

SECURITY
    Writes only to the stream it was given (stderr by default).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

PROGRESS_WIDTH = 30  # characters of bar between the brackets
PROGRESS_INTERVAL = 0.1  # seconds between redraws


class Progress:
    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.total = max(0, int(total))
        self.label = label
        self.done = 0
        self._drawn = 0.0
        isatty = getattr(self.stream, "isatty", None)
        self.active = bool(self.total) and bool(isatty and isatty())

    def update(self, n: int = 1) -> None:
        """Count n more units done; redraw if it is time."""
        self.done = min(self.total, self.done + n)
        if not self.active:
            return
        now = time.monotonic()
        if now - self._drawn < PROGRESS_INTERVAL and self.done < self.total:
            return
        self._drawn = now
        self.stream.write("\r" + self.render())
        self.stream.flush()

    def render(self) -> str:
        """The bar as text, without the leading carriage return."""
        frac = self.done / self.total if self.total else 1.0
        fill = int(frac * PROGRESS_WIDTH)
        bar = "#" * fill + " " * (PROGRESS_WIDTH - fill)
        return f"{self.label} [{bar}] {int(frac * 100):3d}%"

    def close(self) -> None:
        """Erase the bar; later calls do nothing."""
        if self.active:
            self.stream.write("\r" + " " * (len(self.render())) + "\r")
            self.stream.flush()
            self.active = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
