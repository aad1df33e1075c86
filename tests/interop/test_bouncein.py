"""The bounce address handler under the real master: smtplib -> smtpd -> qmgr ->
bouncein. A DSN shaped like a remote Postfix's, sent to a VERP bounce address, and a
mailbox provider's ARF complaint put their recipients on the suppression list
("mta suppress show") and in the event log; a message that is not a report is
bounced 5.6.0 back to its sender (nothing lost); a 10 MB DSN is read within the
size limit; a complaint that names nobody is logged and consumed."""

from __future__ import annotations

import json
import smtplib

import pytest

from tests.support.running import relay_system

pytestmark = pytest.mark.interop

DSN = """\
From: MAILER-DAEMON@mx.far.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: bounces+dead=far.example@shop.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4XyZ.1733220000/mx.far.example"
Message-Id: <20241203100000.4XyZ@mx.far.example>

This is a MIME-encapsulated message.

--4XyZ.1733220000/mx.far.example
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.far.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<dead@far.example>: host store.far.example[10.0.0.5] said: 550 5.1.1
    <dead@far.example>: Recipient address rejected: User unknown in local
    recipient table (in reply to RCPT TO command)

--4XyZ.1733220000/mx.far.example
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.far.example
X-Postfix-Queue-ID: 4XyZ
X-Postfix-Sender: rfc822; bounces+dead=far.example@shop.example
Arrival-Date: Tue,  3 Dec 2024 09:58:01 +0000 (UTC)

Final-Recipient: rfc822; dead@far.example
Original-Recipient: rfc822;dead@far.example
Action: failed
Status: 5.1.1
Remote-MTA: dns; store.far.example
Diagnostic-Code: smtp; 550 5.1.1 <dead@far.example>: Recipient address
    rejected: User unknown in local recipient table

--4XyZ.1733220000/mx.far.example
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <bounces+dead=far.example@shop.example>
Message-ID: <n1@shop.example>
From: news@shop.example
To: dead@far.example
Subject: letter 1

--4XyZ.1733220000/mx.far.example--
"""

ARF = """\
From: staff@fbl.isp.example
To: bounces@shop.example
Subject: complaint about message from 192.0.2.9
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
\tboundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.9 on Tue, 03 Dec 2024 10:00:00 +0000.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ISPFBL/1.0
Version: 1
Original-Mail-From: <bounces+c=isp.example@shop.example>
{rcpt_to}Arrival-Date: Tue, 03 Dec 2024 10:00:00 +0000
Reporting-MTA: dns; fbl.isp.example
Source-IP: 192.0.2.9
Reported-Domain: shop.example

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

From: news@shop.example
Message-ID: <n2@shop.example>
Subject: sale

buy now
--part1_13d.2e68ed54_boundary--
"""


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def test_reports_feed_the_suppression_list_and_the_event_log(tmp_path):
    events = tmp_path / "events.jsonl"
    inst = relay_system(
        tmp_path / "mta",
        "bouncein unix - - n - - bouncein\ndiscard unix - - n - - discard\n",
        suppression_map=f"lmdb:{tmp_path}/suppression",
        event_log_file=str(events),
        transport_maps="inline:{ shop.example=bouncein:, x.example=discard:kept }",
        bouncein_report_size_limit="262144",
        message_size_limit="20000000",
    )
    check = inst.mta("check")
    assert check.returncode == 0 and "bouncein" not in check.stderr, check.stderr
    big = DSN.replace("dead", "full").replace("5.1.1", "5.2.2").replace("User unknown", "full")
    big = big.replace(
        "Content-Type: text/rfc822-headers",
        "Content-Type: message/rfc822",
    ).replace("Subject: letter 1\n", "Subject: letter 1\n\n" + ("y" * 998 + "\n") * 10_000)
    try:
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as s:
            s.sendmail("", ["bounces+dead=far.example@shop.example"], crlf(DSN))
            s.sendmail(
                "",
                ["bounces@shop.example"],
                crlf(ARF.format(rcpt_to="Original-Rcpt-To: c@isp.example\n")),
            )
            s.sendmail(
                "",
                ["bounces@shop.example"],
                crlf(ARF.replace("Original-Mail-From", "X-Was").format(rcpt_to="")),
            )
            s.sendmail(
                "someone@x.example",
                ["bounces@shop.example"],
                b"Subject: unsubscribe me\r\n\r\nplease\r\n",
            )
            s.sendmail("", ["bounces+full=far.example@shop.example"], crlf(big))
        inst.wait_log(r"relay=bouncein", 30, count=5)
        inst.wait_log(r"to=<someone@x.example>.*status=sent \(kept\)", 30)
        dead = inst.mta("suppress", "show", "dead@far.example", "--json")
        complainer = inst.mta("suppress", "show", "c@isp.example", "--json")
    finally:
        inst.stop()
    assert dead.returncode == 0, dead.stderr
    entry = json.loads(dead.stdout)
    assert (entry["class"], entry["source"], entry["scope"]) == (
        "invalid_mailbox",
        "bounce",
        "global",
    )
    assert complainer.returncode == 0, complainer.stderr
    entry = json.loads(complainer.stdout)
    assert (entry["class"], entry["source"], entry["expires"]) == ("complaint", "feedback", 0)
    maillog = inst.log()
    assert "to=<dead@far.example>, suppressed from now on (invalid_mailbox, global)" in maillog
    assert "to=<c@isp.example>, suppressed from now on (complaint, global)" in maillog
    assert ": feedback report without a recipient" in maillog
    assert "dsn=5.6.0, status=bounced (not a delivery status notification" in maillog
    assert "sender non-delivery notification" in maillog
    assert "status=sent (DSN: 1 failed recipient learned" in maillog
    rows = [json.loads(x) for x in events.read_text().splitlines()]
    learned = {(r["event"], r["recipient"], r["class"]) for r in rows if r["event"] != "delivered"}
    assert ("bounced", "dead@far.example", "invalid_mailbox") in learned
    assert ("feedback", "c@isp.example", "complaint") in learned
    assert ("bounced", "full@far.example", "mailbox_full") in learned
    bounced = next(r for r in rows if r["recipient"] == "dead@far.example")
    assert bounced["message_id"] == "<n1@shop.example>" and bounced["relay"] == "store.far.example"
    assert "User unknown" in bounced["reply"]
