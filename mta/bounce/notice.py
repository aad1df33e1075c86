"""bounce.notice - non-delivery notices (RFC 3464 multipart/report) and sending them

SYNOPSIS
    from mta.bounce.notice import make_notice, send_notice, notice_recipients, open_notice
    sender, recipients, data = make_notice(cfg, msg, content_path, failed)
    queue_id = send_notice(cfg, msg, content_path, failed)     # None: nobody to tell

DESCRIPTION
    make_notice() builds the notice for a message (a QueueMessage and
    the path of the queue file that holds its content) and the
    recipients that failed (RecipientStatus from the bounce log or from
    the agents). It returns the envelope sender of the notice (always
    the null sender), its recipients (the original sender) and the
    message bytes, lines ended by "\\n":

      - header: From: MAILER-DAEMON@$myhostname (Mail Delivery System),
        To: the original sender, Subject: Undelivered Mail Returned to
        Sender, Date:, Message-Id:, Auto-Submitted: auto-replied,
        MIME-Version: 1.0, Content-Type: multipart/report;
        report-type=delivery-status;
      - part 1, text/plain: a short letter from the mail system of
        $myhostname naming each failed recipient and its reason;
      - part 2, message/delivery-status: the per-message fields
        (Reporting-MTA: dns; $myhostname, X-Mta-Queue-ID, X-Mta-Sender,
        Original-Envelope-Id when ENVID was given, Arrival-Date), then
        per recipient Final-Recipient: rfc822; ADDRESS,
        Original-Recipient when the recipient came with ORCPT, Action,
        Status, Remote-MTA: dns; HOST for the server that answered
        (the status's remote_mta, else the host of its relay), and
        Diagnostic-Code: smtp; REPLY with the server's own reply when
        a server gave one (the status's diag_text; the reason, "host
        H said: ...", stays in the letter), or "X-Mta; REASON" for a
        reason made here, and X-Bounce-Class: with the bounce class
        (common/bounce_class) when the recipient has one;
      - part 3: the original message as message/rfc822 unless the
        sender asked for RET=HDRS (as Postfix does when RET is absent),
        when it fits in bounce_size_limit bytes; otherwise its header
        section as text/rfc822-headers (also cut at bounce_size_limit,
        at a line end).

    bounce_template_file (bounce/template.py) replaces the built-in
    Subject:, From: and letter of each kind, and gives the charset of
    the letter; a postmaster copy has its Postmaster-Subject: ("Postmaster
    Copy: ..." by default) and the per-recipient lines without the
    letter. A template file that does not load is logged once per
    notice and the built-in texts are used.

    kind selects the notice: "failure"; "success" (NOTIFY=SUCCESS: each
    recipient's Action is its own, delivered, relayed or expanded) and
    "delay" (delay warnings) use the same layout with their own subject
    and letter.

    send_notice() queues the notice through the cleanup library into
    incoming/ and returns its queue id. It sends nothing (None) when
    the original sender is empty or when no failed recipient wants one
    (NOTIFY given without FAILURE). With to= it sends a postmaster copy
    instead (notify_classes bounce, delay and 2bounce: qmgr decides),
    marked with the envelope attribute "notice" so that when it fails
    in turn it is dropped, never copied again. When cleanup does not
    queue it, NoticeError carries cleanup's reply and the caller keeps
    the bounce log to try again.

    open_notice() is the part that any notice shares: a cleanup job
    from the null sender with the recipients and the message written,
    marked with NOTICE_ATTR for a postmaster notice, that the caller
    closes (at once, or finish() on an event loop and commit() on a
    thread, as smtpd does for its error notices).

SECURITY
    Reasons and the returned content come from remote servers and
    senders; they are copied as data into the notice, with control
    characters in reasons replaced. Runs as mail_owner in the process
    that finishes the message (qmgr, or the bounce service).

STANDARDS
    RFC 3464 (delivery status notifications), RFC 3462/6522
    (multipart/report), RFC 3461 (RET, ENVID, ORCPT, NOTIFY), RFC 3834
    (Auto-Submitted).

SEE ALSO
    bounce(8), mta/bounce/logfile.py, mta/cleanup
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable

from mta.common.dsn import ACTION_DELAYED, ACTION_FAILED, RecipientStatus
from mta.queue import rec_type as R
from mta.queue.queue_file import QueueMessage, iter_content

NOTICE_FROM_NAME = "Mail Delivery System"  # display name of MAILER-DAEMON
MAILER_DAEMON = "MAILER-DAEMON"
LETTER_MARK = "\0letter\0"  # where the letter goes, after the ASCII-only lines are made
NOTICE_ATTR = "notice"  # envelope attribute of a postmaster notice: its own failure is dropped

# the Action of a recipient in a sendmail -bv report (the agents' status words)
VERIFY_ACTIONS = ("deliverable", "undeliverable")

# kind -> (Subject:, action of the recipients, first paragraph of the letter)
NOTICE_KINDS = {
    "failure": (
        "Undelivered Mail Returned to Sender",
        ACTION_FAILED,
        "Your message could not be delivered to the recipients listed\n"
        "below. Each one is shown with the reason it failed; these\n"
        "failures are permanent and delivery to them will not be tried\n"
        "again.",
    ),
    "delay": (
        "Delayed Mail (still being retried)",
        ACTION_DELAYED,
        "Your message has not yet reached the recipients listed below.\n"
        "Delivery is still being tried; you do not need to send it again.",
    ),
    "verify": (
        "Mail Delivery Status Report",
        None,  # each recipient's own
        "Here is the delivery report you asked for: what happened to each\n"
        "recipient on the first attempt (sendmail -v), or what would happen\n"
        "to it (sendmail -bv, where nothing is delivered).",
    ),
    "success": (
        "Successful Mail Delivery Report",
        None,  # each recipient's own: delivered, relayed or expanded
        "Your message was delivered to the recipients listed below, as\nyou asked to be told.",
    ),
}

_SMTP_REPLY = re.compile(r"^[245]\d\d[ -]")
_RELAY_HOST = re.compile(r"^([^\[\s]+)\[[^\]]*\](?::\d+)?$")
_REASON_LIMIT = 900  # characters of a reason in a Diagnostic-Code field


class NoticeError(Exception):
    """cleanup did not queue the notice; str is its reply."""


def _clean(text: str) -> str:
    """One line of printable text, bounded."""
    text = "".join(c if c.isprintable() else " " for c in text).strip()
    return text[:_REASON_LIMIT]


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")


def _remote_mta(relay: str) -> str:
    m = _RELAY_HOST.match(relay or "")
    return m.group(1) if m else ""


def _diagnostic(st: RecipientStatus) -> str:
    """ "smtp; REPLY" for a remote server's reply, "X-Mta; REASON" for a reason of our own."""
    if st.diag_type and st.diag_text:
        return f"{_clean(st.diag_type)}; {_clean(st.diag_text)}"
    reason = _clean(st.reason)
    if not reason:
        return ""
    # a log entry from before diag_text existed, or an agent that quotes a bare reply
    return f"{'smtp' if _SMTP_REPLY.match(reason) else 'X-Mta'}; {reason}"


def _address_field(value: str) -> str:
    """ "rfc822; addr" from "rfc822;addr" or a bare address."""
    kind, semi, addr = value.partition(";")
    if not semi:
        return f"rfc822; {value}"
    return f"{kind.strip()}; {addr.strip()}"


def _content(msg: QueueMessage, content_path: str) -> tuple[list[bytes], list[bytes]]:
    """(header lines, body lines) of the original message."""
    headers: list[bytes] = []
    body: list[bytes] = []
    in_body = False
    for line in iter_content(content_path, msg):
        if in_body:
            body.append(line)
        elif line == b"" or line == b"\r":
            in_body = True
        else:
            headers.append(line)
    return headers, body


def _cut(lines: list[bytes], limit: int) -> list[bytes]:
    out, size = [], 0
    for line in lines:
        size += len(line) + 1
        if limit and size > limit:
            break
        out.append(line)
    return out


def builtin_intro(cfg, kind: str) -> str:
    """The built-in letter of a notice of kind (or "verify"), before the recipient lines."""
    host = cfg.get("myhostname")
    first = NOTICE_KINDS[kind][2]
    return "\n".join(
        [
            f"This is the mail system at host {host}.",
            "",
            first,
            "",
            "For help with this report, write to the postmaster of this",
            f"host, postmaster@{host}, and include the report",
            "(the returned message may be left out).",
            "",
            f"                   The {cfg.get('mail_name')} program",
        ]
    )


def _letter(cfg, kind: str, statuses: list[RecipientStatus], intro: str | None) -> str:
    """The readable part: intro (the built-in text when None), then one line per recipient."""
    if intro is None:
        intro = builtin_intro(cfg, kind)
    lines = [*intro.split("\n"), ""] if intro else []
    for st in statuses:
        shown = f"<{st.address}>"
        if st.orig and st.orig != st.address:
            shown += f" (expanded from <{st.orig}>)"
        lines.append(f"{shown}: {_clean(st.reason)}")
        lines.append("")
    return "\n".join(lines)


TEMPLATE_OF_KIND = {kind: f"{kind}_template" for kind in NOTICE_KINDS}  # bounce(5) names
_templates: dict[tuple, dict] = {}


def _template(cfg, kind: str):
    """The kind's template from bounce_template_file, or None for the built-in text."""
    path = cfg.get("bounce_template_file")
    if not path:
        return None
    from mta import log
    from mta.bounce.template import TemplateError, load_templates

    try:
        key = (path, os.stat(path).st_mtime_ns)
        if key not in _templates:
            _templates.clear()
            _templates[key] = load_templates(path, cfg)
    except (OSError, TemplateError) as exc:
        log.warning("bounce_template_file: %s; using the built-in texts", exc)
        return None
    return _templates[key].get(TEMPLATE_OF_KIND[kind])


def _delivery_status(cfg, msg: QueueMessage, action: str, statuses) -> str:
    from mta.cleanup.headers import mail_date

    fields = [
        f"Reporting-MTA: dns; {cfg.get('myhostname')}",
        f"X-Mta-Queue-ID: {msg.queue_id}",
        f"X-Mta-Sender: rfc822; {msg.sender}",
    ]
    envid = msg.attrs.get("envid", "")
    if envid:
        fields.append(f"Original-Envelope-Id: {_clean(envid)}")
    fields.append(f"Arrival-Date: {mail_date(msg.arrival or time.time())}")
    blocks = ["\n".join(fields)]
    for st in statuses:
        rows = [f"Final-Recipient: rfc822; {st.address}"]
        if st.dsn_orcpt:
            rows.append(f"Original-Recipient: {_address_field(st.dsn_orcpt)}")
        own = st.status_word if st.status_word in VERIFY_ACTIONS else st.action
        rows.append(f"Action: {action or own}")
        rows.append(f"Status: {st.dsn}")
        host = st.remote_mta or _remote_mta(st.relay)
        if host:
            rows.append(f"Remote-MTA: dns; {_clean(host)}")
        diag = _diagnostic(st)
        if diag:
            rows.append(f"Diagnostic-Code: {diag}")
        if st.klass:
            rows.append(f"X-Bounce-Class: {st.klass}")  # common/bounce_class
        blocks.append("\n".join(rows))
    return _ascii("\n\n".join(blocks)) + "\n"


def make_notice(
    cfg,
    msg: QueueMessage,
    content_path: str,
    failed: list[RecipientStatus],
    kind: str = "failure",
    to: str | None = None,
    headers_only: bool = False,
) -> tuple[str, list[str], bytes]:
    """(envelope sender, recipients, message) of a notice about failed; see DESCRIPTION.

    to: whom it goes to instead of the sender (a postmaster copy);
    headers_only: return only the header section, whatever RET says."""
    from mta.cleanup.headers import mail_date

    if kind not in NOTICE_KINDS:
        raise ValueError(f"unknown notice kind: {kind}")
    subject, action, _ = NOTICE_KINDS[kind]
    tmpl = _template(cfg, kind)
    host = cfg.get("myhostname")
    sender_line = f"{MAILER_DAEMON}@{host} ({NOTICE_FROM_NAME})"
    charset = "us-ascii"
    intro: str | None = None
    if tmpl is not None:
        subject = tmpl.subject or subject
        sender_line = tmpl.sender or sender_line
        charset = tmpl.charset
        intro = tmpl.text(cfg)
    if to:  # a postmaster copy: its own subject, and the reports without the letter
        subject = (tmpl.postmaster_subject if tmpl else "") or f"Postmaster Copy: {subject}"
        intro = ""
    now = time.time()
    headers, body = _content(msg, content_path)
    limit = cfg.get_size("bounce_size_limit")
    # as Postfix: the whole message unless the sender asked for RET=HDRS
    full = msg.attrs.get("ret", "").upper() != "HDRS" and not headers_only
    whole = headers + [b""] + body
    what = "Undelivered Message" if kind in ("failure", "delay") else "Message"
    if full and sum(len(line) + 1 for line in whole) <= limit:
        returned, rtype, rdesc = whole, "message/rfc822", what
    else:
        returned = _cut(headers, limit)
        rtype, rdesc = "text/rfc822-headers", f"{what} Headers"
    returned_bytes = b"".join(line.rstrip(b"\r") + b"\n" for line in returned)
    letter = _letter(cfg, kind, failed, intro)
    if charset.lower() in ("us-ascii", "ascii"):
        letter = _ascii(letter)
    boundary = f"{msg.queue_id}.{int(now)}/{host}"
    while boundary.encode() in returned_bytes:
        boundary += f".{os.urandom(4).hex()}"
    eight_bit = not returned_bytes.isascii() or not letter.isascii()
    top = [
        f"From: {sender_line}",
        f"To: {to or msg.sender}",
        f"Subject: {subject}",
        f"Date: {mail_date(now)}",
        f"Message-Id: <{msg.queue_id}.{int(now)}.{os.getpid()}@{host}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
        f"Content-Transfer-Encoding: {'8bit' if eight_bit else '7bit'}",
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Description: Notification",
        f"Content-Type: text/plain; charset={charset}",
        *([] if letter.isascii() else ["Content-Transfer-Encoding: 8bit"]),
        "",
        LETTER_MARK,
        f"--{boundary}",
        "Content-Description: Delivery report",
        "Content-Type: message/delivery-status",
        "",
        _delivery_status(cfg, msg, action, failed),
        f"--{boundary}",
        f"Content-Description: {rdesc}",
        f"Content-Type: {rtype}",
    ]
    if eight_bit:
        top.append("Content-Transfer-Encoding: 8bit")
    head = "\n".join(_ascii(line) for line in top).replace(LETTER_MARK, letter)
    data = head.encode("utf-8") + b"\n\n" + returned_bytes + f"\n--{boundary}--\n".encode("ascii")
    return "", [to or msg.sender], data


def notice_recipients(failed: Iterable[RecipientStatus]) -> list[RecipientStatus]:
    """The failed recipients whose NOTIFY asks for a failure notice (the default)."""
    return [st for st in failed if not st.notify or st.notify & R.DSN_NOTIFY_FAILURE]


def open_notice(cleanup, recipients: list[str], data: bytes, postmaster: bool):
    """A cleanup job holding a notice from the null sender, ready for close().

    postmaster: mark it with NOTICE_ATTR, so that when it fails in turn
    it is dropped rather than noticed again."""
    flags = 0 if data.isascii() else R.QF_8BIT
    attrs = {NOTICE_ATTR: "postmaster"} if postmaster else {}
    # no strict MIME checks; internal_mail_filter_classes decides on the other inspection
    job = cleanup.open("", attrs, flags=flags, internal="notify" if postmaster else "bounce")
    for rcpt in recipients:
        job.add_recipient(rcpt)
    job.write(data)
    return job


def send_notice(
    cfg,
    msg: QueueMessage,
    content_path: str,
    failed: list[RecipientStatus],
    kind: str = "failure",
    cleanup=None,
    to: str | None = None,
    headers_only: bool = False,
) -> str | None:
    """Queue a notice about failed to the sender (or to); its queue id, or None when none is due.

    A copy for the postmaster (to given) goes whatever the recipients'
    NOTIFY says, and is marked so that a copy is never made of it."""
    from mta.cleanup import ACTION_QUEUED, Cleanup

    if not (to or msg.sender):
        return None
    wanted = list(failed) if to or kind != "failure" else notice_recipients(failed)
    if not wanted:
        return None
    _, recipients, data = make_notice(cfg, msg, content_path, wanted, kind, to, headers_only)
    job = open_notice(cleanup or Cleanup(cfg), recipients, data, postmaster=bool(to))
    result = job.close("incoming")
    if result.action != ACTION_QUEUED:
        raise NoticeError(result.reply or result.action)
    return result.queue_id
