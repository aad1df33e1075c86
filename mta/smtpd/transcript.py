"""smtpd.transcript - session transcripts and error notices for the postmaster

SYNOPSIS
    from mta.smtpd.transcript import Transcript, notify_mask, make_error_notice
    mask = notify_mask(cfg)                  # notify_classes as NOTIFY_* bits
    t = Transcript() if mask & NOTIFY_RING else None
    t.client(line); t.server(reply_bytes); t.note(text)
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
                by header or body checks.

    The session keeps a bitmask of the classes it ran into and, at its
    end (QUIT, the client gone, a timeout), queues at most one notice
    when that mask meets notify_mask(cfg).

    Transcript is the bounded record: a ring of TRANSCRIPT_LINES slots,
    each holding a reference to the command line as it came (without
    CRLF) or to the reply bytes as they were queued, with a parallel
    bytearray saying which side it was. Recording is two stores into
    preallocated slots, O(1), and copies nothing; a line longer than
    TRANSCRIPT_LINE_BYTES is cut when it is stored, so the ring holds at
    most TRANSCRIPT_LINES * TRANSCRIPT_LINE_BYTES bytes however long the
    session. Message content (DATA lines, BDAT chunks) never enters it:
    one note line stands for it.

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
    TRANSCRIPT_BYTES, dropping the oldest lines.

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

NOTIFY_RESOURCE = 1  # a resource problem kept mail out
NOTIFY_SOFTWARE = 2  # a software or configuration problem kept mail out
NOTIFY_PROTOCOL = 4  # the client broke the protocol
NOTIFY_POLICY = 8  # the restrictions refused a request
NOTIFY_RING = NOTIFY_PROTOCOL | NOTIFY_POLICY  # classes that want the whole session

NOTIFY_CLASS_NAMES = {
    "resource": NOTIFY_RESOURCE,
    "software": NOTIFY_SOFTWARE,
    "protocol": NOTIFY_PROTOCOL,
    "policy": NOTIFY_POLICY,
}

TRANSCRIPT_LINES = 100  # slots in the ring
TRANSCRIPT_LINE_BYTES = 512  # bytes of one line kept (a multi-line reply is one entry)
TRANSCRIPT_BYTES = 16384  # bytes of transcript in a notice

SIDE_CLIENT = 67  # ord("C"): a command line from the client
SIDE_SERVER = 83  # ord("S"): reply bytes from the server
SIDE_NOTE = 45  # ord("-"): a remark of ours, such as content left out

NOTE_CONTENT = b"(message content not shown)"  # stands for DATA content
_PREFIX = {SIDE_CLIENT: "C: ", SIDE_SERVER: "S: ", SIDE_NOTE: "-- "}
_CUT_MARK = " ...(cut)"


def notify_mask(cfg) -> int:
    """notify_classes as NOTIFY_* bits; the classes smtpd does not handle count 0."""
    mask = 0
    for name in cfg.get_list("notify_classes"):
        mask |= NOTIFY_CLASS_NAMES.get(name.lower(), 0)
    return mask


def class_names(mask: int) -> list[str]:
    """The names of the classes in mask, in notify_classes order."""
    return [name for name, bit in NOTIFY_CLASS_NAMES.items() if mask & bit]


class Transcript:
    """A fixed ring of the last lines of a session; see the module docstring."""

    __slots__ = ("lines", "sides", "count", "size")

    def __init__(self, size: int = TRANSCRIPT_LINES) -> None:
        self.size = size
        self.lines: list[bytes | None] = [None] * size
        self.sides = bytearray(size)
        self.count = 0  # lines recorded since the start; count - size were dropped

    def client(self, line: bytes) -> None:
        """Record a command line (without CRLF)."""
        slot = self.count % self.size
        self.lines[slot] = line[:TRANSCRIPT_LINE_BYTES]
        self.sides[slot] = SIDE_CLIENT
        self.count += 1

    def server(self, reply: bytes) -> None:
        """Record reply bytes as queued for the client (CRLF-ended, perhaps several lines)."""
        slot = self.count % self.size
        self.lines[slot] = reply[:TRANSCRIPT_LINE_BYTES]
        self.sides[slot] = SIDE_SERVER
        self.count += 1

    def note(self, text: bytes) -> None:
        """Record a remark that is neither side's words (content left out)."""
        slot = self.count % self.size
        self.lines[slot] = text[:TRANSCRIPT_LINE_BYTES]
        self.sides[slot] = SIDE_NOTE
        self.count += 1

    @property
    def dropped(self) -> int:
        """Entries that fell out of the ring."""
        return max(0, self.count - self.size)

    def entries(self) -> list[tuple[int, bytes]]:
        """(side, bytes) of the entries kept, oldest first."""
        start = self.dropped
        out = []
        for n in range(start, self.count):
            slot = n % self.size
            out.append((self.sides[slot], self.lines[slot] or b""))
        return out

    def render(self, limit: int = TRANSCRIPT_BYTES) -> list[str]:
        """The transcript as printable ASCII lines, oldest first, at most limit bytes.

        Multi-line replies become one line per reply line. When the lines
        do not fit, the oldest go and a first line says how many."""
        lines: list[str] = []
        for side, data in self.entries():
            prefix = _PREFIX.get(side, "?: ")
            cut = len(data) >= TRANSCRIPT_LINE_BYTES
            parts = data.split(b"\r\n")
            if side == SIDE_SERVER and parts and not parts[-1]:
                parts.pop()  # the CRLF that ended the reply
            for i, part in enumerate(parts):
                text = prefix + show_bytes(part)
                if cut and i == len(parts) - 1:
                    text += _CUT_MARK
                lines.append(text)
        size = sum(len(line) + 1 for line in lines)
        first = 0
        while size > limit and first < len(lines):
            size -= len(lines[first]) + 1
            first += 1
        dropped = self.dropped + first
        kept = lines[first:]
        if dropped:
            kept.insert(0, f"-- ({dropped} earlier lines not kept)")
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
        f"To: {cfg.get('error_notice_recipient')}",
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
