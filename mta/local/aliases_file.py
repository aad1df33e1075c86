"""local.aliases_file - read aliases(5) source files and split alias values

SYNOPSIS
    from mta.local.aliases_file import parse_aliases, split_alias_value
    pairs, warnings = parse_aliases(data, fold=True)     # [(b"name", b"value")], [(line, msg)]
    split_alias_value('a, "|/bin/prog x,y", /var/log/m')  # ["a", "|/bin/prog x,y", "/var/log/m"]

DESCRIPTION
    The source syntax of aliases(5): "name: value, value, ..."; a line
    that starts with whitespace continues the previous one; empty lines
    and lines whose first non-space character is "#" are ignored. The
    name may be written in double quotes ("first last": x) and is then
    taken without them; the colon that ends it is the first one outside
    quotes. Names are folded to lower case unless fold is false. A line
    without a name and a colon, or with nothing after the colon, is
    skipped with a warning naming its line, as postalias does.

    split_alias_value() cuts a right-hand side (of an alias or of a
    .forward line) into its destinations: at commas outside double
    quotes, with surrounding whitespace removed; an item entirely in
    double quotes loses them ("|prog a, b" stays one command). A
    backslash quotes the next character inside quotes.

SECURITY
    Reads files the administrator (aliases) or a user (.forward,
    :include:) wrote; nothing in them is executed here.

SEE ALSO
    aliases(5), postalias(1), mta/cli/alias.py
"""

from __future__ import annotations

_WS = b" \t\r\n\v\f"


def _split_name(text: bytes) -> tuple[bytes, bytes] | None:
    """(name, value) of one logical line, or None without a colon."""
    if text.startswith(b'"'):
        i, out = 1, bytearray()
        while i < len(text):
            c = text[i : i + 1]
            if c == b"\\" and i + 1 < len(text):
                out += text[i + 1 : i + 2]
                i += 2
                continue
            if c == b'"':
                break
            out += c
            i += 1
        else:
            return None
        rest = text[i + 1 :].lstrip(_WS)
        if not rest.startswith(b":"):
            return None
        return bytes(out), rest[1:].strip(_WS)
    name, sep, value = text.partition(b":")
    if not sep:
        return None
    return name.strip(_WS), value.strip(_WS)


def parse_aliases(
    data: bytes, fold: bool = True
) -> tuple[list[tuple[bytes, bytes]], list[tuple[int, str]]]:
    """Parse an aliases(5) source: ([(name, value)], [(line, warning)])."""
    pairs: list[tuple[bytes, bytes]] = []
    warnings: list[tuple[int, str]] = []
    logical: list[tuple[int, bytes]] = []
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        body = raw.lstrip(_WS)
        if not body or body.startswith(b"#"):
            continue
        if len(body) != len(raw) and logical:
            start, text = logical[-1]
            logical[-1] = (start, text + b" " + body.rstrip(_WS))
            continue
        if len(body) != len(raw):
            warnings.append((lineno, "unexpected continuation line; ignored"))
            continue
        logical.append((lineno, raw.rstrip(_WS)))
    for lineno, text in logical:
        split = _split_name(text)
        if split is None or not split[0]:
            warnings.append((lineno, "need name:value pair"))
            continue
        name, value = split
        if not value:
            warnings.append((lineno, f'no value for alias "{name.decode("utf-8", "replace")}"'))
            continue
        pairs.append((name.lower() if fold else name, value))
    return pairs, warnings


def split_alias_value(value: str) -> list[str]:
    """The destinations of an alias value or .forward line, in order."""
    items: list[str] = []
    cur: list[str] = []
    quoted = False
    i = 0
    while i < len(value):
        c = value[i]
        if quoted and c == "\\" and i + 1 < len(value):
            cur.append(c + value[i + 1])
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == "," and not quoted:
            items.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    items.append("".join(cur))
    out = []
    for item in items:
        item = item.strip()
        if len(item) >= 2 and item[0] == '"' and item[-1] == '"':
            inner = item[1:-1]
            text, j = [], 0
            while j < len(inner):
                if inner[j] == "\\" and j + 1 < len(inner):
                    text.append(inner[j + 1])
                    j += 2
                    continue
                text.append(inner[j])
                j += 1
            item = "".join(text)
        if item:
            out.append(item)
    return out


def build_alias_lmdb(
    source: str,
    *,
    fold: bool = True,
    duplicates: str = "warn",
    warn=None,
    nul: bool = True,
    map_size: int = 0,
    mode: int | None = None,
) -> int:
    """Build SOURCE.lmdb from the aliases(5) file SOURCE (atomically); return entries.

    Warnings ("SOURCE, line N: ...") go to warn; MapError when the
    source cannot be read or the table cannot be written.
    """
    from mta.maps.dict_lmdb import LMDB_DEFAULT_MAP_SIZE, LMDB_SUFFIX, build_lmdb
    from mta.maps.text import read_source

    pairs, warnings = parse_aliases(read_source(source), fold)
    if warn is not None:
        for line, msg in warnings:
            warn(f"{source}, line {line}: {msg}")
    return build_lmdb(
        source + LMDB_SUFFIX,
        pairs,
        spec=f"lmdb:{source}",
        duplicates=duplicates,
        warn=warn,
        map_size=map_size or LMDB_DEFAULT_MAP_SIZE,
        nul=nul,
        mode=mode,
    )
