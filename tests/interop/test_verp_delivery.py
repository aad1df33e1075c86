"""VERP under the real master: smtpd takes a message with XVERP, qmgr hands
each recipient to the smtp client alone, and the sink sees one transaction
per recipient, each from a sender that names that recipient."""

from __future__ import annotations

import smtplib

import pytest
from aiosmtpd.controller import Controller

from tests.support.running import free_port, relay_system, wait_for

pytestmark = pytest.mark.interop

RCPTS = ["ann@far.example", "bob@far.example", "cy@far.example"]


class Sink:
    def __init__(self) -> None:
        self.transactions: list[tuple[str, list[str]]] = []  # (MAIL FROM, RCPT TOs)

    async def handle_DATA(self, server, session, envelope):
        self.transactions.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 2.0.0 Ok"


@pytest.mark.parametrize("option, delims", [("XVERP", "+="), ("XVERP=-=", "-=")])
def test_each_recipient_gets_its_own_transaction_and_verp_sender(tmp_path, option, delims):
    sink = Sink()
    port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port)
    ctl.start()
    inst = relay_system(
        tmp_path,
        "smtp unix - - n - - smtp\n",
        default_transport=f"smtp:[127.0.0.1]:{port}",
        smtpd_authorized_verp_clients="127.0.0.0/8",
    )
    try:
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
            s.ehlo("lists.example")
            assert s.has_extn("xverp")
            s.sendmail("owner-news@lists.example", RCPTS, b"Subject: news\r\n\r\nhi\r\n", [option])
        assert wait_for(lambda: len(sink.transactions) >= 3, 30)
        inst.wait_log(r": removed", 15)
    finally:
        inst.stop()
        ctl.stop()
    first, second = delims
    assert sorted(sink.transactions) == [
        (f"owner-news{first}{user}{second}far.example@lists.example", [f"{user}@far.example"])
        for user in ("ann", "bob", "cy")
    ]
