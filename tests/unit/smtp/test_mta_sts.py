"""MTA-STS (RFC 8461): the TXT record, the policy file, the MX patterns, and
finding a domain's policy through a loopback DNS server and a loopback HTTPS
server on port 443 that presents a certificate from a test CA."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta import log
from mta.common import dns as mta_dns
from mta.common.kv_store import LmdbStore, MemoryStore
from mta.smtp import mta_sts
from mta.smtp.mta_sts import StsError, StsPolicy, StsResolver, mx_matches, parse_policy, parse_txt
from tests.support.certs import make_ca, make_cert, server_context
from tests.support.dns_server import DnsServer
from tests.support.mta_sts_site import POLICY_TEXT, PolicySite

DOMAIN = "example.test"
POLICY = POLICY_TEXT


# ------------------------------------------------------------------ parsing
def test_the_txt_record_gives_its_id():
    assert parse_txt(["v=STSv1; id=20240101T000000"]) == "20240101T000000"
    assert parse_txt(["v=spf1 -all", "v=STSv1;id=abc;"]) == "abc"


@pytest.mark.parametrize(
    "records",
    [
        [],
        ["v=spf1 -all"],
        ["v=STSv1"],  # no id
        ["v=STSv1; id=has-dash"],  # id is alphanumeric only
        ["v=STSv1; id=" + "a" * 33],  # at most 32 characters
        ["v=STSv1; id=a", "v=STSv1; id=b"],  # two records: none counts
        ["v=STSv2; id=a"],
        [" v=STSv1; id=a"],  # the version must come first
    ],
)
def test_a_missing_or_malformed_txt_record_is_no_record(records):
    assert parse_txt(records) is None


def test_a_policy_file_is_parsed():
    policy = parse_policy(POLICY, "id1", 1000.0)
    assert policy == StsPolicy(
        "enforce", ("mx1.example.test", "*.backup.example.test"), 86400, "id1", 1000.0
    )
    assert policy.enforced and not policy.expired(1000.0 + 86399) and policy.expired(1000.0 + 86400)


def test_a_policy_with_lf_line_ends_and_unknown_keys_is_parsed():
    text = "version: STSv1\nmode: testing\nmx: mx.example.test\nmax_age: 10\nextension: whatever\n"
    assert parse_policy(text).mode == "testing"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("mode: enforce\nmx: a\nmax_age: 1\n", "not version STSv1"),
        ("version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n", "unknown policy mode"),
        ("version: STSv1\nmode: enforce\nmx: a\n", "no valid max_age"),
        ("version: STSv1\nmode: enforce\nmx: a\nmax_age: 31557601\n", "out of range"),
        ("version: STSv1\nmode: enforce\nmax_age: 60\n", "no mx pattern"),
        ("version: STSv1\n<html>\n", "malformed policy line"),
    ],
)
def test_a_broken_policy_file_is_refused_with_its_reason(text, problem):
    with pytest.raises(StsError, match=problem):
        parse_policy(text)


def test_mode_none_needs_no_mx():
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 60\n").mode == "none"


def test_a_policy_survives_encoding_for_the_cache():
    policy = parse_policy(POLICY, "id1", 5.0)
    assert StsPolicy.decode(policy.encode()) == policy
    assert StsPolicy.decode("not json") is None
    assert (
        StsPolicy.decode('{"mode": "strict", "mx": [], "max_age": 1, "id": "", "fetched": 0}')
        is None
    )


@pytest.mark.parametrize(
    "pattern, host, expected",
    [
        ("mx1.example.test", "MX1.example.test.", True),
        ("mx1.example.test", "mx2.example.test", False),
        ("*.example.test", "mx.example.test", True),
        ("*.example.test", "a.b.example.test", False),  # one label only
        ("*.example.test", "example.test", False),
        ("*.example.test", ".example.test", False),
        ("", "example.test", False),
    ],
)
def test_mx_patterns_match_as_rfc_8461_says(pattern, host, expected):
    assert mx_matches(pattern, host) is expected


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)


@given(st.lists(_label, min_size=1, max_size=4), st.lists(_label, min_size=1, max_size=4))
def test_a_wildcard_matches_exactly_the_names_one_label_longer(suffix, host_labels):
    """Reference: split both on dots; the wildcard stands for one whole label."""
    pattern = "*." + ".".join(suffix)
    host = ".".join(host_labels)
    expected = len(host_labels) == len(suffix) + 1 and host_labels[1:] == suffix
    assert mx_matches(pattern, host) is expected


# ------------------------------------------------------ the loopback servers
class TestCA:
    """A CA for the tests: its certificate in a file, and server contexts it signs."""

    __test__ = False

    def __init__(self, directory) -> None:
        self.dir = directory
        self.made = make_ca("mta-sts test CA")
        self.cert = directory / "ca.pem"
        self.cert.write_bytes(self.made.pem)

    def server_context(self, *names: str) -> ssl.SSLContext:
        return server_context(make_cert(*names, issuer=self.made), self.dir, name=names[0])


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def site(ca):
    s = PolicySite(ca.server_context(f"mta-sts.{DOMAIN}"))
    yield s
    s.close()


@pytest.fixture
def dns_zone(site):
    zone = {
        f"_mta-sts.{DOMAIN}": {"TXT": ['"v=STSv1; id=first"']},
        f"mta-sts.{DOMAIN}": {"A": [site.address]},
    }
    with DnsServer(zone) as srv:
        mta_dns.set_nameservers(srv.nameserver)
        mta_dns.set_timeouts(0.5, 1.0)
        yield srv
    mta_dns.set_nameservers(None)


class _LogTo:
    def __init__(self, path) -> None:
        self.values = {"syslog_name": "mta", "myhostname": "test", "maillog_file": str(path)}

    def get(self, name: str) -> str:
        return self.values[name]


@pytest.fixture
def maillog(tmp_path):
    """The log lines of the test, read back from a maillog file."""
    path = tmp_path / "maillog"
    log.init("smtp", _LogTo(path))
    return lambda: path.read_text() if path.exists() else ""


def client_context(ca) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=str(ca.cert))
    return ctx


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def resolver_for(ca, store=None, clock=None) -> StsResolver:
    return StsResolver(
        store if store is not None else MemoryStore(), client_context(ca), 3.0, clock or Clock()
    )


def policy_of(resolver, domain=DOMAIN):
    return asyncio.run(resolver.policy(domain))


# ------------------------------------------------------- finding the policy
def test_a_published_policy_is_fetched_over_https(ca, site, dns_zone):
    policy = policy_of(resolver_for(ca))
    assert policy is not None and policy.mode == "enforce" and policy.id == "first"
    assert policy.mx_allowed("mx1.example.test") and policy.mx_allowed("x.backup.example.test")
    assert not policy.mx_allowed("mx.attacker.test")
    assert site.requests == [(f"mta-sts.{DOMAIN}", "/.well-known/mta-sts.txt")]


def test_the_same_id_uses_the_cache_and_a_new_id_fetches_again(ca, site, dns_zone):
    clock = Clock()
    resolver = resolver_for(ca, clock=clock)
    policy_of(resolver)
    policy_of(resolver)
    assert len(site.requests) == 1
    dns_zone.update({f"_mta-sts.{DOMAIN}": {"TXT": ['"v=STSv1; id=second"']}})
    clock.now += 60  # the TXT answer's TTL
    site.answer = (200, "text/plain", POLICY.replace("enforce", "testing").encode())
    policy = policy_of(resolver)
    assert len(site.requests) == 2 and policy.mode == "testing" and policy.id == "second"


def test_a_domain_without_a_txt_record_has_no_policy_and_no_fetch(ca, site, dns_zone):
    assert policy_of(resolver_for(ca), "other.test") is None
    assert site.requests == []


def test_a_cached_policy_holds_while_the_record_is_gone_until_it_expires(ca, site, dns_zone):
    clock = Clock()
    resolver = resolver_for(ca, clock=clock)
    assert policy_of(resolver).enforced
    dns_zone.update({f"_mta-sts.{DOMAIN}": {"TXT": ['"v=spf1 -all"']}})
    clock.now += 86399
    assert policy_of(resolver).enforced  # an attacker who strips the TXT record gains nothing
    clock.now += 1
    assert policy_of(resolver) is None


def test_a_failed_fetch_keeps_the_cached_policy(ca, site, dns_zone):
    clock = Clock()
    resolver = resolver_for(ca, clock=clock)
    assert policy_of(resolver).enforced
    dns_zone.update({f"_mta-sts.{DOMAIN}": {"TXT": ['"v=STSv1; id=second"']}})
    site.answer = (404, "text/plain", b"gone")
    clock.now += 60
    assert policy_of(resolver).id == "first"
    assert len(site.requests) == 2  # the new id was fetched, and failed


def txt_queries(dns_zone) -> int:
    return sum(1 for name, rdtype in dns_zone.queries if rdtype == "TXT")


def test_the_txt_record_is_asked_once_per_ttl_not_once_per_delivery(ca, site, dns_zone):
    clock = Clock()
    resolver = resolver_for(ca, clock=clock)
    for _ in range(5):
        assert policy_of(resolver).id == "first"
    assert txt_queries(dns_zone) == 1
    clock.now += 59
    policy_of(resolver)
    assert txt_queries(dns_zone) == 1
    clock.now += 1  # the record's TTL of 60 s has run out
    policy_of(resolver)
    assert txt_queries(dns_zone) == 2


def test_no_record_is_remembered_for_a_while(ca, site, dns_zone):
    clock = Clock()
    resolver = resolver_for(ca, clock=clock)
    for _ in range(3):
        assert policy_of(resolver, "other.test") is None
    assert txt_queries(dns_zone) == 1
    clock.now += mta_sts.TXT_NEGATIVE_TTL
    policy_of(resolver, "other.test")
    assert txt_queries(dns_zone) == 2


def test_a_failed_fetch_is_retried_after_a_growing_wait_not_per_delivery(
    ca, site, dns_zone, maillog
):
    clock = Clock()
    resolver = resolver_for(ca, clock=clock)
    site.answer = (503, "text/plain", b"down")
    for _ in range(3):
        assert policy_of(resolver) is None
    assert len(site.requests) == 1
    assert maillog().count(f"MTA-STS policy for {DOMAIN}:") == 1
    assert "next try in 60s" in maillog()
    clock.now += mta_sts.FETCH_RETRY_MIN
    assert policy_of(resolver) is None
    assert len(site.requests) == 2 and "next try in 120s" in maillog()
    clock.now += mta_sts.FETCH_RETRY_MIN  # not yet: the wait has doubled
    assert policy_of(resolver) is None
    assert len(site.requests) == 2
    site.answer = (200, "text/plain", POLICY.encode())
    clock.now += mta_sts.FETCH_RETRY_MIN
    assert policy_of(resolver).enforced
    assert len(site.requests) == 3


@pytest.mark.parametrize(
    "answer",
    [
        (404, "text/plain", POLICY.encode()),
        (301, "text/plain", b""),  # redirects are not followed
        (200, "text/html", POLICY.encode()),
        (200, "text/plain", b"version: STSv1\nmode: enforce\n"),  # no max_age, no mx
        (200, "text/plain", POLICY.encode() + b"#" * (mta_sts.MTA_STS_MAX_BODY + 10)),
    ],
)
def test_a_bad_answer_is_no_policy_and_a_warning(ca, site, dns_zone, answer, maillog):
    site.answer = answer
    assert policy_of(resolver_for(ca)) is None
    assert f"MTA-STS policy for {DOMAIN}:" in maillog()


def test_a_policy_server_whose_certificate_is_not_trusted_gives_no_policy(
    tmp_path, site, dns_zone, maillog
):
    stranger = TestCA(tmp_path)  # the client trusts only this CA
    assert policy_of(resolver_for(stranger)) is None
    assert "certificate not trusted" in maillog()


def test_a_certificate_for_another_name_gives_no_policy(ca, dns_zone, maillog):
    wrong = PolicySite(ca.server_context("www.example.test"))
    dns_zone.update({f"mta-sts.{DOMAIN}": {"A": [wrong.address]}})
    try:
        assert policy_of(resolver_for(ca)) is None
    finally:
        wrong.close()
    assert "certificate not trusted" in maillog()


def test_mode_none_is_no_policy(ca, site, dns_zone):
    site.answer = (200, "text/plain; charset=utf-8", b"version: STSv1\nmode: none\nmax_age: 60\n")
    assert policy_of(resolver_for(ca)) is None


def test_the_lmdb_cache_keeps_policies_across_processes(ca, site, dns_zone, tmp_path):
    path = str(tmp_path / "sts.lmdb")
    policy_of(resolver_for(ca, LmdbStore(path, 1 << 20)))
    # a new process: the same file, nothing in memory
    second = resolver_for(ca, LmdbStore(path, 1 << 20))
    assert policy_of(second).id == "first"
    assert len(site.requests) == 1


def test_mta_check_refuses_a_policy_cache_that_is_not_lmdb(tmp_path):
    from mta.config import load_config
    from mta.config.validate import config_problems
    from tests.support.instance import make_instance

    cfg = load_config(
        str(make_instance(tmp_path, "smtp_tls_mta_sts_cache_database = texthash:/tmp/x\n"))
    )
    found = [str(p) for p in config_problems(cfg) if "smtp_tls_mta_sts_cache_database" in str(p)]
    assert found and "expected lmdb:PATH" in found[0]
