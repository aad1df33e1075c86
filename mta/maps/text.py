"""maps.text - read table sources: key/value files, rule files, inline {...} text

SYNOPSIS
    from mta.maps.text import parse_table_text, read_pairs, read_rules, split_braced
    pairs, warnings = read_pairs("/etc/mta/virtual", fold=True)   # str pairs
    rules = read_rules("/etc/mta/header_checks")                  # [(line, text)]
    split_braced("{ a=1, { b = two words } }")                    # ["a=1", "b = two words"]

DESCRIPTION
    parse_table_text is the kernel twin (maptext.pyx, or maptext_ref.py
    when the extension is missing or MTA_NO_EXTENSIONS=1):
    parse_table_text_ref and parse_table_text_c stay importable.

    read_pairs() applies it to a file and decodes keys and values as
    UTF-8 with surrogateescape, so any byte survives a round trip.
    read_rules() gives the logical lines of a pattern table (regexp,
    pcre, cidr) with their first line numbers, after the same comment,
    blank-line and continuation rules. split_braced() splits the text
    of an inline specification ("inline:{...}", "regexp:{...}") into
    its items: separated by commas or whitespace, "{ ... }" keeps one
    item together and loses its braces and surrounding whitespace.

SECURITY
    Reads files the administrator named.

SEE ALSO
    mta/_speedups/maptext.pyx, maptext_ref.py
"""

from __future__ import annotations

from mta._speedups import NO_EXTENSIONS
from mta._speedups.maptext_ref import parse_table_text as parse_table_text_ref
from mta.maps.maps import MapError

parse_table_text_c = None
if not NO_EXTENSIONS:
    try:
        from mta._speedups.maptext import parse_table_text as parse_table_text_c
    except ImportError:
        pass

parse_table_text = parse_table_text_c or parse_table_text_ref

_WS = " \t\r\n\v\f"


_preloaded: dict[str, bytes] = {}  # path -> bytes read at import (preload_source)


def preload_source(path: str) -> None:
    """Read a table file now and serve later reads of it from memory.

    For the tables shipped inside the package (bounce classes, shaping):
    their modules call it when imported, before a service gives up root,
    since mail_owner may not be able to open files where the package
    lives. A file that cannot be read now is read (and reported) later."""
    try:
        with open(path, "rb") as fh:
            _preloaded[path] = fh.read()
    except OSError:
        pass


def read_source(path: str) -> bytes:
    found = _preloaded.get(path)
    if found is not None:
        return found
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise MapError(f"open {path}: {exc.strerror or exc}") from None


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def read_pairs(path: str, fold: bool) -> tuple[list[tuple[str, str]], list[tuple[int, str]]]:
    """Parse a key/value source file into str pairs and (line, warning) tuples."""
    pairs, warnings = parse_table_text(read_source(path), fold)
    return [(decode(k), decode(v)) for k, v in pairs], warnings


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Logical lines of rule text as (first line number, text without trailing space)."""
    out: list[tuple[int, str]] = []
    parts: list[str] = []
    start = 0
    for lineno, raw in enumerate(text.split("\n"), 1):
        body = raw.lstrip(_WS)
        if not body or body[0] == "#":
            continue
        if len(body) != len(raw):
            if parts:
                parts.append(raw)
            continue
        if parts:
            out.append((start, "".join(parts).rstrip(_WS)))
        parts, start = [raw], lineno
    if parts:
        out.append((start, "".join(parts).rstrip(_WS)))
    return out


def read_rules(path: str) -> list[tuple[int, str]]:
    """Logical lines of a pattern table file."""
    return logical_lines(decode(read_source(path)))


def split_braced(text: str, where: str = "") -> list[str]:
    """Split "{ item, { item with spaces } }" (outer braces optional) into items."""
    text = text.strip()
    if text.startswith("{"):
        if not text.endswith("}"):
            raise MapError(f"{where}: missing '}}' at end of inline text")
        text = text[1:-1]
    items: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _WS or c == ",":
            i += 1
            continue
        if c == "{":
            depth, j = 1, i + 1
            while j < n and depth:
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                j += 1
            if depth:
                raise MapError(f"{where}: missing '}}' in inline text")
            items.append(text[i + 1 : j - 1].strip(_WS))
            i = j
            continue
        j = i
        while j < n and text[j] not in _WS and text[j] != ",":
            if text[j] == "{":
                raise MapError(f"{where}: '{{' must start an item in inline text")
            j += 1
        items.append(text[i:j])
        i = j
    return items
