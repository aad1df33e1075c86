"""local.forward - .forward files, and forwarding a message as a new one through cleanup

SYNOPSIS
    from mta.local.forward import find_forward_file, forward_message
    found = find_forward_file(["/home/u/.forward+x", "/home/u/.forward"])  # (path, text) | None
    outcome = forward_message(cfg, sender, ["a@x", "b"], copy, delivered_to="u@example.com")

DESCRIPTION
    find_forward_file() tries each path of the expanded forward_path in
    order and returns the first file that can be opened, with its text
    (up to 1 MB); the caller runs it with the recipient's privileges. A
    path that exists but cannot be read because of permissions defers
    ("cannot open .forward"), as a missing one is skipped.

    forward_message() submits a new message through the in-process
    cleanup library (mta.cleanup.Cleanup): the given sender (the
    original one, or an owner- alias), the new recipients, and the
    original content with a "Delivered-To: ADDRESS" header in front
    (unless delivered_to is empty) so that a forwarding loop is caught
    at the next local delivery. The original's encoding and DSN
    envelope attributes are kept. A queued message gives "forwarded as
    QUEUEID" (the wording of Postfix's local logs); cleanup's deferral
    defers and its rejection bounces, with cleanup's reply text. One
    Cleanup object is kept per configuration.

SECURITY
    Reads .forward files with the recipient's rights (see local.privs);
    the submitted message goes into incoming/ like any local mail.
"""

from __future__ import annotations

import errno
import threading

from mta.local.mailbox import MailCopy
from mta.local.privs import Outcome, bounce, defer, sent

FORWARD_FILE_LIMIT = 1 << 20  # bytes of a .forward or :include: file that are read
KEPT_ATTRS = ("encoding", "dsn_envid", "dsn_ret", "smtputf8")  # envelope attrs forwarded

_CLEANUPS: dict[int, object] = {}
_CLEANUP_LOCK = threading.Lock()


def read_destination_file(path: str) -> tuple[str, str | None, int]:
    """(text, error, errno) of a .forward or :include: file; text "" when missing."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(FORWARD_FILE_LIMIT)
    except OSError as exc:
        return "", exc.strerror or str(exc), exc.errno or 0
    return data.decode("utf-8", "surrogateescape"), None, 0


def find_forward_file(paths: list[str]) -> tuple[str, str] | Outcome | None:
    """The first readable .forward among paths: (path, text); None; or a deferral."""
    for path in paths:
        text, error, code = read_destination_file(path)
        if error is None:
            return path, text
        if code in (errno.ENOENT, errno.ENOTDIR):
            continue
        return defer(f"cannot open {path}: {error}", "4.2.0")
    return None


def _cleanup_for(cfg):
    from mta.cleanup import Cleanup

    with _CLEANUP_LOCK:
        c = _CLEANUPS.get(id(cfg))
        if c is None or c.cfg is not cfg:
            c = _CLEANUPS[id(cfg)] = Cleanup(cfg)
        return c


def forward_message(
    cfg,
    sender: str,
    recipients: list[str],
    copy: MailCopy,
    delivered_to: str,
    attrs: dict[str, str] | None = None,
) -> Outcome:
    """Resubmit copy to recipients; see the module docstring."""
    cleanup = _cleanup_for(cfg)
    kept = {k: v for k, v in (attrs or {}).items() if k in KEPT_ATTRS and v}
    job = cleanup.open(sender, kept)
    for rcpt in recipients:
        job.add_recipient(rcpt)
    if delivered_to:
        job.write(f"Delivered-To: {delivered_to}\n".encode("utf-8", "surrogateescape"))
    job.write(b"".join(line + b"\n" for line in copy.lines))
    result = job.close("incoming")
    if result.action == "queued":
        return sent(f"forwarded as {result.queue_id}")
    if result.action == "discarded":
        return sent("forwarded message discarded")
    reply = result.reply or "4.3.0 cannot forward message"
    dsn, _, text = reply.partition(" ")
    if result.action == "rejected":
        return bounce(f"cannot forward message: {text}", dsn if dsn[:1] == "5" else "5.3.0")
    return defer(f"cannot forward message: {text}", dsn if dsn[:1] == "4" else "4.3.0")
