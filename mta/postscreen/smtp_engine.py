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

    is_non_smtp() is the non-SMTP command test (common/forbidden_commands.py
    with postscreen_forbidden_commands).

    printable() is how postscreen logs client text: at most N bytes,
    CR, LF and tab as \\r \\n \\t, other non-printable bytes as \\ooo.

SECURITY
    Sees untrusted client input; memory is bounded by the line limit.
"""

from __future__ import annotations

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
