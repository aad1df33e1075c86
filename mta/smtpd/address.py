"""smtpd.address - the address argument of MAIL FROM and RCPT TO, and xtext

SYNOPSIS
    from mta.smtpd.address import parse_path, decode_xtext, AddressError
    addr, end = parse_path(b"<user@example.org> SIZE=100")   # ("user@example.org", 18)
    decode_xtext(b"rfc822+3Buser@x")                          # "rfc822;user@x"

DESCRIPTION
    parse_path() reads an RFC 5321 reverse-path or forward-path at the
    start of the argument (blanks before it are allowed, as Postfix
    allows them) and returns the mailbox without angle brackets, with a
    source route ("@a,@b:") dropped, and the offset where the ESMTP
    parameters begin. "<>" gives "". Like Postfix with
    smtpd_strict_rfc821_envelopes = no, a path without angle brackets
    is taken up to the next blank. Quoted local parts keep their quotes.
    The address must be valid UTF-8 without control characters, and a
    domain, when there is one, must be a name or an address literal.

    decode_xtext() undoes RFC 3461 xtext ("+XX" hex escapes); None when
    the text is not valid xtext.

SECURITY
    Parses untrusted client input; never raises anything but
    AddressError for bad input.

STANDARDS
    RFC 5321 section 4.1.2 (paths), RFC 3461 section 4 (xtext).
"""

from __future__ import annotations

import re

_DOMAIN_RE = re.compile(
    r"(?:[^\s.@\[\]\\\"<>(),;:]+(?:\.[^\s.@\[\]\\\"<>(),;:]+)*\.?|\[[^\[\]\\\s]+\])\Z"
)
_ROUTE_RE = re.compile(rb"@[^,:]+(?:,@[^,:]+)*:")


class AddressError(ValueError):
    """A path that is not an address."""


def _close_bracket(data: bytes, start: int) -> int:
    """Index of the ">" that closes the "<" at start, skipping quoted text."""
    quoted = False
    i = start + 1
    n = len(data)
    while i < n:
        c = data[i]
        if c == 0x5C:  # backslash escapes the next byte
            i += 2
            continue
        if c == 0x22:
            quoted = not quoted
        elif c == 0x3E and not quoted:
            return i
        elif c == 0x3C and not quoted:
            raise AddressError("nested <")
        i += 1
    raise AddressError("missing >")


def _check(addr: str) -> None:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in addr):
        raise AddressError("control character")
    local, at, domain = addr.rpartition("@")
    if not at:
        local, domain = addr, ""
    if at and (not domain or not _DOMAIN_RE.match(domain)):
        raise AddressError("bad domain")
    if local.startswith('"'):
        if not re.fullmatch(r'"(?:[^"\\]|\\.)*"', local):
            raise AddressError("bad quoted local part")
    elif " " in local or "\t" in local or (at and not local):
        raise AddressError("bad local part")


def parse_path(arg: bytes) -> tuple[str, int]:
    """Return (address, offset after the path); AddressError when it is no address."""
    data = bytes(arg)
    i = 0
    n = len(data)
    while i < n and data[i] in b" \t":
        i += 1
    if i < n and data[i] == 0x3C:
        end = _close_bracket(data, i)
        inner = data[i + 1 : end]
        after = end + 1
        if after < n and data[after] not in b" \t":
            raise AddressError("text after >")
    else:
        end = i
        while end < n and data[end] not in b" \t":
            end += 1
        inner = data[i:end]
        after = end
        if not inner:
            raise AddressError("empty path")
    route = _ROUTE_RE.match(inner)
    if route:
        inner = inner[route.end() :]
    try:
        addr = inner.decode("utf-8")
    except UnicodeDecodeError:
        raise AddressError("not UTF-8") from None
    if addr:
        _check(addr)
    return addr, after


def decode_xtext(text: bytes) -> str | None:
    """Decode RFC 3461 xtext; None when text is not xtext."""
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == 0x2B:  # "+"
            hexpart = text[i + 1 : i + 3]
            if len(hexpart) != 2 or not all(ch in b"0123456789ABCDEFabcdef" for ch in hexpart):
                return None
            out.append(int(hexpart, 16))
            i += 3
            continue
        if c < 33 or c > 126 or c == 0x3D:
            return None
        out.append(c)
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        return None
