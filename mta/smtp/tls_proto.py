"""smtp.tls_proto - Postfix's TLS protocol lists and cipher grades, for the smtp client

SYNOPSIS
    from mta.smtp.tls_proto import protocol_range, cipher_string
    low, high = protocol_range(">=TLSv1.2")           # (TLSVersion.TLSv1_2, None)
    low, high = protocol_range("!SSLv2, !SSLv3, !TLSv1.3")  # (TLSv1, TLSv1_2)
    ctx.set_ciphers(cipher_string("high", ["aNULL", "3DES"], cipherlists))

DESCRIPTION
    protocol_range() reads a *_tls_protocols value with the parser
    smtpd uses (mta/common/tls_proto.py: bounds, exclusions, included
    names, one contiguous range as OpenSSL makes it) and gives the
    answer as ssl.TLSVersion bounds, None for no bound (SSLv2 at the
    bottom, TLSv1.3 or a version past it at the top).

    cipher_string() turns a cipher grade (export, low, medium, high,
    null) and exclusions into an OpenSSL cipher list, from the
    tls_GRADE_cipherlist parameters. It governs TLS 1.2 and older;
    TLS 1.3 suites are OpenSSL's.

SECURITY
    Parses administrator input only.
"""

from __future__ import annotations

import ssl

from mta.common.tls_proto import PROTO_HIGHEST
from mta.common.tls_proto import protocol_range as shared_protocol_range


def protocol_range(value: str) -> tuple[ssl.TLSVersion | None, ssl.TLSVersion | None]:
    """(lowest, highest) TLS version a protocols value allows; None: no bound.

    The syntax is common/tls_proto.py's; ValueError for what it refuses,
    and for a lowest version this OpenSSL does not know."""
    low, high = shared_protocol_range(value)
    known = {int(v): v for v in ssl.TLSVersion if int(v) > 0}
    if low > max(known):
        raise ValueError(f"lowest TLS protocol {low:#06x} is newer than any this OpenSSL knows")
    return known.get(low), (known[high] if high < PROTO_HIGHEST else None)


def cipher_string(grade: str, exclude, cipherlists: dict[str, str], no_anonymous: bool) -> str:
    """The OpenSSL cipher list of a grade minus the exclusions; ValueError for an unknown grade."""
    base = cipherlists.get(grade)
    if base is None:
        raise ValueError(f'invalid cipher grade "{grade}"')
    parts = [base.strip()]
    if no_anonymous:
        parts.append("!aNULL")
    parts.extend(f"!{word}" for word in exclude if word)
    return ":".join(p for p in parts if p)
