"""check_policy_service: the request, the actions, connection reuse, failures and configuration.

A real policy server (tests/support/policy_server.py) answers on 127.0.0.1 or
a UNIX socket and records what it got."""

import asyncio
import time
from dataclasses import replace

import pytest

from mta.config import ConfigError
from mta.smtpd.checks import SessionState, SmtpdChecks
from mta.smtpd.policy_checks import (
    POLICY_ATTRIBUTES,
    POLICY_LINE_LIMIT,
    PolicyError,
    format_request,
    parse_reply,
    quote_xtext,
)
from tests.support.policy_server import CLOSE, RAW, SLOW, PolicyServer
from tests.unit.smtpd.conftest import logged_warnings, session_state

BASE = (
    "myhostname = mx.test.example\n"
    "mydomain = test.example\n"
    "mynetworks = 127.0.0.1/32\n"
    "local_recipient_maps = inline:{ user=1, other=1, postmaster=1 }\n"
)
RCPT = "user@mx.test.example"
DEFAULT_REPLY = f"451 4.3.5 <{RCPT}>: Recipient address rejected: Server configuration problem"


@pytest.fixture
def make(tmp_path, checks_from):
    """make(main_cf_text) -> SmtpdChecks over BASE plus the text, logging to maillog."""

    def build(text: str = "") -> SmtpdChecks:
        (tmp_path / "queue" / "private").mkdir(parents=True, exist_ok=True)  # unix: services
        return checks_from(BASE, text)

    return build


def policy(service: str, after: str = "permit_mynetworks, reject") -> str:
    return f"smtpd_recipient_restrictions = check_policy_service {service}, {after}\n"


state = session_state  # recipient RCPT, the client 192.0.2.99 ...


def reply(verdict):
    return None if verdict is None else verdict.reply


def rcpt(checks: SmtpdChecks, **kw):
    return reply(asyncio.run(checks.recipient(state(**kw))))


def rcpts(checks: SmtpdChecks, states: list[SessionState]) -> list:
    """Several RCPT evaluations in one event loop, as one smtpd process runs them."""

    async def run():
        return [reply(await checks.recipient(st)) for st in states]

    return asyncio.run(run())


warnings = logged_warnings


# ---------------------------------------------------------------- the request
def test_request_carries_every_attribute_postfix_sends(make):
    with PolicyServer(["DUNNO"]) as srv:
        checks = make(policy(srv.service))
        rcpt(checks)
    assert list(srv.requests[0]) == list(POLICY_ATTRIBUTES)


def test_request_values_come_from_the_session(make):
    with PolicyServer(["DUNNO"]) as srv:
        checks = make(policy(srv.service))
        rcpt(checks, sasl_username="joe")
    got = srv.requests[0]
    assert got["request"] == "smtpd_access_policy"
    assert got["protocol_state"] == "RCPT"
    assert got["protocol_name"] == "ESMTP"
    assert got["client_address"] == "192.0.2.99"
    assert got["client_name"] == "client.example"
    assert got["reverse_client_name"] == "client.example"
    assert got["client_port"] == "40000"
    assert got["helo_name"] == "helo.example"
    assert got["sender"] == "a@sender.example"
    assert got["recipient"] == RCPT
    assert got["recipient_count"] == "0"
    assert got["sasl_username"] == "joe"
    assert got["encryption_keysize"] == "0"
    assert got["encryption_protocol"] == ""
    assert got["policy_context"] == ""
    assert got["stress"] == ""
    assert got["compatibility_level"] == "3.6"
    assert got["mail_version"]


def test_tls_attributes(make):
    from mta.smtpd.tls_ccert import TlsPeer

    peer = TlsPeer("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, cert=b"der", trusted=True,
                   peer_cn="client one", issuer_cn="CA+1", fingerprint="AB:CD",
                   pkey_fingerprint="EF:01")  # fmt: skip
    untrusted = replace(peer, trusted=False)
    with PolicyServer(["DUNNO"]) as srv:
        checks = make(policy(srv.service))
        rcpt(checks, tls_peer=peer)
        rcpt(checks, tls_peer=untrusted)
    got = srv.requests[0]
    assert (got["encryption_protocol"], got["encryption_cipher"]) == (
        "TLSv1.3",
        "TLS_AES_256_GCM_SHA384",
    )
    assert got["encryption_keysize"] == "256"
    assert (got["ccert_subject"], got["ccert_issuer"]) == ("client+20one", "CA+2B1")
    assert (got["ccert_fingerprint"], got["ccert_pubkey_fingerprint"]) == ("AB:CD", "EF:01")
    # names only from a trusted certificate; fingerprints from any (Postfix)
    got = srv.requests[1]
    assert (got["ccert_subject"], got["ccert_issuer"], got["ccert_fingerprint"]) == (
        "",
        "",
        "AB:CD",
    )


def test_sasl_attributes(make):
    with PolicyServer(["DUNNO"]) as srv:
        rcpt(make(policy(srv.service)), sasl_username="joe", sasl_method="PLAIN",
             sasl_sender="joe@sender.example", size=1234, instance="1.2.3.4", queue_id="Q1")  # fmt: skip
    got = srv.requests[0]
    assert (got["sasl_method"], got["sasl_username"], got["sasl_sender"]) == (
        "PLAIN",
        "joe",
        "joe@sender.example",
    )
    assert (got["size"], got["instance"], got["queue_id"]) == ("1234", "1.2.3.4", "Q1")


def test_null_sender_is_sent_empty(make):
    with PolicyServer(["DUNNO"]) as srv:
        rcpt(make(policy(srv.service)), sender="")
    assert srv.requests[0]["sender"] == ""


def test_data_stage_sends_the_recipient_count_and_the_only_recipient(make):
    with PolicyServer(["DUNNO"]) as srv:
        checks = make(
            f"smtpd_data_restrictions = check_policy_service {srv.service}\n"
            "smtpd_relay_restrictions = reject_unauth_destination\n"
        )
        assert asyncio.run(checks.data(state(recipient_count=1))) is None
        assert asyncio.run(checks.data(state(recipient_count=2))) is None
    one, two = srv.requests
    assert (one["protocol_state"], one["recipient_count"], one["recipient"]) == ("DATA", "1", RCPT)
    assert (two["recipient_count"], two["recipient"]) == ("2", "")


def test_etrn_sends_the_etrn_domain(make):
    with PolicyServer(["DUNNO"]) as srv:
        checks = make(f"smtpd_etrn_restrictions = check_policy_service {srv.service}\n")
        asyncio.run(checks.etrn(state(sender=None, recipient=""), "relay.example"))
    assert srv.requests[0]["protocol_state"] == "ETRN"
    assert srv.requests[0]["etrn_domain"] == "relay.example"


def test_connect_stage_without_delay_reject(make):
    with PolicyServer(["DUNNO"]) as srv:
        checks = make(
            "smtpd_delay_reject = no\n"
            f"smtpd_client_restrictions = check_policy_service {srv.service}\n"
        )
        assert asyncio.run(checks.client(state(helo_name="", sender=None, recipient=""))) is None
    assert srv.requests[0]["protocol_state"] == "CONNECT"
    assert srv.requests[0]["sender"] == ""


def test_policy_context_is_sent(make):
    with PolicyServer(["DUNNO"]) as srv:
        rcpt(make("smtpd_policy_service_policy_context = submission\n" + policy(srv.service)))
    assert srv.requests[0]["policy_context"] == "submission"


def test_newlines_in_values_cannot_add_attributes():
    data = format_request({"request": "x", "helo_name": "a\nsize=1\r\0"})
    assert data == b"request=x\nhelo_name=a?size=1??\n\n"


def test_certificate_names_are_xtext():
    assert quote_xtext("Wietse Venema") == "Wietse+20Venema"
    assert quote_xtext("a+b=c") == "a+2Bb=c"


# ---------------------------------------------------------------- actions
def test_dunno_goes_on_to_the_next_restriction(make):
    with PolicyServer(["DUNNO"]) as srv:
        got = rcpt(make(policy(srv.service)))
    assert got == f"554 5.7.1 <{RCPT}>: Recipient address rejected: Access denied"


def test_ok_permits(make):
    with PolicyServer(["OK"]) as srv:
        assert rcpt(make(policy(srv.service))) is None


def test_reject_with_text(make):
    with PolicyServer(["REJECT go away"]) as srv:
        got = rcpt(make(policy(srv.service, "permit")))
    assert got == f"554 5.7.1 <{RCPT}>: Recipient address rejected: go away"


def test_numeric_4xx_reply(make):
    with PolicyServer(["450 4.7.1 greylisted, try later"]) as srv:
        got = rcpt(make(policy(srv.service, "permit")))
    assert got == f"450 4.7.1 <{RCPT}>: Recipient address rejected: greylisted, try later"


def test_defer_if_permit_defers_what_would_be_accepted(make):
    with PolicyServer(["DEFER_IF_PERMIT not now"]) as srv:
        got = rcpt(make(policy(srv.service, "permit")))
    assert got == f"450 4.7.1 <{RCPT}>: Recipient address rejected: not now"


def test_prepend_is_noted_for_the_message(make):
    with PolicyServer(["PREPEND X-Policy: checked"]) as srv:
        st = state()
        assert asyncio.run(make(policy(srv.service, "permit")).recipient(st)) is None
    assert ("prepend", "X-Policy: checked") in st.actions


def test_an_action_may_name_restrictions(make):
    with PolicyServer(["reject_non_fqdn_sender"]) as srv:
        checks = make(policy(srv.service, "permit"))
        assert rcpt(checks) is None
        got = rcpt(checks, sender="nodomain")
    assert got == "504 5.5.2 <nodomain>: Sender address rejected: need fully-qualified address"


# ---------------------------------------------------------------- connections
def test_one_connection_serves_several_requests_and_sessions(make):
    with PolicyServer(["DUNNO", "OK", "REJECT no"]) as srv:
        checks = make(policy(srv.service, "permit"))
        got = rcpts(checks, [state(), state(client_port=40001), state(client_port=40002)])
    assert got[:2] == [None, None]
    assert got[2] == f"554 5.7.1 <{RCPT}>: Recipient address rejected: no"
    assert (srv.connections, len(srv.requests)) == (1, 3)


def test_concurrent_sessions_do_not_wait_for_each_other(make):
    with PolicyServer([SLOW(0.5, "DUNNO")]) as srv:
        checks = make(policy(srv.service, "permit"))

        async def run():
            return await asyncio.gather(*(checks.recipient(state()) for _ in range(3)))

        started = time.monotonic()
        assert asyncio.run(run()) == [None, None, None]
        took = time.monotonic() - started
    assert took < 1.2
    assert srv.connections == 3


def test_request_limit_closes_after_that_many_requests(make):
    with PolicyServer(["DUNNO"]) as srv:
        checks = make("smtpd_policy_service_request_limit = 2\n" + policy(srv.service, "permit"))
        rcpts(checks, [state()] * 5)
    assert (srv.connections, len(srv.requests)) == (3, 5)


def test_an_idle_connection_is_closed_after_max_idle(make):
    with PolicyServer(["DUNNO"]) as srv:
        checks = make(policy(srv.service, "permit"))
        client = checks._policy_clients[srv.service]
        client.settings = replace(client.settings, max_idle=0.2)

        async def run():
            await checks.recipient(state())
            await asyncio.sleep(0.4)
            assert client._idle == []  # the timer closed it
            await checks.recipient(state())

        asyncio.run(run())
    assert srv.connections == 2


def test_an_old_connection_is_closed_after_max_ttl(make):
    with PolicyServer(["DUNNO"]) as srv:
        checks = make(policy(srv.service, "permit"))
        client = checks._policy_clients[srv.service]
        client.settings = replace(client.settings, max_ttl=0.2)

        async def run():
            await checks.recipient(state())
            await asyncio.sleep(0.3)
            await checks.recipient(state())

        asyncio.run(run())
    assert srv.connections == 2


def test_a_connection_the_server_closed_is_replaced_without_a_warning(make, maillog):
    with PolicyServer(["DUNNO", "OK"]) as srv:
        # try_limit=1: a lost idle connection must not cost a try
        checks = make(policy(f"{{ {srv.service}, try_limit=1 }}", "permit"))
        client = checks._policy_clients[f"{{ {srv.service}, try_limit=1 }}"]

        async def run():
            await checks.recipient(state())
            # the server drops the idle connection
            for w in list(srv._writers):
                srv.loop.call_soon_threadsafe(w.close)
            await asyncio.sleep(0.2)
            return await checks.recipient(state())

        assert asyncio.run(run()) is None
        assert client.connects == 2
    assert warnings(maillog) == []


def test_unix_socket_service(make, tmp_path):
    path = str(tmp_path / "policy.sock")
    with PolicyServer(["REJECT unix says no"], unix_path=path) as srv:
        got = rcpt(make(policy(srv.service, "permit")))
    assert got == f"554 5.7.1 <{RCPT}>: Recipient address rejected: unix says no"
    assert srv.requests[0]["request"] == "smtpd_access_policy"


def test_bare_name_and_private_path_are_under_the_queue_directory(make, tmp_path):
    (tmp_path / "queue" / "private").mkdir(parents=True)
    path = str(tmp_path / "queue" / "private" / "policy")
    with PolicyServer(["OK"], unix_path=path) as srv:
        assert rcpt(make(policy("policy"))) is None
        assert rcpt(make(policy("unix:private/policy"))) is None
    assert len(srv.requests) == 2


# ---------------------------------------------------------------- failures
def fails(make, maillog, script, extra=""):
    """Run one RCPT against a failing server; return (reply, warnings, server)."""
    with PolicyServer(script) as srv:
        service = f"{{ {srv.service}, try_limit=1, timeout=1s {extra}}}"
        got = rcpt(make(policy(service, "permit")))
    return got, warnings(maillog), srv


def test_server_down_gives_the_default_action_and_one_warning(make, maillog):
    with PolicyServer() as srv:
        service = srv.service
    got = rcpt(make(policy(f"{{ {service}, retry_delay=1s }}", "permit")))
    assert got == DEFAULT_REPLY
    (warning,) = warnings(maillog)
    assert warning.endswith(f"warning: problem talking to server {service}: Connection refused")


def test_each_failed_request_is_tried_try_limit_times(make, maillog):
    with PolicyServer([RAW(b"garbage\n\n")]) as srv:
        started = time.monotonic()
        got = rcpt(make(policy(srv.service, "permit")))  # try_limit 2, retry_delay 1s
        took = time.monotonic() - started
    assert got == DEFAULT_REPLY
    assert len(srv.requests) == 2
    assert 0.9 < took < 5
    (warning,) = warnings(maillog)
    assert warning.endswith(
        f'problem talking to server {srv.service}: malformed reply line "garbage"'
    )


def test_a_slow_server_times_out(make, maillog):
    started = time.monotonic()
    got, warned, _ = fails(make, maillog, [SLOW(3, "OK")])
    assert got == DEFAULT_REPLY
    assert time.monotonic() - started < 2.5
    assert len(warned) == 1 and warned[0].endswith("Connection timed out")


def test_a_server_that_closes_mid_reply(make, maillog):
    got, warned, _ = fails(make, maillog, [RAW(b"action=OK", close=True)])
    assert got == DEFAULT_REPLY
    assert len(warned) == 1 and warned[0].endswith("lost connection")


def test_a_server_that_closes_without_reply(make, maillog):
    got, warned, _ = fails(make, maillog, [CLOSE])
    assert got == DEFAULT_REPLY
    assert len(warned) == 1


def test_a_megabyte_line_is_refused(make, maillog):
    got, warned, _ = fails(make, maillog, [RAW(b"action=" + b"x" * 1_000_000 + b"\n\n")])
    assert got == DEFAULT_REPLY
    assert len(warned) == 1
    assert warned[0].endswith(f"reply line longer than {POLICY_LINE_LIMIT} bytes")


def test_smtpd_keeps_serving_after_a_failure(make, maillog):
    answers = iter([CLOSE])

    def handler(attrs):
        return next(answers, "OK")

    with PolicyServer(handler=handler) as srv:
        service = f"{{ {srv.service}, try_limit=1 }}"
        checks = make(policy(service, "permit"))
        got = rcpts(checks, [state(), state()])
    assert got == [DEFAULT_REPLY, None]


def test_default_action_dunno_goes_on(make, maillog):
    got, _, _ = fails(make, maillog, [CLOSE], ", default_action=DUNNO ")
    assert got is None


def test_default_action_from_main_cf(make, maillog):
    with PolicyServer([CLOSE]) as srv:
        checks = make(
            "smtpd_policy_service_default_action = 450 4.7.1 policy down\n"
            "smtpd_policy_service_try_limit = 1\n" + policy(srv.service, "permit")
        )
        got = rcpt(checks)
    assert got == f"450 4.7.1 <{RCPT}>: Recipient address rejected: policy down"


def test_a_failing_policy_in_the_default_action_gets_the_builtin_default(make, maillog):
    with PolicyServer([CLOSE]) as srv:
        inner = f"check_policy_service {srv.service}"
        service = f"{{ {srv.service}, try_limit=1, {{ default_action = {inner} }} }}"
        got = rcpt(make("smtpd_policy_service_try_limit = 1\n" + policy(service, "permit")))
    assert got == DEFAULT_REPLY


def test_reply_parsing():
    assert parse_reply([b"action=OK"]) == "OK"
    assert parse_reply([b"action="]) == ""
    for bad, why in [
        ([], "missing attribute action"),
        ([b"action=OK", b"action=DUNNO"], "duplicate attribute action"),
        ([b"verdict=OK"], "unexpected attribute verdict"),
        ([b"\xff=OK"], "malformed UTF-8"),
    ]:
        with pytest.raises(PolicyError, match=why):
            parse_reply(bad)


# ---------------------------------------------------------------- configuration
def test_per_service_settings_override_main_cf(make):
    spec = (
        "{ inet:127.0.0.1:9998, timeout=10s, max_idle=1m, request_limit=3,"
        " try_limit=1, retry_delay=2s, policy_context=submission,"
        " { default_action = 451 4.3.5 See http://www.example.com/support1 } }"
    )
    checks = make(policy(spec))
    s = checks._policy_clients[spec].settings
    assert (s.timeout, s.max_idle, s.max_ttl, s.request_limit) == (10, 60, 1000, 3)
    assert (s.try_limit, s.retry_delay, s.policy_context) == (1, 2, "submission")
    assert s.default_action == "451 4.3.5 See http://www.example.com/support1"


def test_main_cf_defaults_are_postfix_defaults(make):
    s = make(policy("inet:127.0.0.1:9998"))._policy_clients["inet:127.0.0.1:9998"].settings
    assert (s.timeout, s.max_idle, s.max_ttl, s.request_limit) == (100, 300, 1000, 0)
    assert (s.try_limit, s.retry_delay, s.policy_context) == (2, 1, "")
    assert s.default_action == "451 4.3.5 Server configuration problem"


def test_building_the_checks_does_not_connect(make):
    with PolicyServer() as srv:
        make(policy(srv.service))
    assert srv.connections == 0


@pytest.mark.parametrize(
    "service",
    [
        "inet:127.0.0.1",
        "inet:127.0.0.1:",
        "inet::9998",
        "inet:127.0.0.1:99999",
        "tcp:127.0.0.1:9998",
        "unix:",
        "no/such",
        "{ inet:127.0.0.1:9998, bogus=1 }",
        "{ inet:127.0.0.1:9998, timeout=soon }",
        "{ inet:127.0.0.1:9998, try_limit=0 }",
        "{ inet:127.0.0.1:9998, timeout }",
        "{ }",
    ],
)
def test_a_malformed_service_is_a_config_error_naming_the_list(make, service):
    with pytest.raises(ConfigError) as info:
        make(policy(service))
    assert info.value.param == "smtpd_recipient_restrictions"


def test_a_missing_service_is_a_config_error(make):
    with pytest.raises(ConfigError, match="needs an argument"):
        make("smtpd_recipient_restrictions = permit_mynetworks, reject, check_policy_service\n")


def test_a_bad_main_cf_value_names_its_parameter(make):
    with pytest.raises(ConfigError) as info:
        make("smtpd_policy_service_timeout = soon\n" + policy("inet:127.0.0.1:9998"))
    assert info.value.param == "smtpd_policy_service_timeout"


def test_a_zero_main_cf_value_names_its_parameter(make):
    with pytest.raises(ConfigError, match="timeout must be greater than zero") as info:
        make("smtpd_policy_service_timeout = 0\n" + policy("inet:127.0.0.1:9998"))
    assert info.value.param == "smtpd_policy_service_timeout"
