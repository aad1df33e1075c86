"""check_policy_service end to end: smtplib against smtpd (in process, then under the real
master), with a scripted policy server (tests/support/policy_server.py) recording requests."""

from __future__ import annotations

import smtplib

import pytest

from tests.support.instance import SmtpdThread, make_instance
from tests.support.policy_server import PolicyServer
from tests.support.running import Instance, free_port

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

MESSAGE = b"Subject: policy\r\n\r\nhello\r\n"


def by_recipient(attrs: dict[str, str]) -> str:
    """The script of these tests: the recipient's local part says what to answer."""
    if attrs["protocol_state"] != "RCPT":
        return "DUNNO"
    local = attrs["recipient"].split("@")[0]
    return {"ok": "OK", "no": "REJECT not wanted here", "later": "450 4.7.1 try later"}.get(
        local, "DUNNO"
    )


@pytest.fixture
def in_process(tmp_path):
    """(smtpd thread, policy server): recipient and end-of-data checks ask the server."""
    with PolicyServer(handler=by_recipient) as srv:
        cdir = make_instance(
            tmp_path,
            f"mynetworks = 192.0.2.0/24\n"
            f"smtpd_recipient_restrictions = check_policy_service {srv.service}, "
            "permit_mynetworks, reject\n"
            f"smtpd_end_of_data_restrictions = check_policy_service {srv.service}\n",
        )
        smtpd = SmtpdThread(cdir)
        try:
            yield smtpd, srv
        finally:
            smtpd.close()


def test_actions_reach_the_smtp_client(in_process):
    smtpd, srv = in_process
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        s.mail("a@sender.example")
        assert s.rcpt("ok@mx.test.example")[0] == 250
        code, text = s.rcpt("no@mx.test.example")
        assert (code, text) == (
            554,
            b"5.7.1 <no@mx.test.example>: Recipient address rejected: not wanted here",
        )
        assert s.rcpt("later@mx.test.example") == (
            450,
            b"4.7.1 <later@mx.test.example>: Recipient address rejected: try later",
        )
        assert s.rcpt("dunno@mx.test.example")[0] == 554  # DUNNO, then reject
    assert srv.connections == 1


def test_session_attributes_are_filled(in_process):
    smtpd, srv = in_process
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        for _ in range(2):
            s.mail("a@sender.example", ["SIZE=1000"])
            s.rcpt("ok@mx.test.example")
            s.data(MESSAGE)
    rcpt, eod, rcpt2, eod2 = srv.requests
    assert (rcpt["server_address"], rcpt["server_port"]) == ("127.0.0.1", str(smtpd.port))
    assert rcpt["client_address"] == "127.0.0.1"
    assert (rcpt["helo_name"], rcpt["protocol_name"]) == ("client.example", "ESMTP")
    assert (rcpt["size"], rcpt["queue_id"], rcpt["recipient_count"]) == ("1000", "", "0")
    assert eod["protocol_state"] == "END-OF-MESSAGE"
    assert eod["recipient_count"] == "1" and eod["recipient"] == "ok@mx.test.example"
    assert eod["queue_id"] and eod["size"] != "1000"
    assert rcpt["instance"] == eod["instance"] != rcpt2["instance"] == eod2["instance"]
    assert eod2["queue_id"] != eod["queue_id"]
    assert srv.connections == 1


def test_a_dead_policy_server_defers_and_smtpd_keeps_serving(tmp_path):
    port = free_port()  # nothing listens here
    cdir = make_instance(
        tmp_path,
        "smtpd_policy_service_try_limit = 1\n"
        f"smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:{port}, "
        "permit_mynetworks, reject\n",
    )
    smtpd = SmtpdThread(cdir)
    try:
        for _ in range(2):
            with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
                s.ehlo("client.example")
                s.mail("a@sender.example")
                assert s.rcpt("x@mx.test.example") == (
                    451,
                    b"4.3.5 <x@mx.test.example>: Recipient address rejected: "
                    b"Server configuration problem",
                )
    finally:
        smtpd.close()
    log = (tmp_path / "maillog").read_text()
    assert log.count(f"problem talking to server inet:127.0.0.1:{port}: Connection refused") == 2


# ---------------------------------------------------------------- under the real master
def master_system(tmp_path, service: str, **main: str) -> Instance:
    port = free_port()
    inst = Instance(
        tmp_path,
        f"127.0.0.1:{port} inet n - n - - smtpd\n"
        "qmgr fifo n - n 300 1 qmgr\ncleanup unix n - n - 0 cleanup\n"
        "discard unix - - n - - discard\n",
        {
            "myhostname": "mx.test.example",
            "mydestination": "",
            "mynetworks": "192.0.2.0/24",
            "relay_domains": "relay.example",
            "relay_transport": "discard",
            "relay_recipient_maps": "",
            "smtpd_peername_lookup": "no",
            "smtpd_recipient_restrictions": (
                f"check_policy_service {service}, permit_mynetworks, reject"
            ),
            **main,
        },
    )
    inst.port = port
    return inst


def test_under_the_master(tmp_path):
    with PolicyServer(handler=by_recipient) as srv:
        inst = master_system(tmp_path, srv.service, smtpd_policy_service_timeout="10s")
        r = inst.mta("check")
        assert r.returncode == 0, r.stdout + r.stderr
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr
        try:
            for _ in range(2):
                with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as s:
                    s.ehlo("client.example")
                    s.mail("a@sender.example")
                    assert s.rcpt("ok@relay.example")[0] == 250
                    assert s.rcpt("no@relay.example") == (
                        554,
                        b"5.7.1 <no@relay.example>: Recipient address rejected: not wanted here",
                    )
                    assert s.rcpt("dunno@relay.example")[0] == 554
                    s.data(MESSAGE)
            inst.wait_log(r"to=<ok@relay\.example>.*status=sent", count=2)
            log = inst.log()
        finally:
            inst.stop()
    assert "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <no@relay.example>" in log
    assert len(srv.requests) == 6
    assert {r["client_address"] for r in srv.requests} == {"127.0.0.1"}
    # one smtpd process keeps its connection across the two sessions
    assert srv.connections <= len({r["instance"].split(".")[0] for r in srv.requests})


def test_mta_check_names_the_list_of_a_malformed_service(tmp_path):
    inst = master_system(tmp_path, "inet:127.0.0.1")
    r = inst.mta("check")
    assert r.returncode != 0
    assert "smtpd_recipient_restrictions" in r.stdout + r.stderr
    assert "inet:host:port" in r.stdout + r.stderr
