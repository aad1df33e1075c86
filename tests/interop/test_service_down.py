"""smtpd under the real master when a service it needs is missing or stuck:
a 4xx at once (or within IPC_REPLY_LIMIT), never a hang of a minute."""

from __future__ import annotations

import time

import pytest

from mta.common.ipc import IPC_REPLY_LIMIT
from tests.support.instance import RawClient
from tests.support.running import Instance, free_port

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

RCPT_REPLY = "451 4.3.0 <someone@mx.test.example>: Temporary lookup failure"


def start(tmp_path, proxymap_line: str) -> Instance:
    port = free_port()
    inst = Instance(
        tmp_path,
        f"127.0.0.1:{port} inet n - n - - smtpd\n{proxymap_line}",
        {
            "myhostname": "mx.test.example",
            "mydestination": "mx.test.example",
            "mynetworks": "127.0.0.1/32",
            "smtpd_peername_lookup": "no",
            "alias_maps": "",
            # the default: local users are looked up through proxymap
            "local_recipient_maps": "proxy:unix:passwd.byname",
        },
    )
    inst.port = port
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    return inst


def timed_rcpt(client: RawClient, rcpt: bytes) -> tuple[str, float]:
    began = time.monotonic()
    client.send(b"RCPT TO:<" + rcpt + b">\r\n")
    return client.reply(), time.monotonic() - began


def session(inst: Instance) -> RawClient:
    client = RawClient(inst.port)
    assert client.reply().startswith("220 ")
    client.send(b"EHLO client.example\r\n")
    assert client.reply().startswith("250-")
    client.send(b"MAIL FROM:<a@sender.example>\r\n")
    assert client.reply() == "250 2.1.0 Ok"
    return client


def test_missing_proxymap_socket_gets_451_at_once(tmp_path):
    inst = start(tmp_path, "")  # no proxymap in master.cf: no socket
    try:
        client = session(inst)
        reply, took = timed_rcpt(client, b"someone@mx.test.example")
        assert reply == RCPT_REPLY
        assert took < 1.0
        client.close()
        inst.wait_log(r"proxymap service \S+/private/proxymap: connect: No such file or directory")
    finally:
        inst.stop()


def test_proxymap_that_never_answers_gets_451_within_the_limit(tmp_path):
    # master listens on private/proxymap, but every process it starts dies
    # at once, so it throttles the service: connections are taken and
    # never answered, as after a bad main.cf reached proxymap
    inst = start(tmp_path, "proxymap unix - - n - - services.svc_crash\n")
    try:
        client = session(inst)
        reply, took = timed_rcpt(client, b"someone@mx.test.example")
        assert reply == RCPT_REPLY
        assert IPC_REPLY_LIMIT - 0.5 < took < IPC_REPLY_LIMIT + 3
        # the next lookups do not wait again
        reply, took = timed_rcpt(client, b"someone@mx.test.example")
        assert (reply, took < 1.0) == (RCPT_REPLY, True)
        client.close()
        inst.wait_log(r"proxymap service \S+/private/proxymap: no reply within 5s")
        inst.wait_log(
            r"proxymap service \S+/private/proxymap: no reply within 5s lately; not asked"
        )
    finally:
        inst.stop()
