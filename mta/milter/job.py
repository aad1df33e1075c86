"""milter.job - a cleanup job whose content waits for the milters

SYNOPSIS
    from mta.milter.job import MilterJob
    job = MilterJob(cleanup.open(sender, attrs), sender, size_limit)
    job.add_recipient(...); job.write(chunk)       # as a CleanupJob, but held back
    decision = await job.run(chain, macros, header_check)   # content phase, then the edits
    result = job.finish("hold" if decision.hold else "incoming")

DESCRIPTION
    Wraps a cleanup job (mta.cleanup.cleanup.CleanupJob) with the same
    interface. Recipients are noted and content is spooled (a
    SpooledTemporaryFile: memory up to milter.message.SPOOL_MEMORY,
    then disk; never more than message_size_limit plus one chunk)
    until run() gives the message to the milter chain, with the
    Received: header cleanup will put on top shown first (as Postfix's
    milters see its own; what they make of it is what cleanup writes,
    nothing when they delete it). Then the
    envelope edits are applied (sender change, recipients deleted and
    added; an added recipient keeps the NOTIFY= and ORCPT= a milter
    gave it, other ESMTP arguments of an added recipient or a changed
    sender are logged as ignored, as Postfix does), the edited message is written into the cleanup job, and
    finish(), commit(), close() and abort() go to the job as usual. A
    message over the size limit is not shown to the milters: cleanup
    refuses it as too big.

    Used by smtpd (smtpd_milters, mta/smtpd/milters.py) and pickup
    (non_smtpd_milters, mta/milter/local.py).

SECURITY
    Holds untrusted content in memory or in a private temporary file.
"""

from __future__ import annotations

import tempfile

from mta import log
from mta.cleanup.cleanup import CleanupJob
from mta.common.dsn_params import notify_mask, orcpt_value
from mta.milter.chain import CONTINUE, Decision
from mta.milter.message import SPOOL_MEMORY, MilterMessage


class MilterJob:
    """See the module docstring."""

    def __init__(self, job, sender: str, size_limit: int = 0) -> None:
        self.job = job
        self.sender = sender
        self.size_limit = size_limit
        self.recipients: list[tuple[str, str, int, str]] = []  # (addr, orig, notify, orcpt)
        self.spool = tempfile.SpooledTemporaryFile(SPOOL_MEMORY)
        self.size = 0
        self.too_big = False
        self.fed = False

    @property
    def queue_id(self) -> str:
        return getattr(self.job, "queue_id", "NOQUEUE")

    def add_recipient(self, addr: str, orig: str = "", notify: int = 0, dsn_orcpt: str = ""):
        self.recipients.append((addr, orig, notify, dsn_orcpt))

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self.size_limit and self.size > self.size_limit:
            if not self.too_big:
                self.too_big = True
                self.spool.write(bytes(chunk))  # enough for cleanup to see it is too big
            return
        self.spool.write(bytes(chunk))

    def copy_message(self, msg, path: str, data: bytes | None = None) -> None:
        """As CleanupJob.copy_message: recipients and content of a queue file."""
        CleanupJob.copy_message(self, msg, path, data)

    async def run(self, chain, macros: dict[str, str], header_check=None) -> Decision:
        """The content phase; on continue (or hold) the edited message goes into the job."""
        if self.too_big:
            self.feed(None)
            return Decision()
        msg = MilterMessage.parse(self.spool)
        received_line = getattr(self.job, "received_line", None)
        if received_line is not None:  # the milters see cleanup's Received: first
            first = self.recipients[0] if len(self.recipients) == 1 else None
            msg.show_own(received_line(first and (first[1] or first[0])))
        try:
            decision = await chain.message(msg, macros, header_check)
            if decision.action == CONTINUE:
                self.feed(msg)
            return decision
        finally:
            msg.close()

    def feed(self, msg: MilterMessage | None) -> None:
        """Envelope and content into the cleanup job, with msg's edits."""
        self.fed = True
        recipients = list(self.recipients)
        if msg is not None:
            env = msg.envelope
            if env.sender is not None and hasattr(self.job, "change_sender"):
                self.job.change_sender(env.sender[0])
                self.sender = env.sender[0]
                if env.sender[1].strip():  # as Postfix: the address changes, nothing else
                    log.warning(
                        '%s: cleanup_chg_from: ignoring ESMTP arguments "%.100s"',
                        self.queue_id,
                        env.sender[1],
                    )
            for gone in env.deleted:
                recipients = [r for r in recipients if r[0].lower() != gone.lower()]
            for addr, args in env.added:
                notify, orcpt = self._dsn_args(addr, args)
                recipients.append((addr, addr, notify, orcpt))
        for addr, orig, notify, orcpt in recipients:
            self.job.add_recipient(addr, orig=orig, notify=notify, dsn_orcpt=orcpt)
        if msg is not None:
            if msg.own_shown:
                self.job.milter_received = msg.own_result()
            msg.write_to(self.job.write)
        else:
            self.spool.seek(0)
            while chunk := self.spool.read(1 << 16):
                self.job.write(chunk)
        self.spool.close()

    def _dsn_args(self, addr: str, args: str) -> tuple[int, str]:
        """NOTIFY= and ORCPT= of a recipient a milter added (SMFIR_ADDRCPT_PAR); any
        other argument, or a malformed one, is left out with a warning."""
        notify, orcpt = 0, ""
        for word in args.split():
            key, _, value = word.partition("=")
            raw = value.encode("utf-8", "surrogateescape")
            found = None
            if key.upper() == "NOTIFY":
                found = notify_mask(raw)
                if found is not None:
                    notify = found
            elif key.upper() == "ORCPT":
                found = orcpt_value(raw)
                if found is not None:
                    orcpt = found
            if found is None:
                log.warning(
                    '%s: cleanup_add_rcpt_par: %s: ignoring ESMTP argument "%.100s"',
                    self.queue_id,
                    addr,
                    word,
                )
        return notify, orcpt

    # ------------------------------------------------------------ the job's ending
    def finish(self, queue: str = "incoming"):
        return self.job.finish(queue)

    def commit(self):
        return self.job.commit()

    def close(self, queue: str = "incoming"):
        return self.job.close(queue)

    def abort(self) -> None:
        self.spool.close()
        self.job.abort()
