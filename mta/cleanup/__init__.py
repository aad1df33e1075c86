"""mta.cleanup - canonicalize and enqueue a message (Postfix's cleanup)

SYNOPSIS
    from mta.cleanup import Cleanup, CleanupResult
    job = Cleanup(cfg).open(sender, attrs, local_submit=False, flags=0)
    job.add_recipient(addr); job.write(chunk); result = job.close()

DESCRIPTION
    The library smtpd, qmqpd and pickup call in-process; see
    cleanup.py for the behaviour. The cleanup service for other callers
    (python -m mta.cleanup under the master) is in server.py.

    Modules: cleanup.py (jobs and results), addresses.py (canonical,
    masquerade, virtual aliases, BCC), headers.py (Received:, added
    headers, address headers), checks.py (header and body checks),
    mime.py (MIME structure), header_parse.py (header kernel binding).

SECURITY
    Sees untrusted envelope and content; runs as mail_owner and writes
    only the queue file of each message.

SEE ALSO
    cleanup(8), mta/trivial_rewrite
"""

from mta.cleanup.cleanup import (
    ACTION_DEFERRED,
    ACTION_DISCARDED,
    ACTION_QUEUED,
    ACTION_REJECTED,
    Cleanup,
    CleanupJob,
    CleanupResult,
    Requeue,
)

__all__ = [
    "ACTION_DEFERRED",
    "ACTION_DISCARDED",
    "ACTION_QUEUED",
    "ACTION_REJECTED",
    "Cleanup",
    "CleanupJob",
    "CleanupResult",
    "Requeue",
]
