"""flush - deliver the deferred mail of one site now (ETRN, sendmail -qR, mta queue -s)

SYNOPSIS
    from mta.flush import flush_site, eligible
    if eligible(cfg, "example.com"):
        count = flush_site(cfg, "example.com")   # messages made due; qmgr was told

DESCRIPTION
    flush_site() walks the deferred queue, and every message with a
    recipient still to deliver in SITE (the recipient's domain, compared
    without regard to case; "[192.0.2.1]" matches an address literal) is
    made due at once (its retry time set to now). Then qmgr is asked to
    scan the deferred queue ("D"). It returns how many messages it made
    due; a file that vanishes or is damaged is passed over.

    eligible() says whether SITE is in fast_flush_domains, as Postfix
    requires of ETRN and of sendmail -qR.

    Postfix's flush service keeps a log per destination so that it
    need not read the deferred queue; this one reads it. That costs
    one envelope read per deferred message, on the caller's thread
    (smtpd runs it on a worker thread and answers ETRN at once).

SECURITY
    SITE comes from an SMTP client (ETRN): it is only compared with
    domains, never used in a path.
"""

from __future__ import annotations

import os
import time

from mta.common.match_list import DomainList
from mta.common.trigger import TRIGGER_DEFERRED, trigger_qmgr
from mta.qmgr.scan import iter_queue
from mta.queue.queue_file import QueueFileError, queue_layout, read_queue_file


def eligible(cfg, site: str) -> bool:
    """Whether site may be flushed on request (fast_flush_domains)."""
    return bool(DomainList.from_param(cfg, "fast_flush_domains").match(site.strip("[]")))


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def flush_site(cfg, site: str) -> int:
    """Make site's deferred mail due now and tell qmgr; how many messages."""
    site = site.lower()
    queue_dir, depth, hashed = queue_layout(cfg)
    now = time.time()
    count = 0
    for _qid, path in iter_queue(queue_dir, "deferred", depth, hashed):
        try:
            msg = read_queue_file(path)
        except (OSError, QueueFileError):
            continue
        if any(_domain(r.address) == site for r in msg.recipients if not r.done):
            try:
                os.utime(path, (now, now - 1))
            except OSError:
                continue
            count += 1
    if count:
        trigger_qmgr(cfg, TRIGGER_DEFERRED)
    return count
