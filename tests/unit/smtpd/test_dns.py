"""smtpd.dns: look-up statuses, mail-domain and host tests, name server selection; the test server."""

import asyncio
import os
import subprocess
import sys

import dns.message
import dns.query
import dns.rcode
import pytest
from hypothesis import given
from hypothesis import strategies as hs

from mta.smtpd import dns as smtpd_dns
from tests.support.dns_server import DnsServer

ZONE = {
    "example.com": {"MX": ["10 mx.example.com.", "20 mx2.example.com."], "A": ["192.0.2.1"]},
    "mx.example.com": {"A": ["192.0.2.2"], "AAAA": ["2001:db8::2"]},
    "alias.example.com": {"CNAME": ["mx.example.com."]},
    "a-only.example": {"A": ["192.0.2.3"]},
    "v6-only.example": {"AAAA": ["2001:db8::3"]},
    "mx-only.example": {"MX": ["10 mx.example.com."]},
    "nullmx.example": {"MX": ["0 ."]},
    "badmx.example": {"MX": ["0 .", "10 mx.example.com."]},
    "txt.example": {"TXT": ['"v=spf1 -all"']},
    "deep.sub.parent.example": {"A": ["192.0.2.4"]},
    "servfail.example": "SERVFAIL",
    "refused.example": "REFUSED",
    "silent.example": "TIMEOUT",
}


@pytest.fixture(scope="module")
def server():
    with DnsServer(ZONE) as srv:
        yield srv


@pytest.fixture(autouse=True)
def pointed(server):
    smtpd_dns.set_nameservers(server.nameserver)
    smtpd_dns.set_timeouts(0.3, 0.6)
    yield
    smtpd_dns.set_nameservers(None)
    smtpd_dns.set_timeouts()


def run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------- the test server itself
def test_server_answers_authoritatively(server):
    q = dns.message.make_query("example.com", "MX")
    r = dns.query.udp(q, server.host, port=server.port, timeout=2)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert sorted(rd.to_text() for rd in r.answer[0]) == [
        "10 mx.example.com.",
        "20 mx2.example.com.",
    ]


def test_server_nxdomain_and_nodata(server):
    q = dns.message.make_query("nothing.example", "A")
    assert dns.query.udp(q, server.host, port=server.port, timeout=2).rcode() == dns.rcode.NXDOMAIN
    q = dns.message.make_query("parent.example", "A")  # an empty non-terminal
    r = dns.query.udp(q, server.host, port=server.port, timeout=2)
    assert r.rcode() == dns.rcode.NOERROR and not r.answer


def test_server_records_queries(server):
    run(smtpd_dns.lookup("txt.example", "TXT"))
    assert ("txt.example", "TXT") in server.queries


def test_server_zone_can_change_while_running(server):
    server.update({"late.example": {"A": ["192.0.2.50"]}})
    assert run(smtpd_dns.lookup("late.example", "A")).records == ["192.0.2.50"]


# ---------------------------------------------------------------- lookup()
def test_lookup_ok_returns_master_file_text():
    answer = run(smtpd_dns.lookup("mx.example.com", "AAAA"))
    assert answer == smtpd_dns.DnsAnswer("ok", ["2001:db8::2"])


def test_lookup_is_case_insensitive_and_takes_trailing_dot():
    assert run(smtpd_dns.lookup("MX.Example.COM.", "A")).records == ["192.0.2.2"]


def test_lookup_follows_cname():
    assert run(smtpd_dns.lookup("alias.example.com", "A")).records == ["192.0.2.2"]


@pytest.mark.parametrize(
    ("name", "rdtype", "status"),
    [
        ("nothing.example", "A", "notfound"),
        ("example.com", "AAAA", "nodata"),
        ("servfail.example", "A", "retry"),
        ("refused.example", "A", "retry"),
        ("silent.example", "A", "retry"),
        ("bad..name", "A", "notfound"),
        ("", "A", "notfound"),
        ("x" * 64 + ".example", "A", "notfound"),
    ],
)
def test_lookup_statuses(name, rdtype, status):
    assert run(smtpd_dns.lookup(name, rdtype)).status == status


def test_lookup_uses_no_search_list(server):
    run(smtpd_dns.lookup("single-label", "A"))
    assert server.queries[-1] == ("single-label", "A")


# ---------------------------------------------------------------- mail_domain_status / host_status
@pytest.mark.parametrize(
    ("domain", "status"),
    [
        ("example.com", "ok"),
        ("mx-only.example", "ok"),
        ("a-only.example", "ok"),
        ("v6-only.example", "ok"),
        ("nullmx.example", "nullmx"),
        ("badmx.example", "inval"),
        ("txt.example", "notfound"),
        ("nothing.example", "notfound"),
        ("servfail.example", "retry"),
    ],
)
def test_mail_domain_status(domain, status):
    assert run(smtpd_dns.mail_domain_status(domain)) == status


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("mx.example.com", "ok"),
        ("mx-only.example", "ok"),
        ("v6-only.example", "ok"),
        ("txt.example", "notfound"),
        ("nothing.example", "notfound"),
        ("servfail.example", "retry"),
    ],
)
def test_host_status(name, status):
    assert run(smtpd_dns.host_status(name)) == status


def test_host_addresses_collects_both_families():
    answer = run(smtpd_dns.host_addresses("mx.example.com"))
    assert answer.status == "ok" and answer.records == ["192.0.2.2", "2001:db8::2"]
    assert run(smtpd_dns.host_addresses("nothing.example")).status == "notfound"


# ---------------------------------------------------------------- name server selection
def test_environment_variable_points_a_child_process_at_the_server(server):
    code = (
        "import asyncio; from mta.smtpd import dns;"
        "print(asyncio.run(dns.lookup('a-only.example', 'A')).records)"
    )
    env = dict(os.environ, MTA_DNS_SERVER=server.nameserver)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.stdout.strip() == "['192.0.2.3']", out.stderr


def test_environment_variable_is_read_when_no_override(server, monkeypatch):
    smtpd_dns.set_nameservers(None)
    monkeypatch.setenv(smtpd_dns.DNS_ENV, server.nameserver)
    smtpd_dns.set_nameservers(None)  # forget the built resolver
    assert run(smtpd_dns.lookup("a-only.example", "A")).status == "ok"


def test_unreachable_server_is_a_temporary_failure():
    smtpd_dns.set_nameservers(["127.0.0.1:9"])  # discard port: nothing answers
    assert run(smtpd_dns.lookup("example.com", "A")).status == "retry"


@pytest.mark.parametrize(
    ("text", "pairs"),
    [
        ("127.0.0.1", [("127.0.0.1", 53)]),
        ("127.0.0.1:5353", [("127.0.0.1", 5353)]),
        ("[::1]:5353, 127.0.0.2", [("::1", 5353), ("127.0.0.2", 53)]),
        ("::1", [("::1", 53)]),
    ],
)
def test_parse_nameservers(text, pairs):
    assert smtpd_dns.parse_nameservers(text) == pairs


@pytest.mark.parametrize("text", ["127.0.0.1:0", "127.0.0.1:70000", "[::1]:x"])
def test_parse_nameservers_rejects_bad_ports(text):
    with pytest.raises(ValueError):
        smtpd_dns.parse_nameservers(text)


@given(
    hs.lists(
        hs.tuples(hs.ip_addresses(), hs.integers(min_value=1, max_value=65535)),
        min_size=1,
        max_size=4,
    )
)
def test_parse_nameservers_round_trip(servers):
    text = ", ".join(
        f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}" for ip, port in servers
    )
    assert smtpd_dns.parse_nameservers(text) == [(str(ip), port) for ip, port in servers]
