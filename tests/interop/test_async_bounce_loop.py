"""The asynchronous bounce loop of a bulk sender, end to end under the real master:
a list message goes out with XVERP to a sink that accepts every recipient; later the
sink's "mail store" finds one mailbox gone and mails a DSN back to the VERP return
path it was given; mta routes the bounce domain to bouncein, which learns the
address; the next message to that address is refused at RCPT TO."""

from __future__ import annotations

import json
import smtplib

import pytest

from tests.support.running import free_port, relay_system, wait_for

pytestmark = pytest.mark.interop


def dsn_for(return_path: str, rcpt: str) -> bytes:
    """A remote MTA's non-delivery notice (RFC 3464) to the return path it was given."""
    text = f"""\
From: MAILER-DAEMON@store.far.example
To: {return_path}
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

<{rcpt}>: the mailbox is gone.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; store.far.example

Final-Recipient: rfc822; {rcpt}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 user unknown

--b1--
"""
    return text.replace("\n", "\r\n").encode()


def test_verp_dsn_suppresses_the_next_send(tmp_path):
    from aiosmtpd.controller import Controller

    accepted: list[tuple[str, str]] = []  # (MAIL FROM, RCPT TO) per recipient

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            for rcpt in envelope.rcpt_tos:
                accepted.append((envelope.mail_from, rcpt))
            return "250 2.0.0 Ok: taken"

    sink_port = free_port()
    ctl = Controller(Sink(), hostname="127.0.0.1", port=sink_port)
    ctl.start()
    events = tmp_path / "events.jsonl"
    inst = relay_system(
        tmp_path / "mta",
        "smtp unix - - n - - smtp\nbouncein unix - - n - - bouncein\n",
        relayhost=f"[127.0.0.1]:{sink_port}",
        transport_maps="inline:{ bounces.shop.example=bouncein: }",
        smtpd_authorized_verp_clients="127.0.0.0/8",
        suppression_map=f"lmdb:{tmp_path}/suppression",
        event_log_file=str(events),
    )
    try:
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
            s.ehlo()
            code, _ = s.docmd("MAIL FROM:<list@bounces.shop.example> XVERP")
            assert code == 250
            for rcpt in ("alive@far.example", "gone@far.example"):
                assert s.docmd(f"RCPT TO:<{rcpt}>")[0] == 250
            code, _ = s.data(b"From: list@shop.example\r\nSubject: issue 1\r\n\r\nnews\r\n")
            assert code == 250
        assert wait_for(lambda: len(accepted) == 2, 20), accepted
        (return_path,) = [frm for frm, rcpt in accepted if rcpt == "gone@far.example"]
        assert return_path == "list+gone=far.example@bounces.shop.example"
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:  # later: the DSN
            s.sendmail("", [return_path], dsn_for(return_path, "gone@far.example"))
        inst.wait_log(r"to=<gone@far.example>, suppressed from now on", 20)
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
            s.ehlo()
            assert s.docmd("MAIL FROM:<list@bounces.shop.example> XVERP")[0] == 250
            assert s.docmd("RCPT TO:<alive@far.example>")[0] == 250
            code, text = s.docmd("RCPT TO:<gone@far.example>")
            assert code == 550 and b"suppression list (invalid_mailbox)" in text
            s.docmd("RSET")
    finally:
        inst.stop()
        ctl.stop()
    rows = [json.loads(x) for x in events.read_text().splitlines()]
    bounced = [r for r in rows if r["event"] == "bounced"]
    assert [(r["recipient"], r["class"], r["transport"]) for r in bounced] == [
        ("gone@far.example", "invalid_mailbox", "bouncein")
    ]
