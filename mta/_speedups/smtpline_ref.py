"""smtpline_ref - SMTP server wire kernels, reference version; the spec for smtpline.pyx

SYNOPSIS
    from mta._speedups.smtpline_ref import (
        LineTooLong, split_lines, parse_command, parse_esmtp_params, DataStream)
    lines, used, bare_lf = split_lines(buf, 2048)
    verb, arg = parse_command(b"mail from:<a@b> SIZE=10")     # (b"MAIL", b"from:<a@b> SIZE=10")
    parse_esmtp_params(b"SIZE=10 BODY=8BITMIME")              # [(b"SIZE", b"10"), ...]
    stream = DataStream(max_size)
    content, used, done = stream.feed(chunk)

DESCRIPTION
    split_lines() returns the complete command lines in buf (without
    their line ends), the number of bytes they used, and the index of
    the first line that ended in a bare LF instead of CRLF (-1 if none).
    A line longer than limit raises LineTooLong(index of its first
    byte, length so far); the caller answers 500 and skips to the next
    line end.

    parse_command() splits a line into the upper-cased verb and the
    argument with surrounding blanks removed. parse_esmtp_params()
    splits "KEY=value KEY ..." into (upper-cased key, value or None).

    DataStream undoes SMTP's DATA transparency: the message ends only
    at CRLF "." CRLF (RFC 5321 section 4.1.1.4); a line that starts with
    "." loses that dot (section 4.5.2); only CRLF ends a line, so "\n.\n",
    "\r.\r", "\n.\r\n" and "\r\n.\n" are message content, never the end
    of it. feed() returns the unstuffed content found in the chunk, how
    many bytes of the chunk belong to the message (the rest are the
    next commands) and whether the end was seen. It counts bare LFs
    (bare_lf) and content bytes (size); content beyond max_size is
    dropped and too_big is set, but the stream still looks for the end.

SECURITY
    Sees raw bytes from untrusted clients. Must never end DATA anywhere
    but at CRLF.CRLF and must stay linear in the input size.

STANDARDS
    RFC 5321 sections 2.3.8 (lines), 4.1.1.4 (DATA), 4.5.2 (transparency).
"""


class LineTooLong(ValueError):
    """A command line exceeded the limit; shared by both implementations."""


def split_lines(buf, limit):
    """Return (lines, bytes consumed, index of first bare-LF line or -1)."""
    lines = []
    start = 0
    bare = -1
    n = len(buf)
    while True:
        end = buf.find(b"\n", start)
        if end < 0:
            if n - start > limit:
                raise LineTooLong(start, n - start)
            return lines, start, bare
        if end + 1 - start > limit:
            raise LineTooLong(start, end + 1 - start)
        if end > start and buf[end - 1] == 13:
            line = bytes(buf[start : end - 1])
        else:
            line = bytes(buf[start:end])
            if bare < 0:
                bare = len(lines)
        lines.append(line)
        start = end + 1


_BLANKS = b" \t"


def parse_command(line):
    """Return (VERB, argument) of a command line."""
    line = bytes(line).strip(_BLANKS)
    i = 0
    n = len(line)
    while i < n and line[i] not in _BLANKS:
        i += 1
    return line[:i].upper(), line[i:].strip(_BLANKS)


def parse_esmtp_params(text):
    """Return [(KEY, value or None), ...] from "KEY=value KEY ..."."""
    out = []
    for word in bytes(text).split():
        key, eq, value = word.partition(b"=")
        out.append((key.upper(), value if eq else None))
    return out


S_BOL = 0  # at the start of a line
S_TEXT = 1  # inside a line
S_CR = 2  # after a CR inside a line
S_DOT = 3  # after a "." at the start of a line
S_DOT_CR = 4  # after "." CR at the start of a line
S_END = 5  # the end was seen


class DataStream:
    """Undo DATA transparency over chunks; see the module docstring."""

    def __init__(self, max_size=0):
        self.max_size = max_size  # 0 = no limit
        self.state = S_BOL
        self.size = 0
        self.bare_lf = 0
        self.too_big = False

    def _emit(self, out, data):
        if self.max_size and self.size + len(data) > self.max_size:
            self.too_big = True
        elif not self.too_big:
            out += data
        self.size += len(data)

    def feed(self, data):
        """Return (unstuffed content, bytes of data used, end seen)."""
        out = bytearray()
        state = self.state
        if state == S_END:
            return b"", 0, True
        i = 0
        n = len(data)
        while i < n:
            c = data[i]
            i += 1
            if state == S_DOT_CR:
                if c == 10:
                    state = S_END
                    break
                self._emit(out, b"\r")
                state = S_CR
            elif state == S_DOT:
                if c == 13:
                    state = S_DOT_CR
                    continue
                state = S_TEXT  # the leading dot is dropped
            elif state == S_BOL and c == 46:
                state = S_DOT
                continue
            # an ordinary content byte in state TEXT, CR or BOL
            self._emit(out, bytes((c,)))
            if c == 13:
                state = S_CR
            elif c == 10:
                if state == S_CR:
                    state = S_BOL
                else:
                    self.bare_lf += 1
                    state = S_TEXT
            else:
                state = S_TEXT
        self.state = state
        return bytes(out), i, state == S_END
