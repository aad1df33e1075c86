"""smtpd.footer - smtpd_reject_footer: text appended to every 4xx and 5xx reply

SYNOPSIS
    from mta.smtpd.footer import ReplyFooter
    footer = ReplyFooter(cfg)                       # None-like when nothing is configured
    text = footer.apply("550 5.1.1 <u@x>: ...", attrs)   # attrs: name -> value

DESCRIPTION
    A reply that starts with 4 or 5 gets the template found for it in
    smtpd_reject_footer_maps (searched with the whole reply text) or,
    when none is found, smtpd_reject_footer. The template is the raw
    parameter value: no $name expansion from main.cf happens. In it:

        \\n       starts a new reply line, which repeats the reply code
                 and the enhanced status code of the reply
        \\c       at the very start: the text goes on the reply's last
                 line instead of a line of its own
        $name, ${name}, $(name)
                 an attribute of the session: client_address,
                 client_port, client_name, reverse_client_name, client
                 (name[address]), helo_name, localtime (Mmm dd hh:mm:ss),
                 server_name (myhostname); an unknown name gives ""
        ${name?text}, ${name:text}
                 text when the attribute is (is not) empty
        $$       a dollar sign

    Characters of an attribute value that are not in
    smtpd_expansion_filter become "_". Every line but the last of the
    result has "-" after its code. The result has "\\r\\n" between lines
    and none at the end. A template with an unbalanced brace or
    parenthesis is logged once and the reply goes out without a footer,
    as does a reply that is not "NNN text".

SECURITY
    Attribute values come from the client (its HELO name) or DNS; the
    filter keeps them to printable text, so a footer cannot smuggle
    line breaks or control bytes into a reply.

SEE ALSO
    postconf(5) smtpd_reject_footer, smtpd_reject_footer_maps,
    smtpd_expansion_filter
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

from mta import log
from mta.maps import MapError, MapRetry, Maps

_DSN_RE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?= |$)")
_NAME_RE = re.compile(r"[A-Za-z0-9_]+")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


class FooterError(ValueError):
    """A template that cannot be expanded."""


def unescape(text: str) -> str:
    """C-style escapes (\\t, \\40 octal, \\\\) as in smtpd_expansion_filter."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 == len(text):
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        octal = re.match(r"[0-7]{1,3}", text[i + 1 :])
        if octal:
            out.append(chr(int(octal.group(), 8)))
            i += 1 + len(octal.group())
            continue
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


def _closing(template: str, start: int, open_c: str, close_c: str) -> int:
    """Index of the bracket that closes the one at start; FooterError when none."""
    depth = 0
    for i in range(start, len(template)):
        if template[i] == open_c:
            depth += 1
        elif template[i] == close_c:
            depth -= 1
            if depth == 0:
                return i
    raise FooterError(f"unbalanced {open_c} in {template[start - 1 :]!r}")


def expand_macros(template: str, attrs: Mapping[str, str], allowed: frozenset[str]) -> str:
    """Expand the $name forms of template (see DESCRIPTION); FooterError when malformed."""
    out = []
    i = 0
    while True:
        j = template.find("$", i)
        if j < 0:
            out.append(template[i:])
            return "".join(out)
        out.append(template[i:j])
        nxt = template[j + 1 : j + 2]
        if nxt == "$":
            out.append("$")
            i = j + 2
            continue
        if nxt in ("{", "("):
            end = _closing(template, j + 1, nxt, "}" if nxt == "{" else ")")
            body, i = template[j + 2 : end], end + 1
        else:
            m = _NAME_RE.match(template, j + 1)
            if m is None:
                raise FooterError(f"bad $ form in {template[j:]!r}")
            body, i = m.group(), m.end()
        name, op, alt = body, "", ""
        cut = min((body.find(c) for c in "?:" if c in body), default=-1)
        if cut >= 0:
            name, op, alt = body[:cut], body[cut], body[cut + 1 :]
        if not _NAME_RE.fullmatch(name):
            raise FooterError(f"bad attribute name {name!r}")
        value = attrs.get(name, "")
        if op == "?":
            out.append(expand_macros(alt, attrs, allowed) if value else "")
        elif op == ":":
            out.append("" if value else expand_macros(alt, attrs, allowed))
        else:
            out.append("".join(c if c in allowed else "_" for c in value))


class ReplyFooter:
    """smtpd_reject_footer and smtpd_reject_footer_maps of one smtpd."""

    def __init__(self, cfg) -> None:
        self.template = cfg.raw("smtpd_reject_footer") or ""
        self.maps = Maps(cfg.get_list("smtpd_reject_footer_maps"), cfg)
        self.allowed = frozenset(unescape(cfg.raw("smtpd_expansion_filter") or ""))
        self.hostname = cfg.get("myhostname")
        self.warned: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.template or self.maps)

    def template_for(self, reply: str) -> str:
        if self.maps:
            try:
                found = self.maps.lookup(reply)
            except (MapError, MapRetry) as exc:
                log.warning("smtpd_reject_footer_maps: lookup of reply failed: %s", exc)
                found = None
            if found:
                return found
        return self.template

    def apply(self, reply: str, attrs: Mapping[str, str]) -> str:
        """reply with its footer; reply unchanged when it is no 4xx/5xx or has none."""
        if reply[:1] not in ("4", "5"):
            return reply
        template = self.template_for(reply)
        if not template:
            return reply
        lines = reply.split("\r\n")
        last = lines[-1]
        if not (len(last) >= 3 and last[:3].isdigit() and last[3:4] in ("", " ", "-")):
            return reply
        code = last[:3]
        dsn_match = _DSN_RE.match(last, 4)
        dsn = dsn_match.group() + " " if dsn_match else ""
        values = dict(attrs)
        values.setdefault("server_name", self.hostname)
        values.setdefault("localtime", time.strftime("%b %e %H:%M:%S"))
        pieces = template.split("\\n")
        same_line = pieces[0].startswith("\\c")
        if same_line:
            pieces[0] = pieces[0][2:]
        try:
            pieces = [expand_macros(p, values, self.allowed) for p in pieces]
        except FooterError as exc:
            if template not in self.warned:
                self.warned.add(template)
                log.warning("smtpd_reject_footer: %s: no footer added", exc)
            return reply
        if same_line:
            lines[-1] += pieces.pop(0)
        lines += [f"{code} {dsn}{piece}" for piece in pieces]
        last = len(lines) - 1
        return "\r\n".join(
            line[:3] + ("-" if i < last else " ") + line[4:] if len(line) > 3 else line
            for i, line in enumerate(lines)
        )
