"""smtp next hops: parsing, MX look-up against a real DNS server, and delivery through MX."""

import pytest

from mta.common import dns as mta_dns
from mta.config import load_config
from mta.smtp import deliver, nexthop
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.dns_server import zone_fixtures
from tests.support.instance import make_instance
from tests.unit.smtp.peers import ScriptServer, read_line, sink

ZONE = {
    "example.com": {"MX": ["10 mx1.example.com.", "20 mx2.example.com."]},
    "mx1.example.com": {"A": ["127.0.0.2"]},  # nothing listens there: refused
    "mx2.example.com": {"A": ["127.0.0.1"]},
    "equal.example": {"MX": ["10 a.equal.example.", "10 b.equal.example."]},
    "a.equal.example": {"A": ["127.0.0.1"]},
    "b.equal.example": {"A": ["127.0.0.1"]},
    "implicit.example": {"A": ["127.0.0.1"]},
    "nullmx.example": {"MX": ["0 ."]},
    "broken.example": "SERVFAIL",
    "loop.example": {"MX": ["10 mx.test.example."]},
    "backup.example": {"MX": ["5 mx2.example.com.", "10 mx.test.example."]},
    "noaddr.example": {"MX": ["10 gone.example."]},
    "three.example": {
        "MX": ["10 h1.three.example.", "20 h2.three.example.", "30 h3.three.example."]
    },
    "h1.three.example": {"A": ["127.0.0.1"]},
    "h2.three.example": {"A": ["127.0.0.1"]},
    "h3.three.example": {"A": ["127.0.0.1"]},
}


dns_server, use_dns = zone_fixtures(ZONE)


def cfg_for(tmp_path, port=25, extra=""):
    return load_config(
        str(make_instance(tmp_path, f"smtp_tcp_port = {port}\nsmtp_connect_timeout = 2s\n" + extra))
    )


@pytest.mark.parametrize(
    "text,expected",
    [
        ("example.com", nexthop.Nexthop("example.com", 25, True)),
        ("Example.COM:2525", nexthop.Nexthop("example.com", 2525, True)),
        ("[mail.example.com]", nexthop.Nexthop("mail.example.com", 25, False)),
        ("[192.0.2.1]:587", nexthop.Nexthop("192.0.2.1", 587, False)),
        ("[ipv6:2001:db8::1]", nexthop.Nexthop("2001:db8::1", 25, False)),
        ("[mail.example.com]:smtp", nexthop.Nexthop("mail.example.com", 25, False)),
    ],
)
def test_parse_nexthop(text, expected):
    assert nexthop.parse_nexthop(text, 25) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("unix:/run/lmtp", nexthop.Nexthop("/run/lmtp", 0, False, unix=True)),
        ("inet:host.example:2424", nexthop.Nexthop("host.example", 2424, False)),
        ("host.example", nexthop.Nexthop("host.example", 24, False)),
        ("[127.0.0.1]:24", nexthop.Nexthop("127.0.0.1", 24, False)),
    ],
)
def test_parse_lmtp_nexthop(text, expected):
    assert nexthop.parse_nexthop(text, 24, lmtp=True) == expected


@pytest.mark.parametrize("text", ["[unclosed", "a:b:c", "host:notaport", "[x]junk", ""])
def test_malformed_nexthop(text):
    with pytest.raises(nexthop.NexthopError):
        nexthop.parse_nexthop(text, 25)


def resolve(cfg, hop, lmtp=False):
    import asyncio

    return asyncio.run(nexthop.resolve_nexthop(hop, cfg, lmtp))


def test_mx_in_preference_order(tmp_path):
    targets = resolve(cfg_for(tmp_path), "example.com")
    assert [(t.host, t.addr) for t in targets] == [
        ("mx1.example.com", "127.0.0.2"),
        ("mx2.example.com", "127.0.0.1"),
    ]


def test_equal_preferences_are_shuffled(tmp_path):
    cfg = cfg_for(tmp_path)
    seen = set()
    for _ in range(30):
        nexthop.clear_cache()
        seen.add(resolve(cfg, "equal.example")[0].host)
    assert seen == {"a.equal.example", "b.equal.example"}


def test_implicit_mx(tmp_path):
    assert [t.addr for t in resolve(cfg_for(tmp_path), "implicit.example")] == ["127.0.0.1"]


def test_bracketed_host_skips_mx(tmp_path, dns_server):
    before = len(dns_server.queries)
    resolve(cfg_for(tmp_path), "[mx2.example.com]")
    assert ("mx2.example.com", "MX") not in dns_server.queries[before:]


def test_mx_answers_are_cached(tmp_path, dns_server):
    cfg = cfg_for(tmp_path)
    resolve(cfg, "example.com")
    before = len(dns_server.queries)
    resolve(cfg, "example.com")
    assert len(dns_server.queries) == before


def test_address_limit(tmp_path):
    targets = resolve(cfg_for(tmp_path, extra="smtp_mx_address_limit = 1\n"), "example.com")
    assert len(targets) == 1


@pytest.mark.parametrize(
    "domain,dsn,text",
    [
        ("nullmx.example", "5.1.10", "does not accept mail (null MX)"),
        ("nosuch.example", "5.4.4", "Host or domain name not found"),
        ("broken.example", "4.4.3", "Host not found, try again"),
        ("loop.example", "5.4.6", "mail for loop.example loops back to myself"),
        ("noaddr.example", "5.4.4", "name=gone.example type=A: Host not found"),
    ],
)
def test_nexthop_errors(tmp_path, domain, dsn, text):
    with pytest.raises(nexthop.NexthopError) as info:
        resolve(cfg_for(tmp_path), domain)
    assert info.value.dsn == dsn
    assert text in info.value.reason


def test_own_mx_keeps_only_better_hosts(tmp_path):
    targets = resolve(cfg_for(tmp_path), "backup.example")
    assert [t.host for t in targets] == ["mx2.example.com"]


def test_delivery_through_mx_after_refused_first(tmp_path):
    ctl, handler = sink()
    try:
        cfg = cfg_for(tmp_path, ctl.port)
        msg = queue_message(cfg, ["u@example.com"])
        result = run_agent(deliver, cfg, request_for(msg, "example.com"), tmp_path)
    finally:
        ctl.stop()
    (st,) = result.statuses
    assert st.action == "relayed"
    assert st.relay == f"mx2.example.com[127.0.0.1]:{ctl.port}"
    assert len(handler.messages) == 1


def test_null_mx_bounces_request(tmp_path):
    cfg = cfg_for(tmp_path)
    msg = queue_message(cfg, ["u@nullmx.example"])
    result = run_agent(deliver, cfg, request_for(msg, "nullmx.example"), tmp_path)
    assert [(s.action, s.dsn) for s in result.statuses] == [("failed", "5.1.10")]


def test_servfail_defers_request(tmp_path):
    cfg = cfg_for(tmp_path)
    msg = queue_message(cfg, ["u@broken.example"])
    result = run_agent(deliver, cfg, request_for(msg, "broken.example"), tmp_path)
    assert [(s.action, s.dsn) for s in result.statuses] == [("delayed", "4.4.3")]


def test_mx_lookup_returns_ttl():
    import asyncio

    answer = asyncio.run(mta_dns.lookup_mx("example.com"))
    assert answer.status == "ok" and answer.ttl == 60
    assert answer.hosts == [(10, "mx1.example.com"), (20, "mx2.example.com")]


def test_session_limit_stops_after_two_sessions(tmp_path):
    async def script(reader, writer, received):
        writer.write(b"220 x ESMTP\r\n")
        await read_line(reader, received)
        writer.write(b"250 x\r\n")
        await read_line(reader, received)
        writer.write(b"421 4.3.2 busy\r\n")
        await writer.drain()

    srv = ScriptServer(script)
    try:
        cfg = cfg_for(tmp_path, srv.port)
        msg = queue_message(cfg, ["u@three.example"])
        result = run_agent(deliver, cfg, request_for(msg, "three.example"), tmp_path)
    finally:
        srv.stop()
    assert srv.connections == 2
    (st,) = result.statuses
    assert (st.action, st.dsn) == ("delayed", "4.3.2")
    assert not result.hop_dsn
    assert st.reason.startswith("host h2.three.example[127.0.0.1] said: 421 4.3.2 busy")
