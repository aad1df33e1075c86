"""mta.error - the error and retry delivery agents: fail on purpose

SYNOPSIS
    master.cf:  error  unix  -  -  n  -  -  error
                retry  unix  -  -  n  -  -  error
    transport_maps:  old.example  error:5.1.2 this domain is gone

DESCRIPTION
    The error service bounces every recipient of a request and the
    retry service (the same program under the name "retry") defers
    them; the request's next hop is the reason. A reason that starts
    with an enhanced status code of the right class ("5.1.2 text" for
    error, "4.3.2 text" for retry) gives that code; otherwise 5.0.0 or
    4.0.0. Used by transport_maps entries and by trivial-rewrite for
    addresses it refuses (the "error" transport).

SECURITY
    Reads the request only; never reads message content.
"""

from __future__ import annotations

import re

from mta.common.deliver_agent import DeliveryJob

_CODE = re.compile(r"^([45])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")


def split_reason(text: str, klass: str) -> tuple[str, str]:
    """(enhanced code, reason) from a next-hop text, for the class "4" or "5"."""
    m = _CODE.match(text)
    if m and m.group(1) == klass:
        return f"{m.group(1)}.{m.group(2)}.{m.group(3)}", text[m.end() :] or "delivery failed"
    return f"{klass}.0.0", text or (
        "delivery temporarily suspended" if klass == "4" else "delivery failed"
    )


def make_deliver(retry: bool):
    async def deliver(job: DeliveryJob) -> None:
        dsn, reason = split_reason(job.req.nexthop, "4" if retry else "5")
        for rcpt in job.pending():
            if retry:
                job.defer(rcpt, reason, dsn)
            else:
                job.bounce(rcpt, reason, dsn)

    deliver.verifies = True  # no side effects: a probe gets the same answer
    return deliver
