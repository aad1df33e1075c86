"""A TLS level that demands TLS, under the real master: deferred, and mta queue says why."""

import smtplib

import pytest

from tests.support.running import relay_system
from tests.unit.smtp.peers import sink

pytestmark = pytest.mark.interop


@pytest.mark.parametrize(
    "level,reason",
    [
        ("encrypt", "TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]"),
        ("verify", "TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]"),
        # dane-only without DNSSEC look-ups (smtp_dns_support_level) is a configuration problem
        ("dane-only", "client TLS configuration problem"),
    ],
)
def test_level_that_cannot_be_met_defers_and_the_queue_shows_why(tmp_path, level, reason):
    ctl, handler = sink()  # no STARTTLS offered
    inst = relay_system(
        tmp_path,
        "smtp unix - - n - - smtp\n",
        transport_maps=f"inline:{{ {{remote.example=smtp:[127.0.0.1]:{ctl.port}}} }}",
        smtp_tls_security_level=level,
    )
    try:
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
            s.sendmail("sender@ok.example", ["a@remote.example"], b"Subject: s\r\n\r\nbody\r\n")
        text = inst.wait_log(r"to=<a@remote\.example>.*status=deferred", 20)
        listing = inst.mta("queue", "-p").stdout
    finally:
        inst.stop()
        ctl.stop()
    assert f"status=deferred ({reason})" in text
    assert f"({reason})" in listing, listing
    assert "a@remote.example" in listing
    assert handler.messages == []
