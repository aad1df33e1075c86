"""postscreen.smtp_engine - the pieces of postscreen's dummy SMTP server

SYNOPSIS
    from mta.postscreen.smtp_engine import LineReader, is_non_smtp, printable
    lines = LineReader(limit=2048)
    for line, bare, more in lines.feed(data): ...   # bare: ended in LF alone
    is_non_smtp(line, forbidden)                   # CONNECT, GET, "Subject:" ...
    printable(b"EHLO x\\r\\n", 100)                  # 'EHLO x\\r\\n' with C escapes

DESCRIPTION
    LineReader splits client input into command lines, push style: each
    complete line (without its line end), whether it ended in a bare LF
    (the bare newline test) and whether more input followed it in the
    same buffer (the pipelining test: postscreen does not announce
    PIPELINING, so a client must wait for each reply). A line longer
    than the limit raises LineTooLong; input is never kept beyond it.

    is_non_smtp() is the non-SMTP command test: the command word is in
    postscreen_forbidden_commands (words, case-insensitive, or regexp:
    and pcre: tables whose pattern matches the word), or the line has
    the form of a message header ("Name:" with optional space).

    printable() is how postscreen logs client text: at most N bytes,
    CR, LF and tab as \\r \\n \\t, other non-printable bytes as \\ooo.

SECURITY
    Sees untrusted client input; memory is bounded by the line limit.
"""

from __future__ import annotations

import re

from mta import log
from mta.maps import MapError, MapRetry, open_map

HEADER_LABEL = re.compile(rb"^[!-9;-~]+[ \t]*:")  # "Subject:" "From :"
ESCAPES = {0x0D: "\\r", 0x0A: "\\n", 0x09: "\\t"}


class LineTooLong(ValueError):
    """A command line longer than line_length_limit."""


class LineReader:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bool, bool]]:
        """(line, ended in bare LF, more input followed) for each complete line."""
        self.buf += data
        out = []
        while True:
            end = self.buf.find(b"\n")
            if end < 0:
                if len(self.buf) > self.limit:
                    raise LineTooLong(len(self.buf))
                break
            if end + 1 > self.limit:
                raise LineTooLong(end + 1)
            bare = end == 0 or self.buf[end - 1] != 0x0D
            line = bytes(self.buf[: end if bare else end - 1])
            del self.buf[: end + 1]
            out.append((line, bare, bool(self.buf)))
        return out


def printable(data: bytes, limit: int = 100) -> str:
    out = []
    for b in data[:limit]:
        if b in ESCAPES:
            out.append(ESCAPES[b])
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03o}")
    return "".join(out)


class ForbiddenCommands:
    """postscreen_forbidden_commands: words and pattern tables."""

    def __init__(self, items: list[str], cfg=None) -> None:
        self.words: set[str] = set()
        self.tables = []
        for item in items:
            if ":" in item:
                try:
                    self.tables.append(open_map(item, cfg))
                except MapError as exc:
                    log.warning("postscreen_forbidden_commands: %s", exc)
            else:
                self.words.add(item.upper())

    def match(self, line: bytes) -> bool:
        verb = line.split(b" ", 1)[0].decode("utf-8", "replace")
        if verb.upper() in self.words:
            return True
        for table in self.tables:
            try:
                if verb and table.lookup(verb) is not None:
                    return True
            except (MapError, MapRetry) as exc:
                log.warning("postscreen_forbidden_commands: %s", exc)
        return False


def is_non_smtp(line: bytes, forbidden: ForbiddenCommands) -> bool:
    return forbidden.match(line) or bool(HEADER_LABEL.match(line))
