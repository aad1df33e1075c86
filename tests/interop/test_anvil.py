"""smtpd's per-client limits under the real master, counted by the real anvil
service: connection count and rate, message and recipient rates, clients in
smtpd_client_event_limit_exceptions, and smtpd without anvil."""

from __future__ import annotations

import re

import pytest

from tests.support.instance import RawClient
from tests.support.running import Instance, free_port

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

ANVIL = "anvil unix - - n - 1 anvil\n"
OUTSIDER = "127.0.0.2"  # not in mynetworks: counted


def start(tmp_path, services: str = ANVIL, smtpd: str = "smtpd", **main: str) -> Instance:
    port = free_port()
    inst = Instance(
        tmp_path,
        f"127.0.0.1:{port} inet n - n - - {smtpd}\n{services}",
        {
            "myhostname": "mx.test.example",
            "mydestination": "mx.test.example",
            "mynetworks": "127.0.0.1/32",
            "smtpd_peername_lookup": "no",
            "alias_maps": "",
            "local_recipient_maps": "",
            **main,
        },
    )
    inst.port = port
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    return inst


def greeted(inst: Instance, source: str = OUTSIDER) -> tuple[RawClient, str]:
    client = RawClient(inst.port, source=source)
    return client, client.reply()


def test_connection_count_limit_refuses_the_third_while_two_are_open(tmp_path):
    inst = start(tmp_path, smtpd_client_connection_count_limit="2", anvil_status_update_time="2s")
    try:
        one, r1 = greeted(inst)
        two, r2 = greeted(inst)
        assert r1.startswith("220 ") and r2.startswith("220 ")
        three, r3 = greeted(inst)
        assert r3 == "421 4.7.0 mx.test.example Error: too many connections from 127.0.0.2"
        assert three.closed()
        inst.wait_log(
            r"warning: Connection concurrency limit exceeded: 3 from unknown\[127\.0\.0\.2\]"
            r" for service 127\.0\.0\.1:\d+"
        )
        # a client in mynetworks (the default exceptions) is not counted
        local, r = greeted(inst, "127.0.0.1")
        assert r.startswith("220 ")
        local.close()
        # once one closes, a new connection is welcome again
        one.send(b"QUIT\r\n")
        assert one.reply().startswith("221 ")
        one.close()
        inst.wait_log(r"disconnect from unknown\[127\.0\.0\.2\]", count=2)
        four, r4 = None, ""
        for _ in range(20):  # the disconnect reaches anvil in the background
            four, r4 = greeted(inst)
            if r4.startswith("220 "):
                break
            four.close()
        assert r4.startswith("220 "), r4
        four.close()
        two.close()
        # anvil's statistics, every anvil_status_update_time
        inst.wait_log(
            r"anvil\[\d+\]: statistics: max connection count 3"
            r" for \(127\.0\.0\.1:\d+:127\.0\.0\.2\) at \w+ +\d+ \d\d:\d\d:\d\d"
        )
        inst.wait_log(r"anvil\[\d+\]: statistics: max connection rate 4/60s for \(127")
    finally:
        inst.stop()


def test_connection_rate_limit(tmp_path):
    inst = start(tmp_path, smtpd_client_connection_rate_limit="2")
    try:
        for _ in range(2):
            client, r = greeted(inst)
            assert r.startswith("220 ")
            client.close()
        client, r = greeted(inst)
        assert r == "421 4.7.0 mx.test.example Error: too many connections from 127.0.0.2"
        inst.wait_log(
            r"warning: Connection rate limit exceeded: 3 from unknown\[127\.0\.0\.2\] for service"
        )
    finally:
        inst.stop()


def test_message_rate_limit_holds_across_connections(tmp_path):
    inst = start(tmp_path, smtpd_client_message_rate_limit="2")
    try:
        client, r = greeted(inst)
        client.send(b"EHLO client.example\r\n")
        assert client.reply().startswith("250-")
        for _ in range(2):
            client.send(b"MAIL FROM:<a@sender.example>\r\n")
            assert client.reply() == "250 2.1.0 Ok"
            client.send(b"RSET\r\n")
            assert client.reply().startswith("250 ")
        client.send(b"MAIL FROM:<a@sender.example>\r\n")
        assert client.reply() == "450 4.7.1 Error: too much mail from 127.0.0.2"
        inst.wait_log(
            r"warning: Message delivery request rate limit exceeded: 3 from"
            r" unknown\[127\.0\.0\.2\] for service"
        )
        # another connection from the same client meets the same count
        other, _ = greeted(inst)
        other.send(b"HELO client.example\r\n")
        assert other.reply().startswith("250 ")
        other.send(b"MAIL FROM:<a@sender.example>\r\n")
        assert other.reply() == "450 4.7.1 Error: too much mail from 127.0.0.2"
        other.close()
    finally:
        inst.stop()


def test_recipient_rate_limit(tmp_path):
    inst = start(tmp_path, smtpd_client_recipient_rate_limit="2")
    try:
        client, r = greeted(inst)
        client.send(b"HELO client.example\r\n")
        assert client.reply().startswith("250 ")
        client.send(b"MAIL FROM:<a@sender.example>\r\n")
        assert client.reply() == "250 2.1.0 Ok"
        for _ in range(2):
            client.send(b"RCPT TO:<someone@mx.test.example>\r\n")
            assert client.reply().startswith("250 ")
        client.send(b"RCPT TO:<someone@mx.test.example>\r\n")
        assert client.reply() == "450 4.7.1 Error: too many recipients from 127.0.0.2"
        inst.wait_log(
            r"warning: Recipient address rate limit exceeded: 3 from"
            r" unknown\[127\.0\.0\.2\] for service"
        )
        client.close()
    finally:
        inst.stop()


def test_without_anvil_smtpd_serves_without_limits_and_warns_once(tmp_path):
    inst = start(tmp_path, services="", smtpd_client_connection_count_limit="1")
    try:
        clients = []
        for _ in range(3):
            client, r = greeted(inst)
            assert r.startswith("220 "), r
            clients.append(client)
        for client in clients:
            client.close()
        log = inst.wait_log(
            r"warning: anvil service \S+/private/anvil: connect: No such file or directory;"
            r" client limits are not enforced"
        )
        assert len(re.findall(r"client limits are not enforced", log)) == 1
    finally:
        inst.stop()


def test_two_smtpd_processes_share_one_count(tmp_path):
    # two listeners, each its own smtpd process, under one service name
    # (-n smtp), as one service's processes: anvil counts them together
    port2 = free_port()
    inst = start(
        tmp_path,
        services=f"127.0.0.1:{port2} inet n - n - - smtpd -n smtp\n{ANVIL}",
        smtpd="smtpd -n smtp",
        smtpd_client_connection_count_limit="2",
    )
    try:
        one = RawClient(inst.port, source=OUTSIDER)
        assert one.reply().startswith("220 ")
        two = RawClient(port2, source=OUTSIDER)
        assert two.reply().startswith("220 ")
        three = RawClient(port2, source=OUTSIDER)
        assert three.reply() == (
            "421 4.7.0 mx.test.example Error: too many connections from 127.0.0.2"
        )
        log = inst.wait_log(r"Connection concurrency limit exceeded: 3 from \S+ for service smtp")
        pids = set(re.findall(r"smtpd\[(\d+)\]: connect from unknown\[127\.0\.0\.2\]", log))
        assert len(pids) == 2, log
        one.close()
        two.close()
    finally:
        inst.stop()
