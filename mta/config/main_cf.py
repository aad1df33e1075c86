"""config.main_cf - read and edit main.cf in Postfix syntax

SYNOPSIS
    from mta.config.main_cf import read_main_cf, edit_main_cf
    entries = read_main_cf("/etc/mta/main.cf")      # {name: Entry}
    edit_main_cf(path, assign={"relayhost": "[mx]:25"}, remove=["x"])

DESCRIPTION
    A logical line starts in column one with "name = value"; a physical
    line that starts with whitespace continues it; blank lines and lines
    whose first non-blank character is "#" are ignored, also in the middle
    of a continued value. A later setting of the same name wins.

    Editing works on physical lines so comments, order and untouched
    settings survive byte for byte; the new file is written beside the old
    one, fsynced and renamed over it, so a reader sees one or the other.

SECURITY
    Reads files the administrator wrote; never expands or executes values.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from mta.config.errors import ConfigError

# "-" as in a master.cf service name: policyd-spf_time_limit (SMTPD_POLICY_README)
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*\Z")


@dataclass(frozen=True)
class Entry:
    """One parameter setting as written, with where it was written."""

    name: str
    value: str
    path: str
    line: int  # 1-based line of the first physical line
    last_line: int  # 1-based line of the last physical line


def _logical_lines(lines: list[str], path: str):
    """Yield (first_line, last_line, text) for each logical line."""
    cur: list[str] = []
    first = last = 0
    for num, raw in enumerate(lines, 1):
        text = raw.rstrip("\r\n")
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if text[0] in " \t":
            if not cur:
                raise ConfigError(
                    "continuation line without a preceding parameter", path=path, line=num
                )
            cur.append(stripped)
            last = num
            continue
        if cur:
            yield first, last, " ".join(cur)
        cur, first, last = [text.rstrip()], num, num
    if cur:
        yield first, last, " ".join(cur)


def parse_setting(text: str, path: str, line: int) -> tuple[str, str]:
    """Split "name = value" into (name, value); raise ConfigError otherwise."""
    name, eq, value = text.partition("=")
    name = name.strip()
    if not eq:
        raise ConfigError(f'missing "=" after parameter name "{name}"', path=path, line=line)
    if not NAME_RE.match(name):
        raise ConfigError(f'bad parameter name "{name}"', path=path, line=line)
    return name, value.strip()


def parse_main_cf(text: str, path: str = "main.cf") -> dict[str, Entry]:
    """Parse main.cf text into {name: Entry}; later settings win."""
    entries: dict[str, Entry] = {}
    for first, last, logical in _logical_lines(text.splitlines(True), path):
        name, value = parse_setting(logical, path, first)
        entries[name] = Entry(name, value, path, first, last)
    return entries


def read_main_cf(path: str) -> dict[str, Entry]:
    """Read main.cf at path; a missing file is an empty configuration."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=path) from exc
    return parse_main_cf(text, path)


def _spans(lines: list[str], path: str) -> dict[str, list[tuple[int, int]]]:
    """Map each name to the 0-based [first, last] physical spans that set it."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for first, last, logical in _logical_lines(lines, path):
        name, _ = parse_setting(logical, path, first)
        spans.setdefault(name, []).append((first - 1, last - 1))
    return spans


def edit_lines(
    lines: list[str],
    path: str,
    assign: dict[str, str] | None = None,
    remove: list[str] | tuple[str, ...] = (),
    comment: list[str] | tuple[str, ...] = (),
) -> list[str]:
    """Return lines with settings replaced, appended, removed or commented out.

    A replaced setting keeps the position of its last occurrence; earlier
    duplicates are dropped, as they had no effect anyway.
    """
    assign = dict(assign or {})
    spans = _spans(lines, path)

    def setting_lines(name: str) -> list[int]:
        # Comments and blank lines inside a continued value stay as they are.
        return [
            i
            for first, last in spans.get(name, [])
            for i in range(first, last + 1)
            if lines[i].strip() and not lines[i].lstrip().startswith("#")
        ]

    drop: set[int] = set()
    replace: dict[int, str] = {}
    prefix: set[int] = set()
    for name, value in assign.items():
        drop.update(setting_lines(name))
        if name in spans:
            replace[spans[name][-1][0]] = f"{name} = {value}\n"
    for name in remove:
        drop.update(setting_lines(name))
    for name in comment:
        prefix.update(setting_lines(name))
    out: list[str] = []
    for i, line in enumerate(lines):
        if i in replace:
            out.append(replace[i])
        elif i in drop:
            continue
        elif i in prefix:
            out.append("#" + line)
        else:
            out.append(line)
    if out and not out[-1].endswith("\n"):
        out[-1] += "\n"
    for name, value in assign.items():
        if name not in spans:
            out.append(f"{name} = {value}\n")
    return out


def write_atomically(path: str, data: str, mode: int = 0o644) -> None:
    """Write data to path through a fsynced temporary file and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def edit_main_cf(
    path: str,
    assign: dict[str, str] | None = None,
    remove: list[str] | tuple[str, ...] = (),
    comment: list[str] | tuple[str, ...] = (),
) -> None:
    """Apply edit_lines to the file at path, atomically."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.readlines()
    except FileNotFoundError:
        lines = []
    write_atomically(path, "".join(edit_lines(lines, path, assign, remove, comment)))
