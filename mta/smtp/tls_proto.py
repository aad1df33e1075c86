"""smtp.tls_proto - Postfix's TLS protocol lists and cipher grades, for the smtp client

SYNOPSIS
    from mta.smtp.tls_proto import protocol_range, cipher_string
    low, high = protocol_range(">=TLSv1.2")           # (TLSVersion.TLSv1_2, None)
    low, high = protocol_range("!SSLv2, !SSLv3, !TLSv1.3")  # (TLSv1, TLSv1_2)
    ctx.set_ciphers(cipher_string("high", ["aNULL", "3DES"], cipherlists))

DESCRIPTION
    protocol_range() reads a *_tls_protocols value: the bounds
    ">=VERSION" and "<=VERSION" (a name, or a hexadecimal number such
    as 0303, 0x0303), the legacy exclusions "!NAME", or included
    names; separated by blanks, commas or colons. Names are SSLv2,
    SSLv3, TLSv1, TLSv1.1, TLSv1.2, TLSv1.3, in any case. As in
    Postfix, the enabled versions form one range: it starts at the
    lowest version left enabled and ends before the first disabled one
    above it. The answer is (lowest, highest) as ssl.TLSVersion, None
    for no bound; ValueError for an unknown name, a range with no TLS
    version left, or a lower bound this library does not know (a
    higher one unknown to it only means no upper bound).

    cipher_string() turns a cipher grade (export, low, medium, high,
    null) and exclusions into an OpenSSL cipher list, from the
    tls_GRADE_cipherlist parameters. It governs TLS 1.2 and older;
    TLS 1.3 suites are OpenSSL's.

SECURITY
    Parses administrator input only.

NOTES
    A stand-in for the shared parser (mta/common/tls_proto.py) with the
    same shape, to be folded into it.
"""

from __future__ import annotations

import re
import ssl

# (name, wire version, ssl.TLSVersion or None when this library cannot speak it), lowest first
TLS_VERSIONS = (
    ("sslv2", 0x0002, None),
    ("sslv3", 0x0300, ssl.TLSVersion.SSLv3),
    ("tlsv1", 0x0301, ssl.TLSVersion.TLSv1),
    ("tlsv1.1", 0x0302, ssl.TLSVersion.TLSv1_1),
    ("tlsv1.2", 0x0303, ssl.TLSVersion.TLSv1_2),
    ("tlsv1.3", 0x0304, ssl.TLSVersion.TLSv1_3),
)
_FIRST_TLS = 2  # index of TLSv1
_HEX_RE = re.compile(r"(?:0x)?([0-9a-f]{1,4})\Z", re.IGNORECASE)


def _index(name: str) -> int:
    low = name.lower()
    for i, (known, _, _) in enumerate(TLS_VERSIONS):
        if low == known:
            return i
    raise ValueError(f'unknown TLS protocol "{name}"')


def _bound(text: str, upper: bool) -> int | None:
    """Index of a bound's version; None for an upper bound above every known one."""
    try:
        return _index(text)
    except ValueError:
        m = _HEX_RE.match(text)
        if not m:
            raise
    number = int(m.group(1), 16)
    for i, (_, wire, _) in enumerate(TLS_VERSIONS):
        if number == wire:
            return i
    if upper and number > TLS_VERSIONS[-1][1]:
        return None
    raise ValueError(f'unknown TLS protocol version "{text}"')


def protocol_range(value: str) -> tuple[ssl.TLSVersion | None, ssl.TLSVersion | None]:
    """(lowest, highest) TLS version a protocols value allows; None: no bound."""
    floor: int | None = None
    ceiling: int | None = None
    included: set[int] = set()
    excluded: set[int] = set()
    for word in re.split(r"[\s,:]+", value.strip()):
        if not word:
            continue
        if word.startswith(">="):
            floor = _bound(word[2:], upper=False)
        elif word.startswith("<="):
            ceiling = _bound(word[2:], upper=True)
        elif word.startswith("!"):
            excluded.add(_index(word[1:]))
        else:
            included.add(_index(word))
    top = len(TLS_VERSIONS) - 1
    enabled = (included or set(range(top + 1))) - excluded
    if not enabled:
        raise ValueError(f'no TLS protocol left in "{value.strip()}"')
    low = min(enabled)
    high = low
    while high + 1 in enabled:
        high += 1
    if floor is not None:
        low = max(low, floor)
    if ceiling is not None:
        high = min(high, ceiling)
    if high < max(low, _FIRST_TLS):
        raise ValueError(f'no TLS protocol left in "{value.strip()}"')
    lowest = TLS_VERSIONS[low][2]  # None for SSLv2: no lower bound
    highest = TLS_VERSIONS[high][2] if high < top else None
    return lowest, highest


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
