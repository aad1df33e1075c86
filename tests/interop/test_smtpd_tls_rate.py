"""smtpd_client_new_tls_session_rate_limit under the real master and anvil: STARTTLS is refused
with 454 past the rate (the session goes on in plain text), wrapper mode hangs up with 421."""

from __future__ import annotations

import smtplib

import pytest

from tests.support.running import Instance, free_port
from tests.support.tls import client_context, self_signed

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

OUTSIDER = "127.0.0.2"  # not in mynetworks: counted


def start(tmp_path, smtpd_args: str = "", **main: str) -> Instance:
    cert, key = self_signed(tmp_path, "mx.test.example")
    port = free_port()
    inst = Instance(
        tmp_path / "inst",
        f"127.0.0.1:{port} inet n - n - - smtpd{smtpd_args}\nanvil unix - - n - 1 anvil\n",
        {
            "myhostname": "mx.test.example",
            "mynetworks": "127.0.0.1/32",
            "smtpd_peername_lookup": "no",
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": cert,
            "smtpd_tls_key_file": key,
            "smtpd_client_new_tls_session_rate_limit": "2",
            "anvil_status_update_time": "2s",
            **main,
        },
    )
    inst.port = port
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr + inst.log()
    return inst


def test_starttls_past_the_rate_gets_454_and_the_session_goes_on(tmp_path):
    inst = start(tmp_path)
    try:
        for _ in range(2):
            with smtplib.SMTP("127.0.0.1", inst.port, source_address=(OUTSIDER, 0)) as s:
                s.ehlo("client.example")
                assert s.starttls(context=client_context())[0] == 220
        with smtplib.SMTP("127.0.0.1", inst.port, source_address=(OUTSIDER, 0)) as s:
            s.ehlo("client.example")
            reply = s.docmd("STARTTLS")
            assert reply == (454, b"4.7.0 Error: too many new TLS sessions from unknown[127.0.0.2]")
            assert s.noop()[0] == 250  # still talking, in plain text
        inst.wait_log(
            r"warning: New TLS session rate limit exceeded: 3 from unknown\[127\.0\.0\.2\]"
            r" for service 127\.0\.0\.1:\d+"
        )
        # a client in mynetworks (the default exceptions) is not counted
        with smtplib.SMTP("127.0.0.1", inst.port) as s:
            s.ehlo("client.example")
            assert s.starttls(context=client_context())[0] == 220
        inst.wait_log(r"anvil\[\d+\]: statistics: max new TLS sessions 2/60s for \(127")
    finally:
        inst.stop()


def test_wrapper_mode_past_the_rate_gets_421_over_tls(tmp_path):
    inst = start(tmp_path, "\n  -o smtpd_tls_wrappermode=yes")
    try:
        for _ in range(2):
            with smtplib.SMTP_SSL(
                "127.0.0.1", inst.port, context=client_context(), source_address=(OUTSIDER, 0)
            ) as s:
                assert s.ehlo("client.example")[0] == 250
        with pytest.raises(smtplib.SMTPConnectError) as err:
            smtplib.SMTP_SSL(
                "127.0.0.1", inst.port, context=client_context(), source_address=(OUTSIDER, 0)
            )
        assert err.value.smtp_code == 421
        want = b"4.7.0 mx.test.example Error: too many new TLS sessions from unknown[127.0.0.2]"
        assert err.value.smtp_error == want
        inst.wait_log(
            r"warning: New TLS session rate limit exceeded: 3 from unknown\[127\.0\.0\.2\]"
        )
    finally:
        inst.stop()


def test_no_limit_by_default(tmp_path):
    inst = start(tmp_path, smtpd_client_new_tls_session_rate_limit="0")
    try:
        for _ in range(4):
            with smtplib.SMTP("127.0.0.1", inst.port, source_address=(OUTSIDER, 0)) as s:
                s.ehlo("client.example")
                assert s.starttls(context=client_context())[0] == 220
        assert "New TLS session rate" not in inst.log()
    finally:
        inst.stop()
