"""common.forbidden_commands - command lines that are not SMTP: web proxies, headers

SYNOPSIS
    from mta.common.forbidden_commands import ForbiddenCommands, is_non_smtp
    forbidden = ForbiddenCommands(cfg.get_list("smtpd_forbidden_commands"), cfg,
                                  "smtpd_forbidden_commands")
    is_non_smtp(b"GET / HTTP/1.0", forbidden)     # True
    is_non_smtp(b"Subject: hi", forbidden)        # True: a header, not a command

DESCRIPTION
    smtpd_forbidden_commands and postscreen_forbidden_commands list
    command words (case does not matter) and lookup tables (regexp:,
    pcre: ...) whose patterns are matched against the first word of a
    line, as Postfix's default "CONNECT GET POST regexp:{{/^[^A-Z]/
    Bogus}}". A line also counts as non-SMTP when it has the form of a
    message header ("Name:" with optional space before the colon): a
    client that sends its message without the SMTP dialogue. A table
    that cannot be opened or looked up is logged with the parameter's
    name and counts as no match.

SECURITY
    Sees untrusted client input; only the first word goes to a table.
"""

from __future__ import annotations

import re

from mta import log
from mta.maps import MapError, MapRetry, open_map

HEADER_LABEL = re.compile(rb"^[!-9;-~]+[ \t]*:")  # "Subject:" "From :"


class ForbiddenCommands:
    """The words and pattern tables of a *_forbidden_commands parameter."""

    def __init__(self, items: list[str], cfg=None, param: str = "postscreen_forbidden_commands"):
        self.param = param
        self.words: set[str] = set()
        self.tables = []
        for item in items:
            if ":" in item:
                try:
                    self.tables.append(open_map(item, cfg))
                except MapError as exc:
                    log.warning("%s: %s", param, exc)
            else:
                self.words.add(item.upper())

    def match(self, line: bytes) -> bool:
        verb = line.split(b" ", 1)[0].decode("utf-8", "replace")
        if verb.upper() in self.words:
            return True
        for table in self.tables:
            try:
                if verb and table.lookup(verb) is not None:
                    return True
            except (MapError, MapRetry) as exc:
                log.warning("%s: %s", self.param, exc)
        return False


def is_non_smtp(line: bytes, forbidden: ForbiddenCommands) -> bool:
    """A forbidden command word, or a line that looks like a message header."""
    return forbidden.match(line) or bool(HEADER_LABEL.match(line))
