"""smtpd.xattrs - parse the attribute=value lists of XCLIENT and XFORWARD

SYNOPSIS
    from mta.smtpd.xattrs import XattrError, parse_xattrs, UNAVAILABLE
    try:
        pairs = parse_xattrs(b"NAME=host ADDR=192.0.2.1", "XFORWARD", XFORWARD_NAMES)
    except XattrError as exc:
        session.reply(exc.reply)

DESCRIPTION
    Both commands take one or more NAME=value words; the value is
    xtext (RFC 3461), and "[UNAVAILABLE]" (any case) says the upstream
    does not know it; NAME (and REVERSE_NAME) may also be
    "[TEMPUNAVAIL]", a lookup that failed for now. parse_xattrs()
    decodes and checks each value for its attribute and returns
    (NAME, value) pairs in order, value UNAVAILABLE or TEMPUNAVAIL for
    those two words. A bad list raises XattrError with the whole 501
    reply, as Postfix words it:

        501 5.5.4 Syntax: VERB attribute=value...      no attributes
        501 5.5.4 Error: attribute=value expected      a word without "=" or value
        501 5.5.4 Bad VERB attribute name: NAME        an attribute the verb lacks
        501 5.5.4 Bad NAME syntax: VALUE               a value that fails its check

    Checks: NAME, REVERSE_NAME: a host name (letters, digits, "-", "_",
    "." up to 255); HELO, IDENT, LOGIN: printable ASCII without space
    (other bytes become "?" in HELO); ADDR, DESTADDR: an IPv4 address or
    "IPV6:" and an IPv6 address (the prefix dropped); PORT, DESTPORT:
    0 to 65535; PROTO: up to 64 printable characters (XCLIENT: SMTP or
    ESMTP); SOURCE: LOCAL or REMOTE. The value as shown in a reply is
    made printable first.

SECURITY
    Sees untrusted network input (from a client the operator
    authorized); values that pass go to logs and Received: headers, so
    none has a space, a control character or a non-ASCII byte.

STANDARDS
    Postfix XCLIENT_README and XFORWARD_README; RFC 3461 (xtext).
"""

from __future__ import annotations

import ipaddress
import re

from mta.smtpd.address import decode_xtext, printable_arg

UNAVAILABLE = "[UNAVAILABLE]"  # the upstream does not have the value
TEMPUNAVAIL = "[TEMPUNAVAIL]"  # NAME: the upstream's lookup failed for now
VALUE_LIMIT = 255  # characters of one attribute value

_HOSTNAME = re.compile(r"[A-Za-z0-9_.-]{1,255}\Z")
_PRINTABLE = re.compile(r"[\x21-\x7e]{1,255}\Z")
_PROTO = re.compile(r"[\x21-\x7e]{1,64}\Z")
_HELO_SPECIALS = re.compile(r"[^\x21-\x7e]|[<>()\\\";@,]")


class XattrError(ValueError):
    """A bad attribute list; reply is the whole SMTP reply."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


def _address(value: str) -> str | None:
    if value[:5].upper() == "IPV6:":
        try:
            return str(ipaddress.IPv6Address(value[5:]))
        except ValueError:
            return None
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        return None


def _port(value: str) -> str | None:
    if value.isdigit() and value.isascii() and len(value) <= 5 and int(value) <= 65535:
        return str(int(value))
    return None


def _check_value(name: str, value: str, verb: str) -> str | None:
    """The value to keep for name, or None when its syntax is bad."""
    if name in ("NAME", "REVERSE_NAME"):
        return value.lower() if _HOSTNAME.match(value) else None
    if name in ("ADDR", "DESTADDR"):
        return _address(value)
    if name in ("PORT", "DESTPORT"):
        return _port(value)
    if name == "HELO":
        return _HELO_SPECIALS.sub("?", value) if value else None
    if name == "PROTO":
        if verb == "XCLIENT":
            return value.upper() if value.upper() in ("SMTP", "ESMTP") else None
        return value if _PROTO.match(value) else None
    if name == "SOURCE":
        return value.upper() if value.upper() in ("LOCAL", "REMOTE") else None
    return value if _PRINTABLE.match(value) else None  # IDENT, LOGIN


def parse_xattrs(arg: bytes, verb: str, names: tuple[str, ...]) -> list[tuple[str, str]]:
    """The (NAME, value) pairs of arg for verb; XattrError with the 501 reply."""
    words = arg.split()
    if not words:
        raise XattrError(f"501 5.5.4 Syntax: {verb} attribute=value...")
    out = []
    for word in words:
        raw_name, eq, raw = word.partition(b"=")
        if not eq or not raw_name or not raw:
            raise XattrError("501 5.5.4 Error: attribute=value expected")
        name = raw_name.decode("ascii", "replace").upper()
        if name not in names:
            raise XattrError(f"501 5.5.4 Bad {verb} attribute name: {printable_arg(raw_name)}")
        value = decode_xtext(raw) if len(raw) <= 3 * VALUE_LIMIT else None
        if value is not None and len(value) > VALUE_LIMIT:
            value = None
        if value is not None and value.upper() == UNAVAILABLE:
            out.append((name, UNAVAILABLE))
            continue
        if value is not None and value.upper() == TEMPUNAVAIL and name in ("NAME", "REVERSE_NAME"):
            out.append((name, TEMPUNAVAIL))
            continue
        checked = _check_value(name, value, verb) if value is not None else None
        if checked is None:
            raise XattrError(f"501 5.5.4 Bad {name} syntax: {printable_arg(raw)}")
        out.append((name, checked))
    return out
