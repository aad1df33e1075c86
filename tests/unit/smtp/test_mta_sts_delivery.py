"""The smtp client under an MTA-STS policy: the loopback DNS server publishes
_mta-sts.example.test and mta-sts.example.test, a loopback HTTPS server on
port 443 serves the policy, and aiosmtpd with STARTTLS is the MX host
mx.example.test, with certificates from a test CA that smtp_tls_CAfile names."""

from __future__ import annotations

import pytest

from mta.smtp import mta_sts
from tests.support.dns_server import zone_fixtures
from tests.support.mta_sts_site import PolicySite
from tests.support.tls_certs import TestCA
from tests.unit.smtp.tls_peers import TLS_ZONE, make_pki, send

SITE_ADDRESS = "127.88.5.25"  # the policy server (a fixed loopback address for the zone)
ZONE = {
    **TLS_ZONE,
    "_mta-sts.example.test": {"TXT": ['"v=STSv1; id=1"']},
    "mta-sts.example.test": {"A": [SITE_ADDRESS]},
}
dns_server, use_dns = zone_fixtures(ZONE)


def policy_text(mode: str, mx: str = "mx.example.test") -> bytes:
    return f"version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: 86400\n".encode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def site(pki):
    cert = pki["ca"].issue("sts", ["mta-sts.example.test"])
    s = PolicySite(TestCA.context(*cert), address=SITE_ADDRESS)
    yield s
    s.close()
    mta_sts._resolvers.clear()


def sts_cf(pki, level: str = "may", extra: str = "") -> str:
    return (
        f"smtp_tls_security_level = {level}\nsmtp_tls_CAfile = {pki['ca'].cafile}\n"
        "smtp_tls_mta_sts_enable = yes\n" + extra
    )


def test_enforce_delivers_over_verified_tls_to_a_named_mx(tmp_path, pki, site):
    site.answer = (200, "text/plain", policy_text("enforce"))
    handler, status, maillog, _, _ = send(tmp_path, pki["good"], sts_cf(pki))
    assert status.action == "relayed"
    assert handler.tls == [True]
    assert "Verified TLS connection established to mx.example.test[127.0.0.1]:" in maillog
    assert "MTA-STS policy for example.test: id=1, mode=enforce" in maillog
    assert site.requests == [("mta-sts.example.test", "/.well-known/mta-sts.txt")]


def test_enforce_never_sends_in_plain_text(tmp_path, pki, site):
    site.answer = (200, "text/plain", policy_text("enforce"))
    handler, status, _, _, _ = send(tmp_path, None, sts_cf(pki))  # no STARTTLS offered
    assert handler.messages == []
    assert (status.action, status.dsn) == ("delayed", "4.7.4")
    assert status.reason.startswith("TLS is required, but was not offered by host")


def test_enforce_defers_a_certificate_for_another_name(tmp_path, pki, site):
    site.answer = (200, "text/plain", policy_text("enforce"))
    handler, status, _, _, _ = send(tmp_path, pki["wrong_name"], sts_cf(pki))
    assert handler.messages == []
    assert (status.action, status.dsn, status.reason) == (
        "delayed",
        "4.7.5",
        "Server certificate not verified",
    )


def test_enforce_defers_when_no_mx_host_is_in_the_policy(tmp_path, pki, site):
    site.answer = (200, "text/plain", policy_text("enforce", "mx.elsewhere.test"))
    handler, status, maillog, _, _ = send(tmp_path, pki["good"], sts_cf(pki))
    assert handler.messages == []
    assert (status.action, status.dsn) == ("delayed", "4.7.5")
    assert status.reason == "MTA-STS policy for example.test: no MX host matches the policy"
    assert "MX host mx.example.test is not in the policy, skipped" in maillog


def test_testing_mode_delivers_as_configured_and_logs_what_enforce_would_refuse(
    tmp_path, pki, site
):
    site.answer = (200, "text/plain", policy_text("testing", "mx.elsewhere.test"))
    handler, status, maillog, _, _ = send(tmp_path, pki["wrong_name"], sts_cf(pki))
    assert status.action == "relayed"  # at may, as main.cf says
    assert "(mode testing): MX host mx.example.test is not in the policy" in maillog


def test_the_policy_is_not_used_when_the_switch_is_off(tmp_path, pki, site, dns_server):
    site.answer = (200, "text/plain", policy_text("enforce", "mx.elsewhere.test"))
    cf = f"smtp_tls_security_level = may\nsmtp_tls_CAfile = {pki['ca'].cafile}\n"
    handler, status, _, _, _ = send(tmp_path, pki["good"], cf)
    assert status.action == "relayed"
    assert site.requests == []


def test_a_tls_policy_table_entry_wins_over_mta_sts(tmp_path, pki, site):
    site.answer = (200, "text/plain", policy_text("enforce", "mx.elsewhere.test"))
    cf = sts_cf(pki, "may", "smtp_tls_policy_maps = inline:{ example.test=encrypt }\n")
    handler, status, _, _, _ = send(tmp_path, pki["wrong_name"], cf)
    assert status.action == "relayed"
    assert site.requests == []


def test_a_stricter_level_is_left_alone(tmp_path, pki, site):
    site.answer = (200, "text/plain", policy_text("enforce", "mx.elsewhere.test"))
    handler, status, _, _, _ = send(tmp_path, pki["good"], sts_cf(pki, "secure"))
    assert status.action == "relayed"  # secure holds, and it is stronger than the policy
    assert site.requests == []


def test_a_next_hop_in_brackets_has_no_policy(tmp_path, pki, site):
    site.answer = (200, "text/plain", policy_text("enforce", "mx.elsewhere.test"))
    handler, status, _, _, _ = send(
        tmp_path, pki["wrong_name"], sts_cf(pki), nexthop="[127.0.0.1]", rcpt_domain="example.test"
    )
    assert status.action == "relayed"
    assert site.requests == []
