"""smtpd.transcript - session transcripts and error notices for the postmaster

SYNOPSIS
    from mta.smtpd.transcript import Transcript, notify_mask, make_error_notice
    mask = notify_mask(cfg)                  # notify_classes as NOTIFY_* bits
    t = Transcript() if mask & NOTIFY_RING else None
    t.client(line); t.server(reply_bytes); t.note("text")
    data = make_error_notice(cfg, "host[addr]", NOTIFY_PROTOCOL, t)

DESCRIPTION
    The SMTP server tells the postmaster (error_notice_recipient) about
    a session in which something went wrong, when the kind of trouble is
    one of notify_classes:

      resource  mail not taken for lack of a resource: the queue file
                could not be written, a table did not answer, the
                queue file system is short of space (451 4.3.0,
                452 4.3.1);
      software  mail not taken because of a software or configuration
                problem: a broken table or restriction (451 4.3.5), an
                internal error;
      protocol  the client broke the protocol: bad syntax, an unknown
                command, a command out of sequence, too many errors,
                sending ahead without PIPELINING, a bare LF;
      policy    a request refused by the restrictions (smtpd_*_
                restrictions, access tables), a message too large for
                message_size_limit, too many recipients, content refused
                by header or body checks;
      bounce    a message refused whole after its content came: larger
                than message_size_limit, or too many Received: hops (552,
                554 5.4.6); this notice goes to bounce_notice_recipient
                instead.

    The session keeps a bitmask of the classes it ran into and, at its
    end (QUIT, the client gone, a timeout), queues at most one notice
    when that mask meets notify_mask(cfg).

    Transcript is the bounded record: a deque of at most
    TRANSCRIPT_LINES entries, each a reference to the command line as
    it came (bytes without CRLF), to the reply bytes as they were queued
    (ending in CRLF), or a note of ours (str). Recording is one append
    in C that drops the oldest entry when the ring is full: O(1), and
    the reply is not copied. A command line is cut to
    TRANSCRIPT_LINE_BYTES when it is stored (a slice that copies only a
    longer line); a reply is kept whole, as it is our own text, bounded
    by line_length_limit where it quotes the client, and cut when it is
    shown. Message
    content (DATA lines, BDAT chunks) never enters it: one note stands
    for it.

    When to record. With protocol or policy in notify_classes
    (NOTIFY_RING), the session makes the ring at connect and records
    every command and reply, so a notice shows the last
    TRANSCRIPT_LINES lines before and after the trouble, as Postfix's
    does. Otherwise (the default "resource, software", and a bulk relay
    wants nothing more) a clean session records nothing and allocates
    nothing for this: the session only remembers the current command
    line, which it holds anyway. At the first event of an enabled class
    it makes the ring, puts that command in it and records from there
    on: the notice then starts with the failing command and its reply
    and misses what came before. These events are rare, and a session
    that has one is no longer the hot path.

    make_error_notice() renders the notice: From: MAILER-DAEMON, To:
    error_notice_recipient, Subject: "$mail_name SMTP server: errors
    from HOST[ADDR]", Auto-Submitted: auto-generated, a short letter
    naming the classes, then the transcript, "C: " before the client's
    lines and "S: " before the server's, oldest first. Bytes that are
    not printable ASCII are shown as \\xNN. The body is cut at
    TRANSCRIPT_BYTES, dropping the oldest lines; a first line says so,
    and says when the ring was full.

SECURITY
    The transcript holds untrusted client input; it is escaped into
    plain ASCII text and bounded in lines and bytes before it goes into
    a mail for the postmaster. Runs inside smtpd, unprivileged.

SEE ALSO
    postconf(5) notify_classes, error_notice_recipient;
    mta/smtpd/session.py, mta/bounce/notice.py (open_notice)
"""

from __future__ import annotations

import os
import time
from collections import deque

NOTIFY_RESOURCE = 1  # a resource problem kept mail out
NOTIFY_SOFTWARE = 2  # a software or configuration problem kept mail out
NOTIFY_PROTOCOL = 4  # the client broke the protocol
NOTIFY_POLICY = 8  # the restrictions refused a request
NOTIFY_BOUNCE = 16  # a message refused whole (too big, too many hops): it "bounced" here
NOTIFY_RING = NOTIFY_PROTOCOL | NOTIFY_POLICY  # classes that want the whole session

NOTIFY_CLASS_NAMES = {
    "resource": NOTIFY_RESOURCE,
    "software": NOTIFY_SOFTWARE,
    "protocol": NOTIFY_PROTOCOL,
    "policy": NOTIFY_POLICY,
    "bounce": NOTIFY_BOUNCE,
}

TRANSCRIPT_LINES = 100  # entries in the ring (a multi-line reply is one entry)
TRANSCRIPT_LINE_BYTES = 512  # bytes of a command line kept, and of a reply line shown
TRANSCRIPT_BYTES = 16384  # bytes of transcript in a notice

NOTE_CONTENT = "(message content not shown)"  # stands for DATA content
_PREFIX_CLIENT = "C: "
_PREFIX_SERVER = "S: "
_PREFIX_NOTE = "-- "
_CUT_MARK = " ...(cut)"


def notify_mask(cfg) -> int:
    """notify_classes as NOTIFY_* bits; the classes smtpd does not handle count 0."""
    mask = 0
    for name in cfg.get_list("notify_classes"):
        mask |= NOTIFY_CLASS_NAMES.get(name.lower(), 0)
    return mask


def notice_recipient(cfg, mask: int) -> str:
    """bounce_notice_recipient when a message bounced in the session, else
    error_notice_recipient (one notice either way, as Postfix sends)."""
    name = "bounce_notice_recipient" if mask & NOTIFY_BOUNCE else "error_notice_recipient"
    return cfg.get(name).strip()


def class_names(mask: int) -> list[str]:
    """The names of the classes in mask, in notify_classes order."""
    return [name for name, bit in NOTIFY_CLASS_NAMES.items() if mask & bit]


class Transcript(deque):
    """The last lines of a session, oldest first; see the module docstring.

    A deque with maxlen, so that appending is one C call and the oldest
    entry falls out by itself. An entry's type and ending say whose it
    is: a command line is bytes without CRLF, a reply is bytes ending
    in CRLF (the reply lines exactly as queued), a note is str."""

    __slots__ = ()

    def __init__(self, size: int = TRANSCRIPT_LINES) -> None:
        super().__init__((), size)

    def client(self, line: bytes) -> None:
        """Record a command line (without CRLF), cut to TRANSCRIPT_LINE_BYTES."""
        self.append(line[:TRANSCRIPT_LINE_BYTES])

    # reply bytes as queued for the client: CRLF-ended, perhaps several lines;
    # the server's own text, so bounded, and kept whole to keep the CRLF
    server = deque.append

    def note(self, text: str) -> None:
        """Record a remark that is neither side's words (content left out)."""
        self.append(text)

    @property
    def full(self) -> bool:
        """Has the ring filled up, so that older lines may have fallen out?"""
        return len(self) == self.maxlen

    def render(self, limit: int = TRANSCRIPT_BYTES) -> list[str]:
        """The transcript as printable ASCII lines, oldest first, at most limit bytes.

        Multi-line replies become one line per reply line. When the lines
        do not fit, the oldest go and a first line says how many."""
        lines: list[str] = []
        for entry in self:
            if isinstance(entry, str):
                lines.append(_PREFIX_NOTE + entry)
                continue
            if entry.endswith(b"\r\n"):
                prefix, parts = _PREFIX_SERVER, entry[:-2].split(b"\r\n")
            else:
                prefix, parts = _PREFIX_CLIENT, [entry]
            for part in parts:
                text = prefix + show_bytes(part[:TRANSCRIPT_LINE_BYTES])
                if len(part) >= TRANSCRIPT_LINE_BYTES:
                    text += _CUT_MARK
                lines.append(text)
        size = sum(len(line) + 1 for line in lines)
        first = 0
        while size > limit and first < len(lines):
            size -= len(lines[first]) + 1
            first += 1
        kept = lines[first:]
        if first:
            kept.insert(0, f"-- ({first} earlier lines left out to fit)")
        if self.full:
            kept.insert(0, f"-- (only the last {self.maxlen} commands and replies are kept)")
        return kept


def show_bytes(data: bytes) -> str:
    """data as printable ASCII: other bytes as \\xNN, backslash as \\\\."""
    if data.isascii() and data.decode("ascii").isprintable() and b"\\" not in data:
        return data.decode("ascii")
    out = []
    for byte in data:
        if byte == 0x5C:
            out.append("\\\\")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def make_error_notice(cfg, client: str, mask: int, transcript: Transcript | None) -> bytes:
    """The notice about a session with client ("host[addr]"); lines ended by "\\n"."""
    from mta.bounce.notice import MAILER_DAEMON, NOTICE_FROM_NAME
    from mta.cleanup.headers import mail_date

    host = cfg.get("myhostname")
    client = show_bytes(client.encode("utf-8", "replace"))
    now = time.time()
    names = class_names(mask)
    what = ", ".join(names) or "unclassified"
    letter = [
        f"This is the mail system at host {host}.",
        "",
        "The SMTP server had trouble of these kinds in a session with",
        f"{client}: {what}.",
        "",
        "Below are the commands the client sent (C:) and the replies the",
        "server gave (S:), oldest first. Message content is never shown.",
        "The mail log has the details of each event.",
        "",
    ]
    shown = transcript.render() if transcript is not None else []
    if not shown:
        shown = ["-- (no transcript was kept)"]
    top = [
        f"From: {MAILER_DAEMON}@{host} ({NOTICE_FROM_NAME})",
        f"To: {notice_recipient(cfg, mask)}",
        f"Subject: {cfg.get('mail_name')} SMTP server: errors from {client}",
        f"Date: {mail_date(now)}",
        f"Message-Id: <{time.time_ns():x}.{os.getpid()}@{host}>",
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
        "",
    ]
    text = "\n".join(top + letter + shown) + "\n"
    return text.encode("ascii", "replace")
