"""smtp_dns_support_level: disabled (no MX, no DNS), dnssec (DO/AD queries, and each
target says whether its MX and address answers were validated)."""

import asyncio

import pytest

from mta.common import dns as mta_dns
from mta.config import load_config
from mta.smtp import nexthop
from tests.support.dns_server import DnsServer
from tests.support.instance import make_instance

ZONE = {
    "example.com": {"MX": ["10 mx.example.com."]},
    "mx.example.com": {"A": ["127.0.0.1"]},
    "implicit.example": {"A": ["127.0.0.1"]},
}


@pytest.fixture
def dns_server():
    with DnsServer(ZONE) as srv:
        mta_dns.set_nameservers(srv.nameserver)
        mta_dns.set_timeouts(0.5, 1.0)
        yield srv


def resolve(tmp_path, hop: str, main: str = "", lmtp: bool = False):
    cfg = load_config(str(make_instance(tmp_path, main)))
    return asyncio.run(nexthop.resolve_nexthop(hop, cfg, lmtp))


def flags(targets):
    return [(t.host, t.mx_secure, t.addr_secure) for t in targets]


def test_dnssec_queries_ask_for_dnssec_and_targets_say_what_was_validated(tmp_path, dns_server):
    dns_server.secure = True
    targets = resolve(tmp_path, "example.com", "smtp_dns_support_level = dnssec\n")
    assert flags(targets) == [("mx.example.com", True, True)]
    assert {("example.com", "MX"), ("mx.example.com", "A")} <= set(dns_server.dnssec_queries)


def test_an_mx_answer_without_the_ad_bit_is_insecure(tmp_path, dns_server):
    dns_server.secure = {"mx.example.com"}
    targets = resolve(tmp_path, "example.com", "smtp_dns_support_level = dnssec\n")
    assert flags(targets) == [("mx.example.com", False, True)]


def test_an_address_answer_without_the_ad_bit_is_insecure(tmp_path, dns_server):
    dns_server.secure = {"example.com"}
    targets = resolve(tmp_path, "example.com", "smtp_dns_support_level = dnssec\n")
    assert flags(targets) == [("mx.example.com", True, False)]


def test_a_validated_nodata_answer_makes_a_secure_implicit_mx(tmp_path, dns_server):
    dns_server.secure = True
    targets = resolve(tmp_path, "implicit.example", "smtp_dns_support_level = dnssec\n")
    assert flags(targets) == [("implicit.example", True, True)]


def test_a_bracketed_next_hop_counts_as_a_secure_mx(tmp_path, dns_server):
    dns_server.secure = {"mx.example.com"}
    targets = resolve(tmp_path, "[mx.example.com]", "smtp_dns_support_level = dnssec\n")
    assert flags(targets) == [("mx.example.com", True, True)]


def test_lmtp_has_its_own_dns_support_level(tmp_path, dns_server):
    dns_server.secure = True
    main = "lmtp_dns_support_level = dnssec\n"
    assert flags(resolve(tmp_path, "inet:mx.example.com:24", main, lmtp=True)) == [
        ("mx.example.com", True, True)
    ]
    assert flags(resolve(tmp_path, "[mx.example.com]", main)) == [("mx.example.com", True, False)]


def test_enabled_asks_no_dnssec_and_trusts_nothing(tmp_path, dns_server):
    dns_server.secure = True
    targets = resolve(tmp_path, "example.com", "smtp_dns_support_level = enabled\n")
    assert flags(targets) == [("mx.example.com", False, False)]
    assert dns_server.dnssec_queries == []


@pytest.mark.parametrize(
    "main", ["smtp_dns_support_level = disabled\n", "disable_dns_lookups = yes\n"]
)
def test_disabled_dns_looks_up_no_mx_and_uses_the_system(tmp_path, dns_server, main):
    targets = resolve(tmp_path, "localhost", main)
    assert "127.0.0.1" in [t.addr for t in targets]
    assert dns_server.queries == []


def test_a_level_overrides_disable_dns_lookups(tmp_path, dns_server):
    main = "disable_dns_lookups = yes\nsmtp_dns_support_level = enabled\n"
    targets = resolve(tmp_path, "example.com", main)
    assert [t.host for t in targets] == ["mx.example.com"]
    assert ("example.com", "MX") in dns_server.queries
