"""common.tls_proto - Postfix's TLS protocol and cipher-grade settings, parsed

SYNOPSIS
    from mta.common.tls_proto import protocol_range, cipher_string, apply_protocols
    lo, hi = protocol_range(">=TLSv1.2")              # (0x0303, 0x0304)
    lo, hi = protocol_range("!SSLv2, !SSLv3, !TLSv1") # (0x0302, 0x0304)
    text = cipher_string(cfg, "medium", "aNULL, RC4") # tls_medium_cipherlist + ":!aNULL:!RC4"
    apply_protocols(ctx, lo, hi)                      # ssl.SSLContext bounds

DESCRIPTION
    protocol_range() reads a *_tls_protocols value as Postfix does: a
    list of words separated by white space, commas or colons; a word
    is a protocol name (SSLv2, SSLv3, TLSv1, TLSv1.1, TLSv1.2, TLSv1.3,
    spelled as here), "!name" to exclude one, ">=version" or
    "<=version" for a bound, where version is a name or a hexadecimal
    protocol number (301, 0301, 0x0301 are TLSv1). When names are
    listed without "!", every protocol not listed is excluded. An
    empty value allows every protocol.

    The result is (lowest, highest) as protocol numbers (0x0300 SSLv3
    ... 0x0304 TLSv1.3). Exclusions are read as OpenSSL (and so
    Postfix) reads them: the range starts at the lowest protocol left
    enabled and ends below the first disabled one above it, so
    "!SSLv2, !SSLv3, !TLSv1.1" allows TLSv1 only, and an excluded
    protocol is never allowed. ValueError when a word is unknown
    (names are case-sensitive, as in Postfix) or no TLS protocol is
    left.

    cipher_string() turns a cipher grade (export, low, medium, high,
    null) into the OpenSSL cipher list of the matching
    tls_GRADE_cipherlist parameter, and appends ":!NAME" for each word
    of the exclusion list. ValueError when the grade is unknown or an
    exclusion holds a character OpenSSL lists do not use.

    apply_protocols() sets ssl.SSLContext.minimum_version and
    maximum_version; a bound above the newest version OpenSSL knows
    leaves the top open, a lowest version above it is a ValueError.

SECURITY
    Pure functions over administrator settings; nothing here sees the
    network.

SEE ALSO
    mta/smtpd/tls.py (the server), mta/smtp (the client)
"""

from __future__ import annotations

import re
import ssl
import warnings

from mta.common.tls_options import disabled_workarounds, ssl_options

# protocol names in the order of their numbers
PROTOCOLS: dict[str, int] = {
    "SSLv2": 0x0002,
    "SSLv3": 0x0300,
    "TLSv1": 0x0301,
    "TLSv1.1": 0x0302,
    "TLSv1.2": 0x0303,
    "TLSv1.3": 0x0304,
}
PROTO_LOWEST = PROTOCOLS["SSLv2"]
PROTO_HIGHEST = PROTOCOLS["TLSv1.3"]
CIPHER_GRADES = ("export", "low", "medium", "high", "null")

_SEP = re.compile(r"[\s,:]+")
_HEX = re.compile(r"(?:0x)?([0-9a-fA-F]{1,4})")
_CIPHER_WORD = re.compile(r"[A-Za-z0-9+_.=@-]+")


def _version(word: str) -> int:
    if word in PROTOCOLS:
        return PROTOCOLS[word]
    m = _HEX.fullmatch(word)
    if m is None:
        raise ValueError(f"unknown TLS protocol version: {word}")
    return int(m.group(1), 16)


def protocol_range(value: str) -> tuple[int, int]:
    """(lowest, highest) protocol number that value allows; ValueError when none or bad."""
    lo, hi = PROTO_LOWEST, 0xFFFF
    include: set[int] = set()
    exclude: set[int] = set()
    for word in _SEP.split(value.strip()):
        if not word:
            continue
        if word.startswith(">="):
            lo = max(lo, _version(word[2:]))
        elif word.startswith("<="):
            hi = min(hi, _version(word[2:]))
        elif word.startswith("!"):
            if word[1:] not in PROTOCOLS:
                raise ValueError(f"unknown TLS protocol: {word[1:]}")
            exclude.add(PROTOCOLS[word[1:]])
        elif word in PROTOCOLS:
            include.add(PROTOCOLS[word])
        else:
            raise ValueError(f"unknown TLS protocol: {word}")
    order = list(PROTOCOLS.values())
    enabled = [v for v in order if v not in exclude and (not include or v in include)]
    if not enabled:
        raise ValueError(f"no TLS protocol left: {value.strip()}")
    # as OpenSSL reads exclusions: one range, from the lowest enabled protocol up
    # to the first one disabled above it (a gap also disables what lies beyond)
    at = order.index(enabled[0])
    while at + 1 < len(order) and order[at + 1] in enabled:
        at += 1
    bottom, top = max(enabled[0], lo), order[at]
    if top == PROTO_HIGHEST and hi != 0xFFFF:
        top = hi  # may lie past the newest name: kept for a newer OpenSSL
    else:
        top = min(top, hi)
    if top < max(bottom, PROTOCOLS["TLSv1"]):
        raise ValueError(f"no TLS protocol left: {value.strip()}")
    return bottom, top


def apply_protocols(ctx: ssl.SSLContext, lo: int, hi: int) -> None:
    """Bound ctx to the protocols lo..hi (numbers from protocol_range)."""
    known = {int(v): v for v in ssl.TLSVersion if int(v) > 0}
    newest = max(known)
    if lo > newest:
        raise ValueError(f"lowest TLS protocol {lo:#06x} is newer than any this OpenSSL knows")
    with warnings.catch_warnings():  # Python frowns on naming TLS 1.0 and 1.1; Postfix does not
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = known.get(lo, ssl.TLSVersion.MINIMUM_SUPPORTED)
        ctx.maximum_version = known[hi] if hi in known else ssl.TLSVersion.MAXIMUM_SUPPORTED


def cipher_string(cfg, grade: str, exclude: str) -> str:
    """The OpenSSL cipher list of grade, less each cipher or type in exclude."""
    text = cfg.get(f"tls_{check_grade(grade)}_cipherlist").strip()
    return "".join([text] + [":!" + word for word in check_exclusions(exclude)])


def check_grade(value: str) -> str:
    """value as a cipher grade; ValueError when it is none of CIPHER_GRADES."""
    grade = value.strip().lower()
    if grade not in CIPHER_GRADES:
        raise ValueError(
            f"unknown cipher grade: {value.strip() or '(empty)'} (expected {', '.join(CIPHER_GRADES)})"
        )
    return grade


def check_exclusions(value: str) -> list[str]:
    """The words of a cipher exclusion list; ValueError for a word OpenSSL would not take."""
    words = [w for w in _SEP.split(value.strip()) if w]
    for word in words:
        if not _CIPHER_WORD.fullmatch(word):
            raise ValueError(f"invalid cipher exclusion: {word}")
    return words


# checks of *_tls_* values by parameter-name suffix, for mta check (config.validate)
SYNTAX_BY_SUFFIX = {
    "_tls_protocols": protocol_range,
    "_tls_mandatory_protocols": protocol_range,
    "_tls_ciphers": check_grade,
    "_tls_mandatory_ciphers": check_grade,
    "_tls_exclude_ciphers": check_exclusions,
    "_tls_mandatory_exclude_ciphers": check_exclusions,
    "tls_ssl_options": ssl_options,
    "tls_disable_workarounds": disabled_workarounds,
}
