"""mta.bouncein - the bounce address handler: learn from asynchronous bounces and complaints

SYNOPSIS
    master.cf:       bouncein  unix  -  -  n  -  -  bouncein
    transport_maps:  bounces.shop.example  bouncein:
                     bounces@shop.example  bouncein:

DESCRIPTION
    Bulk mail goes out with a bounce address as its envelope sender,
    often a VERP one (bounces+user=domain.tld@shop.example). What comes
    back to it later is routed to this delivery agent: non-delivery
    notices that remote servers send after they accepted the mail (RFC
    3464 DSNs), and complaints that mailbox providers send from their
    feedback loops (RFC 5965 ARF reports). Each message is read
    (common/report_parse.py, its first bouncein_report_size_limit bytes)
    and what it says goes where a synchronous bounce's outcome goes: the
    suppression list (common/suppress.py, learn(), with
    suppression_classes and suppression_scope) and the event log
    (common/events.py).

    A DSN: each recipient block whose Action: is failed is classified
    (common/bounce_class.py, from Status: and Diagnostic-Code:), learned
    (source "bounce"; only a 5.x.x status of a class suppression_classes
    lists suppresses, as for synchronous bounces) and logged as a
    "bounced" event; a delayed one is a "deferred" event only; delivered,
    relayed and expanded ones are ignored.

    An ARF report whose Feedback-Type: bouncein_complaint_types lists
    (abuse, fraud, virus, other) is a complaint: its recipient is
    learned with class complaint (source "feedback"; suppression_classes
    gives its lifetime) and logged as a "feedback" event. Other types
    (not-spam, auth-failure ...) are consumed and only logged.

    Whom a report is about. The envelope recipient this agent delivers
    to is the bounce address; when it (or, failing that, the address as
    first received) decodes as VERP with bouncein_verp_delimiters
    (common/verp.verp_recipient), the decoded address is the one
    recipient the reported message was sent to, and it wins over what
    the report says: VERP is written by the sender, while a report may
    name an address the mail was forwarded to. For a DSN, the block that
    names the VERP address (as Final-Recipient: or Original-Recipient:),
    or else the only block, is about the VERP recipient; any other block
    is about the address it names. Without VERP, a block is about its
    Original-Recipient: (the address as the sender gave it), else its
    Final-Recipient:. A complaint without VERP is about each address in
    Original-Rcpt-To:, else the VERP address in Original-Mail-From: or
    in the reported message's Return-Path:, else that message's To:
    when it names exactly one address. A complaint that names nobody is
    logged ("feedback report without a recipient") and consumed.

    The sender that suppression_scope = sender_domain scopes entries by
    is the bounce address: its domain is the sending domain.

    Every message handled is reported delivered (relay=bouncein) with a
    reason that says what was learned ("DSN: 2 failed recipients
    learned (1 suppressed)"), and each address added to the list gets
    qmgr's maillog line ("QUEUEID: to=<addr>, suppressed from now on
    (class, scope)"). A message that is not a usable report is bounced
    with 5.6.0 and the reason, so that it is never silently lost: qmgr
    returns it to its sender, or, for the null sender that reports have,
    to postmaster. A suppression list that cannot be opened or written
    defers the message (4.3.0) to be read again later; nothing is
    written to the event log until every address of the message is
    learned, so a retry does not log events twice.

    Event fields: queue_id is the report's, message_id the reported
    message's when the report carries its header, sender the bounce
    address, recipient the address learned, orig_recipient a DSN's
    Original-Recipient: when it differs, transport this service's name,
    relay the DSN's Remote-MTA: (else "none"), reply the diagnostic (a
    DSN) or the report's Feedback-Type:, Reporting-MTA: and Source-IP:
    (a complaint).

SECURITY
    Reads untrusted content: anyone who can mail the bounce address can
    put addresses on the suppression list (with suppression_scope =
    sender_domain only for that address's domain). Addresses and texts
    are only stored, never interpreted. Runs unprivileged as mail_owner;
    reads the queue file and writes the suppression list, the event log
    and the queue file's done marks.

STANDARDS
    RFC 3464 (DSN), RFC 3463 (status codes), RFC 5965 (ARF).

SEE ALSO
    mta/common/report_parse.py, mta/qmgr/outcomes.py (synchronous
    bounces), Postfix VERP_README
"""

from __future__ import annotations

from dataclasses import dataclass

from mta import log
from mta.common.bounce_class import COMPLAINT, classifier_for
from mta.common.deliver_agent import DeliveryJob
from mta.common.deliver_request import RequestRecipient
from mta.common.dsn import ACTION_DELAYED, ACTION_FAILED
from mta.common.events import EventLog, report_event
from mta.common.kv_store import StoreError
from mta.common.report_parse import KIND_DSN, Report, ReportRecipient, parse_report
from mta.common.suppress import SuppressionList, open_suppression
from mta.common.verp import verp_recipient
from mta.config.errors import ConfigError

BOUNCEIN_RELAY = "bouncein"  # relay= of every message this agent consumes
BOUNCEIN_NOT_REPORT_DSN = "5.6.0"  # a message that is not a usable report
BOUNCEIN_STORE_DSN = "4.3.0"  # the suppression list failed: try again later
EVENT_BOUNCED = "bounced"
EVENT_DEFERRED = "deferred"
EVENT_FEEDBACK = "feedback"


@dataclass
class Finding:
    """One address a report says something about."""

    event: str  # bounced, deferred, feedback
    address: str
    klass: str
    dsn: str
    reply: str
    orig: str = ""
    relay: str = "none"
    source: str = "bounce"  # the suppression list's source: bounce or feedback

    @property
    def learns(self) -> bool:
        return self.event != EVENT_DEFERRED


class BounceHandler:
    """What one configuration needs to act on reports: built once per process."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.limit = cfg.get_size("bouncein_report_size_limit")
        self.delims = cfg.get("bouncein_verp_delimiters")
        self.complaint_types = {t.lower() for t in cfg.get_list("bouncein_complaint_types")}
        self.classes = classifier_for(cfg)
        self.events = EventLog.from_config(cfg)
        self.wants_list = bool(cfg.get("suppression_map").strip())
        self.suppression: SuppressionList | None = None

    def open_list(self) -> SuppressionList | None:
        """The suppression list (None when there is none); StoreError, ConfigError."""
        if self.suppression is None and self.wants_list:
            self.suppression = open_suppression(self.cfg)
        return self.suppression

    # ---- whom a report is about
    def verp_address(self, rcpt: RequestRecipient) -> str | None:
        for address in (rcpt.address, rcpt.orig):
            found = verp_recipient(address, self.delims) if address else None
            if found:
                return found
        return None

    def dsn_findings(self, report: Report, verp: str | None) -> list[Finding]:
        blocks = report.recipients
        about: list[tuple[str, ReportRecipient]] = []
        if verp:
            named = verp.lower()
            mine = next(
                (
                    r
                    for r in blocks
                    if named in (r.final_recipient.lower(), r.original_recipient.lower())
                ),
                blocks[0] if len(blocks) == 1 else None,
            )
            about = [(verp if r is mine else "", r) for r in blocks]
        else:
            about = [("", r) for r in blocks]
        out = []
        for address, r in about:
            address = address or r.original_recipient or r.final_recipient
            if not address:
                continue
            if r.action == ACTION_FAILED:
                event, dsn = EVENT_BOUNCED, r.status or "5.0.0"
            elif r.action == ACTION_DELAYED:
                event, dsn = EVENT_DEFERRED, r.status or "4.0.0"
            else:
                continue
            out.append(
                Finding(
                    event,
                    address,
                    self.classes.classify(dsn, r.diagnostic),
                    dsn,
                    r.diagnostic,
                    orig=r.original_recipient,
                    relay=r.remote_mta or "none",
                )
            )
        return out

    def complainers(self, report: Report, verp: str | None) -> list[str]:
        if verp:
            return [verp]
        if report.original_rcpt_to:
            return list(dict.fromkeys(report.original_rcpt_to))
        for address in (report.original_mail_from, report.return_path):
            found = verp_recipient(address, self.delims) if address else None
            if found:
                return [found]
        if len(report.original_to) == 1:
            return list(report.original_to)
        return []

    def arf_findings(self, report: Report, verp: str | None) -> list[Finding]:
        if report.feedback_type not in self.complaint_types:
            return []
        parts = [f"Feedback-Type: {report.feedback_type}"]
        if report.reporting_mta:
            parts.append(f"Reporting-MTA: {report.reporting_mta}")
        if report.source_ip:
            parts.append(f"Source-IP: {report.source_ip}")
        reply = "; ".join(parts)
        return [
            Finding(EVENT_FEEDBACK, address, COMPLAINT, "", reply, source="feedback")
            for address in self.complainers(report, verp)
        ]

    # ---- one envelope recipient (a bounce address) of one message
    def handle(self, job: DeliveryJob, rcpt: RequestRecipient, report: Report) -> None:
        qid = job.req.queue_id
        if report.problem:
            job.bounce(rcpt, report.problem, dsn=BOUNCEIN_NOT_REPORT_DSN, relay=BOUNCEIN_RELAY)
            return
        verp = self.verp_address(rcpt)
        if report.kind == KIND_DSN:
            findings = self.dsn_findings(report, verp)
        else:
            findings = self.arf_findings(report, verp)
        try:
            entries = self.learn(findings, rcpt.address, qid)
        except (StoreError, ConfigError) as exc:
            log.warning("%s: suppression list: %s", qid, exc)
            job.defer(
                rcpt, f"suppression list: {exc}", dsn=BOUNCEIN_STORE_DSN, relay=BOUNCEIN_RELAY
            )
            return
        for entry in entries:
            log.info(
                "%s: to=<%s>, suppressed from now on (%s, %s)",
                qid,
                entry.address,
                entry.klass,
                "global" if not entry.scope else f"for {entry.scope}",
            )
        if self.events is not None and findings:
            self.events.write_many([self.event_of(f, job, rcpt, report) for f in findings])
        complaint = report.feedback_type in self.complaint_types
        if report.kind != KIND_DSN and not findings:
            if complaint:
                log.info("%s: feedback report without a recipient", qid)
            else:
                log.info(
                    "%s: feedback report of type %s: not a complaint", qid, report.feedback_type
                )
        reason = summary(report, findings, len(entries), complaint)
        job.sent(rcpt, reason, relay=BOUNCEIN_RELAY, dsn="2.0.0")

    def event_of(
        self, f: Finding, job: DeliveryJob, rcpt: RequestRecipient, report: Report
    ) -> dict:
        return report_event(
            f.event,
            job.req.queue_id,
            sender=rcpt.address,
            recipient=f.address,
            klass=f.klass,
            dsn=f.dsn,
            reply=f.reply,
            message_id=report.message_id,
            orig_recipient=f.orig,
            relay=f.relay,
            transport=job.req.transport or BOUNCEIN_RELAY,
        )

    def learn(self, findings: list[Finding], bounce_address: str, qid: str) -> list:
        """The entries added for findings; StoreError/ConfigError when the list fails."""
        sl = self.open_list()
        if sl is None:
            return []
        added = []
        for f in findings:
            if not f.learns:
                continue
            try:
                entry = sl.learn(
                    f.address, f.klass, f.dsn, f.reply, bounce_address, qid, source=f.source
                )
            except ValueError as exc:
                log.warning("%s: not learned: %s", qid, exc)
                continue
            if entry is not None:
                added.append(entry)
        return added


def summary(report: Report, findings: list[Finding], suppressed: int, complaint: bool) -> str:
    """The reason text of a consumed report: what was learned.

    complaint: the report's Feedback-Type is one of bouncein_complaint_types."""
    if report.kind == KIND_DSN:
        failed = sum(1 for f in findings if f.event == EVENT_BOUNCED)
        delayed = len(findings) - failed
        parts = []
        if failed:
            noun = "recipient" if failed == 1 else "recipients"
            parts.append(f"{failed} failed {noun} learned")
            if suppressed:
                parts[-1] += f" ({suppressed} suppressed)"
        if delayed:
            parts.append(f"{delayed} delayed")
        return "DSN: " + (", ".join(parts) if parts else "nothing to learn")
    label = f"ARF {report.feedback_type}"
    if not complaint:
        return f"{label}: not a complaint, nothing learned"
    if not findings:
        return f"{label}: feedback report without a recipient"
    names = ", ".join(f.address for f in findings[:3])
    if len(findings) > 3:
        names += f" and {len(findings) - 3} more"
    text = f"{label}: complaint learned for {names}"
    return text + (f" ({suppressed} suppressed)" if suppressed else "")


_handlers: dict[int, BounceHandler] = {}


def handler_for(cfg) -> BounceHandler:
    found = _handlers.get(id(cfg))
    if found is None:
        found = _handlers[id(cfg)] = BounceHandler(cfg)
    return found


def read_head(job: DeliveryJob, limit: int) -> bytes:
    """The first limit bytes of the content (and the rest of the line they end in)."""
    out: list[bytes] = []
    size = 0
    for line in job.content_lines():
        out.append(line)
        size += len(line) + 1
        if size > limit:
            break
    return b"\n".join(out) + b"\n"


async def deliver(job: DeliveryJob) -> None:
    handler = handler_for(job.cfg)
    report = parse_report(read_head(job, handler.limit), handler.limit)
    for rcpt in job.pending():
        handler.handle(job, rcpt, report)
