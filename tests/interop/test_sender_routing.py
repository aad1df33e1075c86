"""Routing by envelope sender under the real master: a bulk sender's mail leaves
through its own transport, bound to its own source address (a master.cf -o
override), while other mail takes the default route."""

from __future__ import annotations

import smtplib

import pytest
from aiosmtpd.controller import Controller

from tests.support.running import free_port, relay_system, wait_for

pytestmark = pytest.mark.interop


class Sink:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []  # (envelope sender, client address)

    async def handle_DATA(self, server, session, envelope):
        self.seen.append((envelope.mail_from, session.peer[0]))
        return "250 2.0.0 Ok"


def test_bulk_sender_leaves_through_its_own_transport_and_address(tmp_path):
    sink = Sink()
    port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port)
    ctl.start()
    inst = relay_system(
        tmp_path,
        "smtp unix - - n - - smtp\nsmtp-ip2 unix - - n - - smtp -o smtp_bind_address=127.0.0.2\n",
        default_transport=f"smtp:[127.0.0.1]:{port}",
        sender_dependent_default_transport_maps=(
            f"inline:{{ {{@ip2.example=smtp-ip2:[127.0.0.1]:{port}}} }}"
        ),
    )
    try:
        assert inst.mta("start").returncode == 0
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
            s.sendmail("news@ip2.example", ["u@far.example"], b"Subject: a\r\n\r\nhi\r\n")
            s.sendmail("me@other.example", ["u@far.example"], b"Subject: b\r\n\r\nhi\r\n")
        assert wait_for(lambda: len(sink.seen) == 2, 20)
    finally:
        inst.stop()
        ctl.stop()
    assert sorted(sink.seen) == [
        ("me@other.example", "127.0.0.1"),
        ("news@ip2.example", "127.0.0.2"),
    ]
    assert "relay=127.0.0.1[127.0.0.1]" in inst.log()
