"""smtpd.address - the address argument of MAIL FROM and RCPT TO, xtext, HELO text

SYNOPSIS
    from mta.smtpd.address import parse_path, decode_xtext, AddressError
    addr, end = parse_path(b"<user@example.org> SIZE=100")   # ("user@example.org", 18)
    decode_xtext(b"rfc822+3Buser@x")                          # "rfc822;user@x"
    printable_arg(b"host\x00name  x")                          # "host?name x"

DESCRIPTION
    parse_path() reads an RFC 5321 reverse-path or forward-path at the
    start of the argument (blanks before it are allowed, as Postfix
    allows them) and returns the mailbox without angle brackets, with a
    source route ("@a,@b:") dropped, and the offset where the ESMTP
    parameters begin. "<>" gives "". Like Postfix with
    strict_rfc821_envelopes = no, a path without angle brackets is taken
    up to the next blank; strict=True (strict_rfc821_envelopes = yes)
    refuses it. Quoted local parts keep their quotes.
    The address must be valid UTF-8 without control characters, and a
    domain, when there is one, must be a name or an address literal.
    The parsing itself is the address kernel (mta/_speedups/addr).

    decode_xtext() undoes RFC 3461 xtext ("+XX" hex escapes); None when
    the text is not valid xtext.

    printable_arg() turns a free-text argument (HELO/EHLO) into the text
    that goes into logs and the Received: header: words separated by
    blanks are joined by one space, as Postfix collapses them, and every
    control character, byte that is not UTF-8 or other non-printable
    character becomes "?", as Postfix's printable() does.

SECURITY
    Parses untrusted client input; never raises anything but
    AddressError for bad input.

STANDARDS
    RFC 5321 section 4.1.2 (paths), RFC 3461 section 4 (xtext).
"""

from __future__ import annotations

from mta.common.dsn_params import decode_xtext  # noqa: F401 - re-exported
from mta.trivial_rewrite.address import AddrError as AddressError  # noqa: F401 - re-exported
from mta.trivial_rewrite.address import parse_path as _parse_path


def parse_path(arg: bytes, strict: bool = False) -> tuple[str, int]:
    """Return (address, offset after the path); AddressError when it is no address
    (strict: also when it is not in angle brackets)."""
    addr, end = _parse_path(arg, strict)
    return addr.decode("utf-8"), end


def printable_arg(arg: bytes, replacement: str = "?") -> str:
    """The words of arg joined by one space, each non-printable character replaced."""
    words = arg.replace(b"\t", b" ").split(b" ")
    text = b" ".join(w for w in words if w).decode("utf-8", "replace")
    return "".join(c if c.isprintable() and c != "\ufffd" else replacement for c in text)
