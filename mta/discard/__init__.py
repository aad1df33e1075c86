"""mta.discard - the discard delivery agent: accept and throw away

SYNOPSIS
    master.cf:  discard   unix  -  -  n  -  -  discard
    transport_maps:  example.com  discard:silently dropped

DESCRIPTION
    Every recipient of a request is reported delivered without being
    delivered anywhere; the next hop of the request is the reason text
    in the log (Postfix's discard(8)). The queue file is left to qmgr.

SECURITY
    Reads the request only; never reads or writes message content.
"""

from __future__ import annotations

from mta.common.deliver_agent import DeliveryJob


async def deliver(job: DeliveryJob) -> None:
    reason = job.req.nexthop or "discarded"
    for rcpt in job.pending():
        job.sent(rcpt, reason, relay="none", dsn="2.0.0")


deliver.verifies = True  # no side effects: a probe gets the same answer
