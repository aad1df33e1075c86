"""receive_override_options = no_milters over a real socket: the smtpd behind a content
filter does not run smtpd_milters (here one that is down and would refuse)."""

from __future__ import annotations

import smtplib

import pytest

from tests.support.instance import SmtpdThread, make_instance
from tests.support.running import free_port

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

MILTER_DOWN = (
    f"smtpd_milters = {{ inet:127.0.0.1:{free_port()}, default_action=reject }}\n"
    "milter_connect_timeout = 1s\n"
)


def deliver(cdir) -> tuple[int, bytes]:
    server = SmtpdThread(cdir)
    try:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=20) as s:
            s.ehlo("client.example")
            code, text = s.mail("a@sender.example")
            if code != 250:
                return code, text
            s.rcpt("user@test.example")
            return s.data(b"Subject: t\r\n\r\nbody\r\n")
    finally:
        server.close()


def test_milter_that_is_down_refuses_without_the_option(tmp_path):
    code, _ = deliver(make_instance(tmp_path, MILTER_DOWN))
    assert code == 550


def test_no_milters_leaves_the_milters_out(tmp_path):
    cdir = make_instance(tmp_path, MILTER_DOWN + "receive_override_options = no_milters\n")
    code, text = deliver(cdir)
    assert code == 250 and text.startswith(b"2.0.0 Ok: queued as ")
