"""mta under its real master relays to a real Postfix smtpd in TLS wrapper mode (SMTPS,
smtpd_tls_wrappermode = yes) with smtp_tls_wrappermode, verifying the certificate."""

from __future__ import annotations

import re
import smtplib

import pytest

from tests.support import postfix
from tests.support.running import free_port, relay_system, wait_for
from tests.unit.smtp.tls_peers import make_pki

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not postfix.available(), reason="needs root and Postfix"),
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def relay_to_smtps(tmp_path, pki, cert: str, main: dict[str, str]):
    """Postfix serving SMTPS with pki[cert]; mta relays one message to [mx.example.test]
    on its port. Returns (mta log line of the recipient, Postfix's queue listing, its log)."""
    pf_port = free_port()
    server_cert = pki[cert]
    pf = postfix.PostfixInstance(
        pf_port,
        "smtpd_tls_wrappermode = yes\nsmtpd_tls_security_level = encrypt\n"
        f"smtpd_tls_cert_file = {server_cert[0]}\nsmtpd_tls_key_file = {server_cert[1]}\n"
        "smtpd_tls_loglevel = 1\ndefer_transports = smtp\n",
        "tlsmgr unix - - n 1000? 1 tlsmgr\n",
    )
    inst = relay_system(
        tmp_path / "mta",
        "smtp unix - - n - - smtp\n",
        relayhost=f"[127.0.0.1]:{pf_port}",
        smtp_tls_wrappermode="yes",
        smtp_tls_CAfile=str(pki["ca"].cafile),
        smtp_tls_loglevel="1",
        **main,
    )
    pf.start()
    try:
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
            s.sendmail("me@ok.example", ["u@far.example"], b"Subject: smtps\r\n\r\nhello\r\n")
        text = inst.wait_log(r"to=<u@far\.example>.*status=(sent|deferred)", 40)
        sent = "status=sent" in text
        if sent:
            wait_for(lambda: "u@far.example" in pf.postqueue("-p"), 15)
        listing = pf.postqueue("-p")
        pf_log = (pf.top / "maillog").read_text()
    finally:
        inst.stop()
        pf.stop()
    return text, listing, pf_log


def test_verify_over_smtps_delivers_to_postfix(tmp_path, pki):
    # the certificate names mx.example.test; the relay is reached by address
    main = {"smtp_tls_security_level": "verify", "smtp_tls_verify_cert_match": "mx.example.test"}
    text, listing, pf_log = relay_to_smtps(tmp_path, pki, "good", main)
    assert re.search(r"to=<u@far\.example>.*status=sent", text), text
    assert "Verified TLS connection established to 127.0.0.1[127.0.0.1]:" in text
    assert "u@far.example" in listing
    assert "TLS connection established from" in pf_log


def test_an_untrusted_smtps_server_gets_nothing(tmp_path, pki):
    main = {"smtp_tls_security_level": "verify", "smtp_tls_verify_cert_match": "mx.example.test"}
    text, listing, _ = relay_to_smtps(tmp_path, pki, "untrusted", main)
    assert re.search(
        r"to=<u@far\.example>.*status=deferred \(Server certificate not trusted\)", text
    )
    assert "u@far.example" not in listing


def test_may_is_raised_to_encrypt_and_still_speaks_smtps(tmp_path, pki):
    text, listing, _ = relay_to_smtps(
        tmp_path, pki, "untrusted", {"smtp_tls_security_level": "may"}
    )
    assert re.search(r"to=<u@far\.example>.*status=sent", text), text
    assert "Untrusted TLS connection established to 127.0.0.1[127.0.0.1]:" in text
    assert "u@far.example" in listing
