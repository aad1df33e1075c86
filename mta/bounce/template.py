"""bounce.template - the texts of delivery status notices (bounce_template_file)

SYNOPSIS
    from mta.bounce.template import load_templates, BounceTemplate
    templates = load_templates("/etc/mta/bounce.cf")     # TemplateError: FILE, line N: ...
    t = templates.get("failure_template")
    t.subject, t.postmaster_subject, t.sender, t.charset, t.text(cfg)

DESCRIPTION
    A template file has the layout Postfix's bounce(5) describes:
    outside a template, empty lines, blank lines and lines starting
    with "#" are ignored; a template starts with
    "failure_template = <<EOF" (or delay_template, success_template,
    verify_template; any word may stand for EOF) and ends with a line
    holding that word alone. Inside, optional headers come first, one
    line each, names in any case: Charset:, From:, Subject: and
    Postmaster-Subject:; then an empty line and the message text.

    text(cfg) expands $name and ${name} in the message text from the
    configuration; "$$" is one "$". delay_warning_time_SUFFIX and
    maximal_queue_lifetime_SUFFIX give those times as a whole number
    of SUFFIX (seconds, minutes, hours, days or weeks). The names are
    checked when the file is read, so a misspelt one is a load error,
    not a broken notice later. Headers are taken literally.

    Non-ASCII text needs a Charset: other than us-ascii, as in Postfix.

SECURITY
    The file belongs to the administrator; it is read by the process
    that sends notices (qmgr), and errors name the file and the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TEMPLATE_NAMES = ("failure_template", "delay_template", "success_template", "verify_template")
HEADERS = {"charset": "charset", "from": "sender", "subject": "subject"}
HEADERS["postmaster-subject"] = "postmaster_subject"
TIME_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}
TIME_PARAMS = ("delay_warning_time", "maximal_queue_lifetime")

_START = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=\s*<<\s*(\S+)\s*$")
_DOLLAR = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+)|(\$))")


class TemplateError(ValueError):
    """A template file that cannot be used; str is "FILE, line N: why"."""


@dataclass
class BounceTemplate:
    name: str
    charset: str = "us-ascii"
    sender: str = ""
    subject: str = ""
    postmaster_subject: str = ""
    body: str = ""

    def text(self, cfg) -> str:
        """The message text with its $names expanded."""

        def one(m: re.Match) -> str:
            if m.group(3):
                return "$"
            return _value(cfg, m.group(1) or m.group(2))

        return _DOLLAR.sub(one, self.body)


def _value(cfg, name: str) -> str:
    for param in TIME_PARAMS:
        if name.startswith(param + "_") and name[len(param) + 1 :] in TIME_UNITS:
            seconds = cfg.get_time(param)
            return str(int(seconds // TIME_UNITS[name[len(param) + 1 :]]))
    return str(cfg.get(name))


def _check_names(cfg, body: str, where: str) -> None:
    for m in _DOLLAR.finditer(body):
        name = m.group(1) or m.group(2)
        if name is None:
            continue
        base = next((p for p in TIME_PARAMS if name.startswith(p + "_")), name)
        unit = name[len(base) + 1 :]
        if (base != name and unit not in TIME_UNITS) or (
            cfg.param(base) is None and not cfg.is_set(base)
        ):
            raise TemplateError(f"{where}: unknown parameter ${name}")


def load_templates(path: str, cfg=None) -> dict[str, BounceTemplate]:
    """Read the template file; with cfg, check that every $name expands."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise TemplateError(f"{path}: not UTF-8 text") from None
    templates: dict[str, BounceTemplate] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _START.match(line)
        if not m:
            raise TemplateError(f'{path}, line {i}: expected "NAME = <<EOF"')
        name, end = m.group(1), m.group(2)
        if name not in TEMPLATE_NAMES:
            raise TemplateError(f"{path}, line {i}: unknown template {name}")
        start = i
        block: list[str] = []
        while i < len(lines) and lines[i] != end:
            block.append(lines[i])
            i += 1
        if i >= len(lines):
            raise TemplateError(f'{path}, line {start}: {name}: no closing "{end}" line')
        i += 1
        templates[name] = _parse_block(name, block, f"{path}, line {start + 1}")
        if cfg is not None:
            _check_names(cfg, templates[name].body, f"{path}, {name}")
    return templates


def _parse_block(name: str, block: list[str], where: str) -> BounceTemplate:
    t = BounceTemplate(name)
    k = 0
    if block and ":" not in block[0]:
        t.body = "\n".join(block)  # no headers at all: every line is text
        return _checked(t, where)
    while k < len(block) and block[k].strip():
        label, colon, value = block[k].partition(":")
        field = HEADERS.get(label.strip().lower())
        if not colon or field is None:
            raise TemplateError(f"{where}: {name}: unknown header line: {block[k]!r}")
        if not value.strip().isascii():
            raise TemplateError(f"{where}: {name}: header {label.strip()} is not ASCII")
        setattr(t, field, value.strip())
        k += 1
    t.body = "\n".join(block[k + 1 :] if k < len(block) else [])
    return _checked(t, where)


def _checked(t: BounceTemplate, where: str) -> BounceTemplate:
    if t.body and not t.body.isascii() and t.charset.lower() in ("us-ascii", "ascii"):
        raise TemplateError(f"{where}: {t.name}: non-ASCII text needs a Charset: header")
    return t
