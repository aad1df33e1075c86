"""log.maillog_events - delivery events read back out of maillog lines

SYNOPSIS
    from mta.log.maillog_events import events_from_lines
    for event in events_from_lines(open("/var/log/mail.log", errors="replace")):
        print(json.dumps(event))

DESCRIPTION
    "mta log --json" prints the event log (common/events.py); a site
    without one (event_log_file empty, or events from before it was set)
    gets the same objects derived from the maillog: every recipient
    status line ("QUEUEID: to=<...>, ..., dsn=..., status=WORD (reason)
    [class=...]") of mta or of Postfix becomes one event, with the
    sender and message id taken from the message's earlier "from=<...>"
    and "message-id=<...>" lines when the log still has them.

    Status words map to events: sent -> delivered, deferred, bounced,
    expired, suppressed; other words (deliverable, undeliverable of
    address probes) are skipped. The time is the line's syslog stamp,
    which has no year: the current year is assumed, or last year when
    that would put the line in the future; local time, written in UTC.
    The keys that only the event log knows (site, source, transport)
    are "" here, except site, which is the recipient's domain.

SECURITY
    Reads log lines, which were cleaned of control characters when they
    were written; text is parsed, never interpreted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator

from mta.common.events import rfc3339

WORDS = {
    "sent": "delivered",
    "deferred": "deferred",
    "bounced": "bounced",
    "expired": "expired",
    "suppressed": "suppressed",
}
_HEAD = re.compile(
    r"^(?P<stamp>\w{3} [ \d]\d \d\d:\d\d:\d\d) \S+ (?P<prog>[^\[:\s]+)(?:\[\d+\])?: "
    r"(?P<qid>[0-9A-Za-z]+): (?P<rest>.*)$"
)
_STATUS = re.compile(
    r"^to=<(?P<to>[^>]*)>, (?:orig_to=<(?P<orig>[^>]*)>, )?relay=(?P<relay>[^,]+), "
    r"(?:conn_use=[^,]+, )?delay=[^,]+, (?:delays=(?P<delays>[^,]+), )?"
    r"(?:dsn=(?P<dsn>[^,]+), )?status=(?P<word>\S+) \((?P<reason>.*)\)"
    r"(?: class=(?P<klass>[a-z_]+))?$"
)
_FROM = re.compile(r"^from=<(?P<sender>[^>]*)>")
_MSGID = re.compile(r"^message-id=(?P<mid>\S*)")
MEMORY = 100000  # queue ids whose sender and message id are remembered


def _when(stamp: str, now: float) -> float:
    year = time.localtime(now).tm_year
    for y in (year, year - 1):
        try:
            t = time.mktime(time.strptime(f"{y} {stamp}", "%Y %b %d %H:%M:%S"))
        except ValueError:
            return now
        if t <= now + 86400:
            return t
    return t


def _delays(text: str | None) -> list[float]:
    try:
        parts = [float(x) for x in (text or "").split("/")]
    except ValueError:
        return [0, 0, 0, 0]
    return parts if len(parts) == 4 else [0, 0, 0, 0]


def events_from_lines(lines: Iterable[str], now: float | None = None) -> Iterator[dict]:
    now = time.time() if now is None else now
    senders: dict[str, str] = {}
    ids: dict[str, str] = {}
    for line in lines:
        head = _HEAD.match(line.rstrip("\n"))
        if head is None:
            continue
        qid, rest = head["qid"], head["rest"]
        m = _STATUS.match(rest)
        if m is None:
            m2 = _FROM.match(rest)
            if m2 is not None:
                senders[qid] = m2["sender"]
            else:
                m2 = _MSGID.match(rest)
                if m2 is not None:
                    ids[qid] = m2["mid"]
            if len(senders) > MEMORY:
                senders.clear()
                ids.clear()
            continue
        event = WORDS.get(m["word"])
        if event is None:
            continue
        to = m["to"]
        yield {
            "event": event,
            "time": rfc3339(_when(head["stamp"], now)),
            "queue_id": qid,
            "message_id": ids.get(qid, ""),
            "sender": senders.get(qid, ""),
            "recipient": to,
            "orig_recipient": m["orig"] or "",
            "site": to.rpartition("@")[2].lower(),
            "source": "",
            "transport": "",
            "class": m["klass"] or "",
            "dsn": m["dsn"] or "",
            "reply": m["reason"],
            "relay": m["relay"],
            "delays": _delays(m["delays"]),
        }
