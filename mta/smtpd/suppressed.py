"""smtpd.suppressed - refuse at RCPT TO a recipient on the suppression list

SYNOPSIS
    from mta.smtpd.suppressed import RcptSuppression
    gate = RcptSuppression(cfg)              # once per smtpd process
    verdict = gate.verdict(recipient, sender)   # None, or a Verdict to refuse with

DESCRIPTION
    With suppression_map set and suppression_action = reject (the
    default), a recipient the suppression list (common/suppress.py)
    holds for the sender is refused after the recipient restrictions
    pass, with 550 and a status code that says why: 5.1.1 for an
    invalid or inactive mailbox, 5.1.2 for a domain that was not found,
    5.7.1 for a complaint or anything else. The refusal is logged as
    every restriction's is ("NOQUEUE: reject: RCPT from ..."). With
    suppression_action = drop smtpd accepts the recipient and qmgr drops
    it (status=suppressed).

    A list that cannot be read is logged once and the recipient is
    accepted: qmgr checks again when the message is queued.

SECURITY
    The address comes from the client; it is only looked up.
"""

from __future__ import annotations

from mta import log
from mta.common.kv_store import StoreError
from mta.common.suppress import open_suppression
from mta.config.errors import ConfigError
from mta.smtpd.checks import Verdict

STATUS_BY_CLASS = {
    "invalid_mailbox": "5.1.1",
    "inactive_mailbox": "5.1.1",
    "domain_not_found": "5.1.2",
}


class RcptSuppression:
    def __init__(self, cfg) -> None:
        self.list = None
        self.failed = False
        if cfg.get("suppression_action").strip().lower() != "reject":
            return
        try:
            self.list = open_suppression(cfg)
        except (ConfigError, StoreError) as exc:
            log.warning("suppression list not used: %s", exc)

    def verdict(self, recipient: str, sender: str) -> Verdict | None:
        if self.list is None:
            return None
        try:
            entry = self.list.check(recipient, sender)
        except StoreError as exc:
            if not self.failed:
                log.warning("suppression list: %s; recipients accepted unchecked", exc)
            self.failed = True
            return None
        if entry is None:
            return None
        dsn = STATUS_BY_CLASS.get(entry.klass, "5.7.1")
        why = entry.klass or entry.source
        return Verdict(
            f"550 {dsn} <{recipient}>: Recipient address rejected: "
            f"address is on the suppression list ({why})",
            "reject",
        )
