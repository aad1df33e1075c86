"""smtpreply_ref - SMTP client reply parser, reference version; the spec for smtpreply.pyx

SYNOPSIS
    from mta._speedups.smtpreply_ref import ReplyError, ReplyParser
    parser = ReplyParser(line_limit=4096, max_lines=100)
    for code, enhanced, lines in parser.feed(chunk):
        ...                     # (250, "2.0.0", [b"2.0.0 Ok: queued as X"])

DESCRIPTION
    ReplyParser turns the bytes a server sends into complete replies.
    feed() accepts any buffer, keeps an incomplete line for the next
    call, and returns every reply that was completed, in order, as a
    tuple (code, enhanced, lines):

        code       the three-digit reply code as an int (200..599, and
                   1xx, which no SMTP server should send but which is
                   still a well-formed reply)
        enhanced   the RFC 3463 status code at the start of the first
                   line's text when its class matches the reply code
                   ("5.1.1"), else ""
        lines      the text of each line after "CODE-" or "CODE ", as
                   bytes, without the line end

    A line ends at LF; one CR before it is dropped. "CODE-text" means
    that more lines follow, "CODE text" or a bare "CODE" ends the reply.
    Every line of one reply must carry the same code.

    ReplyError is raised for a line that does not start with three
    digits, a code outside 100..599, a fourth character that is neither
    blank nor "-", a continuation line with another code, a line longer
    than line_limit bytes (without its line end; an incomplete line
    counts too) or a reply of more than max_lines lines. After an error
    the parser is spent: the caller ends the session.

SECURITY
    Sees raw bytes from remote servers, which may send anything. Memory
    is bounded by line_limit and max_lines; the work is linear in the
    input.

STANDARDS
    RFC 5321 section 4.2 (SMTP replies), RFC 3463 (enhanced status codes).
"""

REPLY_LINE_LIMIT = 4096  # longest reply line accepted, in bytes
REPLY_MAX_LINES = 1000  # most lines in one reply


class ReplyError(ValueError):
    """A malformed or oversized reply; shared by both implementations."""


def _is_digit(c):
    return 48 <= c <= 57


def find_enhanced(code, text):
    """The enhanced status code at the start of text if its class is code's, else ""."""
    klass = code // 100
    if klass not in (2, 4, 5) or len(text) < 5 or text[0] != 48 + klass or text[1] != 46:
        return ""
    i = 2
    for _part in range(2):
        start = i
        while i < len(text) and _is_digit(text[i]) and i - start < 4:
            i += 1
        if not 1 <= i - start <= 3:
            return ""
        if _part == 0:
            if i >= len(text) or text[i] != 46:
                return ""
            i += 1
    if i < len(text) and text[i] not in (32, 9):
        return ""
    return text[:i].decode("ascii")


class ReplyParser:
    """Push parser: feed(bytes) -> [(code, enhanced, [line, ...]), ...]."""

    def __init__(self, line_limit=REPLY_LINE_LIMIT, max_lines=REPLY_MAX_LINES):
        self.line_limit = line_limit
        self.max_lines = max_lines
        self._buf = bytearray()
        self._code = 0  # code of the reply being continued; 0 between replies
        self._lines = []

    def pending(self):
        """True while a reply or a line is incomplete."""
        return bool(self._buf) or self._code != 0

    def feed(self, data):
        buf = self._buf
        buf += data
        out = []
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                if len(buf) - start > self.line_limit:
                    raise ReplyError("reply line too long")
                break
            stop = end - 1 if end > start and buf[end - 1] == 13 else end
            if stop - start > self.line_limit:
                raise ReplyError("reply line too long")
            self._line(bytes(buf[start:stop]), out)
            start = end + 1
        del buf[:start]
        return out

    def _line(self, line, out):
        if len(line) < 3 or not all(_is_digit(c) for c in line[:3]):
            raise ReplyError("reply does not start with a three-digit code")
        code = int(line[:3])
        if not 100 <= code <= 599:
            raise ReplyError(f"reply code {code} out of range")
        sep = line[3:4]
        if sep not in (b"", b" ", b"-"):
            raise ReplyError("malformed reply: no blank or '-' after the code")
        if self._code and code != self._code:
            raise ReplyError(f"reply code {code} inside a {self._code} reply")
        self._lines.append(line[4:])
        if len(self._lines) > self.max_lines:
            raise ReplyError("reply has too many lines")
        if sep == b"-":
            self._code = code
            return
        lines = self._lines
        out.append((code, find_enhanced(code, lines[0]), lines))
        self._lines = []
        self._code = 0
