"""log.read - read the maillog: its last lines, and new ones as they come

SYNOPSIS
    from mta.log.read import last_lines, follow
    out.write(b"".join(last_lines("/var/log/mail.log", 10)))
    follow("/var/log/mail.log", out, start=10)      # until KeyboardInterrupt

DESCRIPTION
    last_lines() returns the last N lines of a file, reading backwards
    from its end in blocks, so a large log costs only what is shown.

    follow() is "tail -F": it writes the last START lines, then each
    byte appended to the file as it arrives (polled every
    FOLLOW_INTERVAL seconds), and carries on with the new file when the
    log is rotated (another file at the path) or truncated. A log that
    does not exist yet is waited for. It returns only when interrupted.

SECURITY
    Reads a file the invoker may read; writes what it holds verbatim to
    the invoker's output (the lines were cleaned when they were logged).
"""

from __future__ import annotations

import os
import threading
import time
from typing import BinaryIO

FOLLOW_INTERVAL = 0.2  # seconds between looks at a log that did not grow
READ_BLOCK = 65536  # bytes read at a time, backwards or forwards


def last_lines(path: str, count: int) -> list[bytes]:
    """The last count lines of the file at path (each with its newline, if it had one)."""
    with open(path, "rb") as f:
        return _tail(f, count)


def _tail(f: BinaryIO, count: int) -> list[bytes]:
    if count <= 0:
        f.seek(0, os.SEEK_END)
        return []
    end = f.seek(0, os.SEEK_END)
    pos, data = end, b""
    while pos > 0 and data.count(b"\n", 0, len(data) - 1) < count:
        step = min(READ_BLOCK, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
    f.seek(end)
    lines = data.splitlines(keepends=True)
    return lines[-count:]


def _open(path: str) -> tuple[BinaryIO, tuple[int, int]] | None:
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None
    st = os.fstat(f.fileno())
    return f, (st.st_dev, st.st_ino)


def follow(path: str, out: BinaryIO, start: int = 10, stop: threading.Event | None = None) -> None:
    """Write the last start lines of path, then whatever is appended, until interrupted
    (or until stop is set, for a caller that runs it on a thread)."""
    stopped = stop.is_set if stop is not None else lambda: False
    opened = _open(path)
    while opened is None:
        if stopped():
            return
        time.sleep(FOLLOW_INTERVAL)
        opened = _open(path)
        start = 0  # a log that appeared while we waited is new: show all of it
    f, ident = opened
    try:
        if start:
            out.write(b"".join(_tail(f, start)))
            out.flush()
        while not stopped():
            data = f.read(READ_BLOCK)
            if data:
                out.write(data)
                out.flush()
                continue
            time.sleep(FOLLOW_INTERVAL)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue  # rotated away; the new file comes soon
            if (st.st_dev, st.st_ino) != ident or st.st_size < f.tell():
                rest = f.read()  # what was written before the switch
                if rest:
                    out.write(rest)
                    out.flush()
                reopened = _open(path)
                if reopened is not None:
                    f.close()
                    f, ident = reopened
    finally:
        f.close()
