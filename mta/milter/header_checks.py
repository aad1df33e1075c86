"""milter.header_checks - milter_header_checks: the headers milters add, looked up

SYNOPSIS
    from mta.milter.header_checks import MilterHeaderChecks
    check = MilterHeaderChecks(maps, queue_id, "from host[addr]; from=<s> to=<r> proto=ESMTP")
    msg.apply(edits, leadspc, check)        # check(name, value) -> (name, value) or None
    check.decision, check.hold              # a REJECT/DISCARD found, a HOLD reason

DESCRIPTION
    Each header a milter adds, inserts or changes is looked up
    unfolded ("Name: value") as header_checks would be. REJECT [text]
    refuses the message (550 and the text, 5.7.1 unless it has its own
    code), DISCARD throws it away, HOLD puts it in hold/, IGNORE drops
    the header, STRIP drops and logs it, REPLACE text puts text in its
    place, WARN and INFO only log. Other actions are logged as not
    supported here and ignored. A table that fails keeps the header.
    Log lines follow cleanup's: "QUEUEID: reject: header NAME: VALUE
    from host[addr]; from=<s> to=<r> proto=P helo=<h>: text".

SECURITY
    Header text comes from milters (and through them from the
    message); it is matched only by the administrator's patterns.
"""

from __future__ import annotations

from mta import log
from mta.cleanup.checks import parse_action, reject_text
from mta.maps import MapError, MapRetry
from mta.milter.chain import ACTION_DISCARD, ACTION_REJECT, Decision

_QUIET = frozenset({"", "OK", "DUNNO", "IGNORE"})


class MilterHeaderChecks:
    """See the module docstring."""

    def __init__(self, maps, queue_id: str, where: str) -> None:
        self.maps = maps
        self.queue_id = queue_id
        self.where = where
        self.decision: Decision | None = None
        self.hold: str | None = None

    def __call__(self, name: bytes, value: bytes):
        if not self.maps:
            return name, value
        line = name + b":" + value.replace(b"\r\n", b"")
        try:
            found = self.maps.lookup(line.decode("utf-8", "surrogateescape"))
        except (MapRetry, MapError) as exc:
            log.warning("%s: milter_header_checks lookup: %s", self.queue_id, exc)
            return name, value
        if found is None:
            return name, value
        act = parse_action(found, "milter_header_checks")
        verb, text = act.verb, act.text
        if verb not in _QUIET:
            shown = line[:200].decode("utf-8", "replace")
            tail = f": {text}" if text else ""
            log.info("%s: %s: header %s %s%s", self.queue_id, verb.lower(), shown, self.where, tail)
        if verb == "REJECT" and self.decision is None:
            self.decision = Decision(ACTION_REJECT, "550 " + reject_text(text))
        elif verb == "DISCARD" and self.decision is None:
            self.decision = Decision(ACTION_DISCARD)
        elif verb == "HOLD":
            self.hold = self.hold or text or "milter_header_checks"
        elif verb in ("IGNORE", "STRIP"):
            return None
        elif verb == "REPLACE" and ":" in text:
            new_name, _, new_value = text.partition(":")
            return new_name.strip().encode(), new_value.encode()
        elif verb not in ("WARN", "INFO", "OK", "DUNNO", ""):
            log.warning("milter_header_checks: %s is not supported here; ignored", verb)
        return name, value
