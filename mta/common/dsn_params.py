"""common.dsn_params - RFC 3461's ESMTP parameters: xtext, NOTIFY and ORCPT

SYNOPSIS
    from mta.common.dsn_params import decode_xtext, notify_mask, orcpt_value
    decode_xtext(b"rfc822+3Buser@x")          # "rfc822;user@x"; None: not xtext
    notify_mask(b"SUCCESS,DELAY")             # DSN_NOTIFY_SUCCESS | DSN_NOTIFY_DELAY
    orcpt_value(b"rfc822;user+40x")           # "rfc822;user@x"

DESCRIPTION
    The values of RCPT's NOTIFY= and ORCPT= and of the xtext in ORCPT=
    and ENVID=, as smtpd reads them from RCPT TO and MAIL FROM and as
    the milter job reads them from a milter's added recipient. Each
    answers None for a value that is not well formed; the caller says
    what that means (501 in smtpd, a warning for a milter).

SECURITY
    Sees untrusted parameter values; pure functions, no limits needed
    beyond the command line's.

STANDARDS
    RFC 3461 (DSN): 4.1 (xtext), 4.1 NOTIFY, 4.2 ORCPT.
"""

from __future__ import annotations

from mta.queue import rec_type as R


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


NOTIFY_BITS = {
    b"NEVER": R.DSN_NOTIFY_NEVER,
    b"SUCCESS": R.DSN_NOTIFY_SUCCESS,
    b"FAILURE": R.DSN_NOTIFY_FAILURE,
    b"DELAY": R.DSN_NOTIFY_DELAY,
}


def notify_mask(value: bytes) -> int | None:
    """RCPT's NOTIFY=value (RFC 3461) as DSN_NOTIFY_* bits; None when malformed
    (an unknown word, or NEVER with another)."""
    words = value.upper().split(b",")
    if not value or any(w not in NOTIFY_BITS for w in words):
        return None
    if b"NEVER" in words and len(words) > 1:
        return None
    mask = 0
    for w in words:
        mask |= NOTIFY_BITS[w]
    return mask


def orcpt_value(value: bytes) -> str | None:
    """RCPT's ORCPT=type;xtext as "type;address"; None when malformed."""
    kind, semi, addr = value.partition(b";")
    decoded = decode_xtext(addr) if semi else None
    if decoded is None:
        return None
    return kind.decode("ascii", "replace") + ";" + decoded
