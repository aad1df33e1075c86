"""common.report_parse - read a delivery status notification or a feedback report

SYNOPSIS
    from mta.common.report_parse import parse_report
    report = parse_report(content, limit=1024 * 1024)
    report.kind                      # "dsn", "arf" or "none"
    report.problem                   # "" when the report can be used, else why not
    for r in report.recipients:      # DSN: one per recipient block
        r.final_recipient, r.original_recipient, r.action, r.status, r.diagnostic
    report.feedback_type, report.original_rcpt_to, report.original_mail_from
    report.message_id, report.return_path, report.original_to   # the reported message

DESCRIPTION
    Mail that comes back to a bounce address is one of two machine
    readable kinds, or neither:

    dsn     a multipart/report with a message/delivery-status part (RFC
            3464, or message/global-delivery-status, RFC 6533): one
            block of per-message fields (Reporting-MTA:), then one
            block per recipient (Final-Recipient:, Original-Recipient:,
            Action:, Status:, Diagnostic-Code:, Remote-MTA:).
    arf     a multipart/report with a message/feedback-report part (RFC
            5965): Feedback-Type:, Original-Rcpt-To: (any number),
            Original-Mail-From:, Reported-Domain:, Source-IP:, ...
    none    anything else: problem says why.

    The report part is looked for among the parts of the message and of
    its multiparts, but never inside an attached message (a forwarded
    report is not a report), so a message/delivery-status part under a
    top-level type other than multipart/report (as some servers send
    it) is still found. No attempt is made to read a bounce written for
    people only.

    When the report carries the message it is about, or that message's
    header (message/rfc822, text/rfc822-headers, message/global,
    message/global-headers), its Message-ID:, Return-Path: and the
    addresses of its To: are kept: a feedback report without
    Original-Rcpt-To: may still name the complainer there.

    Addresses lose their type ("rfc822;", "utf-8;") and angle brackets;
    an address of another type (x400 ...) is left empty. Field values
    are unfolded; bytes that are not UTF-8 become U+FFFD. Status: is
    kept only when it is an RFC 3463 code (class.subject.detail). A
    report that has its part but no recipient block (DSN) or no
    Feedback-Type: (ARF) keeps its kind and gets a problem.

    Only the first limit bytes of the content are parsed: a truncated
    report usually still has its report part, which comes before the
    returned message. No more than MAX_PARTS parts and MAX_BLOCKS
    recipient blocks are looked at.

SECURITY
    Sees untrusted content from anywhere on the Internet. Pure: no I/O.
    Time and memory are bounded by limit; any input, however broken,
    gives a Report (with kind "none" and a problem when nothing could be
    read), never an exception.

STANDARDS
    RFC 3462/6522 (multipart/report), RFC 3464 (DSN), RFC 3463 (status
    codes), RFC 5965 (ARF), RFC 6533 (internationalized DSNs).

SEE ALSO
    mta/bouncein (the agent that acts on reports), mta/bounce/notice.py
    (the notices mta itself sends)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from email.parser import BytesParser, Parser
from email.utils import getaddresses

KIND_DSN = "dsn"  # RFC 3464 delivery status notification
KIND_ARF = "arf"  # RFC 5965 feedback report
KIND_NONE = "none"  # neither: see Report.problem
MAX_PARTS = 100  # MIME parts looked at
MAX_BLOCKS = 1000  # DSN recipient blocks read
MAX_VALUE = 1000  # characters kept of one field value

DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
ARF_TYPES = ("message/feedback-report",)
ORIGINAL_TYPES = (
    "message/rfc822",
    "text/rfc822-headers",
    "message/global",
    "message/global-headers",
    "message/rfc822-headers",
)
ADDRESS_TYPES = ("rfc822", "utf-8")  # address types read; others are left empty

_STATUS_RE = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?!\d)")


@dataclass
class ReportRecipient:
    """One recipient block of a DSN."""

    final_recipient: str = ""
    original_recipient: str = ""
    action: str = ""  # failed, delayed, delivered, relayed, expanded (lower case)
    status: str = ""  # "5.1.1"; "" when missing or not a status code
    diagnostic: str = ""  # the Diagnostic-Code: text without its type ("550 5.1.1 ...")
    remote_mta: str = ""  # Remote-MTA: without its type


@dataclass
class Report:
    kind: str = KIND_NONE
    problem: str = ""  # why the report cannot be used; "" when it can
    reporting_mta: str = ""
    recipients: list[ReportRecipient] = field(default_factory=list)
    # feedback reports
    feedback_type: str = ""  # abuse, fraud, virus, other, not-spam, auth-failure ... (lower case)
    user_agent: str = ""
    original_rcpt_to: list[str] = field(default_factory=list)
    original_mail_from: str = ""
    reported_domain: str = ""
    source_ip: str = ""
    # the reported or returned message, when the report has it or its header
    message_id: str = ""
    return_path: str = ""
    original_to: list[str] = field(default_factory=list)


def parse_report(content: bytes, limit: int) -> Report:
    """The report in the first limit bytes of content (see DESCRIPTION)."""
    data = bytes(content[: max(0, limit)])
    if len(content) > len(data) and b"\n" in data:
        data = data[: data.rindex(b"\n") + 1]  # no half line at the cut
    try:
        return _parse(data)
    except Exception as exc:  # noqa: BLE001 - the email package on hostile input
        return Report(problem=f"cannot parse the message: {type(exc).__name__}")


def _parse(data: bytes) -> Report:
    msg = BytesParser(policy=policy.compat32).parsebytes(data)
    dsn_part = arf_part = original = None
    for part in _parts(msg):
        ctype = part.get_content_type()
        if ctype in DSN_TYPES and dsn_part is None:
            dsn_part = part
        elif ctype in ARF_TYPES and arf_part is None:
            arf_part = part
        elif ctype in ORIGINAL_TYPES and original is None:
            original = part
    if dsn_part is None and arf_part is None:
        return Report(problem="not a delivery status notification or feedback report")
    report = Report()
    if arf_part is not None and (dsn_part is None or _report_type(msg) == "feedback-report"):
        report.kind = KIND_ARF
        _read_arf(report, _blocks(arf_part))
    else:
        report.kind = KIND_DSN
        _read_dsn(report, _blocks(dsn_part))
    if original is not None:
        try:
            _read_original(report, original)
        except Exception:  # noqa: BLE001 - the report part alone is still worth having
            pass
    return report


def _report_type(msg: Message) -> str:
    return _clean(str(msg.get_param("report-type", "") or "")).lower()


def _parts(msg: Message):
    """The message and its multipart descendants, not descending into attached messages."""
    todo = [msg]
    seen = 0
    while todo and seen < MAX_PARTS:
        part = todo.pop(0)
        seen += 1
        yield part
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            payload = part.get_payload()
            if isinstance(payload, list):
                todo.extend(p for p in payload if isinstance(p, Message))


def _blocks(part: Message) -> list[list[tuple[str, str]]]:
    """The field blocks of a report part: [[(lower-case name, value), ...], ...]."""
    payload = part.get_payload()
    if isinstance(payload, list):
        # message/delivery-status: the parser made one Message per block; any
        # other message/* type: one Message, its body the blocks after the first
        msgs = []
        for p in payload:
            if isinstance(p, Message):
                msgs.append(p)
                if isinstance(p.get_payload(), str):
                    body = _decoded_text(p)
                    if body.strip():
                        msgs.extend(_split_blocks(body))
    else:
        msgs = _split_blocks(_decoded_text(part))
    blocks = []
    for m in msgs[: MAX_BLOCKS + 1]:
        fields = [(str(name).lower(), _clean(value)) for name, value in m.raw_items()]
        if fields:
            blocks.append(fields)
    return blocks


def _split_blocks(text: str) -> list[Message]:
    """Field blocks separated by empty lines, each parsed as a header."""
    chunks = re.split(r"\r?\n[ \t]*\r?\n", text.strip("\r\n"), maxsplit=MAX_BLOCKS)
    return [Parser(policy=policy.compat32).parsestr(c, headersonly=True) for c in chunks]


def _decoded_text(part: Message) -> str:
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        raw = str(part.get_payload() or "").encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "replace")


def _clean(value) -> str:
    """A field value as one line of valid text, of bounded length."""
    if not isinstance(value, str):
        value = str(value)
    text = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return " ".join(text.split())[:MAX_VALUE]


def _first(fields: list[tuple[str, str]], name: str) -> str:
    return next((v for n, v in fields if n == name), "")


def _typed(value: str) -> str:
    """The value of "type; value" (Remote-MTA:, Diagnostic-Code:), without the type."""
    kind, sep, rest = value.partition(";")
    return rest.strip() if sep and kind.strip() and " " not in kind.strip() else value.strip()


def _address(value: str) -> str:
    """The address of "rfc822; user@example.com"; "" for another type or none."""
    kind, sep, rest = value.partition(";")
    if sep:
        if kind.strip().lower() not in ADDRESS_TYPES:
            return ""
        value = rest
    elif "@" not in value:
        return ""
    value = value.strip().removeprefix("<").removesuffix(">").strip()
    return "" if any(c.isspace() for c in value) else value


def _status(value: str) -> str:
    m = _STATUS_RE.match(value.strip())
    return ".".join(m.groups()) if m else ""


def _read_dsn(report: Report, blocks: list[list[tuple[str, str]]]) -> None:
    if blocks and not any(n in ("final-recipient", "original-recipient") for n, _ in blocks[0]):
        report.reporting_mta = _typed(_first(blocks[0], "reporting-mta"))
        blocks = blocks[1:]
    for fields in blocks[:MAX_BLOCKS]:
        names = {n for n, _ in fields}
        if not names & {"final-recipient", "original-recipient", "action", "status"}:
            continue
        report.recipients.append(
            ReportRecipient(
                final_recipient=_address(_first(fields, "final-recipient")),
                original_recipient=_address(_first(fields, "original-recipient")),
                action=_first(fields, "action").split(" ")[0].lower(),
                status=_status(_first(fields, "status")),
                diagnostic=_typed(_first(fields, "diagnostic-code")),
                remote_mta=_typed(_first(fields, "remote-mta")),
            )
        )
    if not report.recipients:
        report.problem = "delivery status notification without a recipient"


def _read_arf(report: Report, blocks: list[list[tuple[str, str]]]) -> None:
    fields = [f for block in blocks for f in block]  # one block; be lenient about more
    report.feedback_type = _first(fields, "feedback-type").split(" ")[0].lower()
    report.user_agent = _first(fields, "user-agent")
    report.reporting_mta = _typed(_first(fields, "reporting-mta"))
    report.original_mail_from = _address(_first(fields, "original-mail-from"))
    report.original_rcpt_to = [
        a for n, v in fields if n == "original-rcpt-to" and (a := _address(v))
    ][:MAX_BLOCKS]
    report.reported_domain = _first(fields, "reported-domain").lower()
    report.source_ip = _first(fields, "source-ip")
    if not report.feedback_type:
        report.problem = "feedback report without Feedback-Type"


def _read_original(report: Report, part: Message) -> None:
    payload = part.get_payload()
    if isinstance(payload, list):
        header = next((p for p in payload if isinstance(p, Message)), None)
    elif part.get_content_maintype() == "text" or "headers" in part.get_content_subtype():
        text = _decoded_text(part)
        header = Parser(policy=policy.compat32).parsestr(text, headersonly=True)
    else:
        header = None
    if header is None:
        return
    fields = [(str(n).lower(), _clean(v)) for n, v in header.raw_items()]
    report.message_id = _first(fields, "message-id")
    report.return_path = _address(_first(fields, "return-path"))
    tos = [v for n, v in fields if n == "to"]
    report.original_to = [a for _, a in getaddresses(tos) if a and "@" in a][:MAX_BLOCKS]
