"""Address verification under the real master: smtpd asks verify, verify sends a
probe through qmgr and the smtp client to an aiosmtpd sink, which accepts some
recipients and rejects others at RCPT TO."""

from __future__ import annotations

import json
import os
import smtplib

import pytest
from aiosmtpd.controller import Controller

from tests.support.running import free_port, relay_system, wait_for

pytestmark = pytest.mark.interop


class Sink:
    """Accepts good*@ recipients, refuses the rest with 550 5.1.1; records what came."""

    def __init__(self) -> None:
        self.rcpts: list[str] = []
        self.messages: list[tuple[str, list[str]]] = []
        self.contents: list[bytes] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.rcpts.append(address)
        if not address.startswith("good"):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.contents.append(envelope.original_content or envelope.content)
        return "250 2.0.0 Ok: taken"


@pytest.fixture
def sink():
    handler = Sink()
    port = free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    handler.port = port
    yield handler
    ctl.stop()


def make_system(tmp_path, sink, **main):
    dead = free_port()  # nothing listens there
    settings = {
        "transport_maps": (
            f"inline:{{ sink.example=smtp:[127.0.0.1]:{sink.port}, "
            f"dead.example=smtp:[127.0.0.1]:{dead} }}"
        ),
        "relay_domains": "sink.example dead.example",
        "smtpd_recipient_restrictions": "reject_unverified_recipient",
        "unverified_recipient_reject_code": "550",
        "address_verify_poll_count": "4",
        "address_verify_poll_delay": "1s",
        "smtp_connect_timeout": "2s",
    }
    settings.update(main)
    return relay_system(
        tmp_path,
        "smtp unix - - n - - smtp\nverify unix - - n - 1 verify\npickup unix n - n 60 1 pickup\n",
        **settings,
    )


@pytest.fixture
def mail_system(tmp_path, sink):
    inst = make_system(tmp_path, sink)
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    yield inst
    inst.stop()


def rcpt(inst, address: str, sender: str = "me@ok.example") -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as s:
        s.ehlo("client.example")
        code, text = s.mail(sender)
        if code != 250:
            return code, text.decode()
        code, text = s.rcpt(address)
        return code, text.decode()


def queue_ids(inst) -> list[str]:
    r = inst.mta("queue", "-j")
    assert r.returncode == 0, r.stderr
    return [json.loads(line)["queue_id"] for line in r.stdout.splitlines()]


def test_deliverable_recipient_is_accepted_after_a_probe_that_sends_no_data(mail_system, sink):
    code, text = rcpt(mail_system, "good@sink.example")
    assert code == 250, text
    log = mail_system.wait_log(r"to=<good@sink.example>.*status=deliverable")
    assert "good@sink.example" in sink.rcpts
    assert sink.messages == []  # the probe stopped after RCPT TO
    assert wait_for(lambda: queue_ids(mail_system) == [], 10)  # the probe is gone
    assert "double-bounce@" in log  # the probe's sender
    # real mail to the verified address is delivered, with its content
    with smtplib.SMTP("127.0.0.1", mail_system.port, timeout=30) as s:
        s.sendmail("me@ok.example", ["good@sink.example"], b"Subject: x\r\n\r\nhi\r\n")
    assert wait_for(lambda: sink.messages, 20)
    assert sink.messages == [("me@ok.example", ["good@sink.example"])]


def test_undeliverable_recipient_gets_the_reject_code_and_no_bounce(mail_system, sink):
    code, text = rcpt(mail_system, "nobody@sink.example")
    assert code == 550, text
    assert text.startswith("5.1.1 <nobody@sink.example>: Recipient address rejected: ")
    assert "undeliverable address: host 127.0.0.1[127.0.0.1] said: 550 5.1.1 no such user" in text
    log = mail_system.wait_log(r"to=<nobody@sink.example>.*status=undeliverable")
    assert wait_for(lambda: queue_ids(mail_system) == [], 10)
    assert "non-delivery notification" not in log  # probes are never bounced
    assert sink.messages == []


def test_unreachable_destination_is_deferred_and_the_probe_discarded(mail_system, sink):
    code, text = rcpt(mail_system, "someone@dead.example")
    assert code == 450, text
    assert "<someone@dead.example>: Recipient address rejected: unverified address" in text
    mail_system.wait_log(r"to=<someone@dead.example>.*status=deferred")
    assert wait_for(lambda: queue_ids(mail_system) == [], 10)  # not kept for a retry
    # the next attempt answers from the cache: still not known, no new probe
    code, text = rcpt(mail_system, "someone@dead.example")
    assert code == 450
    assert "unverified address:" in text
    assert mail_system.log().count("probe for <someone@dead.example>") == 1


def test_results_survive_a_restart_in_the_lmdb_cache(tmp_path, sink):
    inst = make_system(tmp_path, sink)

    def answers() -> tuple[int, int]:
        """Start the mail system, ask for one good and one bad address, stop it."""
        assert inst.mta("start").returncode == 0
        try:
            return rcpt(inst, "good2@sink.example")[0], rcpt(inst, "bad2@sink.example")[0]
        finally:
            inst.stop()

    assert answers() == (250, 550)
    assert os.path.exists(os.path.join(inst.top, "data", "verify_cache.lmdb"))
    probes = len(sink.rcpts)
    assert answers() == (250, 550)
    assert len(sink.rcpts) == probes  # answered from the cache, no new probes


def test_unverified_sender_is_rejected_at_mail_from(tmp_path, sink):
    inst = make_system(
        tmp_path,
        sink,
        smtpd_recipient_restrictions="permit_mynetworks, reject",
        smtpd_sender_restrictions="reject_unverified_sender",
        smtpd_delay_reject="no",
        unverified_sender_reject_code="550",
    )
    assert inst.mta("start").returncode == 0
    try:
        code, text = rcpt(inst, "good@sink.example", sender="forged@sink.example")
        assert code == 550, text
        assert "<forged@sink.example>: Sender address rejected: undeliverable address" in text
        code, text = rcpt(inst, "good@sink.example", sender="good-sender@sink.example")
        assert code == 250, text
    finally:
        inst.stop()


def test_verify_service_down_defers(tmp_path, sink):
    inst = make_system(tmp_path, sink)
    inst.write_master_cf(
        open(os.path.join(inst.dir, "master.cf")).read().replace("verify unix", "#verify unix")
    )
    assert inst.mta("start").returncode == 0
    try:
        code, text = rcpt(inst, "good@sink.example")
    finally:
        inst.stop()
    assert code == 450, text
    assert "Address verification service is unavailable" in text


def test_sendmail_bv_mails_the_sender_a_report_and_delivers_nothing(mail_system, sink):
    import email
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "mta.cli.sendmail", "-C", mail_system.dir, "-bv"]
        + ["-f", "good-me@sink.example", "good@sink.example", "nobody@sink.example"],
        env=mail_system.env,
        capture_output=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: sink.messages, 20)
    # the only message that arrived is the report, to the sender, from MAILER-DAEMON
    assert sink.messages == [("<>", ["good-me@sink.example"])]
    report = email.message_from_bytes(sink.contents[0])
    assert report["Subject"] == "Mail Delivery Status Report"
    status = report.get_payload()[1].get_payload()[1:]
    actions = {f["Final-Recipient"].split(";")[1].strip(): f["Action"] for f in status}
    assert actions == {"good@sink.example": "deliverable", "nobody@sink.example": "undeliverable"}
    assert sorted(sink.rcpts) == [
        "good-me@sink.example",
        "good@sink.example",
        "nobody@sink.example",
    ]
