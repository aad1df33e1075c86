"""headers_ref - message header kernels, reference version; the spec for headers.pyx

SYNOPSIS
    from mta._speedups.headers_ref import (
        HeaderParser, header_id, is_header, unfold, fold, HDR_FROM, HEADER_NAMES)
    parser = HeaderParser(102400)
    for name, raw, hid in parser.feed(chunk): ...     # chunks cut anywhere
    if parser.done: body = parser.rest                  # bytes after the header section
    parser.finish()                                     # end of input: flush the last header
    unfold(b"Subject: a\\n b")                           # b"Subject: a b"
    fold(b"Subject", b"a long value ...", 78)           # b"Subject: a long\\n value ..."

DESCRIPTION
    HeaderParser splits the header section of a message (or of a MIME
    part) into logical headers. feed() takes bytes cut anywhere; lines
    end in LF or CRLF (one CR before the LF is dropped). feed_line()
    takes one line without its line end. Both return the headers
    completed so far as (name, raw, hid): name is the field name in
    lower case without blanks before the colon, raw the header as it
    came with its continuation lines joined by b"\\n" (no CR, no final
    line end), hid its number in the header table (0 when unknown).

    A header line is a field name (printable ASCII but ":"), optional
    blanks, and ":". A line that starts with a blank continues the
    header before it. The header section ends at an empty line (blank
    is then True) or at the first line that is neither a header nor a
    continuation (blank False: that line is the first body line, as
    Postfix treats it). Then done is True and rest holds the input
    after the header section (starting at that first body line when
    blank is False); feed() must not be called again.

    A logical header longer than limit bytes is cut to limit bytes, its
    further continuation lines are dropped, and truncated is counted
    up (header_size_limit). finish() says the input ended: it returns
    the last pending header, taking an unterminated last line as a line.

    header_id() maps a lower-case field name to its HDR_* number.
    unfold() removes the line breaks of raw (a line end followed by a
    blank: RFC 5322 unfolding). fold() writes "Name: value" so that
    lines stay within width where the value has blanks to break at;
    it only inserts b"\\n" before existing blanks, so unfold(fold(n, v))
    == n + b": " + v for a value without line ends.

SECURITY
    Sees untrusted message content. Memory per header is bounded by
    limit; the work is linear in the input.

STANDARDS
    RFC 5322 sections 2.2 (header fields) and 2.2.3 (folding).
"""

from __future__ import annotations

# header numbers (the HDR_* ids); the name table follows
HDR_OTHER = 0  # not a header the mail system treats specially
HDR_APPARENTLY_TO = 1  # Apparently-To:
HDR_BCC = 2  # Bcc:
HDR_CC = 3  # Cc:
HDR_CONTENT_DESCRIPTION = 4  # Content-Description:
HDR_CONTENT_DISPOSITION = 5  # Content-Disposition:
HDR_CONTENT_ID = 6  # Content-ID:
HDR_CONTENT_LENGTH = 7  # Content-Length:
HDR_CONTENT_TRANSFER_ENCODING = 8  # Content-Transfer-Encoding:
HDR_CONTENT_TYPE = 9  # Content-Type:
HDR_DATE = 10  # Date:
HDR_DELIVERED_TO = 11  # Delivered-To:
HDR_DISP_NOTIFICATION = 12  # Disposition-Notification-To:
HDR_ERRORS_TO = 13  # Errors-To:
HDR_FROM = 14  # From:
HDR_MESSAGE_ID = 15  # Message-ID:
HDR_MIME_VERSION = 16  # MIME-Version:
HDR_RECEIVED = 17  # Received:
HDR_REPLY_TO = 18  # Reply-To:
HDR_RESENT_BCC = 19  # Resent-Bcc:
HDR_RESENT_CC = 20  # Resent-Cc:
HDR_RESENT_DATE = 21  # Resent-Date:
HDR_RESENT_FROM = 22  # Resent-From:
HDR_RESENT_MESSAGE_ID = 23  # Resent-Message-ID:
HDR_RESENT_REPLY_TO = 24  # Resent-Reply-To:
HDR_RESENT_SENDER = 25  # Resent-Sender:
HDR_RESENT_TO = 26  # Resent-To:
HDR_RETURN_PATH = 27  # Return-Path:
HDR_RETURN_RECEIPT_TO = 28  # Return-Receipt-To:
HDR_SENDER = 29  # Sender:
HDR_TO = 30  # To:
HDR_X_ORIGINAL_TO = 31  # X-Original-To:
HDR_SUBJECT = 32  # Subject:

HEADER_NAMES: dict[bytes, int] = {
    b"apparently-to": HDR_APPARENTLY_TO,
    b"bcc": HDR_BCC,
    b"cc": HDR_CC,
    b"content-description": HDR_CONTENT_DESCRIPTION,
    b"content-disposition": HDR_CONTENT_DISPOSITION,
    b"content-id": HDR_CONTENT_ID,
    b"content-length": HDR_CONTENT_LENGTH,
    b"content-transfer-encoding": HDR_CONTENT_TRANSFER_ENCODING,
    b"content-type": HDR_CONTENT_TYPE,
    b"date": HDR_DATE,
    b"delivered-to": HDR_DELIVERED_TO,
    b"disposition-notification-to": HDR_DISP_NOTIFICATION,
    b"errors-to": HDR_ERRORS_TO,
    b"from": HDR_FROM,
    b"message-id": HDR_MESSAGE_ID,
    b"mime-version": HDR_MIME_VERSION,
    b"received": HDR_RECEIVED,
    b"reply-to": HDR_REPLY_TO,
    b"resent-bcc": HDR_RESENT_BCC,
    b"resent-cc": HDR_RESENT_CC,
    b"resent-date": HDR_RESENT_DATE,
    b"resent-from": HDR_RESENT_FROM,
    b"resent-message-id": HDR_RESENT_MESSAGE_ID,
    b"resent-reply-to": HDR_RESENT_REPLY_TO,
    b"resent-sender": HDR_RESENT_SENDER,
    b"resent-to": HDR_RESENT_TO,
    b"return-path": HDR_RETURN_PATH,
    b"return-receipt-to": HDR_RETURN_RECEIPT_TO,
    b"sender": HDR_SENDER,
    b"to": HDR_TO,
    b"x-original-to": HDR_X_ORIGINAL_TO,
    b"subject": HDR_SUBJECT,
}


def header_id(name: bytes) -> int:
    """The HDR_* number of a lower-case field name; 0 when not in the table."""
    return HEADER_NAMES.get(bytes(name), HDR_OTHER)


def is_header(line: bytes) -> int:
    """Length of the field name when line starts a header, else 0."""
    n = len(line)
    i = 0
    while i < n:
        c = line[i]
        if c == 0x3A or c <= 32 or c >= 127:
            break
        i += 1
    if i == 0:
        return 0
    j = i
    while j < n and line[j] in (32, 9):
        j += 1
    if j < n and line[j] == 0x3A:
        return i
    return 0


def unfold(raw: bytes) -> bytes:
    """raw without its folding line breaks."""
    if b"\n" not in raw and b"\r" not in raw:
        return bytes(raw)
    return bytes(raw).replace(b"\r\n", b"").replace(b"\n", b"")


def fold(name: bytes, value: bytes, width: int = 78) -> bytes:
    """b"Name: value" with b"\\n" inserted before blanks to keep lines within width."""
    text = bytes(name) + b": " + bytes(value)
    out = bytearray()
    line_start = 0
    last_blank = -1
    i = 0
    n = len(text)
    head = len(name) + 2  # never break inside "Name: "
    while i < n:
        c = text[i]
        if (c == 32 or c == 9) and i > head:
            last_blank = i
        if i - line_start >= width and last_blank > line_start:
            out += text[line_start:last_blank]
            out += b"\n"
            line_start = last_blank
            last_blank = -1
            continue
        i += 1
    out += text[line_start:]
    return bytes(out)


class HeaderParser:
    """Push-style splitter of a header section; see the module docstring."""

    def __init__(self, limit: int = 102400) -> None:
        self.limit = limit
        self.done = False
        self.blank = False
        self.truncated = 0
        self.rest = b""
        self._partial = bytearray()  # the unterminated line so far
        self._name = b""  # pending header: lower-case name
        self._raw = bytearray()  # pending header text
        self._full = False  # pending header hit the limit
        self._have = False  # a header is pending

    def _emit(self, out: list) -> None:
        if self._have:
            name = self._name
            out.append((name, bytes(self._raw), HEADER_NAMES.get(name, HDR_OTHER)))
            self._have = False
            self._raw = bytearray()

    def _append(self, piece: bytes) -> None:
        if self._full:
            return
        room = self.limit - len(self._raw)
        if len(piece) > room:
            self._raw += piece[: max(room, 0)]
            self._full = True
            self.truncated += 1
        else:
            self._raw += piece

    def _line(self, line: bytes, out: list) -> bool:
        """Take one line; True when it ended the header section."""
        if line and line[0] in (32, 9) and self._have:
            self._append(b"\n")
            self._append(line)
            return False
        self._emit(out)
        if not line:
            self.done = True
            self.blank = True
            return True
        namelen = is_header(line)
        if not namelen:
            self.done = True
            return True
        self._name = bytes(line[:namelen]).lower()
        self._have = True
        self._full = False
        self._append(line)
        return False

    def feed_line(self, line: bytes) -> list[tuple[bytes, bytes, int]]:
        """Take one line without its line end; return the headers it completed."""
        out: list[tuple[bytes, bytes, int]] = []
        if self.done:
            raise ValueError("header section already ended")
        line = bytes(line)
        if self._line(line, out) and not self.blank:
            self.rest = line
        return out

    def feed(self, data: bytes) -> list[tuple[bytes, bytes, int]]:
        """Take a chunk of input; return the headers it completed."""
        out: list[tuple[bytes, bytes, int]] = []
        if self.done:
            raise ValueError("header section already ended")
        data = bytes(data)
        start = 0
        n = len(data)
        while start < n:
            end = data.find(b"\n", start)
            if end < 0:
                self._partial += data[start:]
                break
            if self._partial:
                whole = bytes(self._partial) + data[start:end]
                self._partial = bytearray()
                from_partial = True
            else:
                whole = data[start:end]
                from_partial = False
            line = whole[:-1] if whole.endswith(b"\r") else whole
            if self._line(line, out):
                if self.blank:
                    self.rest = data[end + 1 :]
                elif from_partial:
                    self.rest = whole + b"\n" + data[end + 1 :]
                else:
                    self.rest = data[start:]
                return out
            start = end + 1
        return out

    def finish(self) -> list[tuple[bytes, bytes, int]]:
        """The input ended: return the last pending header(s)."""
        out: list[tuple[bytes, bytes, int]] = []
        if self.done:
            return out
        if self._partial:
            whole = bytes(self._partial)
            self._partial = bytearray()
            line = whole[:-1] if whole.endswith(b"\r") else whole
            if self._line(line, out):
                if not self.blank:
                    self.rest = whole
                return out
        self._emit(out)
        self.done = True
        return out
