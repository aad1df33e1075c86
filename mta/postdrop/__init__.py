"""mta.postdrop - put locally submitted mail into the maildrop queue

SYNOPSIS
    from mta.postdrop import MaildropSubmitter
    job = MaildropSubmitter(cfg).open(sender, attrs)
    job.add_recipient("user@example.org")
    job.write(b"Subject: hi\\n\\nbody\\n")
    result = job.close()            # .action == "queued", .queue_id

DESCRIPTION
    What Postfix's postdrop does for the sendmail command: the message
    becomes one queue file in maildrop/, written under a temporary name,
    fsynced and renamed (mta.queue.queue_file), and then pickup is
    poked through public/pickup. This works while the mail system is
    stopped: the file waits in maildrop/ until pickup runs.

    The job has the same shape as a cleanup job (open, add_recipient,
    write, close, abort), so "sendmail -bs" runs the ordinary smtpd
    session with a MaildropSubmitter in place of cleanup. Rewriting,
    header checks and the rest happen later, when pickup hands the file
    to cleanup.

    As Postfix's postdrop, a user who is not on authorized_submit_users
    may not queue mail: MaildropSubmitter() raises AccessDenied ("User
    NAME(UID) is not allowed to submit mail").

SECURITY
    Runs with the invoking user's privileges; writes only new files in
    maildrop/. The uid is recorded so pickup can log who submitted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mta.common.trigger import send_trigger
from mta.common.user_acl import SUBMIT_ACL, check_user
from mta.queue.paths import QUEUE_MAILDROP, service_socket_path
from mta.queue.queue_file import QueueFileWriter, Recipient


@dataclass
class SubmitResult:
    action: str  # "queued"
    queue_id: str
    reply: str = ""


class MaildropJob:
    """One message on its way into maildrop/."""

    def __init__(
        self, submitter: MaildropSubmitter, sender: str, attrs: dict, flags: int, full_name: str
    ) -> None:
        self.submitter = submitter
        self.sender = sender
        self.attrs = dict(attrs)
        self.attrs.setdefault("uid", str(os.getuid()))
        self.flags = flags
        self.full_name = full_name
        self.recipients: list[Recipient] = []
        self.writer: QueueFileWriter | None = None

    def add_recipient(self, addr: str, orig: str = "", notify: int = 0, dsn_orcpt: str = ""):
        if self.writer is not None:
            raise RuntimeError("recipients come before the content")
        self.recipients.append(Recipient(addr, orig if orig != addr else "", dsn_orcpt, notify))

    def _open(self) -> QueueFileWriter:
        if self.writer is None:
            self.writer = QueueFileWriter(self.submitter.queue_dir, QUEUE_MAILDROP)
            self.writer.write_envelope(
                self.sender, self.recipients, self.attrs, self.full_name, self.flags
            )
        return self.writer

    def write(self, chunk: bytes) -> None:
        self._open().write_content(chunk)

    def close(self, queue: str = QUEUE_MAILDROP) -> SubmitResult:
        self.finish(queue)
        return self.commit()

    def finish(self, queue: str = QUEUE_MAILDROP) -> None:
        """close() up to the fsync (the same two steps as a cleanup job's)."""
        self._open().seal()

    def commit(self) -> SubmitResult:
        """After finish(): fsync and rename into maildrop/ (blocks)."""
        writer = self._open()
        queue_id = writer.sync()
        self.writer = None
        self.submitter.kick()
        return SubmitResult("queued", queue_id)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None


class MaildropSubmitter:
    """Opens maildrop jobs for one configuration."""

    def __init__(self, cfg) -> None:
        check_user(cfg, SUBMIT_ACL)
        self.queue_dir = cfg.get("queue_directory")
        self.pickup_path = service_socket_path(self.queue_dir, "pickup", private=False)

    def open(
        self,
        sender: str,
        attrs: dict,
        *,
        local_submit: bool = True,
        flags: int = 0,
        full_name: str = "",
    ) -> MaildropJob:
        return MaildropJob(self, sender, attrs, flags, full_name)

    def kick(self) -> bool:
        """Poke pickup; False when the mail system is not running."""
        return send_trigger(self.pickup_path)
