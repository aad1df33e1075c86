"""Egress pools under the real master: two pools, each delivering from its own
loopback source address and EHLO name; the new address of one is warmed up, so
only its day-1 cap of messages leaves today and the rest waits, also after a
restart (the counts are in LMDB)."""

from __future__ import annotations

import datetime
import smtplib

import pytest

from tests.support.running import free_port, relay_system, wait_for

pytestmark = pytest.mark.interop


def test_two_pools_with_warm_up(tmp_path):
    from aiosmtpd.controller import Controller

    got: list[tuple[str, str, str]] = []  # (peer address, EHLO name, sender)

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            got.append((session.peer[0], session.host_name, envelope.mail_from))
            return "250 2.0.0 Ok: taken"

    sink_port = free_port()
    ctl = Controller(Sink(), hostname="127.0.0.1", port=sink_port)
    ctl.start()
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    (tmp_path / "sources").write_text(
        "old   address=127.0.0.2 helo=old.shop.example\n"
        f"new   address=127.0.0.3 helo=new.shop.example warmup=fresh start={today}\n"
    )
    inst = relay_system(
        tmp_path / "mta",
        "smtp unix - - n - - smtp\n",
        relayhost=f"[127.0.0.1]:{sink_port}",
        egress_sources=f"texthash:{tmp_path / 'sources'}",
        egress_pools="inline:{ {established = old}, {warming = new} }",
        egress_warmup_schedules="inline:{ {fresh = 2, 10} }",
        egress_pool_maps="inline:{ {@a.example = established}, {@b.example = warming} }",
        egress_state_map=f"lmdb:{tmp_path}/egress_state",
        minimal_backoff_time="1s",
        maximal_backoff_time="2s",
        queue_run_delay="1s",
    )
    try:
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
            for i in range(3):
                s.sendmail("news@a.example", [f"r{i}@far.example"], b"Subject: a\r\n\r\nhi\r\n")
            for i in range(4):
                s.sendmail("news@b.example", [f"s{i}@far.example"], b"Subject: b\r\n\r\nhi\r\n")
        inst.wait_log(r"warm-up cap", 20, count=2)
        assert wait_for(lambda: len(got) == 5, 20), got
        # a restart does not reset today's counts: the two wait on
        inst.stop()
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr
        inst.mta("flush")
        inst.wait_log(r"warm-up cap", 20, count=4)
        queue = inst.mta("queue")
    finally:
        inst.stop()
        ctl.stop()
    by_source = sorted((peer, helo, sender) for peer, helo, sender in got)
    assert (
        by_source
        == [("127.0.0.2", "old.shop.example", "news@a.example")] * 3
        + [("127.0.0.3", "new.shop.example", "news@b.example")] * 2
    )
    assert (
        queue.stdout.count("every source of egress pool warming reached today's warm-up cap") == 2
    )
    text = inst.log()
    assert "relay=127.0.0.1[127.0.0.1]" in text
