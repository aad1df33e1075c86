"""cleanup.checks - header_checks and body_checks: look up a line, parse the action

SYNOPSIS
    from mta.cleanup.checks import ContentChecks, parse_action
    checks = ContentChecks(cfg)                    # header, mime, nested, body tables
    act = checks.header(b"Subject: buy now", "header_checks")
    act.verb, act.text                             # ("REJECT", "5.7.1 no thanks")
    parse_action("prepend X-Seen: yes")            # Action("PREPEND", "X-Seen: yes")

DESCRIPTION
    header_checks, mime_header_checks, nested_header_checks and
    body_checks are tables (regexp or pcre, usually) searched with one
    logical header, unfolded ("Name: value"), or one body line. The
    answer is an action, case-insensitive, with its text:

        REJECT [text]     reject the message; text gets "5.7.1 " in
                          front unless it starts with an enhanced code
        DISCARD [text]    accept and throw away
        HOLD [text]       queue into hold/
        REDIRECT addr     deliver to addr instead of the recipients
        FILTER tr:dest    send through a content filter after queueing
        WARN|INFO [text]  log and go on
        IGNORE            drop the line; STRIP [text] drops and logs
        PREPEND text      add a line before this one
        REPLACE text      use text instead of the line
        BCC addr          add a recipient (NOTIFY=NEVER)
        PASS [text]       stop inspecting this message
        OK, DUNNO         nothing

    An unknown action is logged as a warning and otherwise ignored, as
    Postfix does; so is an empty line (never looked up). Lines are
    decoded as UTF-8 with surrogate escapes, so 8-bit text reaches the
    patterns without loss.

SECURITY
    Lines are untrusted message content, matched only by the
    administrator's patterns.

SEE ALSO
    header_checks(5), body_checks(5)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mta import log
from mta.maps import Maps

CHECK_TABLES = ("header_checks", "mime_header_checks", "nested_header_checks", "body_checks")
ACTIONS = frozenset(
    {
        "REJECT",
        "DISCARD",
        "HOLD",
        "REDIRECT",
        "FILTER",
        "WARN",
        "INFO",
        "IGNORE",
        "STRIP",
        "PREPEND",
        "REPLACE",
        "BCC",
        "PASS",
        "OK",
        "DUNNO",
    }
)
DEFAULT_REJECT = "5.7.1 message content rejected"  # REJECT without text
_CODE_RE = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}(\s|$)")
_SMTP_CODE_RE = re.compile(r"^[45]\d\d[\s-]")


@dataclass(frozen=True)
class Action:
    verb: str  # upper case; "" for no action
    text: str = ""


NO_ACTION = Action("")


def reject_text(text: str) -> str:
    """The reply text of REJECT text: an enhanced status code in front."""
    text = text.strip()
    if not text:
        return DEFAULT_REJECT
    if _SMTP_CODE_RE.match(text):
        text = text[4:].lstrip()
    if _CODE_RE.match(text):
        return text
    return "5.7.1 " + text


def parse_action(value: str, table: str = "") -> Action:
    """Split a table answer into (VERB, text); unknown verbs give NO_ACTION."""
    word, _, text = value.strip().partition(" ")
    if not word:
        word, _, text = value.strip().partition("\t")
    verb = word.upper()
    if verb not in ACTIONS:
        log.warning("unknown command in %s map: %s", table or "content check", word)
        return NO_ACTION
    return Action(verb, text.strip())


class ContentChecks:
    """The four content check tables of one configuration."""

    def __init__(self, cfg) -> None:
        self.tables: dict[str, Maps] = {name: Maps.from_param(cfg, name) for name in CHECK_TABLES}
        self.body_limit = cfg.get_size("body_checks_size_limit")

    def disable(self) -> None:
        """receive_override_options no_header_body_checks: no table is consulted."""
        self.tables = dict.fromkeys(self.tables)

    def has(self, table: str) -> bool:
        return bool(self.tables[table])

    def lookup(self, table: str, line: bytes) -> Action:
        """The action for line in table (MapRetry passes to the caller)."""
        maps = self.tables[table]
        if not maps or not line:
            return NO_ACTION
        value = maps.lookup(line.decode("utf-8", "surrogateescape"))
        if value is None:
            return NO_ACTION
        return parse_action(value, table)
