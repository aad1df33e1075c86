"""smtpd access restrictions: stages, relay control, access tables, DNS checks, unlisted users."""

import asyncio
import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from mta.cli import map as map_cli
from mta.config import ConfigError, load_config
from mta.maps import clear_cache
from mta.smtpd import dns as smtpd_dns
from mta.smtpd.checks import (
    SessionState,
    SmtpdChecks,
    Verdict,
    client_address_keys,
    fix_dsn,
    split_dsn,
    valid_hostname,
)
from mta.smtpd.transcript import NOTIFY_POLICY, NOTIFY_RESOURCE, NOTIFY_SOFTWARE
from tests.support.dns_server import DnsServer

BASE = (
    "myhostname = mx.test.example\n"
    "mydomain = test.example\n"
    "mynetworks = 127.0.0.1/32\n"
    "local_recipient_maps = inline:{ user=1, postmaster=1 }\n"
)

ZONE = {
    "mx-ok.example": {"MX": ["10 mail.mx-ok.example."]},
    "mail.mx-ok.example": {"A": ["192.0.2.10"]},
    "a-only.example": {"A": ["192.0.2.11"]},
    "v6-only.example": {"AAAA": ["2001:db8::11"]},
    "nullmx.example": {"MX": ["0 ."]},
    "badmx.example": {"MX": ["10 .", "20 mail.mx-ok.example."]},
    "txt-only.example": {"TXT": ['"hello"']},
    "servfail.example": "SERVFAIL",
    "helo.example": {"A": ["192.0.2.12"]},
}


@pytest.fixture(scope="module")
def dns_server():
    with DnsServer(ZONE) as srv:
        yield srv


@pytest.fixture
def dns(dns_server):
    smtpd_dns.set_nameservers(dns_server.nameserver)
    smtpd_dns.set_timeouts(0.5, 1.0)
    yield dns_server
    smtpd_dns.set_nameservers(None)
    smtpd_dns.set_timeouts()


@pytest.fixture
def make(tmp_path):
    """make(main_cf_text) -> SmtpdChecks over BASE plus the text."""

    def build(text: str = "") -> SmtpdChecks:
        conf = tmp_path / "conf"
        conf.mkdir(exist_ok=True)
        (conf / "main.cf").write_text(f"queue_directory = {tmp_path}/queue\n" + BASE + text)
        clear_cache()
        return SmtpdChecks(load_config(str(conf)))

    return build


def state(**kw) -> SessionState:
    base = dict(
        client_addr="192.0.2.99",
        client_name="unknown",
        client_port=40000,
        reverse_name="unknown",
        helo_name="client.example",
        protocol="ESMTP",
        esmtp=True,
        sender="a@sender.example",
        recipient="user@mx.test.example",
    )
    base.update(kw)
    return SessionState(**base)


def rcpt(checks: SmtpdChecks, **kw) -> Verdict | None:
    return asyncio.run(checks.recipient(state(**kw)))


def reply(verdict: Verdict | None) -> str | None:
    return None if verdict is None else verdict.reply


# ---------------------------------------------------------------- relay control
def test_outside_client_cannot_relay_by_default(make):
    verdict = rcpt(make(), recipient="victim@elsewhere.example")
    assert verdict == Verdict("454 4.7.1 <victim@elsewhere.example>: Relay access denied", "defer")


def test_outside_client_may_send_to_local_user(make):
    assert rcpt(make(), recipient="user@mx.test.example") is None


def test_mynetworks_client_may_relay(make):
    assert rcpt(make(), client_addr="127.0.0.1", recipient="x@elsewhere.example") is None


def test_sasl_authenticated_client_may_relay(make):
    assert rcpt(make(), sasl_username="alice", recipient="x@elsewhere.example") is None


def test_reject_unauth_destination_uses_relay_domains_reject_code(make):
    checks = make(
        "smtpd_relay_restrictions =\n"
        "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n"
    )
    assert reply(rcpt(checks, recipient="x@elsewhere.example")) == (
        "554 5.7.1 <x@elsewhere.example>: Relay access denied"
    )


def test_relay_domains_and_their_subdomains_are_authorized(make):
    checks = make("relay_domains = partner.example\nrelay_recipient_maps =\n")
    assert rcpt(checks, recipient="x@partner.example") is None
    assert rcpt(checks, recipient="x@sub.partner.example") is None
    assert rcpt(checks, recipient="x@notpartner.example") is not None


def test_sender_routed_address_is_not_authorized(make):
    verdict = rcpt(make(), recipient="x@elsewhere.example@mx.test.example")
    assert verdict is not None and "Relay access denied" in verdict.reply


def test_permit_auth_destination_permits_local_and_skips_remote(make):
    checks = make(
        "smtpd_relay_restrictions = permit_auth_destination, reject\n"
        "smtpd_reject_unlisted_recipient = no\n"
    )
    assert rcpt(checks, recipient="anyone@mx.test.example") is None
    assert reply(rcpt(checks, recipient="x@elsewhere.example")) == (
        "554 5.7.1 <x@elsewhere.example>: Recipient address rejected: Access denied"
    )


def test_lists_without_any_reject_are_refused(make):
    with pytest.raises(ConfigError, match="smtpd_recipient_restrictions.*relayed for anyone"):
        make("smtpd_relay_restrictions = permit_mynetworks\n")


def test_reject_inside_a_class_counts_as_required(make):
    checks = make(
        "smtpd_restriction_classes = strict\n"
        "strict = reject_unauth_destination\n"
        "smtpd_relay_restrictions = permit_mynetworks, strict\n"
    )
    assert reply(rcpt(checks, recipient="x@elsewhere.example")).startswith("554 5.7.1")


# ---------------------------------------------------------------- configuration errors
def test_unknown_restriction_names_file_line_and_parameter(make, tmp_path):
    with pytest.raises(ConfigError) as info:
        make("smtpd_client_restrictions = permit_mynetworks, reject_evil\n")
    text = str(info.value)
    assert text == (
        f"{tmp_path}/conf/main.cf, line 6: parameter smtpd_client_restrictions: "
        'unknown restriction "reject_evil"'
    )


def test_restriction_without_its_table_is_an_error(make):
    with pytest.raises(ConfigError, match='"check_sender_access" needs an argument'):
        make("smtpd_sender_restrictions = check_sender_access\n")


def test_unopenable_table_is_an_error_naming_the_parameter(make, tmp_path):
    with pytest.raises(ConfigError, match="smtpd_helo_restrictions: lmdb:"):
        make(f"smtpd_helo_restrictions = check_helo_access lmdb:{tmp_path}/missing\n")


def test_class_without_definition_is_an_error(make):
    with pytest.raises(ConfigError, match='restriction class "ghost" needs a definition'):
        make("smtpd_restriction_classes = ghost\n")


def test_bad_tempfail_action_is_an_error(make):
    with pytest.raises(ConfigError, match="unknown_address_tempfail_action"):
        make("unknown_address_tempfail_action = shrug\n")


# ---------------------------------------------------------------- stages and delay_reject
def test_delayed_client_reject_is_reported_at_rcpt(make):
    checks = make("smtpd_client_restrictions = reject\n")
    assert checks.delay_reject
    assert reply(rcpt(checks)) == (
        "554 5.7.1 <unknown[192.0.2.99]>: Client host rejected: Access denied"
    )


def test_without_delay_client_stage_rejects_and_rcpt_does_not_repeat_it(make):
    checks = make("smtpd_delay_reject = no\nsmtpd_client_restrictions = reject\n")
    st = state()
    assert reply(asyncio.run(checks.client(st))).startswith("554 5.7.1 <unknown[192.0.2.99]>")
    assert asyncio.run(checks.recipient(st)) is None


def test_permit_in_client_list_does_not_skip_relay_control(make):
    checks = make("smtpd_client_restrictions = permit\n")
    assert rcpt(checks, recipient="x@elsewhere.example").reply.startswith("454 4.7.1")


def test_sender_restrictions_skip_without_sender(make):
    checks = make("smtpd_sender_restrictions = reject_non_fqdn_sender\n")
    assert asyncio.run(checks.sender(state(sender=None))) is None


def test_helo_restrictions_name_the_helo(make):
    checks = make("smtpd_helo_restrictions = reject\n")
    assert reply(rcpt(checks, helo_name="me.example")) == (
        "554 5.7.1 <me.example>: Helo command rejected: Access denied"
    )


def test_defer_restriction(make):
    checks = make("smtpd_sender_restrictions = defer\n")
    assert rcpt(checks) == Verdict(
        "450 4.7.1 <a@sender.example>: Sender address rejected: Try again later", "defer"
    )


def test_data_restrictions_reject_unauth_pipelining(make):
    checks = make("smtpd_data_restrictions = reject_unauth_pipelining\n")
    assert asyncio.run(checks.data(state(recipient_count=1))) is None
    verdict = asyncio.run(checks.data(state(pipelining_violation=True)))
    assert verdict.reply == (
        "503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining"
    )


def test_multi_recipient_bounce_at_data(make):
    checks = make("smtpd_data_restrictions = reject_multi_recipient_bounce\n")
    assert asyncio.run(checks.data(state(sender="", recipient_count=1))) is None
    assert reply(asyncio.run(checks.data(state(sender="", recipient_count=2)))) == (
        "550 5.5.3 <DATA>: Data command rejected: Multi-recipient bounce"
    )


def test_end_of_data_reject(make):
    checks = make("smtpd_end_of_data_restrictions = reject\n")
    assert reply(asyncio.run(checks.end_of_data(state()))) == (
        "554 5.7.1 <END-OF-MESSAGE>: End-of-data rejected: Access denied"
    )


def test_unknown_client_hostname(make):
    checks = make("smtpd_client_restrictions = reject_unknown_client_hostname\n")
    assert reply(rcpt(checks)) == (
        "450 4.7.25 <unknown[192.0.2.99]>: Client host rejected: "
        "cannot find your hostname, [192.0.2.99]"
    )
    assert rcpt(checks, client_name="mail.client.example") is None


def test_unknown_reverse_client_hostname(make):
    checks = make("smtpd_client_restrictions = reject_unknown_reverse_client_hostname\n")
    assert "cannot find your reverse hostname" in rcpt(checks).reply
    assert rcpt(checks, reverse_name="ptr.client.example") is None


def test_sleep_is_ignored(make):
    checks = make("smtpd_client_restrictions = sleep 5, reject\n")
    assert rcpt(checks).reply.startswith("554")


# ---------------------------------------------------------------- defer_if_* and warn_if_reject
def test_warn_if_reject_logs_instead_of_rejecting(make):
    checks = make("smtpd_sender_restrictions = warn_if_reject reject_non_fqdn_sender, permit\n")
    seen = []
    checks.on_warn = lambda stage, verdict: seen.append((stage, verdict.reply))
    assert rcpt(checks, sender="root") is None
    assert seen == [
        ("RCPT", "504 5.5.2 <root>: Sender address rejected: need fully-qualified address")
    ]


def test_warn_if_reject_affects_only_the_next_restriction(make):
    checks = make("smtpd_sender_restrictions = warn_if_reject, permit_mynetworks, reject\n")
    checks.on_warn = lambda stage, verdict: None
    assert rcpt(checks).reply.startswith("554 5.7.1 <a@sender.example>")


def test_defer_if_permit_defers_when_the_rest_permits(make):
    checks = make("smtpd_client_restrictions = defer_if_permit\n")
    assert reply(rcpt(checks)) == (
        "450 4.7.0 <unknown[192.0.2.99]>: Client host rejected: defer_if_permit requested"
    )


def test_defer_if_permit_yields_to_a_later_reject(make):
    checks = make("smtpd_client_restrictions = defer_if_permit\n")
    assert rcpt(checks, recipient="x@elsewhere.example").reply.startswith("454 4.7.1")


def test_defer_if_permit_from_earlier_stage_applies_at_rcpt_without_delay(make):
    checks = make("smtpd_delay_reject = no\nsmtpd_helo_restrictions = defer_if_permit\n")
    st = state()
    assert asyncio.run(checks.helo(st)) is None
    assert asyncio.run(checks.recipient(st)).reply.startswith("450 4.7.0 <client.example>")


def test_defer_if_reject_turns_a_later_reject_into_a_defer(make):
    checks = make("smtpd_sender_restrictions = defer_if_reject, reject\n")
    assert reply(rcpt(checks)) == (
        "450 4.7.0 <a@sender.example>: Sender address rejected: defer_if_reject requested"
    )


# ---------------------------------------------------------------- access tables
def test_client_access_by_name_then_parent_domain(make):
    checks = make(
        "smtpd_client_restrictions = check_client_access "
        "inline:{ {example.com = REJECT no example} }\n"
    )
    assert "no example" in rcpt(checks, client_name="mail.example.com").reply
    assert rcpt(checks, client_name="example.net") is None


def test_parent_matching_off_needs_dot_form(make):
    checks = make(
        "parent_domain_matches_subdomains =\n"
        "smtpd_client_restrictions = check_client_access "
        "inline:{ example.com=REJECT, .example.org=REJECT }\n"
    )
    assert rcpt(checks, client_name="mail.example.com") is None
    assert rcpt(checks, client_name="example.com") is not None
    assert rcpt(checks, client_name="mail.example.org") is not None


def test_client_access_by_address_and_shorter_networks(make):
    checks = make(
        "smtpd_client_restrictions = check_client_access inline:{ 192.0.2=REJECT, 10=REJECT }\n"
    )
    assert rcpt(checks, client_addr="192.0.2.7") is not None
    assert rcpt(checks, client_addr="10.1.2.3") is not None
    assert rcpt(checks, client_addr="192.0.3.7") is None


def test_client_access_ipv6_networks(make):
    checks = make("smtpd_client_restrictions = check_client_access inline:{ 2001:db8:=REJECT }\n")
    assert rcpt(checks, client_addr="2001:db8::7") is not None
    assert rcpt(checks, client_addr="2001:db9::7") is None


def test_dunno_stops_the_search_for_shorter_keys(make):
    checks = make(
        "smtpd_client_restrictions = check_client_access "
        "inline:{ 192.0.2.7=DUNNO, 192.0.2=REJECT }\n"
    )
    assert rcpt(checks, client_addr="192.0.2.7") is None
    assert rcpt(checks, client_addr="192.0.2.8") is not None


def test_client_name_match_hides_address_entry(make):
    checks = make(
        "smtpd_client_restrictions = check_client_access "
        "inline:{ good.example=OK, 192.0.2=REJECT }, reject_unknown_client_hostname\n"
    )
    assert rcpt(checks, client_name="good.example", client_addr="192.0.2.1") is None


def test_cidr_table_for_clients(make, tmp_path):
    table = tmp_path / "clients.cidr"
    table.write_text("192.0.2.0/25 REJECT inside\n")
    checks = make(f"smtpd_client_restrictions = check_client_access cidr:{table}\n")
    assert "inside" in rcpt(checks, client_addr="192.0.2.5").reply
    assert rcpt(checks, client_addr="192.0.2.200") is None


def test_regexp_table_sees_only_whole_keys(make, tmp_path):
    table = tmp_path / "helo.re"
    table.write_text("/^example\\.com$/ REJECT exact\n")
    checks = make(f"smtpd_helo_restrictions = check_helo_access regexp:{table}\n")
    assert rcpt(checks, helo_name="example.com") is not None
    assert rcpt(checks, helo_name="sub.example.com") is None


def test_sender_access_lookup_order_with_extension(make):
    checks = make(
        "recipient_delimiter = +\n"
        "smtpd_sender_restrictions = check_sender_access "
        "inline:{ {joe@ = REJECT by user}, {joe@x.example = REJECT by address} }\n"
    )
    assert "by address" in rcpt(checks, sender="joe+list@x.example").reply
    assert "by user" in rcpt(checks, sender="joe+list@y.example").reply


def test_null_sender_uses_null_access_key(make):
    checks = make(
        "smtpd_sender_restrictions = check_sender_access inline:{ {<> = REJECT no bounces} }\n"
    )
    assert reply(rcpt(checks, sender="")) == ("554 5.7.1 <>: Sender address rejected: no bounces")


def test_texthash_table_for_senders(make, tmp_path):
    table = tmp_path / "senders"
    table.write_text("spam.example REJECT\n")
    checks = make(f"smtpd_sender_restrictions = check_sender_access texthash:{table}\n")
    assert reply(rcpt(checks, sender="a@spam.example")) == (
        "554 5.7.1 <a@spam.example>: Sender address rejected: Access denied"
    )


def test_lmdb_table_built_by_mta_map(make, tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "main.cf").write_text(f"queue_directory = {tmp_path}/queue\n")
    source = tmp_path / "recipients"
    source.write_text("blocked@mx.test.example 550 5.1.1 mailbox disabled\n")
    assert map_cli.main(["-c", str(conf), f"lmdb:{source}"], "map") == 0
    checks = make(f"smtpd_recipient_restrictions = check_recipient_access lmdb:{source}\n")
    assert reply(rcpt(checks, recipient="blocked@mx.test.example", client_addr="127.0.0.1")) == (
        "550 5.1.1 <blocked@mx.test.example>: Recipient address rejected: mailbox disabled"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("OK", None),
        ("RELAY", None),
        ("12345", None),
        ("REJECT", "554 5.7.1 <a@b.example>: Sender address rejected: Access denied"),
        ("REJECT 5.7.9 custom", "554 5.7.9 <a@b.example>: Sender address rejected: custom"),
        ("DEFER", "450 4.7.1 <a@b.example>: Sender address rejected: Access denied"),
        ("DEFER busy", "450 4.7.1 <a@b.example>: Sender address rejected: busy"),
        ("451 later", "451 4.7.1 <a@b.example>: Sender address rejected: later"),
        ("550 5.1.1 gone", "550 5.1.0 <a@b.example>: Sender address rejected: gone"),
        ("553 4.1.2 mixed", "553 5.1.8 <a@b.example>: Sender address rejected: mixed"),
        (
            "DEFER_IF_PERMIT",
            "450 4.7.1 <a@b.example>: Sender address rejected: Service unavailable",
        ),
        ("DUNNO", None),
        ("permit", None),
        ("reject", "554 5.7.1 <a@b.example>: Sender address rejected: Access denied"),
        ("reject_unauth_destination", None),
    ],
)
def test_sender_table_results(make, value, expected):
    checks = make(
        f"smtpd_sender_restrictions = check_sender_access inline:{{ {{b.example = {value}}} }}\n"
    )
    assert reply(rcpt(checks, sender="a@b.example")) == expected


def test_client_dsn_becomes_non_address_status(make):
    checks = make(
        "smtpd_client_restrictions = check_client_access inline:{ {192.0.2 = 550 5.1.1 no} }\n"
    )
    assert rcpt(checks, client_addr="192.0.2.1").reply.startswith("550 5.0.0 <unknown[192.0.2.1]>")


def test_421_result_asks_for_disconnect(make):
    checks = make(
        "smtpd_client_restrictions = check_client_access inline:{ {192.0.2 = 421 go away} }\n"
    )
    verdict = rcpt(checks, client_addr="192.0.2.1")
    assert verdict.disconnect and verdict.kind == "defer"


def test_defer_if_reject_result_softens_later_reject(make):
    checks = make(
        "smtpd_client_restrictions = check_client_access inline:{ 192.0.2=DEFER_IF_REJECT }, "
        "reject\n"
    )
    assert rcpt(checks, client_addr="192.0.2.1").reply.startswith("450 4.7.1 <unknown[192.0.2.1]>")


def test_side_effect_results_go_to_actions(make):
    checks = make(
        "smtpd_sender_restrictions = check_sender_access inline:{"
        " {h.example = HOLD}, {r.example = REDIRECT spam@mx.test.example},"
        " {f.example = FILTER scan:[127.0.0.1]:10025}, {p.example = PREPEND X-Seen: yes},"
        " {w.example = WARN careful}, {b.example = BCC copy@mx.test.example} }\n"
    )
    expected = {
        "h.example": ("hold", "<a@h.example>: Sender address triggers HOLD action"),
        "r.example": ("redirect", "spam@mx.test.example"),
        "f.example": ("filter", "scan:[127.0.0.1]:10025"),
        "p.example": ("prepend", "X-Seen: yes"),
        "w.example": ("warn", "careful"),
        "b.example": ("bcc", "copy@mx.test.example"),
    }
    for domain, action in expected.items():
        st = state(sender=f"a@{domain}")
        assert asyncio.run(checks.recipient(st)) is None
        assert st.actions == [action]


def test_action_is_noted_once_per_transaction(make):
    checks = make("smtpd_client_restrictions = check_client_access inline:{ 192.0.2=HOLD }\n")
    st = state(client_addr="192.0.2.1")
    asyncio.run(checks.recipient(st))
    asyncio.run(checks.recipient(st))
    assert [a[0] for a in st.actions] == ["hold"]


def test_discard_accepts_and_stops_evaluation(make):
    checks = make(
        "smtpd_client_restrictions = check_client_access inline:{ 192.0.2=DISCARD }, reject\n"
    )
    st = state(client_addr="192.0.2.1", recipient="x@elsewhere.example")
    assert asyncio.run(checks.recipient(st)) is None
    assert st.actions[0][0] == "discard"


def test_bad_prepend_is_ignored(make):
    checks = make(
        "smtpd_sender_restrictions = check_sender_access inline:{ {b.example = PREPEND nocolon} }\n"
    )
    st = state(sender="a@b.example")
    assert asyncio.run(checks.recipient(st)) is None and st.actions == []


def test_restriction_class_as_table_result(make):
    checks = make(
        "smtpd_restriction_classes = strict\n"
        "strict = reject_unknown_client_hostname\n"
        "smtpd_recipient_restrictions = check_recipient_access "
        "inline:{ protected@mx.test.example=strict }\n"
    )
    assert rcpt(checks, recipient="protected@mx.test.example").reply.startswith("450 4.7.25")
    assert rcpt(checks, recipient="user@mx.test.example") is None


def test_unknown_restriction_in_table_result_is_a_server_error(make):
    checks = make(
        "smtpd_sender_restrictions = check_sender_access inline:{ b.example=bogus_thing }\n"
    )
    assert reply(rcpt(checks, sender="a@b.example")) == "451 4.3.5 Server configuration error"


def test_temporary_table_failure_defers(make):
    checks = make("smtpd_sender_restrictions = check_sender_access fail:down\n")
    assert reply(rcpt(checks)) == "451 4.3.0 <a@sender.example>: Temporary lookup failure"


def test_refusals_carry_their_notify_class(make):
    assert rcpt(make(), recipient="victim@elsewhere.example").error_class == NOTIFY_POLICY
    broken = make(
        "smtpd_sender_restrictions = check_sender_access inline:{ b.example=bogus_thing }\n"
    )
    assert rcpt(broken, sender="a@b.example").error_class == NOTIFY_SOFTWARE
    down = make("smtpd_sender_restrictions = check_sender_access fail:down\n")
    assert rcpt(down).error_class == NOTIFY_RESOURCE


# ---------------------------------------------------------------- syntax restrictions
@pytest.mark.parametrize(
    ("helo", "invalid", "non_fqdn"),
    [
        ("mail.example.com", None, None),
        ("mail.example.com.", None, None),
        ("[192.0.2.1]", None, None),
        ("[IPv6:2001:db8::1]", None, None),
        (
            "localhost",
            None,
            "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname",
        ),
        ("under_score.example", None, None),
        ("bad-.example", "501 5.5.2 <bad-.example>: Helo command rejected: Invalid name", "504"),
        ("-bad.example", "501 5.5.2 <-bad.example>: Helo command rejected: Invalid name", "504"),
        ("a..b", "501 5.5.2 <a..b>: Helo command rejected: Invalid name", "504"),
        ("192.0.2.1", None, "504"),
        ("[not-an-ip]", "501", "501"),
    ],
)
def test_helo_name_syntax(make, helo, invalid, non_fqdn):
    inv = make("smtpd_helo_restrictions = reject_invalid_helo_hostname\n")
    got = reply(rcpt(inv, helo_name=helo))
    assert (got is None) == (invalid is None) and (invalid is None or got.startswith(invalid))
    fq = make("smtpd_helo_restrictions = reject_non_fqdn_helo_hostname\n")
    got = reply(rcpt(fq, helo_name=helo))
    assert (got is None) == (non_fqdn is None) and (non_fqdn is None or got.startswith(non_fqdn))


def test_non_fqdn_sender_and_recipient(make):
    checks = make(
        "smtpd_sender_restrictions = reject_non_fqdn_sender\n"
        "smtpd_recipient_restrictions = reject_non_fqdn_recipient\n"
        "mydestination = mx.test.example, localhost\n"
    )
    assert reply(rcpt(checks, sender="root")) == (
        "504 5.5.2 <root>: Sender address rejected: need fully-qualified address"
    )
    assert rcpt(checks, sender="") is None
    assert reply(rcpt(checks, recipient="user@localhost")) == (
        "504 5.5.2 <user@localhost>: Recipient address rejected: need fully-qualified address"
    )
    assert rcpt(checks, recipient="user@[127.0.0.1]", client_addr="127.0.0.1") is None


# ---------------------------------------------------------------- DNS restrictions
@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("mx-ok.example", None),
        ("a-only.example", None),
        ("v6-only.example", None),
        (
            "nowhere.example",
            "450 4.1.8 <a@nowhere.example>: Sender address rejected: Domain not found",
        ),
        (
            "txt-only.example",
            "450 4.1.8 <a@txt-only.example>: Sender address rejected: Domain not found",
        ),
        (
            "nullmx.example",
            "550 5.7.27 <a@nullmx.example>: Sender address rejected: "
            "Domain nullmx.example does not accept mail (nullMX)",
        ),
        (
            "badmx.example",
            "450 4.1.8 <a@badmx.example>: Sender address rejected: Malformed DNS server reply",
        ),
    ],
)
def test_unknown_sender_domain(make, dns, domain, expected):
    checks = make("smtpd_sender_restrictions = reject_unknown_sender_domain\n")
    assert reply(rcpt(checks, sender=f"a@{domain}")) == expected


def test_unknown_recipient_domain_codes(make, dns):
    checks = make(
        "smtpd_recipient_restrictions = reject_unknown_recipient_domain\n"
        "unknown_address_reject_code = 550\n"
    )
    assert reply(rcpt(checks, client_addr="127.0.0.1", recipient="u@nodomain.example")) == (
        "550 5.1.2 <u@nodomain.example>: Recipient address rejected: Domain not found"
    )
    assert reply(rcpt(checks, client_addr="127.0.0.1", recipient="u@nullmx.example")) == (
        "556 5.1.10 <u@nullmx.example>: Recipient address rejected: "
        "Domain nullmx.example does not accept mail (nullMX)"
    )


def test_unknown_domain_skips_local_domains_and_null_sender(make, dns):
    checks = make("smtpd_sender_restrictions = reject_unknown_sender_domain\n")
    assert rcpt(checks, sender="someone@mx.test.example") is None
    assert rcpt(checks, sender="") is None
    assert dns.queries == [] or all(q[0] != "mx.test.example" for q in dns.queries)


def test_dns_tempfail_defers_only_if_otherwise_permitted(make, dns):
    checks = make("smtpd_sender_restrictions = reject_unknown_sender_domain\n")
    assert reply(rcpt(checks, sender="a@servfail.example")) == (
        "450 4.1.8 <a@servfail.example>: Sender address rejected: Domain not found"
    )
    verdict = rcpt(checks, sender="a@servfail.example", recipient="x@elsewhere.example")
    assert verdict.reply.startswith("454 4.7.1")


def test_dns_tempfail_action_defer_is_immediate(make, dns):
    checks = make(
        "unknown_address_tempfail_action = defer\n"
        "smtpd_sender_restrictions = reject_unknown_sender_domain, permit\n"
    )
    verdict = rcpt(checks, sender="a@servfail.example", recipient="x@elsewhere.example")
    assert verdict.reply.startswith("450 4.1.8 <a@servfail.example>")


def test_unknown_helo_hostname(make, dns):
    checks = make("smtpd_helo_restrictions = reject_unknown_helo_hostname\n")
    assert rcpt(checks, helo_name="helo.example") is None
    assert reply(rcpt(checks, helo_name="nohost.example")) == (
        "450 4.7.1 <nohost.example>: Helo command rejected: Host not found"
    )
    assert rcpt(checks, helo_name="[192.0.2.1]") is None


# ---------------------------------------------------------------- unlisted recipients and senders
def test_unknown_local_user_is_rejected_implicitly(make):
    assert reply(rcpt(make(), recipient="nobody@mx.test.example")) == (
        "550 5.1.1 <nobody@mx.test.example>: Recipient address rejected: "
        "User unknown in local recipient table"
    )


def test_unknown_local_user_is_rejected_even_for_mynetworks(make):
    assert rcpt(make(), client_addr="127.0.0.1", recipient="nobody@mx.test.example") is not None


def test_empty_local_recipient_maps_accepts_everyone(make):
    assert rcpt(make("local_recipient_maps =\n"), recipient="nobody@mx.test.example") is None


def test_implicit_check_can_be_turned_off(make):
    checks = make("smtpd_reject_unlisted_recipient = no\n")
    assert rcpt(checks, recipient="nobody@mx.test.example") is None


def test_explicit_reject_unlisted_recipient_with_table_name_hidden(make):
    checks = make(
        "smtpd_reject_unlisted_recipient = no\nshow_user_unknown_table_name = no\n"
        "smtpd_recipient_restrictions = reject_unlisted_recipient\n"
    )
    assert reply(rcpt(checks, recipient="nobody@mx.test.example")) == (
        "550 5.1.1 <nobody@mx.test.example>: Recipient address rejected: User unknown"
    )


def test_virtual_alias_and_canonical_entries_make_an_address_known(make):
    checks = make(
        "virtual_alias_maps = inline:{ alias@mx.test.example=user }\n"
        "canonical_maps = inline:{ canon@mx.test.example=user }\n"
    )
    assert rcpt(checks, recipient="alias@mx.test.example") is None
    assert rcpt(checks, recipient="canon@mx.test.example") is None


def test_local_recipient_extension_is_stripped(make):
    checks = make("recipient_delimiter = +\n")
    assert rcpt(checks, recipient="user+tag@mx.test.example") is None


def test_virtual_mailbox_and_alias_domains(make):
    checks = make(
        "virtual_mailbox_domains = vmail.example\n"
        "virtual_mailbox_maps = inline:{ box@vmail.example=box/ }\n"
        "virtual_alias_domains = valias.example\n"
        "virtual_alias_maps = inline:{ a@valias.example=user }\n"
    )
    assert rcpt(checks, recipient="box@vmail.example") is None
    assert rcpt(checks, recipient="other@vmail.example").reply == (
        "550 5.1.1 <other@vmail.example>: Recipient address rejected: "
        "User unknown in virtual mailbox table"
    )
    assert rcpt(checks, recipient="a@valias.example") is None
    assert "User unknown in virtual alias table" in rcpt(checks, recipient="b@valias.example").reply


def test_relay_recipient_maps(make):
    checks = make(
        "relay_domains = partner.example\nrelay_recipient_maps = inline:{ ok@partner.example=1 }\n"
    )
    assert rcpt(checks, recipient="ok@partner.example") is None
    assert "relay recipient table" in rcpt(checks, recipient="no@partner.example").reply


def test_local_recipient_table_failure_defers(make):
    checks = make("local_recipient_maps = fail:broken\n")
    assert reply(rcpt(checks, recipient="user@mx.test.example")) == (
        "451 4.3.0 <user@mx.test.example>: Temporary lookup failure"
    )


def test_unlisted_sender(make):
    checks = make("smtpd_reject_unlisted_sender = yes\n")
    assert reply(rcpt(checks, sender="ghost@mx.test.example")) == (
        "550 5.1.0 <ghost@mx.test.example>: Sender address rejected: "
        "User unknown in local recipient table"
    )
    assert rcpt(checks, sender="user@mx.test.example") is None
    assert rcpt(checks, sender="") is None


def test_unix_passwd_table_as_local_recipients(make):
    import pwd

    me = pwd.getpwuid(__import__("os").getuid()).pw_name
    checks = make("local_recipient_maps = unix:passwd.byname\n")
    assert rcpt(checks, recipient=f"{me}@mx.test.example") is None
    assert rcpt(checks, recipient="no-such-user-x9@mx.test.example") is not None


# ---------------------------------------------------------------- helpers, with hypothesis
def keys_reference(addr: str) -> list[str]:
    sep = ":" if ":" in addr else "."
    parts = addr.lower().split(sep)
    out = [sep.join(parts[:n]) for n in range(len(parts), 0, -1)]
    return [k for k in out if k]


@given(hs.ip_addresses())
def test_client_address_keys_against_reference(ip):
    text = str(ip)
    keys = client_address_keys(text)
    assert keys == keys_reference(text)
    assert all(text.lower().startswith(k) for k in keys)


@given(hs.integers(min_value=0, max_value=2**32 - 1))
def test_ipv4_keys_are_one_to_four_octets(n):
    text = str(ipaddress.IPv4Address(n))
    octets = text.split(".")
    assert client_address_keys(text) == [".".join(octets[:i]) for i in (4, 3, 2, 1)]


HOST_RE = re.compile(
    r"(?=.{1,255}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)"
    r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*"
)


@given(hs.text(alphabet="abz09-_.", max_size=30))
def test_valid_hostname_against_regex(name):
    expected = bool(HOST_RE.fullmatch(name)) and not all(
        label.isdigit() for label in name.split(".")
    )
    assert valid_hostname(name) == expected


@given(
    hs.sampled_from([421, 450, 451, 550, 554]),
    hs.sampled_from(["4", "5"]),
    hs.integers(0, 9),
    hs.integers(0, 9),
    hs.sampled_from(["Sender address", "Recipient address", "Client host"]),
)
def test_fix_dsn_matches_code_class(code, first, cls, detail, subject):
    dsn = fix_dsn(code, f"{first}.{cls}.{detail}", subject)
    assert dsn[0] == str(code)[0]
    if cls != 1:
        assert dsn[1:] == f".{cls}.{detail}"
    elif subject == "Client host":
        assert dsn[1:] == ".0.0"
    else:
        assert dsn[2] == "1"


@given(hs.text(alphabet="45.0123 abc", max_size=20))
def test_split_dsn_keeps_all_text(text):
    dsn, rest = split_dsn(text, "5.7.1")
    if dsn == "5.7.1" and rest == text:
        return
    assert text.startswith(dsn) and text.endswith(rest)
    assert re.fullmatch(r"[45]\.\d{1,3}\.\d{1,3}", dsn)


# ---------------------------------------------------------------- logging
@pytest.fixture
def maillog(tmp_path):
    from mta import log

    path = tmp_path / "maillog"
    log.init("smtpd", load_config_with(tmp_path, f"maillog_file = {path}\n"))
    yield path
    log.init("smtpd", None, stdout=False)


def load_config_with(tmp_path, text):
    conf = tmp_path / "logconf"
    conf.mkdir(exist_ok=True)
    (conf / "main.cf").write_text(f"queue_directory = {tmp_path}/queue\n" + BASE + text)
    return load_config(str(conf))


def test_default_reject_warning_is_logged_in_postfix_form(make, maillog):
    checks = make("smtpd_client_restrictions = warn_if_reject, reject\n")
    assert rcpt(checks, recipient="user@mx.test.example") is None
    line = maillog.read_text().splitlines()[-1]
    assert line.endswith(
        "NOQUEUE: reject_warning: RCPT from unknown[192.0.2.99]: 554 5.7.1 "
        "<unknown[192.0.2.99]>: Client host rejected: Access denied; "
        "from=<a@sender.example> to=<user@mx.test.example> proto=ESMTP helo=<client.example>"
    )


def test_hold_and_warn_results_are_logged(make, maillog):
    checks = make(
        "smtpd_sender_restrictions = check_sender_access "
        "inline:{ {h.example = HOLD}, {w.example = WARN look here} }\n"
    )
    rcpt(checks, sender="a@h.example")
    rcpt(checks, sender="a@w.example")
    lines = maillog.read_text().splitlines()
    assert (
        "NOQUEUE: hold: RCPT from unknown[192.0.2.99]: <a@h.example>: Sender address "
        in (lines[-2])
    )
    assert (
        "NOQUEUE: warn: RCPT from unknown[192.0.2.99]: <a@w.example>: Sender address look here;"
        in (lines[-1])
    )


def test_restriction_class_loop_is_a_server_error(make):
    checks = make(
        "smtpd_restriction_classes = one, two\none = two\ntwo = one\n"
        "smtpd_client_restrictions = one\n"
    )
    assert reply(rcpt(checks)) == "451 4.3.5 Server configuration error"


def test_builtin_name_wins_over_a_class_of_the_same_name(make):
    checks = make(
        "smtpd_restriction_classes = permit\npermit = reject\nsmtpd_client_restrictions = permit\n"
    )
    assert rcpt(checks) is None


def test_bad_mynetworks_is_a_config_error(make):
    with pytest.raises(ConfigError, match="parameter mynetworks: bad network pattern"):
        make("mynetworks = 10.1.2.3/8\n")


# ---------------------------------------------------------------- ETRN
def etrn(checks: SmtpdChecks, domain: str, **kw) -> Verdict | None:
    return asyncio.run(checks.etrn(state(**kw), domain))


def test_etrn_without_restrictions_is_allowed(make):
    assert etrn(make(), "later.example") is None


def test_etrn_restrictions_client_and_etrn_access(make, tmp_path):
    (tmp_path / "etrn").write_text("blocked.example REJECT no flush for you\nsub.example OK\n")
    checks = make(
        f"smtpd_etrn_restrictions = check_etrn_access texthash:{tmp_path / 'etrn'},"
        " permit_mynetworks, reject\n"
    )
    refused = reply(etrn(checks, "blocked.example", client_addr="127.0.0.1"))
    assert refused is not None and refused.startswith("554 5.7.1 <blocked.example>:")
    assert "no flush for you" in refused
    assert etrn(checks, "a.sub.example") is None  # the table's OK, from outside too
    assert etrn(checks, "other.example", client_addr="127.0.0.1") is None  # mynetworks
    outside = reply(etrn(checks, "other.example"))
    assert outside is not None and outside.startswith("554 5.7.1")
