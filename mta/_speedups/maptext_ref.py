"""maptext_ref - reference parser of lookup table source text; the spec for maptext.pyx

SYNOPSIS
    from mta._speedups.maptext_ref import parse_table_text
    pairs, warnings = parse_table_text(data, fold=True)
    # pairs: [(b"key", b"value"), ...] in source order, duplicates kept
    # warnings: [(line_number, "message"), ...]

DESCRIPTION
    Splits the bytes of a table source (the input of "mta map", and of
    texthash: tables) into key/value pairs, with the rules of postmap(1):

    - Physical lines end at "\\n". Whitespace is space, tab, CR, VT, FF.
    - A line that is empty or holds only whitespace is skipped, and so is
      a line whose first non-whitespace byte is "#". Neither ends a
      logical line.
    - A line that starts with non-whitespace starts a logical line; a line
      that starts with whitespace continues it, appended as it stands
      (its leading whitespace included). A continuation with nothing to
      continue is skipped with a warning.
    - The key runs to the first whitespace outside double quotes; a
      backslash protects the next byte, in or out of quotes. Quotes and
      backslashes stay part of the key. A quote left open is a warning
      and the line is skipped.
    - The value is the rest after the whitespace run, trailing whitespace
      stripped. No value: warning, line skipped. A key that ends in ":"
      draws a warning about the alias-file form but is kept.
    - fold=True lowercases ASCII letters in the key (not in the value).

    Warnings carry the number of the first physical line of the logical
    line. Duplicate keys are all returned; the table builder decides.

SECURITY
    Sees administrator-written table sources. Pure function, no I/O.
"""

from __future__ import annotations

_WS = b" \t\r\n\v\f"
_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _finish(
    logical: bytes,
    lineno: int,
    fold: bool,
    pairs: list[tuple[bytes, bytes]],
    warnings: list[tuple[int, str]],
) -> None:
    line = logical.rstrip(_WS)
    n = len(line)
    i = 0
    quoted = False
    while i < n:
        c = line[i]
        if c == 0x5C:  # backslash protects the next byte
            i += 2
            continue
        if quoted:
            if c == 0x22:
                quoted = False
        elif c == 0x22:
            quoted = True
        elif c in _WS:
            break
        i += 1
    if quoted:
        warnings.append((lineno, f"unbalanced '\"' in '{_text(line)}' -- ignoring this line"))
        return
    key = line[:i]
    value = line[i:].lstrip(_WS)
    if not value:
        warnings.append((lineno, "expected format: key whitespace value -- ignoring this line"))
        return
    if key.endswith(b":"):
        warnings.append((lineno, 'record is in "key: value" format; is this an alias file?'))
    if fold:
        key = key.translate(_LOWER)
    pairs.append((key, value))


def parse_table_text(
    data: bytes, fold: bool
) -> tuple[list[tuple[bytes, bytes]], list[tuple[int, str]]]:
    """Return (key/value pairs in order, warnings as (line, message)) for a table source."""
    pairs: list[tuple[bytes, bytes]] = []
    warnings: list[tuple[int, str]] = []
    parts: list[bytes] = []
    start_line = 0
    for lineno, raw in enumerate(bytes(data).split(b"\n"), 1):
        body = raw.lstrip(_WS)
        if not body or body[0] == 0x23:  # blank, or "#" comment
            continue
        if len(body) != len(raw):  # starts with whitespace: continuation
            if parts:
                parts.append(raw)
            else:
                msg = "logical line must not start with whitespace: "
                warnings.append((lineno, msg + f'"{_text(raw.rstrip(_WS))}"'))
            continue
        if parts:
            _finish(b"".join(parts), start_line, fold, pairs, warnings)
        parts = [raw]
        start_line = lineno
    if parts:
        _finish(b"".join(parts), start_line, fold, pairs, warnings)
    return pairs, warnings
