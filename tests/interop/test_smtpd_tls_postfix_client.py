"""A real Postfix smtp client relays to mta's smtpd over STARTTLS: at encrypt
(any certificate) and at secure (mta's certificate, issued by a test CA,
verified by Postfix for the name its policy asks for)."""

from __future__ import annotations

import smtplib

import pytest

from mta.queue.queue_file import iter_content
from tests.support import postfix
from tests.support.instance import SmtpdThread, incoming_files, make_instance
from tests.support.running import free_port, wait_for
from tests.support.tls_certs import TestCA

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not postfix.available(), reason="needs root and Debian's postfix"),
]

MESSAGE = b"Subject: relayed\r\nFrom: a@sender.example\r\n\r\nThrough Postfix, over TLS.\r\n"


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    ca = TestCA(tmp_path_factory.mktemp("ca"), "Test CA")
    cert, key = ca.issue("mx", ["mx.test.example"])
    return ca, cert, key


@pytest.fixture
def mta_smtpd(tmp_path, ca):
    _, cert, key = ca
    cdir = make_instance(
        tmp_path,
        f"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {cert}\n"
        f"smtpd_tls_key_file = {key}\nsmtpd_tls_loglevel = 1\n",
    )
    server = SmtpdThread(cdir)
    server.cdir, server.maillog = cdir, tmp_path / "maillog"
    yield server
    server.close()


def relay_through_postfix(mta_port: int, ca_pem: bytes, policy: str) -> str:
    """Send MESSAGE into a private Postfix that relays it to mta at policy; its log."""
    port = free_port()
    inst = postfix.PostfixInstance(
        port,
        f"relayhost = [127.0.0.1]:{mta_port}\nsmtp_tls_loglevel = 1\n" + policy,
        master_extra="tlsmgr unix - - n 1000? 1 tlsmgr\n",
    )
    (inst.etc / "ca.pem").write_bytes(ca_pem)  # where Postfix's smtp (user postfix) can read it
    inst.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.sendmail("a@sender.example", ["user@mx.test.example"], MESSAGE)
        log = inst.top / "maillog"
        assert wait_for(lambda: "status=" in log.read_text(), 30), log.read_text()
        return log.read_text()
    finally:
        inst.stop()


def received_by_mta(smtpd) -> bytes:
    assert wait_for(lambda: incoming_files(smtpd.cdir), 10)
    (path,) = incoming_files(smtpd.cdir)
    return b"\n".join(iter_content(path))


def test_postfix_at_encrypt_relays_over_tls(mta_smtpd, ca):
    text = relay_through_postfix(
        mta_smtpd.port, ca[0].cafile.read_bytes(), "smtp_tls_security_level = encrypt\n"
    )
    assert "status=sent" in text, text
    assert "TLS connection established to 127.0.0.1[127.0.0.1]" in text
    content = received_by_mta(mta_smtpd)
    assert b"with ESMTPS id" in content
    assert b"Through Postfix, over TLS." in content
    assert "TLS connection established from" in mta_smtpd.maillog.read_text()


def test_postfix_at_secure_verifies_mtas_certificate(mta_smtpd, ca):
    text = relay_through_postfix(
        mta_smtpd.port,
        ca[0].cafile.read_bytes(),
        "smtp_tls_security_level = secure\nsmtp_tls_CAfile = $config_directory/ca.pem\n"
        "smtp_tls_secure_cert_match = mx.test.example\n",
    )
    assert "status=sent" in text, text
    assert "Verified TLS connection established to 127.0.0.1[127.0.0.1]" in text
    assert b"with ESMTPS id" in received_by_mta(mta_smtpd)


def test_postfix_at_secure_refuses_a_certificate_for_another_name(mta_smtpd, ca):
    text = relay_through_postfix(
        mta_smtpd.port,
        ca[0].cafile.read_bytes(),
        "smtp_tls_security_level = secure\nsmtp_tls_CAfile = $config_directory/ca.pem\n"
        "smtp_tls_secure_cert_match = other.example\n",
    )
    assert "status=deferred" in text and "Server certificate not verified" in text, text
    assert incoming_files(mta_smtpd.cdir) == []
