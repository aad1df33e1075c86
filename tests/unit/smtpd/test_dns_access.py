"""smtpd check_*_{a,mx,ns}_access (tables searched with DNS hosts) and permit_mx_backup."""

import asyncio

import pytest

from mta.config import ConfigError
from mta.smtpd.checks import SessionState, SmtpdChecks
from mta.smtpd.dns_access import DNS_ACCESS_CHECKS
from tests.support.dns_server import zone_fixtures
from tests.unit.smtpd.conftest import logged_warnings, session_state

BASE = (
    "myhostname = mx.test.example\n"
    "mydomain = test.example\n"
    "mynetworks = 127.0.0.1/32\n"
    "local_recipient_maps = inline:{ user=1, postmaster=1 }\n"
)
ZONE = {
    "client.example": {"A": ["198.51.100.20"]},
    "helo.example": {"A": ["203.0.113.5"]},
    "sender.example": {"MX": ["10 mx.spamhost.example."], "NS": ["ns1.dnshost.example."]},
    "mx.spamhost.example": {"A": ["198.51.100.7"]},
    "ns1.dnshost.example": {"A": ["198.51.100.53"]},
    "sub.sender.example": {"A": ["198.51.100.8"]},
    "a-only.example": {"A": ["198.51.100.9"]},
    "nullmx.example": {"MX": ["0 ."]},
    "mxfail.example": "SERVFAIL",
    "ipmx.example": {"MX": ["10 198.51.100.77."]},
    # permit_mx_backup
    "backup.example": {"MX": ["10 primary.backup.example.", "20 mx.test.example."]},
    "primary.backup.example": {"A": ["192.0.2.10"]},
    "ownaddr.example": {"MX": ["10 primary.backup.example.", "20 me.ownaddr.example."]},
    "me.ownaddr.example": {"A": ["127.0.0.1"]},
    "iamprimary.example": {"MX": ["10 mx.test.example.", "20 primary.backup.example."]},
    "notme.example": {"MX": ["10 primary.backup.example."]},
    "backupfail.example": "SERVFAIL",
}

dns_server, use_dns = zone_fixtures(ZONE, timeouts=(0.3, 0.6))


@pytest.fixture
def make(checks_from):
    """make(main_cf_text) -> SmtpdChecks over BASE plus the text, logging to maillog."""
    return lambda text="": checks_from(BASE, text)


def warnings(maillog) -> list[str]:
    return logged_warnings(maillog)


def state(**kw) -> SessionState:
    return session_state(None, **kw)


def rcpt(checks: SmtpdChecks, **kw) -> str | None:
    verdict = asyncio.run(checks.recipient(state(**kw)))
    return None if verdict is None else verdict.reply


def restrict(stage: str, name: str, *entries: str) -> str:
    """smtpd_STAGE_restrictions = NAME inline:{ {key=value} ... }."""
    table = ", ".join(f"{{{entry}}}" for entry in entries)
    return f"smtpd_{stage}_restrictions = {name} inline:{{ {table} }}\n"


# ---------------------------------------------------------------- the fifteen names
def test_there_are_fifteen_restrictions_with_postfix_names():
    assert len(DNS_ACCESS_CHECKS) == 15
    assert "check_reverse_client_hostname_ns_access" in DNS_ACCESS_CHECKS


def test_mta_check_accepts_every_one(make):
    names = ", ".join(f"{name} inline:{{ x=DUNNO }}" for name in sorted(DNS_ACCESS_CHECKS))
    make(f"smtpd_client_restrictions = {names}, permit_mx_backup\n")


def test_one_without_a_table_is_a_config_error(make):
    with pytest.raises(ConfigError) as info:
        make("smtpd_sender_restrictions = check_sender_mx_access\n")
    assert info.value.param == "smtpd_sender_restrictions"


# ---------------------------------------------------------------- a
def test_client_a_access_searches_the_client_names_addresses(make):
    checks = make(restrict("client", "check_client_a_access", "198.51.100.20=REJECT bad host"))
    assert rcpt(checks) == "554 5.7.1 <client.example[192.0.2.99]>: Client host rejected: bad host"


def test_a_access_searches_networks_too(make):
    checks = make(restrict("helo", "check_helo_a_access", "203.0.113=REJECT bad net"))
    assert rcpt(checks) == "554 5.7.1 <helo.example>: Helo command rejected: bad net"


def test_a_access_does_not_search_the_name(make):
    checks = make(restrict("client", "check_client_a_access", "client.example=REJECT"))
    assert rcpt(checks) is None


def test_an_unknown_client_is_not_looked_up(make, dns_server):
    checks = make(restrict("client", "check_client_a_access", "198.51.100.20=REJECT"))
    assert rcpt(checks, client_name="unknown") is None
    assert ("unknown", "A") not in dns_server.queries


def test_reverse_client_a_access_uses_the_reverse_name(make):
    checks = make(
        restrict("client", "check_reverse_client_hostname_a_access", "198.51.100.20=REJECT no")
    )
    assert rcpt(checks, client_name="unknown") == (
        "554 5.7.1 <client.example>: Unverified Client host rejected: no"
    )


# ---------------------------------------------------------------- mx
def test_sender_mx_access_matches_the_mx_host_by_parent_domain(make):
    checks = make(restrict("sender", "check_sender_mx_access", "spamhost.example=REJECT spam mx"))
    assert rcpt(checks) == "554 5.7.1 <a@sender.example>: Sender address rejected: spam mx"


def test_sender_mx_access_matches_the_mx_hosts_address(make):
    checks = make(restrict("sender", "check_sender_mx_access", "198.51.100.7=REJECT spam ip"))
    assert rcpt(checks) == "554 5.7.1 <a@sender.example>: Sender address rejected: spam ip"


def test_a_domain_without_mx_is_its_own_mx_host(make):
    checks = make(restrict("sender", "check_sender_mx_access", "198.51.100.9=REJECT"))
    assert rcpt(checks, sender="a@a-only.example").startswith("554 5.7.1 <a@a-only.example>")


def test_a_null_mx_has_no_opinion(make):
    checks = make(restrict("sender", "check_sender_mx_access", "nullmx.example=REJECT"))
    assert rcpt(checks, sender="a@nullmx.example") is None


def test_an_mx_host_given_as_an_address_is_searched_as_one(make):
    checks = make(restrict("sender", "check_sender_mx_access", "198.51.100.77=REJECT"))
    assert rcpt(checks, sender="a@ipmx.example") is not None


def test_an_address_literal_is_searched_as_its_address(make):
    checks = make(restrict("sender", "check_sender_mx_access", "198.51.100=REJECT"))
    assert rcpt(checks, sender="a@[198.51.100.1]") is not None


def test_recipient_mx_access(make):
    checks = make(
        "smtpd_recipient_restrictions = check_recipient_mx_access "
        "inline:{ mx.spamhost.example=REJECT }, permit_mynetworks, reject_unauth_destination\n"
    )
    assert rcpt(checks, client_addr="127.0.0.1", recipient="b@sender.example") == (
        "554 5.7.1 <b@sender.example>: Recipient address rejected: Access denied"
    )


def test_a_failed_mx_lookup_has_no_opinion_and_warns(make, maillog):
    checks = make(restrict("sender", "check_sender_mx_access", "mxfail.example=REJECT"))
    assert rcpt(checks, sender="a@mxfail.example") is None
    assert warnings(maillog)[-1].endswith(
        "warning: Unable to look up MX host for mxfail.example: Host not found, try again"
    )


def test_the_null_sender_is_not_looked_up(make):
    checks = make(restrict("sender", "check_sender_mx_access", "<>=REJECT"))
    assert rcpt(checks, sender="") is None


# ---------------------------------------------------------------- ns
def test_sender_ns_access_matches_the_name_server(make):
    checks = make(restrict("sender", "check_sender_ns_access", "dnshost.example=REJECT bad dns"))
    assert rcpt(checks) == "554 5.7.1 <a@sender.example>: Sender address rejected: bad dns"


def test_ns_access_borrows_the_parent_domains_servers(make):
    checks = make(restrict("sender", "check_sender_ns_access", "198.51.100.53=REJECT"))
    assert rcpt(checks, sender="a@sub.sender.example") is not None


def test_ns_access_ignores_an_address_literal(make):
    checks = make(restrict("sender", "check_sender_ns_access", "198.51.100=REJECT"))
    assert rcpt(checks, sender="a@[198.51.100.1]") is None


# ---------------------------------------------------------------- results
def test_dunno_on_the_first_key_found_decides(make):
    checks = make(
        restrict(
            "sender", "check_sender_mx_access", "spamhost.example=DUNNO", "198.51.100.7=REJECT"
        )
    )
    assert rcpt(checks) is None


def test_ok_is_refused_for_safety(make, maillog):
    checks = make(restrict("sender", "check_sender_mx_access", "spamhost.example=OK"))
    assert rcpt(checks) == "451 4.3.5 Server configuration error"
    assert [w.split("warning: ")[1] for w in warnings(maillog)] == [
        "restriction check_sender_mx_access returns OK for a@sender.example",
        "this is not allowed for security reasons",
        "use DUNNO instead of OK if you want to make an exception",
    ]


# ---------------------------------------------------------------- permit_mx_backup
def backup_cf(extra: str = "") -> str:
    return "smtpd_relay_restrictions = permit_mx_backup, reject_unauth_destination\n" + extra


def test_permit_mx_backup_permits_a_domain_we_back_up(make):
    assert rcpt(make(backup_cf()), recipient="x@backup.example") is None


def test_permit_mx_backup_knows_us_by_address_too(make):
    assert rcpt(make(backup_cf()), recipient="x@ownaddr.example") is None


def test_permit_mx_backup_does_not_permit_when_we_are_a_best_mx(make):
    assert rcpt(make(backup_cf()), recipient="x@iamprimary.example") == (
        "554 5.7.1 <x@iamprimary.example>: Relay access denied"
    )


def test_permit_mx_backup_does_not_permit_other_domains(make):
    assert rcpt(make(backup_cf()), recipient="x@notme.example") == (
        "554 5.7.1 <x@notme.example>: Relay access denied"
    )


def test_permit_mx_backup_permits_our_own_domains(make):
    checks = make("smtpd_relay_restrictions = permit_mx_backup, reject\n")
    assert rcpt(checks, recipient="user@mx.test.example") is None


def test_permit_mx_backup_never_permits_source_routes(make):
    assert rcpt(make(backup_cf()), recipient="x%elsewhere.example@backup.example") == (
        "554 5.7.1 <x%elsewhere.example@backup.example>: Relay access denied"
    )


def test_permit_mx_backup_networks_must_hold_the_primaries(make):
    allowed = make(backup_cf("permit_mx_backup_networks = 192.0.2.0/24\n"))
    assert rcpt(allowed, recipient="x@backup.example") is None
    refused = make(backup_cf("permit_mx_backup_networks = 198.51.100.0/24\n"))
    assert rcpt(refused, recipient="x@backup.example") is not None


def test_permit_mx_backup_dns_failure_defers_the_reject(make):
    assert rcpt(make(backup_cf()), recipient="x@backupfail.example") == (
        "450 4.4.4 <x@backupfail.example>: Recipient address rejected: Unable to look up "
        "mail exchanger information: Host not found, try again"
    )


def test_permit_mx_backup_logs_that_it_is_deprecated(make, maillog):
    make(backup_cf())
    assert warnings(maillog)[-1].endswith(
        'warning: support for restriction "permit_mx_backup" will be removed from mta; '
        'instead, specify "relay_domains"'
    )
