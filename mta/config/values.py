"""config.values - convert parameter text to typed values

SYNOPSIS
    from mta.config.values import parse_bool, parse_time, parse_size, split_list

DESCRIPTION
    Postfix's value syntax: booleans are yes/no (true/false accepted);
    times are a number with an optional unit s, m, h, d or w (the
    parameter's own unit when none is given); sizes and integers are
    decimal; lists are separated by whitespace and/or commas, and a
    "{ ... }" group stays one element. Each parser raises ValueError with
    a short reason; callers add file, line and parameter.

SECURITY
    Values come from the administrator's files.
"""

from __future__ import annotations

import re

TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TIME_RE = re.compile(r"\s*(\d+)\s*([smhdw]?)\s*\Z", re.IGNORECASE)
_INT_RE = re.compile(r"\s*[-+]?\d+\s*\Z")


def parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("yes", "true"):
        return True
    if t in ("no", "false"):
        return False
    raise ValueError(f'bad boolean value "{text}" (expected yes or no)')


def parse_int(text: str, lo: int | None = None, hi: int | None = None) -> int:
    if not _INT_RE.match(text):
        raise ValueError(f'bad integer value "{text}"')
    value = int(text)
    if lo is not None and value < lo:
        raise ValueError(f"value {value} is below the minimum {lo}")
    if hi is not None and value > hi:
        raise ValueError(f"value {value} is above the maximum {hi}")
    return value


def parse_time(text: str, unit: str = "s") -> int:
    """Return seconds for "300", "300s", "5m", "1d", "2w" (unit when none given)."""
    m = _TIME_RE.match(text)
    if not m:
        raise ValueError(f'bad time value "{text}" (expected a number with unit s, m, h, d or w)')
    return int(m.group(1)) * TIME_UNITS[(m.group(2) or unit).lower()]


def parse_size(text: str) -> int:
    if not re.match(r"\s*\d+\s*\Z", text):
        raise ValueError(f'bad size value "{text}" (expected a number of bytes)')
    return int(text)


def split_list(text: str) -> list[str]:
    """Split on commas and whitespace; "{ a b }" stays one element, braces kept."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n,":
            i += 1
            continue
        start = i
        depth = 0
        while i < n:
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth = max(0, depth - 1)
            elif depth == 0 and c in " \t\r\n,":
                break
            i += 1
        if depth:
            raise ValueError(f'missing "}}" in "{text}"')
        out.append(text[start:i])
    return out
