"""common.long_lines - break content lines longer than the SMTP line limit, Postfix's way

SYNOPSIS
    from mta.common.long_lines import fold_long_lines
    fold_long_lines([b"x" * 2500], 998)   # [998 x, b" " + 997 x, b" " + 505 x]

DESCRIPTION
    A line longer than limit goes out as its first limit bytes, then
    pieces of limit - 1 bytes, each after a blank (smtp_line_length_limit).
    The smtp client sends content this way; cleanup's DKIM signer hashes
    the body this way, so that the signature holds for what is sent.

SECURITY
    Pure function over bytes.
"""

from __future__ import annotations


def fold_long_lines(lines: list[bytes], limit: int) -> list[bytes]:
    """Break lines longer than limit; each continuation starts with a blank."""
    out: list[bytes] = []
    for line in lines:
        if limit <= 0 or len(line) <= limit:
            out.append(line)
            continue
        out.append(line[:limit])
        rest = line[limit:]
        step = max(1, limit - 1)
        while rest:
            out.append(b" " + rest[:step])
            rest = rest[step:]
    return out
