"""Relaying through an authenticated smarthost (relayhost, STARTTLS, AUTH PLAIN) under the real master."""

import smtplib

import pytest

from tests.support.running import relay_system
from tests.unit.smtp.test_sasl_client import PASSWORD, USER, server_tls, smarthost  # noqa: F401

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("password,delivered", [(PASSWORD, True), ("wrong-pw", False)])
def test_relayhost_with_sasl(tmp_path, server_tls, password, delivered):  # noqa: F811
    ctl, handler = smarthost(server_tls, auth_required=True)
    table = tmp_path / "sasl_passwd"
    table.write_text(f"[127.0.0.1]:{ctl.port} {USER}:{password}\n")
    inst = relay_system(
        tmp_path,
        "smtp unix - - n - - smtp\n",
        relayhost=f"[127.0.0.1]:{ctl.port}",
        smtp_tls_security_level="encrypt",
        smtp_sasl_auth_enable="yes",
        smtp_sasl_password_maps=f"texthash:{table}",
        smtp_sasl_security_options="noanonymous",
    )
    try:
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
            s.sendmail("sender@ok.example", ["a@remote.example"], b"Subject: s\r\n\r\nbody\r\n")
        status = "sent" if delivered else "deferred"
        text = inst.wait_log(rf"to=<a@remote\.example>.*status={status}", 20)
        listing = inst.mta("queue", "-p").stdout
    finally:
        inst.stop()
        ctl.stop()
    assert handler.logins == [("PLAIN", USER, True, delivered)]
    assert password not in text
    if delivered:
        assert len(handler.messages) == 1
        assert "a@remote.example" not in listing
    else:
        assert handler.messages == []
        reason = "SASL authentication failed; server 127.0.0.1[127.0.0.1] said: 535 5.7.8"
        assert f"status=deferred ({reason}" in text
        assert reason in listing and "a@remote.example" in listing
