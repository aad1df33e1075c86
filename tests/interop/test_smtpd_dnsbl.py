"""reject_rbl_client under the real master: smtplib gets Postfix's 554 at RCPT, the maillog its line.

The smtpd child takes its name server from MTA_DNS_SERVER: a tests/support/dns_server.py
that lists 127.0.0.1 under zen.example, as Spamhaus lists its test address 127.0.0.2.
"""

from __future__ import annotations

import smtplib

import pytest

from tests.support.dns_server import DnsServer
from tests.support.running import relay_system

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

ZONE = {"1.0.0.127.zen.example": {"A": ["127.0.0.2"], "TXT": ['"listed"']}}
REPLY = "5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.example; listed"


def test_listed_client_is_refused_at_rcpt_and_logged(tmp_path):
    with DnsServer(ZONE) as dns:
        inst = relay_system(
            tmp_path,
            "",
            smtpd_client_restrictions="reject_rbl_client zen.example",
            mydestination="mx.test.example",
        )
        inst.env["MTA_DNS_SERVER"] = dns.nameserver
        r = inst.mta("check")
        assert r.returncode == 0, r.stdout + r.stderr
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr
        try:
            with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as s:
                assert s.ehlo("client.example")[0] == 250
                assert s.mail("a@sender.example")[0] == 250  # smtpd_delay_reject: not yet
                assert s.rcpt("user@mx.test.example") == (554, REPLY.encode())
                assert s.rcpt("other@mx.test.example") == (554, REPLY.encode())
            log = inst.wait_log(r"NOQUEUE: reject: RCPT", count=2)
        finally:
            inst.stop()
    assert (
        f"NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 {REPLY}; "
        "from=<a@sender.example> to=<user@mx.test.example> proto=ESMTP helo=<client.example>"
    ) in log
    # the second RCPT of the session was answered from the session's cache
    assert dns.queries.count(("1.0.0.127.zen.example", "A")) == 1


def test_mta_check_names_the_list_of_a_malformed_filter(tmp_path):
    inst = relay_system(
        tmp_path, "", smtpd_client_restrictions="reject_rbl_client zen.example=127.0.0.[2..x]"
    )
    r = inst.mta("check")
    assert r.returncode != 0
    assert "smtpd_client_restrictions" in r.stdout + r.stderr
    assert "127.0.0.[2..x]" in r.stdout + r.stderr
