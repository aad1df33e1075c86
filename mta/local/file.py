"""local.file - deliver to "/file/name" destinations of aliases and .forward files

SYNOPSIS
    from mta.local.file import deliver_file
    outcome = deliver_file("/var/log/mail.archive", copy, recipient, orig, settings, limit, host)

DESCRIPTION
    A destination that ends in "/" is a Maildir (local.mailbox
    deliver_maildir, headers Return-Path:, X-Original-To: and
    Delivered-To:); anything else is appended as mbox: "From " line,
    those headers, ">From " quoting, an empty line at the end, under
    the mailbox_delivery_lock locks, truncated back on error. Character
    devices such as /dev/null are written without locks. Delivered-To:
    is added when prepend_delivered_header names "file" (the caller
    passes delivered_to).

SECURITY
    The caller runs this with the rights of the user whose alias or
    .forward named the file (local.privs.run_as).
"""

from __future__ import annotations

from mta.local.lock import LockSettings
from mta.local.mailbox import MailCopy, append_mbox, deliver_maildir, render
from mta.local.privs import Outcome


def deliver_file(
    path: str,
    copy: MailCopy,
    recipient: str,
    orig_rcpt: str,
    settings: LockSettings,
    size_limit: int,
    hostname: str,
    delivered_to: bool = True,
) -> Outcome:
    """Deliver copy to the file or Maildir at path."""
    if path.endswith("/"):
        data = render(copy, recipient=recipient, orig_rcpt=orig_rcpt, delivered_to=delivered_to)
        outcome = deliver_maildir(path, data, hostname, "maildir")
        if outcome.ok:
            outcome.reason = f"delivered to maildir: {path}"
        return outcome
    data = render(
        copy,
        recipient=recipient,
        orig_rcpt=orig_rcpt,
        from_line_=True,
        quote=True,
        blank=True,
        delivered_to=delivered_to,
    )
    return append_mbox(path, data, settings, size_limit, "file", allow_devices=True)
