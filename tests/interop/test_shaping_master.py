"""Shaping under the real master: qmgr looks the recipients' MX hosts up on a loopback
DNS server, queues gmail.com, googlemail.com and a Google Workspace domain as the one
site "gmail", and when the scripted sink answers the first of them 421 4.7.28 the whole
site is suspended (its other mail deferred untried, with the reason in mta queue),
while another provider's domain is delivered."""

from __future__ import annotations

import smtplib

import pytest

from tests.support.dns_server import DnsServer
from tests.support.running import free_port, mx_system

pytestmark = pytest.mark.interop

GMAIL_SITE = ("gmail.com", "googlemail.com", "corp.example")


def test_gmail_like_site_is_one_and_backs_off(tmp_path):
    from aiosmtpd.controller import Controller

    tried: list[str] = []

    class Sink:
        async def handle_RCPT(self, server, session, envelope, address, options):
            tried.append(address)
            if address.endswith(GMAIL_SITE):
                return "421 4.7.28 [127.0.0.1] Our system has detected an unusual rate of mail"
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 Ok"

        async def handle_DATA(self, server, session, envelope):
            return "250 2.0.0 Ok: taken"

    sink_port = free_port()
    ctl = Controller(Sink(), hostname="127.0.0.1", port=sink_port)
    ctl.start()
    zone = {
        "gmail.com": {"MX": ["5 gmail-smtp-in.l.google.com."]},
        "googlemail.com": {"MX": ["5 gmail-smtp-in.l.google.com."]},
        "corp.example": {"MX": ["1 aspmx.l.google.com."]},
        "other.example": {"MX": ["10 mx.other.example."]},
        "gmail-smtp-in.l.google.com": {"A": ["127.0.0.1"]},
        "aspmx.l.google.com": {"A": ["127.0.0.1"]},
        "mx.other.example": {"A": ["127.0.0.1"]},
    }
    with DnsServer(zone) as dns:
        inst = mx_system(
            tmp_path,
            sink_port,
            dns.nameserver,
            shaping_table="inline:{ {gmail=concurrency=1} }",
            minimal_backoff_time="300s",
        )
        port = inst.port
        try:
            r = inst.mta("start")
            assert r.returncode == 0, r.stderr
            rcpts = [f"u{i}@{d}" for i, d in enumerate(GMAIL_SITE * 2)] + ["v@other.example"]
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
                for rcpt in rcpts:
                    s.sendmail(
                        "news@shop.example", [rcpt], f"Subject: to {rcpt}\r\n\r\nhi\r\n".encode()
                    )
            text = inst.wait_log(r"to=<v@other.example>.*status=sent", 20)
            text = inst.wait_log(r"delivery temporarily suspended: site gmail", 20, count=5)
            queue = inst.mta("queue")
        finally:
            inst.stop()
            ctl.stop()
    gmail_tries = [a for a in tried if a.endswith(GMAIL_SITE)]
    assert len(gmail_tries) == 1, tried  # one try, then the whole site waits
    assert "gmail: shaping: 4.7.28 421 4.7.28" in text and "suspend=30m" in text
    assert queue.stdout.count("delivery temporarily suspended: site gmail: 421 4.7.28") >= 5
    for domain in GMAIL_SITE:
        assert f"@{domain}" in queue.stdout
