"""Mail through smtpd, cleanup, qmgr and the discard/error agents under the real master."""

from __future__ import annotations

import os
import smtplib

import pytest

from mta.qmgr.scan import iter_queue
from tests.support.running import Instance, free_port, mx_system, relay_system, wait_for

pytestmark = pytest.mark.interop


@pytest.fixture
def mail_system(tmp_path):
    inst = relay_system(
        tmp_path,
        "discard unix - - n - - discard\nerror unix - - n - - error\nretry unix - - n - - error\n",
        transport_maps="inline:{ {gone.example=error:5.1.2 domain gone}, "
        "{later.example=retry:4.4.4 busy}, ok.example=discard:accepted }",
    )
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    yield inst
    inst.stop()


def send(inst, rcpts):
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
        s.sendmail("sender@ok.example", rcpts, b"Subject: hi\r\n\r\nbody\r\n")


def test_delivered_mail_leaves_the_queue(mail_system):
    send(mail_system, ["a@ok.example", "b@ok.example"])
    text = mail_system.wait_log(r": removed", 15)
    assert "status=sent (accepted)" in text
    assert "(queue active)" in text
    assert not list(iter_queue(mail_system.queue, "incoming"))
    assert not list(iter_queue(mail_system.queue, "active"))


def test_temporary_failure_goes_to_deferred_and_flush_retries(mail_system):
    send(mail_system, ["x@later.example"])
    mail_system.wait_log(r"status=deferred \(busy\)", 15)
    hashed = ("deferred", "defer")
    assert wait_for(lambda: list(iter_queue(mail_system.queue, "deferred", 1, hashed)), 10)
    r = mail_system.mta("flush")
    assert r.returncode == 0, r.stderr
    mail_system.wait_log(r"status=deferred \(busy\)", 15, count=2)


def test_flush_of_a_stopped_system_says_so(tmp_path):
    inst = Instance(tmp_path, "qmgr fifo n - n 300 1 qmgr\n")
    r = inst.mta("flush")
    assert r.returncode != 0
    assert "mail system is down" in r.stderr
    assert os.path.isdir(inst.dir)


def test_remote_domain_through_its_mx_on_loopback(tmp_path):
    """smtpd -> qmgr -> smtp: the recipient domain's MX (served by a DNS server on
    loopback) points at an aiosmtpd sink on 127.0.0.1."""
    from aiosmtpd.controller import Controller

    from tests.support.dns_server import DnsServer

    received = []

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            received.append((envelope.mail_from, list(envelope.rcpt_tos)))
            return "250 2.0.0 Ok: taken"

    sink_port = free_port()
    ctl = Controller(Sink(), hostname="127.0.0.1", port=sink_port)
    ctl.start()
    zone = {
        "far.example": {"MX": ["10 mx.far.example."]},
        "mx.far.example": {"A": ["127.0.0.1"]},
    }
    with DnsServer(zone) as dns:
        inst = mx_system(tmp_path, sink_port, dns.nameserver)
        port = inst.port
        try:
            r = inst.mta("start")
            assert r.returncode == 0, r.stderr
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
                s.sendmail("me@ok.example", ["you@far.example"], b"Subject: x\r\n\r\nhi\r\n")
            text = inst.wait_log(r": removed", 20)
        finally:
            inst.stop()
            ctl.stop()
        assert ("far.example", "MX") in [(n.rstrip(".").lower(), t) for n, t in dns.queries]
    assert received == [("me@ok.example", ["you@far.example"])]
    assert f"to=<you@far.example>, relay=mx.far.example[127.0.0.1]:{sink_port}" in text
