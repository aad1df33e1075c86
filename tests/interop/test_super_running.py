"""mta super and mta queue on a running mail system, while mail flows."""

from __future__ import annotations

import json
import os
import re
import smtplib

import pytest

from tests.support.running import free_port, relay_system, wait_for

pytestmark = pytest.mark.interop


@pytest.fixture
def mail_system(tmp_path):
    inst = relay_system(
        tmp_path,
        "discard unix - - n - - discard\nretry unix - - n - - error\n",
        transport_maps="inline:{ {later.example=retry:4.4.4 busy}, ok.example=discard:accepted }",
        fast_flush_domains="later.example",
        minimal_backoff_time="1h",
        maximal_backoff_time="2h",
    )
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    yield inst
    inst.stop()


def send(inst, rcpt):
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
        s.sendmail("sender@ok.example", [rcpt], b"Subject: hi\r\n\r\nbody\r\n")


def queued(inst) -> dict[str, str]:
    r = inst.mta("queue", "-j")
    assert r.returncode == 0, r.stderr
    return {o["queue_id"]: o["queue_name"] for o in map(json.loads, r.stdout.splitlines())}


def size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:  # a flush has just taken it
        return -1


def test_hold_release_requeue_delete_while_mail_flows(mail_system):
    inst = mail_system
    send(inst, "x@later.example")
    inst.wait_log(r"status=deferred \(busy\)", 15)
    assert wait_for(lambda: list(queued(inst).values()) == ["deferred"], 10)
    (qid,) = queued(inst)

    r = inst.mta("super", "-h", "ALL")
    assert r.returncode == 0 and "Placed on hold: 1 message" in r.stderr
    assert queued(inst) == {qid: "hold"}
    assert "!" in inst.mta("queue").stdout.splitlines()[1]

    send(inst, "y@ok.example")  # other mail still flows
    inst.wait_log(r"status=sent \(accepted\)", 15)
    assert wait_for(lambda: queued(inst) == {qid: "hold"}, 10)

    r = inst.mta("super", "-H", qid)
    assert r.returncode == 0 and "Released from hold: 1 message" in r.stderr
    inst.wait_log(r"status=deferred \(busy\)", 15, count=2)  # qmgr tried it at once

    assert wait_for(lambda: queued(inst) == {qid: "deferred"}, 10)
    r = inst.mta("super", "-r", qid)
    assert r.returncode == 0 and "Requeued: 1 message" in r.stderr
    # through cleanup again: a new queue id, tried at once
    text = inst.wait_log(rf"orig_id={qid}", 15)
    new_qid = re.search(rf"(\w+): uid=\d+ from=<sender@ok\.example> orig_id={qid}", text)[1]
    assert new_qid != qid and f"{qid}: requeued" in text
    inst.wait_log(rf"{new_qid}: to=<x@later\.example>.*status=deferred \(busy\)", 15)

    assert wait_for(lambda: queued(inst) == {new_qid: "deferred"}, 10)
    r = inst.mta("super", "-d", "ALL")
    assert r.returncode == 0 and "Deleted: 1 message" in r.stderr
    assert queued(inst) == {}
    assert inst.mta("queue").stdout == "Mail queue is empty\n"
    send(inst, "z@ok.example")
    inst.wait_log(r"status=sent \(accepted\)", 15, count=2)


def test_requeue_applies_a_canonical_map_added_meanwhile_and_delivers(mail_system):
    inst = mail_system
    send(inst, "x@later.example")
    inst.wait_log(r"status=deferred \(busy\)", 15)
    assert wait_for(lambda: list(queued(inst).values()) == ["deferred"], 10)
    (qid,) = queued(inst)
    with open(os.path.join(inst.dir, "main.cf"), "a") as f:
        f.write("canonical_maps = inline:{ x@later.example=x@ok.example }\n")
    r = inst.mta("super", "-r", "ALL")
    assert r.returncode == 0 and "Requeued: 1 message" in r.stderr
    text = inst.wait_log(r"to=<x@ok\.example>, orig_to=<x@later\.example>.*status=sent", 15)
    new_qid = re.search(rf"(\w+): uid=\d+ from=<sender@ok\.example> orig_id={qid}", text)[1]
    assert f"{new_qid}: to=<x@ok.example>" in text
    assert wait_for(lambda: queued(inst) == {}, 10)


def test_force_expire_bounces_a_deferred_message_at_once(mail_system):
    inst = mail_system
    send(inst, "x@later.example")
    inst.wait_log(r"status=deferred \(busy\)", 15)
    assert wait_for(lambda: list(queued(inst).values()) == ["deferred"], 10)
    (qid,) = queued(inst)
    r = inst.mta("super", "-e", qid)
    assert r.returncode == 0 and "Force-expired: 1 message" in r.stderr
    text = inst.wait_log(rf"{qid}: from=<sender@ok\.example>, status=force-expired", 15)
    assert f"{qid}: sender non-delivery notification" in inst.wait_log(rf"{qid}: removed", 15)
    assert f"{qid}: to=<x@later.example>" in text  # the one try before, and no other
    assert text.count(f"{qid}: to=<x@later.example>") == 1


def test_etrn_and_site_flush_retry_that_site_only(mail_system):
    inst = mail_system
    send(inst, "x@later.example")
    inst.wait_log(r"status=deferred \(busy\)", 15)
    assert wait_for(lambda: list(queued(inst).values()) == ["deferred"], 10)
    (qid,) = queued(inst)
    flush_log = os.path.join(inst.queue, "flush", "later.example")
    with open(flush_log) as f:
        assert f.read() == f"{qid}\n"
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
        s.ehlo("client.example")
        assert s.docmd("ETRN", "later.example") == (250, b"Queuing started")
        code, text = s.docmd("ETRN", "elsewhere.example")
        assert code == 459 and b"elsewhere.example" in text
    # the back-off is an hour: only the ETRN can have brought it back so soon
    inst.wait_log(r"status=deferred \(busy\)", 15, count=2)
    assert wait_for(lambda: list(queued(inst).values()) == ["deferred"], 10)
    r = inst.mta("queue", "-s", "later.example")
    assert r.returncode == 0, r.stderr
    inst.wait_log(r"status=deferred \(busy\)", 15, count=3)
    r = inst.mta("queue", "-s", "elsewhere.example")
    assert r.returncode == 69 and "fast_flush_domains" in r.stderr


def test_etrn_delivers_what_the_flush_log_lists_and_only_that(tmp_path):
    """smtp to a sink that answers 451 to each recipient's first try: after the
    deferral the flush logs name the messages; ETRN for one site delivers its
    mail long before the hour of back-off, the other site's waits."""
    from aiosmtpd.controller import Controller

    tried: set[str] = set()
    received: list[list[str]] = []

    class Sink:
        async def handle_RCPT(self, server, session, envelope, address, options):
            if address not in tried:
                tried.add(address)
                return "451 4.3.0 not yet"
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 Ok"

        async def handle_DATA(self, server, session, envelope):
            received.append(list(envelope.rcpt_tos))
            return "250 2.0.0 Ok: taken"

    sink_port = free_port()
    ctl = Controller(Sink(), hostname="127.0.0.1", port=sink_port)
    ctl.start()
    hop = f"smtp:[127.0.0.1]:{sink_port}"
    inst = relay_system(
        tmp_path,
        "smtp unix - - n - - smtp\n",
        transport_maps=f"inline:{{ {{later.example={hop}}}, {{other.example={hop}}} }}",
        fast_flush_domains="later.example, other.example",
        minimal_backoff_time="1h",
        maximal_backoff_time="2h",
    )
    try:
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr
        send(inst, "x@later.example")
        send(inst, "y@other.example")
        inst.wait_log(r"status=deferred \(host \S+ said: 451", 20, count=2)
        assert wait_for(lambda: list(queued(inst).values()) == ["deferred"] * 2, 10)
        by_site = {}
        for site in ("later.example", "other.example"):
            with open(os.path.join(inst.queue, "flush", site)) as f:
                by_site[site] = f.read().split()
        assert sorted(sum(by_site.values(), [])) == sorted(queued(inst))
        (later_id,) = by_site["later.example"]
        (other_id,) = by_site["other.example"]

        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
            s.ehlo("client.example")
            assert s.docmd("ETRN", "later.example") == (250, b"Queuing started")
        inst.wait_log(rf"{later_id}: removed", 15)
        assert received == [["x@later.example"]]
        assert queued(inst) == {other_id: "deferred"}
        # the log still names the message it made due; the next flush drops it
        later_log = os.path.join(inst.queue, "flush", "later.example")
        with open(later_log) as f:
            assert f.read() == f"{later_id}\n"
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
            s.ehlo("client.example")
            assert s.docmd("ETRN", "later.example") == (250, b"Queuing started")
        assert wait_for(lambda: size(later_log) == 0, 10)
    finally:
        inst.stop()
        ctl.stop()
