"""qmgr.redirect - the REDIRECT action a message carries in its envelope

SYNOPSIS
    from mta.qmgr.redirect import Routing
    routing = Routing(cfg)
    rcpts = routing.recipients(msg, pending)    # RequestRecipient list to resolve

DESCRIPTION
    An access table in smtpd (REDIRECT addr, FILTER transport:dest) or
    a header or body check in cleanup leaves the envelope attributes
    "redirect" and "filter" in the queue file. qmgr acts on them when
    it files a message's recipients.

    REDIRECT replaces every recipient of the message, as Postfix's
    queue manager does: the first recipient not yet done is delivered
    to the redirect address (made canonical, "user" becoming
    user@$myorigin), keeping its original address (orig_to= in the
    log), its ORCPT and its NOTIFY, and its place in the queue file,
    so that its done mark ends the message; the other recipients are
    not delivered and leave with the message. A redirected message
    with a recipient marked done has had its delivery (a crash came
    before the file was removed): recipients() returns nothing, and
    the message is finished without a second delivery. A REDIRECT address that
    is empty after canonicalization is ignored with a warning.

    FILTER is the content filter: cleanup records it and qmgr sends
    every recipient of the message to it (mta/qmgr/content_filter.py).
    With REDIRECT too, the redirect's recipient goes to the filter.

SECURITY
    The attributes come from the operator's tables and checks, copied
    into the queue file by cleanup; qmgr runs as mail_owner.

SEE ALSO
    access(5) and header_checks(5) of Postfix: REDIRECT, FILTER;
    mta/qmgr/manager.py (activate)
"""

from __future__ import annotations

from mta import log
from mta.common.deliver_request import RequestRecipient
from mta.queue.queue_file import QueueMessage
from mta.trivial_rewrite.rewrite import Rewriter

ATTR_REDIRECT = "redirect"  # envelope attribute: deliver to this address instead
ATTR_FILTER = "filter"  # envelope attribute: transport:destination of a content filter


class Routing:
    """What REDIRECT makes of a message's pending recipients."""

    def __init__(self, cfg) -> None:
        self.rewriter = Rewriter(cfg)

    def recipients(self, msg: QueueMessage, pending: list) -> list[RequestRecipient]:
        """The recipients to resolve and deliver for msg (pending: its recipients not done)."""
        target = self.redirect_target(msg)
        if target and any(r.done for r in msg.recipients):
            return []  # only the redirect's own recipient is ever marked done: it is over
        if target and pending:
            first = pending[0]
            return [
                RequestRecipient(
                    target, first.offset, first.orig or first.address, first.dsn_orcpt, first.notify
                )
            ]
        return [
            RequestRecipient(r.address, r.offset, r.orig, r.dsn_orcpt, r.notify) for r in pending
        ]

    def redirect_target(self, msg: QueueMessage) -> str:
        """The canonical REDIRECT address of msg, or "" when it has none."""
        raw = msg.attrs.get(ATTR_REDIRECT, "").strip()
        if not raw:
            return ""
        if raw.startswith("<") and raw.endswith(">"):
            raw = raw[1:-1]
        target = self.rewriter.rewrite(raw, "local") if raw else ""
        if not target:
            log.warning("%s: ignoring empty REDIRECT address", msg.queue_id)
        return target
