"""cli.map_keys - lookup keys from a message, for "mta map -h/-b -q -" (postmap -h, -b)

SYNOPSIS
    from mta.cli.map_keys import message_keys
    for key in message_keys(data, headers=True, body=False): ...

DESCRIPTION
    Splits an RFC 5322 message read from standard input into the keys
    that header_checks and body_checks would look up, as postmap -h and
    -b do without MIME parsing (-m): each logical header line is one key
    (a folded header keeps its newlines; whitespace between the name and
    the colon is dropped), up to the first line that is not a header;
    from there each body line is one key. The line that ends the header
    is the first body key: the empty separator line itself, or, when a
    line that is no header ends it, an empty key followed by that line.

SECURITY
    Reads the invoker's own standard input; nothing is interpreted.

SEE ALSO
    postmap(1) -b -h, header_checks(5), body_checks(5)
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# A header line: a name of printable characters other than ":", optional
# blanks, a colon, the value.
_HEADER = re.compile(r"([\x21-\x39\x3b-\x7e]+)[ \t]*:(.*)", re.DOTALL)


def message_keys(text: str, *, headers: bool, body: bool) -> Iterator[str]:
    """The header keys (headers=True) and body keys (body=True) of text, in order."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    i, current = 0, None
    while i < len(lines):
        line = lines[i]
        if current is not None and line[:1] in (" ", "\t"):
            current += "\n" + line
            i += 1
            continue
        if current is not None and headers:
            yield current
        current = None
        m = _HEADER.fullmatch(line)
        if m is None:
            break
        current = f"{m.group(1)}:{m.group(2)}"
        i += 1
    if current is not None:
        if headers:
            yield current
        return
    if not body or i >= len(lines):
        return
    if lines[i] != "":
        yield ""  # the missing empty line between header and body
    yield from lines[i:]
