"""smtpd_milters with Debian's opendkim as the signing milter: the signature it adds to the
queued message verifies with dkimpy against the public key."""

from __future__ import annotations

import smtplib

import dkim
import pytest

from mta.common.dkim import dns_record, generate_key, private_pem
from tests.interop.test_milter_pymilter import maillog, queued
from tests.support.instance import SmtpdThread, make_instance
from tests.support.milter_peers import opendkim

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@test.example\r\n"
    b"Subject: a folded\r\n subject line\r\n"
    b"Date: Thu, 03 Dec 2026 12:00:00 +0000\r\n"
    b"Message-ID: <m1@example.org>\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b"\r\n"
    b"signed by a milter.\r\n"
)


@pytest.mark.parametrize("canon", ["simple/simple", "relaxed/relaxed"])
def test_opendkim_signature_verifies(tmp_path, canon):
    key = generate_key("rsa", 2048)
    record = dns_record(key).encode()
    with opendkim(tmp_path, "example.org", "sel1", private_pem(key), canon) as port:
        cdir = make_instance(tmp_path, f"smtpd_milters = inet:127.0.0.1:{port}\n")
        server = SmtpdThread(cdir)
        try:
            with smtplib.SMTP("127.0.0.1", server.port) as s:
                s.ehlo("client.example")
                s.sendmail("alice@example.org", ["bob@test.example"], MESSAGE)
        finally:
            server.close()
    [(_, content)] = queued(cdir)
    assert b"DKIM-Signature:" in content
    assert f"c={canon}".encode() in content.replace(b"\n", b"").replace(b"\t", b"")

    def dnsfunc(name, timeout=5):
        assert name == b"sel1._domainkey.example.org."
        return record

    assert dkim.verify(content, dnsfunc=dnsfunc)
    assert "warning" not in maillog(tmp_path)
