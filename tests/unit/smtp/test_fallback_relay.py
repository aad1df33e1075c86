"""smtp_fallback_relay: tried after the next hop's own servers, for mail they could not take."""

import pytest

from mta.config import load_config
from mta.smtp import deliver, deliver_lmtp
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.dns_server import zone_fixtures
from tests.support.instance import make_instance
from tests.unit.smtp.peers import ScriptServer, SinkHandler, free_port, read_line, sink

ZONE = {
    "down.example": {"MX": ["10 mx.down.example."]},
    "mx.down.example": {"A": ["127.0.0.1"]},
    "nullmx.example": {"MX": ["0 ."]},
    "self.example": {"MX": ["10 mx2.self.example.", "20 mx.test.example."]},
    "loop.example": {"MX": ["10 mx.test.example."]},
    "two.example": {"MX": ["10 mx1.two.example.", "20 mx2.two.example."]},
    "mx1.two.example": {"A": ["127.0.0.1"]},
    "mx2.two.example": {"A": ["127.0.0.2"]},
    "mx2.self.example": {"A": ["127.0.0.1"]},
}


dns_server, use_dns = zone_fixtures(ZONE)


@pytest.fixture
def fallback():
    ctl, handler = sink()
    yield ctl, handler
    ctl.stop()


def config(tmp_path, fallback_relays: str, port: int | None = None):
    closed = port or free_port()  # nothing listens there: the next hop's servers are down
    return load_config(
        str(
            make_instance(
                tmp_path,
                f"smtp_tcp_port = {closed}\nsmtp_connect_timeout = 2s\n"
                f"smtp_helo_timeout = 2s\nsmtp_fallback_relay = {fallback_relays}\n",
            )
        )
    )


def send(tmp_path, cfg, nexthop, rcpt="u@down.example"):
    msg = queue_message(cfg, [rcpt])
    return run_agent(deliver, cfg, request_for(msg, nexthop), tmp_path)


def test_unreachable_relayhost_falls_back(tmp_path, fallback):
    ctl, handler = fallback
    cfg = config(tmp_path, f"[127.0.0.1]:{ctl.port}")
    result = send(tmp_path, cfg, f"[127.0.0.1]:{free_port()}")
    (st,) = result.statuses
    assert st.action == "relayed"
    assert st.relay == f"127.0.0.1[127.0.0.1]:{ctl.port}"
    assert handler.messages[0][1] == ["u@down.example"]


def test_unreachable_mx_hosts_fall_back_in_order(tmp_path, fallback):
    ctl, handler = fallback
    cfg = config(tmp_path, f"[127.0.0.1]:{free_port()}, [127.0.0.1]:{ctl.port}")
    result = send(tmp_path, cfg, "down.example")
    assert [s.action for s in result.statuses] == ["relayed"]
    assert len(handler.messages) == 1


def test_unknown_domain_goes_to_the_fallback_instead_of_bouncing(tmp_path, fallback):
    ctl, handler = fallback
    cfg = config(tmp_path, f"[127.0.0.1]:{ctl.port}")
    result = send(tmp_path, cfg, "gone.example", rcpt="u@gone.example")
    assert [s.action for s in result.statuses] == ["relayed"]
    assert handler.messages[0][1] == ["u@gone.example"]


async def busy(reader, writer, received):
    """A server that turns every client away with 421 in its greeting."""
    writer.write(b"421 4.3.2 busy, try later\r\n")
    await writer.drain()


def send_past(tmp_path, script, fallback_ctl):
    """send to down.example, whose MX host runs script, with the fallback sink as
    smtp_fallback_relay; returns (the script's ScriptServer, the agent's result)."""
    srv = ScriptServer(script)
    try:
        cfg = config(tmp_path, f"[127.0.0.1]:{fallback_ctl.port}", port=srv.port)
        return srv, send(tmp_path, cfg, "down.example")
    finally:
        srv.stop()


def test_server_that_answers_4xx_falls_back(tmp_path, fallback):
    ctl, handler = fallback
    srv, result = send_past(tmp_path, busy, ctl)
    assert srv.connections == 1
    assert [s.action for s in result.statuses] == ["relayed"]
    assert len(handler.messages) == 1


def test_unreachable_fallback_defers_with_the_last_reason(tmp_path):
    port = free_port()
    cfg = config(tmp_path, f"[127.0.0.1]:{port}")
    result = send(tmp_path, cfg, "down.example")
    (st,) = result.statuses
    assert (st.action, st.dsn) == ("delayed", "4.4.1")
    assert st.reason == f"connect to 127.0.0.1[127.0.0.1]:{port}: Connection refused"


def test_unknown_fallback_relay_defers_an_unknown_domain(tmp_path):
    cfg = config(tmp_path, "[nowhere.example]")
    result = send(tmp_path, cfg, "gone.example", rcpt="u@gone.example")
    assert [(s.action, s.dsn[:1]) for s in result.statuses] == [("delayed", "4")]


@pytest.mark.parametrize(
    "domain,outcome",
    [
        ("nullmx.example", ("failed", "5.1.10")),
        # mx.test.example (myhostname) is a backup MX of self.example: the better MX
        # is down, and the fallback could hand the mail straight back to this host
        ("self.example", ("delayed", "4.4.1")),
        ("loop.example", ("failed", "5.4.6")),
    ],
    ids=["null_mx_bounces", "this_host_is_a_backup_mx", "mail_loops_back"],
)
def test_no_fallback_for(tmp_path, fallback, domain, outcome):
    ctl, handler = fallback
    cfg = config(tmp_path, f"[127.0.0.1]:{ctl.port}")
    result = send(tmp_path, cfg, domain, rcpt=f"u@{domain}")
    assert [(s.action, s.dsn) for s in result.statuses] == [outcome]
    assert handler.messages == []


def test_mail_already_for_the_fallback_is_not_tried_twice(tmp_path):
    srv = ScriptServer(busy)
    try:
        hop = f"[127.0.0.1]:{srv.port}"
        cfg = config(tmp_path, hop)
        result = send(tmp_path, cfg, hop)
    finally:
        srv.stop()
    assert srv.connections == 1
    assert [s.action for s in result.statuses] == ["delayed"]


def test_no_fallback_after_the_content_was_sent(tmp_path, fallback):
    async def drop_after_dot(reader, writer, received):
        writer.write(b"220 raw.example ESMTP\r\n")
        while True:
            line = await read_line(reader, received)
            if line.startswith(b"DATA"):
                writer.write(b"354 go\r\n")
                break
            writer.write(b"250 ok\r\n")
        while (await read_line(reader, received)) != b".\r\n":
            pass
        # no reply to the final dot: the message may have been delivered

    ctl, handler = fallback
    _, result = send_past(tmp_path, drop_after_dot, ctl)
    assert [s.action for s in result.statuses] == ["delayed"]
    assert handler.messages == []


def test_lmtp_does_not_use_the_smtp_fallback(tmp_path, fallback):
    ctl, handler = fallback
    cfg = config(tmp_path, f"[127.0.0.1]:{ctl.port}")
    msg = queue_message(cfg, ["u@box.example"])
    result = run_agent(
        deliver_lmtp, cfg, request_for(msg, f"inet:127.0.0.1:{free_port()}"), tmp_path
    )
    assert [s.action for s in result.statuses] == ["delayed"]
    assert handler.messages == []


GREYLIST = "450 4.2.0 <{}>: Recipient address rejected: Greylisted"


def greylisting(*addresses: str) -> SinkHandler:
    return SinkHandler(reject={a: GREYLIST.format(a) for a in addresses})


def test_recipient_greylisted_by_the_destination_goes_to_the_fallback(tmp_path):
    primary_ctl, primary = sink(greylisting("u@down.example"))
    fallback_ctl, fallback = sink()
    try:
        cfg = config(tmp_path, f"[127.0.0.1]:{fallback_ctl.port}", port=primary_ctl.port)
        msg = queue_message(cfg, ["u@down.example", "v@down.example"])
        result = run_agent(deliver, cfg, request_for(msg, "down.example"), tmp_path)
    finally:
        primary_ctl.stop()
        fallback_ctl.stop()
    assert [s.action for s in result.statuses] == ["relayed", "relayed"]
    assert [m[1] for m in primary.messages] == [["v@down.example"]]
    assert [m[1] for m in fallback.messages] == [["u@down.example"]]
    assert result.statuses[0].relay == f"127.0.0.1[127.0.0.1]:{fallback_ctl.port}"


def test_recipient_refused_for_now_everywhere_keeps_the_destination_reply(tmp_path):
    primary_ctl, _ = sink(greylisting("u@down.example"))
    try:
        cfg = config(tmp_path, f"[127.0.0.1]:{free_port()}", port=primary_ctl.port)
        msg = queue_message(cfg, ["u@down.example"])
        result = run_agent(deliver, cfg, request_for(msg, "down.example"), tmp_path)
    finally:
        primary_ctl.stop()
    (st,) = result.statuses
    assert (st.action, st.dsn) == ("delayed", "4.2.0")
    assert st.reason.startswith("host mx.down.example[127.0.0.1] said: 450 4.2.0")
    assert st.diag_text == GREYLIST.format("u@down.example")


def test_recipient_greylisted_by_one_mx_host_goes_to_the_next(tmp_path):
    """mx1 (127.0.0.1) greylists, mx2 (127.0.0.2, same port) takes it."""
    first_ctl, first = sink(greylisting("u@two.example"))
    from aiosmtpd.controller import Controller

    second = SinkHandler()
    second_ctl = Controller(second, hostname="127.0.0.2", port=first_ctl.port)
    second_ctl.start()
    try:
        cfg = config(tmp_path, "", port=first_ctl.port)
        msg = queue_message(cfg, ["u@two.example"])
        result = run_agent(deliver, cfg, request_for(msg, "two.example"), tmp_path)
    finally:
        first_ctl.stop()
        second_ctl.stop()
    (st,) = result.statuses
    assert st.action == "relayed"
    assert st.relay == f"mx2.two.example[127.0.0.2]:{first_ctl.port}"
    assert first.messages == []
    assert [m[1] for m in second.messages] == [["u@two.example"]]
