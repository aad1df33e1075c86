"""common.dnsbl_names - the names and reply filters that DNSBL look-ups share

SYNOPSIS
    from mta.common.dnsbl_names import client_query, parse_reply_pattern, pattern_match
    client_query("192.0.2.99")                  # "99.2.0.192" (+ ".zen.example")
    pattern = parse_reply_pattern("127.0.0.[2..11]")
    pattern_match(pattern, "127.0.0.4")         # True

DESCRIPTION
    What smtpd's DNSBL restrictions (smtpd/dnsbl_checks.py), postscreen's
    weighted lists (postscreen/dnsbl.py) and the dnsblog service have in
    common: the reversed client address a list is asked about (IPv4
    octets, IPv6 nibbles, a v4-mapped IPv6 address as IPv4) and the
    "=127.0.0.[2..11]" filter of a list's answers, each octet a number,
    a [low..high] range or a [a;b;...] list of them.

SECURITY
    Addresses come from untrusted clients; parse_reply_pattern reads the
    operator's configuration and raises ValueError on anything malformed.
"""

from __future__ import annotations

import ipaddress
import re

_PATTERN_OCTET = re.compile(r"(\d{1,3})(?![\d])|\[([0-9;.]*)\]")


def parse_reply_pattern(text: str) -> tuple:
    """The per-octet (low, high) ranges of "127.0.0.[2..11]"; ValueError when malformed."""
    octets = []
    pos = 0
    for i in range(4):
        m = _PATTERN_OCTET.match(text, pos)
        if m is None:
            raise ValueError(f'bad DNSBL reply pattern "{text}"')
        if m.group(1) is not None:
            ranges = [(int(m.group(1)), int(m.group(1)))]
        else:
            ranges = [_parse_range(item, text) for item in m.group(2).split(";")]
        if any(high > 255 or low > high for low, high in ranges):
            raise ValueError(f'bad DNSBL reply pattern "{text}"')
        octets.append(tuple(ranges))
        pos = m.end()
        if i < 3:
            if text[pos : pos + 1] != ".":
                raise ValueError(f'bad DNSBL reply pattern "{text}"')
            pos += 1
    if pos != len(text):
        raise ValueError(f'bad DNSBL reply pattern "{text}"')
    return tuple(octets)


def _parse_range(item: str, text: str) -> tuple[int, int]:
    low, sep, high = item.partition("..")
    if not low.isdigit() or (sep and not high.isdigit()) or len(low) > 3 or len(high) > 3:
        raise ValueError(f'bad DNSBL reply pattern "{text}"')
    return int(low), int(high if sep else low)


def pattern_match(pattern: tuple, addr: str) -> bool:
    """Whether the dotted IPv4 answer addr falls in every octet range of pattern."""
    parts = addr.split(".")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        return False
    return all(
        any(low <= int(p) <= high for low, high in ranges)
        for p, ranges in zip(parts, pattern, strict=True)
    )


def client_query(addr: str) -> str | None:
    """The reversed address as a DNSBL name prefix, without the list domain."""
    try:
        ip = ipaddress.ip_address(addr.removeprefix("IPv6:").removeprefix("ipv6:"))
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 4:
        return ".".join(reversed(str(ip).split(".")))
    return ".".join(reversed(ip.exploded.replace(":", "")))
