"""pipe.argv - the command attributes of a pipe service in master.cf, and macro expansion

SYNOPSIS
    from mta.pipe.argv import parse_pipe_args, expand_argv, PipeConfigError
    attrs = parse_pipe_args(["flags=FRq", "user=nobody", "argv=/usr/bin/script",
                             "-f", "${sender}", "${recipient}"])
    attrs.flags, attrs.user, attrs.group, attrs.size_limit, attrs.eol, attrs.argv
    argv = expand_argv(attrs.templates, values, per_rcpt_values)

DESCRIPTION
    A pipe service is configured by the words after the command in its
    master.cf line (pipe(8)): flags=FLAGS, user=USER[:GROUP], size=BYTES,
    eol=STRING (C escapes \\a \\b \\f \\n \\r \\t \\v \\ddd \\\\), directory=PATH,
    null_sender=TEXT, chroot=PATH (not supported: a configuration error)
    and, last, argv=COMMAND ARGS... . A word written as "{ a b }" in
    master.cf is one word with the braces and the space next to them
    removed. Flags are letters of "BDFORXhqu.>"; any other letter is an
    error.

    Each command argument is compiled once into a template: literal
    text and macros written $name, ${name} or $(name), with $$ for a
    dollar sign, and the conditional forms ${name?text} (text when the
    value is not empty) and ${name:text} (text when it is empty), whose
    text may hold macros again. A macro name that pipe does not know is
    an error at parse time, so a bad master.cf line is found before any
    command runs.

    An argument that uses a per-recipient macro (recipient,
    original_recipient, user, extension, mailbox, domain) becomes one
    argument per recipient of the request; any other argument stays
    one argument.

    The values given to expand_argv() are already folded and quoted
    by the caller (mta/pipe/__init__.py) as the h, q and u flags say;
    quote_local() and fold_address() are the helpers it uses.

SECURITY
    master.cf is trusted. Macro values come from the envelope and from
    SMTP clients (untrusted): each value becomes (part of) exactly one
    argument and is never seen by a shell.

SEE ALSO
    pipe(8) (COMMAND ATTRIBUTE SYNTAX), mta/pipe/command.py
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PIPE_FLAGS = "BDFORXhqu.>"  # the flags= letters pipe knows

RCPT_MACROS = frozenset(
    {"recipient", "original_recipient", "user", "extension", "mailbox", "domain"}
)  # one argument per recipient
MSG_MACROS = frozenset(
    {
        "sender",
        "nexthop",
        "queue_id",
        "size",
        "client_address",
        "client_hostname",
        "client_helo",
        "client_port",
        "client_protocol",
        "sasl_method",
        "sasl_sender",
        "sasl_username",
    }
)  # one value per message
KNOWN_MACROS = RCPT_MACROS | MSG_MACROS

_NAME = re.compile(r"[A-Za-z0-9_]+")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_OCTAL = re.compile(r"[0-7]{1,3}")


class PipeConfigError(ValueError):
    """A master.cf pipe attribute that cannot be used; the text names the problem."""


# A template is a tuple of parts: a str (literal) or a Macro.
@dataclass(frozen=True)
class Macro:
    name: str
    op: str = ""  # "", "?" (text when set) or ":" (text when empty)
    text: tuple = ()  # the conditional text, itself a template


@dataclass(frozen=True)
class ArgTemplate:
    parts: tuple
    per_rcpt: bool


@dataclass
class PipeAttrs:
    argv: list[str]
    templates: list[ArgTemplate]
    flags: str = ""
    user: str = ""
    group: str = ""
    size_limit: int = 0
    eol: bytes = b"\n"
    directory: str = ""
    null_sender: str = "MAILER-DAEMON"
    seen: set = field(default_factory=set)  # attribute names given


def unbrace(word: str) -> str:
    """ "{ a b }" -> "a b"; other words unchanged."""
    if len(word) >= 2 and word[0] == "{" and word[-1] == "}":
        return word[1:-1].strip()
    return word


def parse_eol(text: str) -> bytes:
    """The eol= value with its C escapes decoded."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 >= len(text):
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        m = _OCTAL.match(text, i + 1)
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt == "\\":
            out.append("\\")
            i += 2
        elif m:
            out.append(chr(int(m.group(), 8) & 0xFF))
            i = m.end()
        else:
            out.append(nxt)
            i += 2
    return "".join(out).encode("latin-1")


def _find_close(text: str, start: int, close: str) -> int:
    """Index of the bracket that closes the one before start, counting nesting."""
    opener = "{" if close == "}" else "("
    depth = 1
    for j in range(start, len(text)):
        if text[j] == opener:
            depth += 1
        elif text[j] == close:
            depth -= 1
            if depth == 0:
                return j
    raise PipeConfigError(f'missing "{close}" in "{text}"')


def compile_template(text: str) -> tuple:
    """Parse one argument into literal and macro parts; PipeConfigError on an unknown macro."""
    parts: list = []
    lit: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "$" or i + 1 >= len(text):
            lit.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            lit.append("$")
            i += 2
            continue
        if nxt in "{(":
            close = "}" if nxt == "{" else ")"
            end = _find_close(text, i + 2, close)
            inner = text[i + 2 : end]
            i = end + 1
            m = _NAME.match(inner)
            if not m:
                raise PipeConfigError(f'bad macro "${nxt}{inner}{close}"')
            name, rest = m.group(), inner[m.end() :]
            if rest and rest[0] in "?:":
                macro = Macro(name, rest[0], compile_template(rest[1:]))
            elif rest:
                raise PipeConfigError(f'bad macro "${nxt}{inner}{close}"')
            else:
                macro = Macro(name)
        else:
            m = _NAME.match(text, i + 1)
            if not m:
                lit.append(c)
                i += 1
                continue
            macro = Macro(m.group())
            i = m.end()
        if macro.name not in KNOWN_MACROS:
            raise PipeConfigError(f"unknown macro ${{{macro.name}}}")
        if lit:
            parts.append("".join(lit))
            lit = []
        parts.append(macro)
    if lit:
        parts.append("".join(lit))
    return tuple(parts)


def _uses_rcpt(parts: tuple) -> bool:
    for p in parts:
        if isinstance(p, Macro) and (p.name in RCPT_MACROS or _uses_rcpt(p.text)):
            return True
    return False


def render(parts: tuple, values: dict[str, str]) -> str:
    """One template with the values filled in."""
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
            continue
        value = values.get(p.name, "")
        if p.op == "?":
            out.append(render(p.text, values) if value else "")
        elif p.op == ":":
            out.append("" if value else render(p.text, values))
        else:
            out.append(value)
    return "".join(out)


def expand_argv(
    templates: list[ArgTemplate], values: dict[str, str], per_rcpt: list[dict[str, str]]
) -> list[str]:
    """The command's argument vector for one batch of recipients."""
    out: list[str] = []
    for t in templates:
        if t.per_rcpt:
            out.extend(render(t.parts, {**values, **rv}) for rv in per_rcpt)
        else:
            out.append(render(t.parts, values))
    return out


def parse_pipe_args(args: list[str]) -> PipeAttrs:
    """The command attributes of a master.cf pipe entry; PipeConfigError when bad."""
    words = [unbrace(w) for w in args]
    attrs = PipeAttrs(argv=[], templates=[])
    for i, word in enumerate(words):
        name, eq, value = word.partition("=")
        if not eq:
            raise PipeConfigError(f'bad command attribute "{word}" (expected name=value)')
        if name == "argv":
            argv = ([value] if value else []) + words[i + 1 :]
            if not argv or not argv[0]:
                raise PipeConfigError("argv= names no command")
            attrs.argv = argv
            attrs.templates = [
                ArgTemplate(parts, _uses_rcpt(parts)) for parts in map(compile_template, argv)
            ]
            attrs.seen.add(name)
            return attrs
        attrs.seen.add(name)
        if name == "flags":
            bad = sorted({c for c in value if c not in PIPE_FLAGS})
            if bad:
                raise PipeConfigError(f'unknown flag "{bad[0]}" in flags={value}')
            attrs.flags = value
        elif name == "user":
            user, _, group = value.partition(":")
            if not user:
                raise PipeConfigError("user= names no user")
            attrs.user, attrs.group = user, group
        elif name == "size":
            if not value.isdigit():
                raise PipeConfigError(f'bad size limit "{value}"')
            attrs.size_limit = int(value)
        elif name == "eol":
            attrs.eol = parse_eol(value)
        elif name == "directory":
            attrs.directory = value
        elif name == "null_sender":
            attrs.null_sender = value
        elif name == "chroot":
            raise PipeConfigError("chroot= is not supported")
        else:
            raise PipeConfigError(f'unknown command attribute "{name}"')
    raise PipeConfigError("missing argv= attribute")


# ---- the h, q and u flags


_ATOM_SPECIALS = set('()<>@,;:\\".[]')


def quote_local(local: str) -> str:
    """An address local part in quotes when it is not a dot-atom (8-bit transparent)."""
    if not local:
        return local
    needs = (
        local.startswith(".")
        or local.endswith(".")
        or ".." in local
        or any(c in _ATOM_SPECIALS and c != "." or ord(c) <= 32 or ord(c) == 127 for c in local)
    )
    if not needs:
        return local
    return '"' + "".join("\\" + c if c in '"\\' else c for c in local) + '"'


def fold_address(addr: str, flags: str, quote: bool = True) -> str:
    """A recipient address as the h (domain), u (local part) and q (quote) flags want it."""
    local, at, domain = addr.rpartition("@")
    if not at:
        local, domain = addr, ""
    if "u" in flags:
        local = local.lower()
    if "h" in flags:
        domain = domain.lower()
    if quote and "q" in flags:
        local = quote_local(local)
    return local + at + domain


def split_localpart(addr: str, delimiters: str) -> tuple[str, str, str, str]:
    """(mailbox, user, extension, domain) of an address; extension split at a delimiter."""
    local, at, domain = addr.rpartition("@")
    if not at:
        local, domain = addr, ""
    user, extension = local, ""
    if delimiters:
        cut = min((local.find(d) for d in delimiters if d in local), default=-1)
        if cut > 0:
            user, extension = local[:cut], local[cut + 1 :]
    return local, user, extension, domain
