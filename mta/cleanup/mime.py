"""cleanup.mime - just enough MIME to tell part headers, nested messages and boundaries

SYNOPSIS
    from mta.cleanup.mime import parse_content_type, MimeStack, is_mime_header
    parse_content_type(b'multipart/mixed; boundary="b1"')   # ("multipart/mixed", b"b1")
    stack = MimeStack(nesting_limit=100)
    stack.push(b"b1")
    stack.boundary(b"--b1")                                 # BOUNDARY_PART
    stack.boundary(b"--b1--")                               # BOUNDARY_CLOSE

DESCRIPTION
    parse_content_type() reads a Content-Type value: the lower-case
    "type/subtype" ("" when absent or malformed, which RFC 2045 reads as
    text/plain) and the boundary parameter (quoted or not; None when
    absent). is_mime_header() tells MIME headers (Content-*, MIME-Version)
    from others, for mime_header_checks.

    MimeStack keeps the boundaries of the open multipart levels, up to
    mime_nesting_limit of them (deeper levels are read as plain body,
    and overflow says so). boundary() checks whether a body line is a
    boundary of an open level ("--" boundary, optionally "--" after it
    for the closing one, trailing blanks allowed): a part boundary pops
    the levels nested inside it, a closing boundary pops its own level
    too. Lines that are no boundary give BOUNDARY_NONE.

SECURITY
    Reads untrusted message headers and body lines. Memory is bounded by
    the nesting limit.

STANDARDS
    RFC 2045 section 5 (Content-Type), RFC 2046 section 5.1 (multipart).
"""

from __future__ import annotations

BOUNDARY_NONE = 0  # not a boundary line
BOUNDARY_PART = 1  # "--b": a new body part follows
BOUNDARY_CLOSE = 2  # "--b--": the multipart ends

MIME_HEADER_PREFIX = b"content-"  # Content-* are MIME headers


def is_mime_header(name: bytes) -> bool:
    """True for Content-* and MIME-Version (lower-case names)."""
    return name.startswith(MIME_HEADER_PREFIX) or name == b"mime-version"


def _params(text: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    i = 0
    n = len(text)
    while i < n:
        while i < n and text[i] in b" \t\r\n;":
            i += 1
        start = i
        while i < n and text[i] not in b"=;":
            i += 1
        name = text[start:i].strip().lower()
        if i >= n or text[i] != 0x3D:
            continue
        i += 1
        while i < n and text[i] in b" \t":
            i += 1
        if i < n and text[i] == 0x22:
            i += 1
            value = bytearray()
            while i < n and text[i] != 0x22:
                if text[i] == 0x5C and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
            i += 1
            out.setdefault(name, bytes(value))
        else:
            start = i
            while i < n and text[i] not in b"; \t":
                i += 1
            out.setdefault(name, text[start:i])
    return out


def parse_content_type(value: bytes) -> tuple[str, bytes | None]:
    """(lower-case type/subtype, boundary or None) of a Content-Type value."""
    text = value.replace(b"\n", b" ")
    # drop comments, which may hold anything
    if b"(" in text:
        out = bytearray()
        depth = 0
        for c in text:
            if c == 0x28:
                depth += 1
            elif c == 0x29 and depth:
                depth -= 1
            elif not depth:
                out.append(c)
        text = bytes(out)
    kind, _, rest = text.partition(b";")
    kind = kind.strip().lower()
    if kind.count(b"/") != 1:
        return "", None
    boundary = _params(rest).get(b"boundary") or None
    return kind.decode("ascii", "replace"), boundary


class MimeStack:
    """Open multipart levels and their boundaries."""

    def __init__(self, nesting_limit: int = 100) -> None:
        self.limit = nesting_limit
        self.levels: list[bytes] = []
        self.overflow = False

    def push(self, boundary: bytes) -> bool:
        """Open a multipart level; False (and overflow set) past the limit."""
        if len(self.levels) >= self.limit:
            self.overflow = True
            return False
        self.levels.append(boundary)
        return True

    def boundary(self, line: bytes) -> int:
        """Classify a body line; pop levels as a boundary says."""
        if not self.levels or not line.startswith(b"--"):
            return BOUNDARY_NONE
        for depth in range(len(self.levels) - 1, -1, -1):
            b = self.levels[depth]
            if line.startswith(b, 2):
                tail = line[2 + len(b) :]
                if tail.startswith(b"--") and not tail[2:].strip():
                    del self.levels[depth:]
                    return BOUNDARY_CLOSE
                if not tail.strip():
                    del self.levels[depth + 1 :]
                    return BOUNDARY_PART
        return BOUNDARY_NONE
