"""common.events - one JSON object per delivery event, for scripts and webhooks

SYNOPSIS
    from mta.common.events import EventLog, status_event, report_event, EVENTS
    events = EventLog.from_config(cfg)          # None when event_log_file is empty
    events.write(status_event(st, msg, site="gmail.com", transport="smtp"))
    events.write(report_event("feedback", qid, bounce_address, "u@example.com", "complaint", ...))

DESCRIPTION
    With event_log_file set, qmgr (and the bounce address handler, for
    asynchronous bounces and feedback) append one line per recipient
    event to that file: a JSON object with at least these keys, in this
    order:

        event       delivered, deferred, bounced, expired, suppressed,
                    feedback
        time        when, RFC 3339 in UTC with milliseconds
        queue_id, message_id, sender, recipient, orig_recipient
        site        the destination as shaping sees it (for now the
                    recipient's domain)
        source      the source address the smtp client used ("" unknown)
        transport   the master.cf service that delivered it
        class       the bounce class (common/bounce_class; "" when delivered)
        dsn         the enhanced status code
        reply       the remote server's reply, or mta's reason
        relay       the next hop, as the maillog's relay=
        delays      [before qmgr, in qmgr, connection set-up, transmission]

    Values are strings, except delays (four numbers, seconds). One event
    is one line: JSON escapes every control character, so a reply
    cannot break a line. The same object is what a webhook sender will
    post; status_event() is its only constructor for delivery events,
    report_event() the one for what the bounce address handler
    (mta/bouncein) reads from asynchronous bounces and feedback reports.

    Lines are appended with O_APPEND in one write(2) each, so several
    processes can share the file. The file is opened again when it is
    replaced (log rotation), checked at most once a second. A file that
    cannot be opened or written is logged once per cause and otherwise
    ignored: events describe mail and never hold it up.

    read_events() is "mta log --json"'s reader of the file.

SECURITY
    Sender, recipient and reply are untrusted text; they are written
    as JSON strings only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

from mta import log
from mta.common.dsn import (
    ACTION_DELAYED,
    ACTION_FAILED,
    RecipientStatus,
)

EVENTS = ("delivered", "deferred", "bounced", "expired", "suppressed", "feedback")
KEYS = (
    "event",
    "time",
    "queue_id",
    "message_id",
    "sender",
    "recipient",
    "orig_recipient",
    "site",
    "source",
    "transport",
    "class",
    "dsn",
    "reply",
    "relay",
    "delays",
)
RECHECK = 1.0  # seconds between checks that the file was not rotated


def rfc3339(when: float) -> str:
    """2026-12-03T09:14:05.120Z"""
    ms = int(round((when - int(when)) * 1000))
    second = int(when)
    if ms == 1000:
        second, ms = second + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{ms:03d}Z"


def event_name(st: RecipientStatus) -> str:
    """The event of a recipient status."""
    if st.status_word in EVENTS:
        return st.status_word  # expired, suppressed
    if st.action == ACTION_FAILED:
        return "bounced"
    if st.action == ACTION_DELAYED:
        return "deferred"
    return "delivered"


def status_event(
    st: RecipientStatus,
    queue_id: str,
    sender: str,
    message_id: str = "",
    site: str = "",
    transport: str = "",
    when: float | None = None,
) -> dict:
    """The event object of one recipient's status."""
    return {
        "event": event_name(st),
        "time": rfc3339(time.time() if when is None else when),
        "queue_id": queue_id,
        "message_id": message_id,
        "sender": sender,
        "recipient": st.address,
        "orig_recipient": st.orig if st.orig and st.orig != st.address else "",
        "site": site,
        "source": st.source,
        "transport": transport,
        "class": st.klass,
        "dsn": st.dsn,
        "reply": st.diag_text or st.reason,
        "relay": st.relay or "none",
        "delays": [round(d, 3) for d in st.delays] if st.delays else [0, 0, 0, 0],
    }


def report_event(
    event: str,
    queue_id: str,
    sender: str,
    recipient: str,
    klass: str,
    dsn: str,
    reply: str,
    message_id: str = "",
    orig_recipient: str = "",
    relay: str = "none",
    transport: str = "",
    when: float | None = None,
) -> dict:
    """The event object of a report the bounce address handler read (a DSN or a complaint).

    queue_id is the report's own, message_id that of the reported
    message when the report carries it, sender the bounce address."""
    st = RecipientStatus(
        recipient, 0, ACTION_FAILED, dsn, reply, relay or "none", orig=orig_recipient, klass=klass
    )
    out = status_event(
        st, queue_id, sender, message_id, recipient.rpartition("@")[2].lower(), transport, when
    )
    out["event"] = event
    return out


class EventLog:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None
        self.identity: tuple[int, int] | None = None
        self.checked = 0.0
        self.complained: set[str] = set()

    @classmethod
    def from_config(cls, cfg) -> EventLog | None:
        path = cfg.get("event_log_file").strip()
        return cls(path) if path else None

    def _complain(self, what: str, exc: OSError) -> None:
        text = f"event log {self.path}: {what}: {exc.strerror or exc}"
        if text not in self.complained:
            self.complained.add(text)
            log.warning("%s", text)

    def _ensure_open(self) -> bool:
        now = time.monotonic()
        if self.fd is not None and now - self.checked < RECHECK:
            return True
        self.checked = now
        if self.fd is not None:
            try:
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) == self.identity:
                    return True
            except OSError:
                pass
            os.close(self.fd)  # rotated or removed: write to the new file
            self.fd = None
        try:
            self.fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
            )
            st = os.fstat(self.fd)
            self.identity = (st.st_dev, st.st_ino)
        except OSError as exc:
            self._complain("cannot open", exc)
            self.fd = None
            return False
        return True

    def write(self, event: dict) -> None:
        self.write_many([event])

    def write_many(self, events: list[dict]) -> None:
        """Append events, one line each, in one write(2)."""
        if not events or not self._ensure_open():
            return
        data = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
        try:
            os.write(self.fd, data.encode("utf-8", "surrogateescape"))
        except OSError as exc:
            self._complain("cannot write", exc)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def read_events(path: str) -> Iterator[dict]:
    """The events of a file, skipping lines that are not JSON objects."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event
