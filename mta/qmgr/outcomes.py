"""qmgr.outcomes - what qmgr does with recipient outcomes besides the queue: events, suppression

SYNOPSIS
    from mta.qmgr.outcomes import Outcomes
    outcomes = Outcomes(cfg)                     # once, in qmgr
    left = outcomes.suppress(msg, path, rcpts)   # at activation: drops the suppressed
    outcomes.record(msg, statuses, site, transport)   # each agent's answer
    outcomes.expired(msg, statuses)              # recipients bounced at expiry

DESCRIPTION
    qmgr sees every recipient's outcome (the agents send their statuses
    back to it), so it is the one writer of the event log
    (event_log_file, common/events.py) and the one place that learns
    from synchronous bounces: a permanent failure whose bounce class
    suppression_classes lists adds the recipient to the suppression list
    (common/suppress.py), with the class's lifetime.

    suppress() runs when a message enters the active queue, for every
    entry path (smtpd with suppression_action = drop, sendmail, qmqpd,
    a deferred retry after the address was suppressed by another
    message): a recipient the list suppresses for this sender is marked
    done in the queue file and logged in the maillog's form with
    status=suppressed; no notice goes to the sender (as for a DISCARD),
    and the event log gets a "suppressed" event. A recipient is dropped
    only after its done mark is on disk. Address probes (verify) are
    not suppressed.

    A suppression list or event log that fails (a full disk, a broken
    file) is logged and skipped: neither ever holds mail up or loses it.

SECURITY
    Addresses and replies come from the network; they are only stored.
"""

from __future__ import annotations

import time

from mta import log
from mta.common.bounce_class import classifier_for
from mta.common.deliver_request import RequestRecipient
from mta.common.dsn import ACTION_FAILED, RecipientStatus, status_line
from mta.common.events import EventLog, status_event
from mta.common.kv_store import StoreError
from mta.common.suppress import open_suppression
from mta.config.errors import ConfigError
from mta.queue.queue_file import QueueFileError, QueueMessage, mark_done
from mta.queue.rec_type import QF_VERIFY

SUPPRESSED_DSN = "5.7.1"  # the code a suppressed recipient is logged with


class Outcomes:
    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.events = EventLog.from_config(cfg)
        self.classes = classifier_for(cfg)
        self.suppression = None
        try:
            self.suppression = open_suppression(cfg)
        except (ConfigError, StoreError) as exc:
            log.warning("suppression list not used: %s", exc)
        self.store_failed = False

    # ---- suppression
    def suppress(
        self, msg: QueueMessage, path: str, rcpts: list[RequestRecipient], active_time: float
    ) -> list[RequestRecipient]:
        """The recipients to deliver: rcpts less those suppressed (marked done)."""
        if self.suppression is None or msg.flags & QF_VERIFY or not rcpts:
            return rcpts
        now = time.time()
        hits: list[tuple[RequestRecipient, object]] = []
        try:
            for r in rcpts:
                entry = self.suppression.check(r.address, msg.sender, now)
                if entry is not None:
                    hits.append((r, entry))
        except StoreError as exc:
            self._store_error(exc)
            return rcpts
        if not hits:
            return rcpts
        try:
            mark_done(path, [r.offset for r, _ in hits])
        except (OSError, QueueFileError) as exc:
            log.warning("%s: cannot drop suppressed recipients: %s", msg.queue_id, exc)
            return rcpts
        delays = (max(0.0, active_time - msg.arrival), max(0.0, now - active_time), 0.0, 0.0)
        statuses = []
        for r, entry in hits:
            since = time.strftime("%Y-%m-%d", time.gmtime(entry.added))
            why = entry.klass or entry.source
            reason = f"recipient is on the suppression list ({why}, since {since})"
            st = RecipientStatus.of(r, ACTION_FAILED, SUPPRESSED_DSN, reason, word="suppressed")
            st.klass, st.delays = entry.klass, delays
            log.info("%s", status_line(msg.queue_id, st, delays))
            statuses.append(st)
        self._events(msg, statuses, "", "")
        dropped = {r.offset for r, _ in hits}
        return [r for r in rcpts if r.offset not in dropped]

    def _store_error(self, exc: StoreError) -> None:
        if not self.store_failed:
            log.warning("suppression list: %s; going on without it", exc)
        self.store_failed = True

    # ---- agent answers
    def record(
        self, msg: QueueMessage, statuses: list[RecipientStatus], site: str, transport: str
    ) -> None:
        """One agent's statuses: events, and the hard bounces learned."""
        for st in statuses:
            if not st.klass:
                st.klass = self.classes.of_status(st)  # qmgr's own deferrals
        self._events(msg, statuses, site, transport)
        if self.suppression is None:
            return
        for st in statuses:
            if st.action != ACTION_FAILED or msg.flags & QF_VERIFY:
                continue
            try:
                entry = self.suppression.learn(
                    st.address,
                    st.klass,
                    st.dsn,
                    st.diag_text or st.reason,
                    msg.sender,
                    msg.queue_id,
                )
            except (StoreError, ValueError) as exc:
                if isinstance(exc, StoreError):
                    self._store_error(exc)
                continue
            if entry is not None:
                log.info(
                    "%s: to=<%s>, suppressed from now on (%s, %s)",
                    msg.queue_id,
                    entry.address,
                    entry.klass,
                    "global" if not entry.scope else f"for {entry.scope}",
                )

    def expired(self, msg: QueueMessage, statuses: list[RecipientStatus]) -> None:
        for st in statuses:
            st.status_word = st.status_word or "expired"
            st.klass = st.klass or self.classes.classify(st.dsn, st.diag_text or st.reason)
        self._events(msg, statuses, "", "")

    def _events(
        self, msg: QueueMessage, statuses: list[RecipientStatus], site: str, transport: str
    ) -> None:
        if self.events is None or not statuses or msg.flags & QF_VERIFY:
            return
        now = time.time()
        mid = msg.attrs.get("message_id", "")
        self.events.write_many(
            [
                status_event(
                    st, msg.queue_id, msg.sender, mid, site or _domain(st.address), transport, now
                )
                for st in statuses
            ]
        )


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()
