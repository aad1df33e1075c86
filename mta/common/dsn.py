"""common.dsn - delivery status of one recipient, and its log line

SYNOPSIS
    from mta.common.dsn import RecipientStatus, status_line, dsn_from_reply
    st = RecipientStatus(address="u@example.com", offset=812, action="delivered",
                         dsn="2.0.0", reason="250 2.0.0 Ok", relay="mx.example[10.0.0.1]:25")
    log.info("%s", status_line(queue_id, st, delays))
    dsn_from_reply(550, "5.1.1 no such user")     # "5.1.1"

DESCRIPTION
    A delivery agent ends each recipient with one RecipientStatus. Its
    action is one of RFC 3464's words as Postfix uses them: delivered,
    relayed (handed to a next hop that does not do DSN), expanded
    (aliased or forwarded), delayed (a temporary failure: the recipient
    stays in the queue), failed (a permanent failure: it bounces).

    When the reason quotes a remote server, diag_type is "smtp",
    diag_text the server's reply as it came, and remote_mta the name
    of that server: the notice's Diagnostic-Code: and Remote-MTA:
    fields (RFC 3464 2.3.5, 2.3.6). The reason stays the sentence
    people read ("host mx[192.0.2.1] said: ...").

    status_line() writes the Postfix maillog form of a result:
    "QUEUEID: to=<a>, orig_to=<b>, relay=R, delay=D, delays=a/b/c/d,
    dsn=X.Y.Z, status=sent (reason)", and for a failure or delay its
    bounce class after the reason: "status=bounced (reason)
    class=invalid_mailbox". The four delays are: before the queue
    manager took the message, inside the queue manager, setting up the
    connection, and transmitting.

    SYS_EXITS maps a command's <sysexits.h> exit status to a code;
    leading_failure_dsn() finds a 4.x.y or 5.x.y code at the start of a
    command's output, which then wins over the exit status.

    dsn_from_reply() takes an enhanced status code from the front of a
    server's reply text, or makes one up from the reply code's class
    (2.0.0, 4.0.0, 5.0.0) when the server gave none or one of another
    class.

SECURITY
    Reason texts come from remote servers and commands: log lines have
    their control characters replaced by the logger, and status logs
    fold them to one line (mta/bounce/logfile.py).

STANDARDS
    RFC 3463 (enhanced status codes), RFC 3464 (action values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mta.queue.rec_type import DSN_NOTIFY_SUCCESS

ACTION_DELIVERED = "delivered"  # final delivery or handed on with DSN
ACTION_RELAYED = "relayed"  # handed to a next hop that does not speak DSN
ACTION_EXPANDED = "expanded"  # aliased or forwarded to other addresses
ACTION_DELAYED = "delayed"  # temporary failure: stays queued
ACTION_FAILED = "failed"  # permanent failure: bounced
ACTIONS = frozenset(
    {ACTION_DELIVERED, ACTION_RELAYED, ACTION_EXPANDED, ACTION_DELAYED, ACTION_FAILED}
)
DONE_ACTIONS = frozenset({ACTION_DELIVERED, ACTION_RELAYED, ACTION_EXPANDED, ACTION_FAILED})

# maillog status words, per action
STATUS_WORDS = {
    ACTION_DELIVERED: "sent",
    ACTION_RELAYED: "sent",
    ACTION_EXPANDED: "sent",
    ACTION_DELAYED: "deferred",
    ACTION_FAILED: "bounced",
}

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass
class RecipientStatus:
    """What happened to one recipient in one delivery attempt."""

    address: str
    offset: int  # the recipient's record in the queue file
    action: str  # one of ACTIONS
    dsn: str  # enhanced status code, "5.1.1"
    reason: str  # the server's reply or our own text
    relay: str = "none"  # "host[addr]:port", "local", "none" ...
    orig: str = ""  # the address as first received
    dsn_orcpt: str = ""
    notify: int = 0
    status_word: str = ""  # overrides the maillog word ("expired" ...)
    dsn_passed: bool = False  # the next hop took the DSN request: it notifies, not us
    diag_type: str = ""  # "smtp" when diag_text is a remote server's reply (RFC 3464 2.3.6)
    diag_text: str = ""  # that reply, "550 5.1.1 <u@example.com>: no such user"
    remote_mta: str = ""  # the host name of the server that gave it (Remote-MTA:)
    klass: str = ""  # bounce class of a failure or delay (common/bounce_class)
    source: str = ""  # the source address the smtp client used
    delays: tuple[float, ...] = ()  # before qmgr, in qmgr, connection, transmission

    @property
    def done(self) -> bool:
        return self.action in DONE_ACTIONS

    def diagnostic_of(self, other: RecipientStatus) -> RecipientStatus:
        """Take other's remote diagnostic and class (a deferral becomes a bounce); returns self."""
        self.diag_type, self.diag_text = other.diag_type, other.diag_text
        self.remote_mta, self.klass = other.remote_mta, other.klass
        return self

    @classmethod
    def of(
        cls, rcpt, action: str, dsn: str, reason: str, relay: str = "none", word: str = ""
    ) -> RecipientStatus:
        """The status of rcpt (anything with address, offset, orig, dsn_orcpt, notify)."""
        return cls(
            address=rcpt.address,
            offset=rcpt.offset,
            action=action,
            dsn=dsn,
            reason=reason,
            relay=relay,
            orig=rcpt.orig,
            dsn_orcpt=rcpt.dsn_orcpt,
            notify=rcpt.notify,
            status_word=word,
        )


def wants_success_notice(st: RecipientStatus) -> bool:
    """Whether the sender gets a success notice for st (NOTIFY=SUCCESS, done here)."""
    return (
        bool(st.notify & DSN_NOTIFY_SUCCESS)
        and st.action in (ACTION_DELIVERED, ACTION_RELAYED, ACTION_EXPANDED)
        and not st.dsn_passed
    )


def dsn_from_reply(code: int, text: str) -> str:
    """The enhanced status code of a reply: from its text, else from its class."""
    klass = str(code)[:1] if 200 <= code < 600 else "4"
    m = _ENHANCED.match(text.lstrip())
    if m and m.group(1) == klass:
        return f"{m.group(1)}.{m.group(2)}.{m.group(3)}"
    return f"{klass}.0.0"


# <sysexits.h>: a command's exit status -> (enhanced code, text); the 4.x.x
# ones (EX_OSERR 71, EX_TEMPFAIL 75) are temporary. Used by pipe and local.
SYS_EXITS: dict[int, tuple[str, str]] = {
    64: ("5.3.0", "command line usage error"),
    65: ("5.6.0", "data format error"),
    66: ("5.3.0", "cannot open input"),
    67: ("5.1.1", "user unknown"),
    68: ("5.1.2", "host name unknown"),
    69: ("5.3.0", "service unavailable"),
    70: ("5.3.0", "internal software error"),
    71: ("4.3.0", "system resource problem"),
    72: ("5.3.0", "critical OS file missing"),
    73: ("5.2.0", "can't create user output file"),
    74: ("5.3.0", "input/output error"),
    75: ("4.3.0", "temporary failure"),
    76: ("5.5.0", "remote error in protocol"),
    77: ("5.7.0", "permission denied"),
    78: ("5.3.5", "local configuration error"),
}
_LEADING_FAILURE = re.compile(r"^([45])\.(\d{1,3})\.(\d{1,3})\b\s*")


def leading_failure_dsn(text: str) -> tuple[str, str] | None:
    """(code, rest) when text starts with a 4.x.y or 5.x.y code, as command output may."""
    m = _LEADING_FAILURE.match(text)
    if m is None:
        return None
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}", text[m.end() :]


def dsn_class(dsn: str) -> str:
    """'2', '4' or '5' for a status code; '4' for anything unreadable."""
    return dsn[:1] if dsn[:1] in ("2", "4", "5") else "4"


def _secs(value: float) -> str:
    """Postfix's delay notation: whole seconds from ten up, else two figures."""
    if value >= 9.95:
        return str(int(round(value)))
    if value < 0.01:
        return "0"
    if value < 1:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.2g}"


def status_line(
    queue_id: str, st: RecipientStatus, delays: tuple[float, float, float, float]
) -> str:
    """One maillog line for a recipient result, in Postfix's form."""
    parts = [f"{queue_id}: to=<{st.address}>"]
    if st.orig and st.orig != st.address:
        parts.append(f"orig_to=<{st.orig}>")
    total = sum(delays)
    parts.append(f"relay={st.relay or 'none'}")
    parts.append(f"delay={_secs(total)}")
    parts.append("delays=" + "/".join(_secs(d) for d in delays))
    parts.append(f"dsn={st.dsn}")
    word = st.status_word or STATUS_WORDS.get(st.action, "deferred")
    parts.append(f"status={word} ({st.reason})")
    line = ", ".join(parts)
    # after the reason, where Postfix's log readers (pflogsumm) do not look
    return f"{line} class={st.klass}" if st.klass else line
