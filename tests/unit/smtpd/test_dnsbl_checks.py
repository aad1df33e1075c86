"""smtpd DNS blocklists: reject_rbl_client, reject_rhsbl_*, permit_dnswl_client, permit_rhswl_client."""

import asyncio
import socket
import threading

import pytest

from mta.common import dns as mta_dns
from mta.config import ConfigError
from mta.smtpd.checks import SessionState, SmtpdChecks
from mta.smtpd.dnsbl_checks import client_query, domain_query, parse_reply_pattern
from tests.support.dns_server import zone_fixtures
from tests.unit.smtpd.conftest import logged_warnings, session_state

BASE = (
    "myhostname = mx.test.example\n"
    "mydomain = test.example\n"
    "mynetworks = 127.0.0.1/32\n"
    "local_recipient_maps = inline:{ user=1, postmaster=1 }\n"
)
V6_CLIENT = "2001:db8::1"
V6_NAME = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
ZONE = {
    "99.2.0.192.zen.example": {"A": ["127.0.0.2"], "TXT": ['"listed by zen"']},
    "99.2.0.192.multi.example": {"A": ["127.0.0.2", "127.0.0.10"], "TXT": ['"one"', '"two"']},
    "99.2.0.192.notxt.example": {"A": ["127.0.0.4"]},
    "99.2.0.192.broken.example": "SERVFAIL",
    "99.2.0.192.slow.example": "TIMEOUT",
    "99.2.0.192.wl.example": {"A": ["127.0.10.0"]},
    "97.2.0.192.cached.example": {"A": ["127.0.0.2"]},
    f"{V6_NAME}.zen.example": {"A": ["127.0.0.2"], "TXT": ['"v6 listed"']},
    "client.example.dbl.example": {"A": ["127.0.1.2"], "TXT": ['"bad client"']},
    "rev.example.dbl.example": {"A": ["127.0.1.2"]},
    "helo.example.dbl.example": {"A": ["127.0.1.2"]},
    "bad.example.dbl.example": {"A": ["127.0.1.2"], "TXT": ['"bad domain"']},
    "client.example.rhswl.example": {"A": ["127.0.0.2"]},
}

dns_server, use_dns = zone_fixtures(ZONE, timeouts=(0.3, 0.6))


@pytest.fixture
def make(checks_from):
    """make(main_cf_text) -> SmtpdChecks over BASE plus the text, logging to maillog."""
    return lambda text="": checks_from(BASE, text)


def warnings(maillog) -> list[str]:
    return logged_warnings(maillog)


def state(**kw) -> SessionState:
    return session_state({"reverse_name": "rev.example"}, **kw)


def rcpt(checks: SmtpdChecks, st: SessionState | None = None, **kw) -> str | None:
    verdict = asyncio.run(checks.recipient(st or state(**kw)))
    return None if verdict is None else verdict.reply


def replies(tmp_path, *lines: str) -> str:
    """An rbl_reply_maps setting: a texthash table of these "key template" lines."""
    (tmp_path / "replies").write_text("".join(line + "\n" for line in lines))
    return f"rbl_reply_maps = texthash:{tmp_path}/replies\n"


def client_list(value: str) -> str:
    return f"smtpd_client_restrictions = {value}\n"


# ---------------------------------------------------------------- names and patterns
def test_client_query_reverses_ipv4_octets():
    assert client_query("192.0.2.99") == "99.2.0.192"


def test_client_query_reverses_ipv6_nibbles():
    assert client_query(V6_CLIENT) == V6_NAME


def test_client_query_treats_a_mapped_address_as_ipv4():
    assert client_query("::ffff:192.0.2.99") == "99.2.0.192"


def test_domain_query_takes_the_domain_of_an_address():
    assert domain_query("a@Bad.Example") == "bad.example"


def test_domain_query_skips_literals_and_numeric_names():
    assert [domain_query(n) for n in ("a@[192.0.2.1]", "192.0.2.1", "")] == [None, None, None]


@pytest.mark.parametrize(
    "text, last",
    [
        ("127.0.0.2", ((2, 2),)),
        ("127.0.0.[2..11]", ((2, 11),)),
        ("127.0.0.[2;4;6..8]", ((2, 2), (4, 4), (6, 8))),
    ],
)
def test_reply_patterns_parse(text, last):
    assert parse_reply_pattern(text) == (((127, 127),), ((0, 0),), ((0, 0),), last)


@pytest.mark.parametrize(
    "text", ["127.0.0.[2..x]", "127.0.0", "127.0.0.256", "127.0.0.[5..2]", "127.0.0.2.1", ""]
)
def test_malformed_reply_patterns_are_refused(text):
    with pytest.raises(ValueError):
        parse_reply_pattern(text)


# ---------------------------------------------------------------- reject_rbl_client
def test_listed_client_gets_the_default_reply_with_the_txt_reason(make):
    checks = make(client_list("reject_rbl_client zen.example"))
    assert rcpt(checks) == (
        "554 5.7.1 Service unavailable; Client host [192.0.2.99] blocked using zen.example; "
        "listed by zen"
    )


def test_client_not_listed_passes(make):
    checks = make(client_list("reject_rbl_client zen.example"))
    assert rcpt(checks, client_addr="192.0.2.98") is None


def test_listing_without_txt_leaves_the_reason_out(make):
    checks = make(client_list("reject_rbl_client notxt.example"))
    assert rcpt(checks) == (
        "554 5.7.1 Service unavailable; Client host [192.0.2.99] blocked using notxt.example"
    )


def test_several_txt_records_are_joined(make):
    checks = make(client_list("reject_rbl_client multi.example"))
    reason = rcpt(checks).rpartition("; ")[2]
    assert reason in ("one / two", "two / one")  # in the order the DNS answer has them


def test_reject_rbl_is_the_old_name(make):
    checks = make(client_list("reject_rbl zen.example"))
    assert rcpt(checks).startswith("554 5.7.1 Service unavailable; Client host [192.0.2.99]")


@pytest.mark.parametrize(
    "spec", ["zen.example=127.0.0.2", "zen.example=127.0.0.[2..11]", "zen.example=127.0.0.[4;2]"]
)
def test_a_matching_filter_rejects(make, spec):
    checks = make(client_list(f"reject_rbl_client {spec}"))
    assert rcpt(checks).endswith("blocked using zen.example; listed by zen")


@pytest.mark.parametrize("spec", ["zen.example=127.0.0.3", "zen.example=127.0.0.[3..11]"])
def test_a_filter_that_does_not_match_passes(make, spec):
    checks = make(client_list(f"reject_rbl_client {spec}"))
    assert rcpt(checks) is None


def test_a_filter_matches_any_of_several_records(make):
    checks = make(client_list("reject_rbl_client multi.example=127.0.0.10"))
    assert rcpt(checks) is not None


def test_a_malformed_filter_is_a_config_error_naming_the_parameter(make):
    with pytest.raises(ConfigError) as info:
        make(client_list("reject_rbl_client zen.example=127.0.0.[2..x]"))
    assert info.value.param == "smtpd_client_restrictions"
    assert "127.0.0.[2..x]" in str(info.value)


def test_a_restriction_without_its_domain_is_a_config_error(make):
    with pytest.raises(ConfigError):
        make(client_list("reject_rbl_client"))


def test_ipv6_client_is_looked_up_by_nibbles(make):
    checks = make(client_list("reject_rbl_client zen.example"))
    assert rcpt(checks, client_addr=V6_CLIENT) == (
        f"554 5.7.1 Service unavailable; Client host [{V6_CLIENT}] blocked using zen.example; "
        "v6 listed"
    )


def test_maps_rbl_reject_code_sets_the_code(make):
    checks = make(client_list("reject_rbl_client zen.example") + "maps_rbl_reject_code = 550\n")
    assert rcpt(checks).startswith("550 5.7.1 Service unavailable;")


def test_soft_bounce_turns_the_reject_into_a_deferral(make):
    checks = make(client_list("reject_rbl_client zen.example") + "soft_bounce = yes\n")
    assert rcpt(checks).startswith("454 4.7.1 Service unavailable;")


# ---------------------------------------------------------------- replies
def test_rbl_reply_maps_gives_the_template_with_macros(make, tmp_path):
    checks = make(
        client_list("reject_rbl_client zen.example")
        + replies(
            tmp_path,
            "zen.example $rbl_code 5.7.2 $rbl_class $client from $sender to $recipient"
            " at $helo_name: ${rbl_reason?see $rbl_reason}",
        )
    )
    assert rcpt(checks) == (
        "554 5.7.2 Client host client.example[192.0.2.99] from a@sender.example to "
        "user@mx.test.example at helo.example: see listed by zen"
    )


def test_rbl_reply_maps_is_searched_with_the_filter_first(make, tmp_path):
    checks = make(
        client_list("reject_rbl_client zen.example=127.0.0.2")
        + replies(tmp_path, "zen.example 550 plain", "zen.example=127.0.0.2 551 with $rbl_domain")
    )
    assert rcpt(checks) == "551 5.7.1 with zen.example"


def test_rbl_reply_maps_without_the_filter_key_uses_the_domain(make, tmp_path):
    checks = make(
        client_list("reject_rbl_client zen.example=127.0.0.2")
        + replies(tmp_path, "zen.example 550 plain $rbl_what")
    )
    assert rcpt(checks) == "550 5.7.1 plain 192.0.2.99"


def test_a_template_without_a_code_gives_450_and_a_warning(make, maillog, tmp_path):
    checks = make(
        client_list("reject_rbl_client zen.example") + replies(tmp_path, "zen.example no code here")
    )
    assert rcpt(checks) == "450 4.7.1 Service unavailable"
    assert warnings(maillog)[-1].endswith(
        "warning: rbl response code configuration error: no code here"
    )


def test_a_template_that_does_not_expand_falls_back_to_the_default(make, maillog, tmp_path):
    checks = make(
        client_list("reject_rbl_client zen.example")
        + replies(tmp_path, "zen.example 550 ${rbl_reason")
        + "default_rbl_reply = 551 default\n"
    )
    assert rcpt(checks) == "551 5.7.1 default"
    assert warnings(maillog)[-1].endswith(
        "warning: rbl_reject_reply: bad rbl reply template for domain zen.example: 550 ${rbl_reason"
    )


def test_a_bad_default_rbl_reply_is_a_config_error(make):
    with pytest.raises(ConfigError) as info:
        make(client_list("reject_rbl_client zen.example") + "default_rbl_reply = 554 ${oops\n")
    assert info.value.param == "default_rbl_reply"


def test_expanded_values_pass_the_expansion_filter(make, tmp_path):
    checks = make(
        client_list("reject_rbl_client zen.example")
        + replies(tmp_path, "zen.example $rbl_code $rbl_reason")
        + "smtpd_expansion_filter = 0123456789abcdefghijklmnopqrstuvwxyz\n"
    )
    assert rcpt(checks) == "554 5.7.1 listed_by_zen"


# ---------------------------------------------------------------- failures and the cache
@pytest.mark.parametrize("domain", ["broken.example", "slow.example"])
def test_a_failing_list_counts_as_not_listed_with_a_warning(make, maillog, domain):
    checks = make(client_list(f"reject_rbl_client {domain}, reject_rbl_client zen.example"))
    assert rcpt(checks).endswith("blocked using zen.example; listed by zen")
    (warning,) = warnings(maillog)
    assert warning.endswith(
        f"warning: 99.2.0.192.{domain}: RBL lookup error: Host or domain name not found. "
        f"Name service error for name=99.2.0.192.{domain} type=A: Host not found, try again"
    )


class GarbageServer:
    """A UDP "name server" on 127.0.0.1 that answers every query with junk."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.nameserver = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        while not self.stopped.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            self.sock.sendto(data[:2] + b"\x81\x80garbage", peer)  # its id, then nonsense

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(5)
        self.sock.close()


def test_a_list_that_answers_garbage_counts_as_not_listed_with_a_warning(make, maillog):
    checks = make(client_list("reject_rbl_client zen.example"))
    with GarbageServer() as srv:
        mta_dns.set_nameservers(srv.nameserver)
        assert rcpt(checks) is None
    (warning,) = warnings(maillog)
    assert "warning: 99.2.0.192.zen.example: RBL lookup error:" in warning


def test_the_same_query_is_asked_once_per_session(make, dns_server):
    checks = make(client_list("reject_rbl_client cached.example"))
    name = "97.2.0.192.cached.example"
    st = state(client_addr="192.0.2.97")
    before = dns_server.queries.count((name, "A"))
    assert rcpt(checks, st) is not None
    assert rcpt(checks, st) is not None
    assert dns_server.queries.count((name, "A")) == before + 1
    assert rcpt(checks, state(client_addr="192.0.2.97")) is not None  # a new session asks again
    assert dns_server.queries.count((name, "A")) == before + 2


def test_a_failure_is_cached_too(make, dns_server):
    checks = make(client_list("reject_rbl_client broken.example"))
    st = state()
    before = len(dns_server.queries)
    assert rcpt(checks, st) is None
    asked = len(dns_server.queries)
    assert rcpt(checks, st) is None
    assert len(dns_server.queries) == asked > before


# ---------------------------------------------------------------- allowlists
def test_permit_dnswl_client_permits_a_listed_client(make):
    checks = make(client_list("permit_dnswl_client wl.example, reject"))
    assert rcpt(checks) is None


def test_permit_dnswl_client_ignores_an_unlisted_client(make):
    checks = make(client_list("permit_dnswl_client wl.example, reject"))
    assert rcpt(checks, client_addr="192.0.2.98").startswith("554 5.7.1 <client.example[")


def test_permit_dnswl_client_never_allows_relaying(make):
    checks = make(
        "smtpd_relay_restrictions = permit_dnswl_client wl.example, reject_unauth_destination\n"
    )
    assert rcpt(checks, recipient="x@elsewhere.example") == (
        "554 5.7.1 <x@elsewhere.example>: Relay access denied"
    )


def test_permit_dnswl_client_failure_is_defer_if_reject(make):
    checks = make(client_list("permit_dnswl_client broken.example, reject"))
    assert rcpt(checks) == "450 4.7.1 <192.0.2.99>: Client host rejected: Service unavailable"


def test_permit_rhswl_client_permits_a_listed_name(make):
    checks = make(client_list("permit_rhswl_client rhswl.example, reject"))
    assert rcpt(checks) is None


# ---------------------------------------------------------------- rhsbl
def test_reject_rhsbl_client_looks_up_the_client_name(make):
    checks = make(client_list("reject_rhsbl_client dbl.example"))
    assert rcpt(checks) == (
        "554 5.7.1 Service unavailable; Client host [client.example] blocked using "
        "dbl.example; bad client"
    )


def test_reject_rhsbl_client_skips_an_unknown_client(make, dns_server):
    checks = make(client_list("reject_rhsbl_client dbl.example"))
    assert rcpt(checks, client_name="unknown") is None
    assert ("unknown.dbl.example", "A") not in dns_server.queries


def test_reject_rhsbl_reverse_client_uses_the_reverse_name(make):
    checks = make(client_list("reject_rhsbl_reverse_client dbl.example"))
    assert rcpt(checks, client_name="unknown") == (
        "554 5.7.1 Service unavailable; Unverified Client host [rev.example] blocked using "
        "dbl.example"
    )


def test_reject_rhsbl_helo(make):
    checks = make("smtpd_helo_restrictions = reject_rhsbl_helo dbl.example\n")
    assert rcpt(checks) == (
        "554 5.7.1 Service unavailable; Helo command [helo.example] blocked using dbl.example"
    )


def test_reject_rhsbl_sender_looks_up_the_sender_domain(make):
    checks = make("smtpd_sender_restrictions = reject_rhsbl_sender dbl.example\n")
    assert rcpt(checks, sender="x@bad.example") == (
        "554 5.7.1 Service unavailable; Sender address [x@bad.example] blocked using "
        "dbl.example; bad domain"
    )


def test_reject_rhsbl_sender_skips_the_null_sender(make):
    checks = make("smtpd_sender_restrictions = reject_rhsbl_sender dbl.example\n")
    assert rcpt(checks, sender="") is None


def test_reject_rhsbl_recipient(make):
    checks = make(
        "smtpd_recipient_restrictions = reject_rhsbl_recipient dbl.example, "
        "permit_mynetworks, reject_unauth_destination\n"
    )
    assert rcpt(checks, client_addr="127.0.0.1", recipient="y@bad.example") == (
        "554 5.7.1 Service unavailable; Recipient address [y@bad.example] blocked using "
        "dbl.example; bad domain"
    )


def test_mta_check_accepts_every_dnsbl_restriction(make):
    make(
        client_list(
            "permit_dnswl_client wl.example=127.0.[0..255].[0;1], permit_rhswl_client rhswl.example,"
            " reject_rbl_client zen.example=127.0.0.2, reject_rhsbl_client dbl.example,"
            " reject_rhsbl_reverse_client dbl.example, reject_rhsbl_helo dbl.example,"
            " reject_rhsbl_sender dbl.example, reject_rhsbl_recipient dbl.example"
        )
    )
