"""dkimcanon_ref - DKIM canonicalization of headers and body (RFC 6376 3.4); spec for dkimcanon.pyx

SYNOPSIS
    from mta._speedups.dkimcanon_ref import BodyCanon, header_relaxed, header_simple
    canon = BodyCanon(relaxed=True)
    for line in lines:                    # content lines, without their line ends
        digest.update(canon.line(line))
    digest.update(canon.finish())
    header_relaxed(b"Subject", b" Hello\\r\\n\\tworld ")  # b"subject:Hello world\\r\\n"
    header_simple(b"Subject", b" Hello\\r\\n\\tworld ")   # b"Subject: Hello\\r\\n\\tworld \\r\\n"

DESCRIPTION
    BodyCanon takes the body one line at a time, each line without its
    line end (the queue file keeps lines, and the message goes out with
    CRLF after each), and returns the canonical bytes that line adds to
    the body hash. Empty lines are held back until a line with content
    follows: empty lines at the end of the body are not part of it.
    finish() returns what the end adds.

    simple: every line is itself plus CRLF; a body that is empty (or
    only empty lines) is a single CRLF.

    relaxed: in each line every run of spaces and tabs becomes one
    space, and spaces and tabs at the end of the line go; a line that is
    left empty counts as an empty line. A body with nothing left is
    empty (RFC 6376 erratum 1384), not CRLF.

    header_relaxed(name, value) is the header field as the header hash
    sees it: the name in lower case, the value unfolded (each LF and a
    CR just before one removed), each run of spaces and tabs one space, none at either
    end, then ":" between them and CRLF after. header_simple() keeps
    name and value exactly and adds ":" and CRLF. value is what follows
    the colon, folding included, with no line end after its last line.

SECURITY
    Sees untrusted message content; does no I/O and keeps no more than
    the count of held-back empty lines between calls.
"""

from __future__ import annotations

_WSP = b" \t"
CRLF = b"\r\n"


def _squeeze(data: bytes) -> bytes:
    """Every run of spaces and tabs as one space; those at the end dropped."""
    out = bytearray()
    space = False
    for byte in data:
        if byte in _WSP:
            space = True
            continue
        if space:
            out += b" "
            space = False
        out.append(byte)
    return bytes(out)


class BodyCanon:
    """One body's canonicalization, fed line by line; see the module docstring."""

    def __init__(self, relaxed: bool = True) -> None:
        self.relaxed = relaxed
        self.empty = 0  # empty lines held back
        self.seen = False  # a line with content came

    def line(self, data: bytes) -> bytes:
        data = bytes(data)
        if self.relaxed:
            data = _squeeze(data)
        if not data:
            self.empty += 1
            return b""
        out = CRLF * self.empty + data + CRLF
        self.empty = 0
        self.seen = True
        return out

    def finish(self) -> bytes:
        self.empty = 0
        if self.seen or self.relaxed:
            return b""
        self.seen = True
        return CRLF  # simple: an empty body is one CRLF


def _unfold_squeeze(value: bytes) -> bytes:
    """value unfolded, white-space runs as one space, none at either end.

    Unfolding takes out each LF and a CR just before one (a fold is CRLF
    or, as the queue file keeps it, LF, then white space); a CR alone
    stays."""
    out = bytearray()
    space = False
    n = len(value)
    for i, byte in enumerate(value):
        if byte == 10 or (byte == 13 and i + 1 < n and value[i + 1] == 10):
            continue
        if byte in _WSP:
            space = True
            continue
        if space and out:
            out += b" "
        space = False
        out.append(byte)
    return bytes(out)


def header_relaxed(name: bytes, value: bytes) -> bytes:
    return bytes(name).strip(_WSP).lower() + b":" + _unfold_squeeze(bytes(value)) + CRLF


def header_simple(name: bytes, value: bytes) -> bytes:
    return bytes(name) + b":" + bytes(value) + CRLF
