"""mta.pickup - feed locally submitted mail from maildrop/ to cleanup

SYNOPSIS
    python -m mta.pickup ...           # started by the master (master.cf: pickup)
    from mta.pickup import Pickup
    Pickup(cfg, cleanup).scan()        # one pass over maildrop/

DESCRIPTION
    sendmail leaves each message as a queue file in maildrop/ (through
    mta.postdrop). pickup wakes on the master's periodic wakeup and when
    sendmail pokes public/pickup, and hands every complete maildrop file,
    oldest first, to cleanup as a local submission; once cleanup has
    queued the message (or refused it for good) the maildrop file goes.
    When cleanup reports a temporary problem (a full disk, say) the file
    stays for the next pass. A damaged maildrop file is moved to
    corrupt/ with a log line and never stops the scan. A message cleanup
    refuses for good (too big, a header_checks REJECT) goes to hold/
    with a log line until a bounce service can return it to the sender.

    With non_smtpd_milters set, each message goes through the milters
    first (mta/milter/local.py): their edits go into the queue file, a
    quarantine sends it to hold/, a discard drops it, a 5xx moves the
    file to hold/ as cleanup's refusals do, a 4xx leaves it for the next
    pass.

    Logs, as Postfix's pickup does: "QUEUEID: uid=N from=<sender>".

SECURITY
    Reads files any local user may have written: the envelope and
    content are untrusted and go through cleanup like network mail.
    Runs as mail_owner.
"""

from __future__ import annotations

import os

from mta import log
from mta.common.mail_flow import FlowGate
from mta.common.receive_override import milters_disabled
from mta.common.verp import VERP_ATTR
from mta.milter.local import LocalMilters
from mta.queue.paths import QUEUE_HOLD, QUEUE_MAILDROP
from mta.queue.queue_file import (
    QueueFileError,
    fsync_dir,
    move_to_corrupt,
    move_to_queue,
    read_queue_file,
)
from mta.queue.queue_id import is_queue_id

# what sendmail may ask for in the envelope: RET, ENVID, and VERP (-XV;
# cleanup checks the delimiters, since any local user writes maildrop/)
PASSED_ATTRS = ("ret", "envid", VERP_ATTR)


class Pickup:
    """One pickup process's state: the configuration and a cleanup library."""

    def __init__(self, cfg, cleanup) -> None:
        self.cfg = cfg
        self.cleanup = cleanup
        self.queue_dir = cfg.get("queue_directory")
        self.maildrop = os.path.join(self.queue_dir, QUEUE_MAILDROP)
        self.in_flow_delay = float(cfg.get_time("in_flow_delay"))
        self.flow = FlowGate(self.queue_dir)
        # non_smtpd_milters (milter/local.py); none with receive_override_options no_milters
        self.milters = None if milters_disabled(cfg) else LocalMilters.from_config(cfg)

    def scan(self) -> int:
        """Pick up every complete maildrop file; return how many left maildrop/."""
        try:
            names = sorted(os.listdir(self.maildrop))
        except OSError as exc:
            log.warning("%s: %s", self.maildrop, exc.strerror)
            return 0
        done = 0
        for name in names:
            if name.startswith(".") or not is_queue_id(name):
                continue
            if self.in_flow_delay > 0:
                self.flow.take_blocking(self.in_flow_delay)  # pace intake (in_flow_delay)
            if self.pickup_file(os.path.join(self.maildrop, name)):
                done += 1
        if done:
            fsync_dir(self.maildrop)
        return done

    def pickup_file(self, path: str) -> bool:
        """Hand one maildrop file to cleanup; True when the file is gone from maildrop."""
        name = os.path.basename(path)
        try:
            msg = read_queue_file(path)
        except FileNotFoundError:
            return False  # another pickup process took it
        except QueueFileError as exc:
            log.warning("%s: %s; moved to corrupt", name, exc)
            move_to_corrupt(self.queue_dir, path)
            return True
        attrs = {k: v for k, v in msg.attrs.items() if k in PASSED_ATTRS}
        attrs["protocol"] = "local"
        attrs["uid"] = msg.attrs.get("uid", "")
        attrs["full_name"] = msg.full_name
        local = msg.attrs.get("rewrite_context") != "remote"  # sendmail -G: a gateway's mail
        job = self.cleanup.open(msg.sender, attrs, local_submit=local, flags=msg.flags)
        if self.milters is not None:
            job = self.milters.wrap(job, msg.sender)
        try:
            job.copy_message(msg, path)
            queue = "incoming"
            if self.milters is not None:
                outcome = self.milters.run(job, msg.sender)
                if outcome.action != "continue":
                    return self.milter_refused(job, outcome, name, path, msg.sender)
                queue = "hold" if outcome.hold else queue
            result = job.close(queue)
        except QueueFileError as exc:
            job.abort()
            log.warning("%s: %s; moved to corrupt", name, exc)
            move_to_corrupt(self.queue_dir, path)
            return True
        except OSError as exc:
            job.abort()
            log.warning("%s: cannot queue: %s; will try again", name, exc.strerror or exc)
            return False
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop local mail
            job.abort()
            log.warning("%s: unusable maildrop file (%s); moved to corrupt", name, exc)
            move_to_corrupt(self.queue_dir, path)
            return True
        if result.action == "deferred":
            log.warning("%s: %s; will try again", name, result.reply)
            return False
        if result.action == "rejected":
            # No bounce service yet: keep the message where an administrator
            # finds it, instead of losing it.
            log.warning(
                "%s: rejected: %s; from=<%s>; moved to hold", name, result.reply, msg.sender
            )
            move_to_queue(self.queue_dir, path, QUEUE_HOLD)
            return True
        log.info("%s: uid=%s from=<%s>", result.queue_id or name, attrs["uid"], msg.sender)
        self.remove(path)
        return True

    def milter_refused(self, job, outcome, name: str, path: str, sender: str) -> bool:
        """A non_smtpd_milters refusal: discard drops the file, a 4xx keeps it for the
        next pass, a 5xx moves it to hold/ (as cleanup's refusals); True when it left."""
        job.abort()
        if outcome.action == "discard":
            self.remove(path)
            return True
        if outcome.reply[:1] != "5":
            log.warning("%s: milter: %s; will try again", name, outcome.reply)
            return False
        log.warning("%s: rejected: %s; from=<%s>; moved to hold", name, outcome.reply, sender)
        move_to_queue(self.queue_dir, path, QUEUE_HOLD)
        return True

    @staticmethod
    def remove(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
