"""common.report_parse: DSNs and feedback reports, built by the email package, sent by
mta itself and mangled at random, read back; flufl.bounce as a second opinion on
which addresses a DSN names."""

from __future__ import annotations

import email
import email.policy
import time
from email.message import EmailMessage
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import flufl.bounce
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.bounce.notice import make_notice
from mta.common.dsn import RecipientStatus
from mta.common.report_parse import Report, parse_report
from mta.config import load_config
from tests.support.agent import queue_message
from tests.support.instance import make_instance

LIMIT = 1024 * 1024


def fields(pairs: list[tuple[str, str]]) -> EmailMessage:
    block = EmailMessage(policy=email.policy.compat32)
    for name, value in pairs:
        block[name] = value
    return block


def status_part(blocks: list[list[tuple[str, str]]], ctype="delivery-status") -> MIMEBase:
    """A message/delivery-status (or feedback-report) part of field blocks."""
    part = MIMEBase("message", ctype)
    part.set_payload([fields(b) for b in blocks])
    return part


def original_headers(**headers: str) -> MIMEText:
    text = "".join(f"{k.replace('_', '-')}: {v}\n" for k, v in headers.items())
    part = MIMEText(text, "rfc822-headers")
    return part


def report_message(kind: str, parts: list, top: str = "report") -> bytes:
    msg = MIMEMultipart(top, report_type=kind) if top == "report" else MIMEMultipart(top)
    msg["From"] = "MAILER-DAEMON@mx.far.example"
    msg["Subject"] = "Undelivered Mail Returned to Sender"
    msg.attach(MIMEText("This is the mail system at host mx.far.example.\n"))
    for p in parts:
        msg.attach(p)
    return msg.as_bytes()


def dsn_bytes(rcpts: list[dict], **original: str) -> bytes:
    blocks = [[("Reporting-MTA", "dns; mx.far.example")]]
    for r in rcpts:
        block = [("Final-Recipient", f"rfc822; {r['final']}")]
        if r.get("orig"):
            block.append(("Original-Recipient", f"rfc822;{r['orig']}"))
        block += [("Action", r["action"]), ("Status", r["status"])]
        if r.get("mta"):
            block.append(("Remote-MTA", f"dns; {r['mta']}"))
        if r.get("diag"):
            block.append(("Diagnostic-Code", f"smtp; {r['diag']}"))
        blocks.append(block)
    parts = [status_part(blocks)]
    if original:
        parts.append(original_headers(**original))
    return report_message("delivery-status", parts)


def arf_bytes(report_fields: list[tuple[str, str]], original: bytes | None = None) -> bytes:
    parts = [status_part([report_fields], "feedback-report")]
    if original is not None:
        parts.append(MIMEMessage(email.message_from_bytes(original)))
    return report_message("feedback-report", parts)


# ---- strategies
local = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-+", min_size=1, max_size=12)
domain = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8),
    min_size=2,
    max_size=3,
).map(".".join)
address = st.builds(lambda a, b: f"{a}@{b}", local, domain)
status = st.builds(
    lambda c, s, d: f"{c}.{s}.{d}",
    st.sampled_from("245"),
    st.integers(0, 999),
    st.integers(0, 999),
)
action = st.sampled_from(["failed", "delayed", "delivered", "relayed", "expanded"])
diag = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ABCDEF0123456789.<>@:", max_size=120)
recipient = st.fixed_dictionaries(
    {"final": address, "action": action, "status": status, "diag": diag},
    optional={"orig": address, "mta": domain},
)


# ---- never an exception
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes_give_a_report(data):
    report = parse_report(data, LIMIT)
    assert isinstance(report, Report)
    assert report.kind in ("dsn", "arf", "none")
    assert report.kind != "none" or report.problem


PIECES = [
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\n",
    b'Content-Type: multipart/mixed; boundary="B"\n',
    b"Content-Type: message/delivery-status\n",
    b"Content-Type: message/feedback-report\n",
    b"Content-Type: message/rfc822\n",
    b"Content-Type: text/rfc822-headers\n",
    b"Content-Transfer-Encoding: base64\n",
    b"--B\n",
    b"--B--\n",
    b"\n",
    b"Final-Recipient: rfc822; u@x.example\n",
    b"Final-Recipient: x400; \xff\xfe\n",
    b"Original-Recipient: rfc822;<\n",
    b"Action: failed\n",
    b"Status: 5.1.1\n",
    b"Status: 9.9\n",
    b"Diagnostic-Code: smtp; 550 \xc3\xa9 unknown\n",
    b"  folded on\n",
    b"Feedback-Type: abuse\n",
    b"Original-Rcpt-To: <>\n",
    b"To: =?utf-8?b?////?= <a@b>\n",
    b"Return-Path: <b+u=v@w>\n",
    b"\x00\r\r\n",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=60), st.integers(0, 4000))
def test_mime_shaped_garbage_gives_a_report(pieces, limit):
    report = parse_report(b"".join(pieces), limit)
    assert isinstance(report, Report)
    for r in report.recipients:
        assert not r.status or r.status[0] in "245"


# ---- a reference: DSNs and reports built by the email package read back
@settings(max_examples=100, deadline=None)
@given(st.lists(recipient, min_size=1, max_size=6))
def test_dsn_built_by_the_email_package_reads_back(rcpts):
    report = parse_report(dsn_bytes(rcpts), LIMIT)
    assert (report.kind, report.problem, report.reporting_mta) == ("dsn", "", "mx.far.example")
    got = [
        (r.final_recipient, r.original_recipient, r.action, r.status, r.diagnostic, r.remote_mta)
        for r in report.recipients
    ]
    want = [
        (
            r["final"],
            r.get("orig", ""),
            r["action"],
            r["status"],
            " ".join(r["diag"].split()),
            r.get("mta", ""),
        )
        for r in rcpts
    ]
    assert got == want


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["abuse", "fraud", "virus", "other", "not-spam", "auth-failure"]),
    st.lists(address, max_size=3),
    address,
)
def test_feedback_report_built_by_the_email_package_reads_back(kind, rcpt_to, mail_from):
    pairs = [("Feedback-Type", kind), ("User-Agent", "Provider-FBL/1.0"), ("Version", "1")]
    pairs += [("Original-Mail-From", f"<{mail_from}>")]
    pairs += [("Original-Rcpt-To", f"<{a}>") for a in rcpt_to]
    pairs += [("Source-IP", "192.0.2.9"), ("Reported-Domain", "Shop.Example")]
    report = parse_report(arf_bytes(pairs), LIMIT)
    assert (report.kind, report.problem, report.feedback_type) == ("arf", "", kind)
    assert report.original_rcpt_to == rcpt_to
    assert report.original_mail_from == mail_from
    assert (report.source_ip, report.reported_domain) == ("192.0.2.9", "shop.example")
    assert report.user_agent == "Provider-FBL/1.0"


# ---- samples
def test_returned_header_gives_message_id_and_return_path():
    data = dsn_bytes(
        [{"final": "u@x.example", "action": "failed", "status": "5.1.1"}],
        Message_ID="<n1@shop.example>",
        Return_Path="<bounces+u=x.example@shop.example>",
        To="User <u@x.example>",
    )
    report = parse_report(data, LIMIT)
    assert report.message_id == "<n1@shop.example>"
    assert report.return_path == "bounces+u=x.example@shop.example"
    assert report.original_to == ["u@x.example"]


def test_feedback_report_gives_the_attached_message_headers():
    original = (
        b"Return-Path: <bounces+c=isp.example@shop.example>\r\n"
        b"Message-ID: <n7@shop.example>\r\nTo: c@isp.example\r\nSubject: sale\r\n\r\nbuy\r\n"
    )
    report = parse_report(arf_bytes([("Feedback-Type", "abuse")], original), LIMIT)
    assert report.original_rcpt_to == []
    assert (report.message_id, report.return_path) == (
        "<n7@shop.example>",
        "bounces+c=isp.example@shop.example",
    )
    assert report.original_to == ["c@isp.example"]


def test_delivery_status_under_multipart_mixed_is_found():
    data = report_message(
        "delivery-status",
        [status_part([[("Final-Recipient", "rfc822; u@x.example"), ("Action", "failed")]])],
        top="mixed",
    )
    report = parse_report(data, LIMIT)
    assert report.kind == "dsn"
    assert [(r.final_recipient, r.status) for r in report.recipients] == [("u@x.example", "")]


def test_forwarded_dsn_is_not_a_report():
    inner = email.message_from_bytes(
        dsn_bytes([{"final": "u@x.example", "action": "failed", "status": "5.1.1"}])
    )
    outer = MIMEMultipart("mixed")
    outer.attach(MIMEText("look at this bounce\n"))
    outer.attach(MIMEMessage(inner))
    report = parse_report(outer.as_bytes(), LIMIT)
    assert report.kind == "none"
    assert report.problem == "not a delivery status notification or feedback report"


def test_plain_text_bounce_is_not_a_report():
    data = b"From: MAILER-DAEMON@x\nSubject: failure notice\n\nSorry, <u@x.example> is unknown.\n"
    assert parse_report(data, LIMIT).kind == "none"


def test_dsn_without_recipient_blocks_has_a_problem():
    data = report_message("delivery-status", [status_part([[("Reporting-MTA", "dns; mx")]])])
    report = parse_report(data, LIMIT)
    assert (report.kind, report.problem) == (
        "dsn",
        "delivery status notification without a recipient",
    )


def test_feedback_report_without_type_has_a_problem():
    report = parse_report(arf_bytes([("User-Agent", "x")]), LIMIT)
    assert (report.kind, report.problem) == ("arf", "feedback report without Feedback-Type")


def test_address_types_and_brackets():
    data = dsn_bytes(
        [
            {"final": "<U@X.example>", "action": "Failed", "status": "5.1.1 (unknown)"},
            {"final": "u@y.example", "action": "failed", "status": "5.1.1"},
        ]
    ).replace(b"rfc822; u@y.example", b"x400; /C=US/A=ATT/")
    got = [(r.final_recipient, r.action, r.status) for r in parse_report(data, LIMIT).recipients]
    assert got == [("U@X.example", "failed", "5.1.1"), ("", "failed", "5.1.1")]


def test_global_delivery_status_in_utf8():
    data = (
        "Content-Type: multipart/report; report-type=global-delivery-status; boundary=B\n\n"
        "--B\nContent-Type: message/global-delivery-status\n\n"
        "Reporting-MTA: dns; mx.far.example\n\n"
        "Final-Recipient: utf-8; jörg@bücher.example\nAction: failed\nStatus: 5.1.1\n"
        "--B--\n"
    ).encode()
    report = parse_report(data, LIMIT)
    assert [r.final_recipient for r in report.recipients] == ["jörg@bücher.example"]


BIG_DSN = b"""From: MAILER-DAEMON@mx.far.example
Content-Type: multipart/report; report-type=delivery-status; boundary="R"

--R
Content-Type: text/plain

Your message could not be delivered.
--R
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.far.example

Final-Recipient: rfc822; big@x.example
Action: failed
Status: 5.2.2
Diagnostic-Code: smtp; 552 5.2.2 mailbox full

--R
Content-Type: message/rfc822

Message-ID: <big@shop.example>
Subject: a large letter

%s
--R--
"""


def test_ten_megabyte_dsn_is_read_within_the_limit():
    data = BIG_DSN % ((b"x" * 998 + b"\n") * 10_100)
    assert len(data) > 10_000_000
    start = time.monotonic()
    report = parse_report(data, 64 * 1024)
    assert time.monotonic() - start < 2
    assert [(r.final_recipient, r.status) for r in report.recipients] == [
        ("big@x.example", "5.2.2")
    ]
    assert report.message_id == "<big@shop.example>"


def test_cut_in_the_middle_of_a_block_keeps_no_half_value():
    data = dsn_bytes(
        [{"final": "a@x.example", "orig": "A@x.example", "action": "failed", "status": "5.1.1"}]
    )
    cut = data.index(b"A@x.example") + 3
    report = parse_report(data + b"y" * 100, cut)
    assert [r.original_recipient for r in report.recipients] == [""]


# ---- mta's own notices, and flufl.bounce's view of them
def mta_notice(tmp_path) -> bytes:
    cfg = load_config(str(make_instance(tmp_path)))
    msg = queue_message(
        cfg,
        ["x@one.example", "y@two.example"],
        sender="bounces+x=one.example@shop.example",
        body=b"Subject: hi\nMessage-ID: <m1@shop.example>\n\nbody\n",
    )
    a, b = msg.recipients
    failed = [
        RecipientStatus(
            a.address,
            a.offset,
            "failed",
            "5.1.1",
            "host mx.one.example said: 550 5.1.1 no such user",
            relay="mx.one.example[192.0.2.1]:25",
            dsn_orcpt="rfc822;X@One.Example",
            diag_type="smtp",
            diag_text="550 5.1.1 <x@one.example>: no such user",
            remote_mta="mx.one.example",
        ),
        RecipientStatus(b.address, b.offset, "failed", "5.2.2", "mailbox full", relay="local"),
    ]
    _, _, data = make_notice(cfg, msg, msg.path, failed)
    return data


def test_mta_notice_reads_back(tmp_path):
    report = parse_report(mta_notice(tmp_path), LIMIT)
    assert (report.kind, report.problem) == ("dsn", "")
    got = [(r.final_recipient, r.original_recipient, r.action, r.status) for r in report.recipients]
    assert got == [
        ("x@one.example", "X@One.Example", "failed", "5.1.1"),
        ("y@two.example", "", "failed", "5.2.2"),
    ]
    assert report.recipients[0].diagnostic == "550 5.1.1 <x@one.example>: no such user"
    assert report.recipients[0].remote_mta == "mx.one.example"
    assert report.message_id == "<m1@shop.example>"


def flufl_failures(data: bytes) -> set[str]:
    permanent, temporary = flufl.bounce.all_failures(email.message_from_bytes(data))
    return {a.decode() if isinstance(a, bytes) else a for a in permanent | temporary}


def test_flufl_bounce_names_the_same_addresses_in_mta_notice(tmp_path):
    data = mta_notice(tmp_path)
    ours = {r.original_recipient or r.final_recipient for r in parse_report(data, LIMIT).recipients}
    assert flufl_failures(data) == ours  # both prefer Original-Recipient


@settings(max_examples=50, deadline=None)
@given(st.lists(recipient, min_size=1, max_size=4))
def test_flufl_bounce_agrees_on_the_failed_addresses(rcpts):
    data = dsn_bytes(rcpts)
    ours = {
        (r.original_recipient or r.final_recipient).lower()
        for r in parse_report(data, LIMIT).recipients
        if r.action in ("failed", "delayed")
    }
    assert {a.lower() for a in flufl_failures(data)} == ours
