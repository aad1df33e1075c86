"""A milter that is down, slow, hangs up mid-reply or answers 1 MB of garbage: smtpd applies
its default_action within the timeout, logs one warning, and keeps serving."""

from __future__ import annotations

import smtplib
import time

import pytest

from tests.interop.test_milter_pymilter import maillog, queued
from tests.support.instance import SmtpdThread, make_instance
from tests.support.milter_peers import BrokenMilter
from tests.support.running import free_port

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

MESSAGE = b"Subject: test\r\n\r\nbody\r\n"


def session(port: int):
    """One message; (MAIL reply code, the final reply code)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        s.ehlo("client.example")
        code, text = s.mail("a@sender.example")
        if code != 250:
            return code, text
        s.rcpt("user@test.example")
        return s.data(MESSAGE)


@pytest.mark.parametrize("how", ["down", "sleep", "close", "garbage"])
@pytest.mark.parametrize(
    ("action", "want"),
    [
        ("tempfail", (451, b"4.7.1 Service unavailable - try again later")),
        ("reject", (550, b"5.5.0 Service unavailable")),
        ("accept", None),
        ("quarantine", None),
    ],
)
def test_default_action(tmp_path, how, action, want):
    broken = BrokenMilter(how) if how != "down" else None
    port = broken.port if broken else free_port()
    name = f"inet:127.0.0.1:{port}"
    cdir = make_instance(
        tmp_path,
        f"smtpd_milters = {{ {name}, default_action={action} }}\n"
        "milter_command_timeout = 1s\nmilter_connect_timeout = 1s\n",
    )
    server = SmtpdThread(cdir)
    try:
        started = time.monotonic()
        first = session(server.port)
        assert time.monotonic() - started < 10
        second = session(server.port)  # the next session is served the same way
    finally:
        server.close()
        if broken:
            broken.close()
    if want is not None:
        assert first == second == want
        assert queued(cdir) == []
    else:
        assert first[0] == second[0] == 250
        queue = "hold" if action == "quarantine" else "incoming"
        assert len(queued(cdir, queue)) == 2
    warnings = [line for line in maillog(tmp_path).splitlines() if "warning:" in line]
    assert len(warnings) == 2, warnings  # one a session
    assert all(name in line for line in warnings)
    if action == "quarantine":
        assert "milter triggers HOLD action" in maillog(tmp_path)
