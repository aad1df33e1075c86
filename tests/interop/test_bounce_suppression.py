"""Bounce classes and suppression under the real master: smtplib -> smtpd -> qmgr ->
smtp client -> an aiosmtpd sink that refuses one mailbox with 550 5.1.1. The hard
bounce is classified in the maillog and the event log, lands in the suppression list,
and the next message to that mailbox is refused at RCPT TO (suppression_action =
reject) or dropped by qmgr (drop) without reaching the sink."""

from __future__ import annotations

import json
import smtplib

import pytest

from tests.support.running import free_port, relay_system

pytestmark = pytest.mark.interop


def message(to: str, n: int) -> bytes:
    return (
        f"From: news@shop.example\r\nTo: {to}\r\nSubject: letter {n}\r\n"
        f"Message-ID: <n{n}@shop.example>\r\n\r\nhello\r\n"
    ).encode()


def run_case(tmp_path, action: str):
    from aiosmtpd.controller import Controller

    seen: list[str] = []
    notices: list[bytes] = []

    class Sink:
        async def handle_RCPT(self, server, session, envelope, address, options):
            if address.startswith("dead@"):
                return "550 5.1.1 <dead@far.example>: Recipient address rejected: User unknown"
            seen.append(address)
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 Ok"

        async def handle_DATA(self, server, session, envelope):
            if envelope.rcpt_tos == ["news@shop.example"]:
                notices.append(envelope.original_content)
            return "250 2.0.0 Ok: taken"

    sink_port = free_port()
    ctl = Controller(Sink(), hostname="127.0.0.1", port=sink_port)
    ctl.start()
    events = tmp_path / "events.jsonl"
    inst = relay_system(
        tmp_path / "mta",
        "smtp unix - - n - - smtp\n",
        relayhost=f"[127.0.0.1]:{sink_port}",
        suppression_map=f"lmdb:{tmp_path}/suppression",
        suppression_action=action,
        event_log_file=str(events),
    )
    try:
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
            s.sendmail(
                "news@shop.example", ["dead@far.example", "live@far.example"], message("x", 1)
            )
        inst.wait_log(r"suppressed from now on", 20)
        inst.wait_log(r": removed", 20)
        show = inst.mta("suppress", "show", "dead@far.example", "--json")
        assert show.returncode == 0, show.stderr
        entry = json.loads(show.stdout)
        assert (entry["class"], entry["source"], entry["scope"]) == (
            "invalid_mailbox",
            "bounce",
            "global",
        )
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
            if action == "reject":
                code, text = s.docmd("MAIL FROM:<news@shop.example>")
                assert code == 250
                code, text = s.docmd("RCPT TO:<Dead@far.example>")
                assert code == 550 and text.startswith(b"5.1.1 <Dead@far.example>: ")
                assert b"suppression list (invalid_mailbox)" in text
                s.docmd("RSET")
            s.sendmail(
                "news@shop.example",
                ["live@far.example"] + (["dead@far.example"] if action == "drop" else []),
                message("y", 2),
            )
        if action == "drop":
            inst.wait_log(r"status=suppressed", 20)
        inst.wait_log(
            r"to=<live@far.example>.*status=sent[\s\S]*to=<live@far.example>.*status=sent", 20
        )
    finally:
        inst.stop()
        ctl.stop()
    maillog = inst.log()
    bounced = next(
        x for x in maillog.splitlines() if "to=<dead@far.example>" in x and "bounced" in x
    )
    assert bounced.endswith("class=invalid_mailbox")
    rows = [json.loads(x) for x in events.read_text().splitlines()]
    (notice,) = notices  # the non-delivery notice of the first message, with the class
    assert b"Final-Recipient: rfc822; dead@far.example" in notice
    assert b"X-Bounce-Class: invalid_mailbox" in notice
    return [a for a in seen if a.endswith("far.example")], maillog, rows


def test_reject_at_rcpt_after_a_hard_bounce(tmp_path):
    seen, maillog, rows = run_case(tmp_path, "reject")
    assert seen == ["live@far.example", "live@far.example"]  # dead@ reached the sink once
    assert "NOQUEUE: reject: RCPT from" in maillog and "suppression list" in maillog
    assert [(r["event"], r["recipient"]) for r in rows if r["recipient"].startswith("dead")] == [
        ("bounced", "dead@far.example")
    ]
    bounced = next(r for r in rows if r["event"] == "bounced")
    assert bounced["class"] == "invalid_mailbox" and bounced["message_id"] == "<n1@shop.example>"
    assert "User unknown" in bounced["reply"] and bounced["relay"].startswith(
        "127.0.0.1[127.0.0.1]"
    )


def test_drop_in_qmgr_after_a_hard_bounce(tmp_path):
    seen, maillog, rows = run_case(tmp_path, "drop")
    assert seen == ["live@far.example", "live@far.example"]
    events = [(r["event"], r["recipient"]) for r in rows if r["recipient"].startswith("dead")]
    assert events == [("bounced", "dead@far.example"), ("suppressed", "dead@far.example")]
