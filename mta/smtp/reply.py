"""smtp.reply - server replies as the smtp client sees them

SYNOPSIS
    from mta.smtp.reply import Reply, ReplyError, ReplyParser
    parser = ReplyParser(4096, 1000)
    for code, enhanced, lines in parser.feed(chunk):
        reply = Reply(code, enhanced, lines)
        reply.text          # "250 2.0.0 Ok: queued as X" (lines joined by blanks)
        reply.dsn           # "2.0.0" (made up from the class when the server gave none)

DESCRIPTION
    Binds ReplyParser to the compiled kernel (mta/_speedups/smtpreply.pyx)
    when it is available and to the reference otherwise; both stay
    importable as ReplyParser_c (None without the extension) and
    ReplyParser_ref. Reply wraps one parsed reply for the session code:
    the text used in reasons and logs joins the lines of a multi-line
    reply with blanks, as Postfix does, and decodes the bytes as UTF-8
    with replacement.

SECURITY
    Reply texts come from remote servers; they end up in logs and
    bounce messages, where the logger and the status log writer fold
    control characters.

SEE ALSO
    mta/_speedups/smtpreply_ref.py (the specification)
"""

from __future__ import annotations

from dataclasses import dataclass

from mta._speedups import NO_EXTENSIONS
from mta._speedups.smtpreply_ref import REPLY_LINE_LIMIT, REPLY_MAX_LINES, ReplyError
from mta._speedups.smtpreply_ref import ReplyParser as ReplyParser_ref
from mta.common.dsn import dsn_from_reply

ReplyParser_c = None
if not NO_EXTENSIONS:
    try:
        from mta._speedups.smtpreply import ReplyParser as ReplyParser_c
    except ImportError:
        pass

ReplyParser = ReplyParser_c or ReplyParser_ref


@dataclass
class Reply:
    """One complete server reply."""

    code: int
    enhanced: str
    lines: list[bytes]

    @property
    def text(self) -> str:
        """ "CODE line line ..." as one line of text."""
        body = " ".join(ln.decode("utf-8", "replace").strip() for ln in self.lines).strip()
        return f"{self.code} {body}" if body else str(self.code)

    @property
    def dsn(self) -> str:
        return self.enhanced or dsn_from_reply(self.code, "")

    @property
    def klass(self) -> int:
        return self.code // 100


__all__ = [
    "REPLY_LINE_LIMIT",
    "REPLY_MAX_LINES",
    "Reply",
    "ReplyError",
    "ReplyParser",
    "ReplyParser_c",
    "ReplyParser_ref",
]
