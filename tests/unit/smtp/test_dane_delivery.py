"""The dane and dane-only levels end to end: the smtp client, a DNS server on loopback
playing a validating resolver (the AD bit), and an aiosmtpd server with STARTTLS."""

import asyncio

import pytest
from aiosmtpd.lmtp import LMTP

from mta.common import dns as mta_dns
from mta.config import load_config
from mta.smtp import dane, deliver, deliver_lmtp
from mta.smtp.dane import parse_tlsa
from mta.smtp.nexthop import Target
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.certs import make_ca, make_cert, server_context, tlsa
from tests.support.dns_server import DnsServer
from tests.support.instance import make_instance
from tests.unit.smtp.peers import (
    LmtpController,
    ScriptServer,
    SinkHandler,
    free_port,
    read_line,
    sink,
)


class TlsLmtpController(LmtpController):
    """An aiosmtpd LMTP server that offers STARTTLS (tls_context=...)."""

    def factory(self):
        return LMTP(self.handler, **self.SMTP_kwargs)


MX = "mx.example.com"
CA = make_ca("DANE Test CA")
LEAF = make_cert(MX, issuer=CA)  # what the server presents
STRANGER = make_cert(MX)  # what the TLSA records may wrongly name


class TlsRecorder(SinkHandler):
    def __init__(self):
        super().__init__()
        self.tls = []

    async def handle_DATA(self, server, session, envelope):
        self.tls.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def dns_zone():
    """A DNS server for example.com; the test adds the TLSA records and says what is secure."""
    srv = DnsServer({"example.com": {"MX": [f"10 {MX}."]}, MX: {"A": ["127.0.0.1"]}}, secure=True)
    dane.clear_cache()
    with srv:
        mta_dns.set_nameservers(srv.nameserver)
        mta_dns.set_timeouts(0.5, 1.0)
        yield srv


@pytest.fixture
def server_tls(tmp_path):
    return server_context(LEAF, tmp_path, chain=[CA])


def tlsa_name(port: int) -> str:
    return f"_{port}._tcp.{MX}"


def deliver_at(
    tmp_path, dns_srv, level, tls_context=None, tlsa_records=None, extra="", secure=None, peer=None
):
    """One message for u@example.com through the smtp client at level; the sink offers
    STARTTLS when given a context; tlsa_records are served at _PORT._tcp.MX; secure(port),
    when given, names what the DNS server vouches for; peer: another server (.port, .stop())."""
    handler = TlsRecorder()
    ctl = peer or sink(handler, tls_context=tls_context)[0]
    if tlsa_records is not None:
        dns_srv.update({tlsa_name(ctl.port): tlsa_records})
    if secure is not None:
        dns_srv.secure = secure(ctl.port)
    cfg = load_config(
        str(
            make_instance(
                tmp_path,
                f"smtp_tcp_port = {ctl.port}\nsmtp_tls_security_level = {level}\n"
                "smtp_dns_support_level = dnssec\n"
                "smtp_helo_timeout = 3s\nsmtp_starttls_timeout = 3s\n" + extra,
            )
        )
    )
    msg = queue_message(cfg, ["u@example.com"])
    try:
        result = run_agent(deliver, cfg, request_for(msg, "example.com"), tmp_path)
    finally:
        ctl.stop()
    (status,) = result.statuses
    return handler, status, ctl.port, (tmp_path / "maillog").read_text()


def outcome(status):
    return status.action, status.dsn, status.reason


# ---------------------------------------------------------------- usable records


@pytest.mark.parametrize("level", ["dane", "dane-only"])
def test_matching_dane_ee_record_delivers_over_verified_tls(tmp_path, dns_zone, server_tls, level):
    handler, status, port, log = deliver_at(
        tmp_path, dns_zone, level, server_tls, {"TLSA": [tlsa(LEAF, 3, 1, 1)]}
    )
    assert status.action == "relayed"
    assert handler.tls == [True]
    assert f"Verified TLS connection established to {MX}[127.0.0.1]:{port}: TLSv1" in log
    # every look-up asked for DNSSEC: the MX, the address and the TLSA records
    asked = set(dns_zone.dnssec_queries)
    assert {("example.com", "MX"), (MX, "A"), (f"_{port}._tcp.{MX}", "TLSA")} <= asked


@pytest.mark.parametrize("level", ["dane", "dane-only"])
def test_record_that_does_not_match_defers_and_sends_nothing(tmp_path, dns_zone, server_tls, level):
    handler, status, _, log = deliver_at(
        tmp_path, dns_zone, level, server_tls, {"TLSA": [tlsa(STRANGER, 3, 1, 1)]}
    )
    assert outcome(status) == ("delayed", "4.7.5", "Server certificate not verified")
    assert handler.messages == []
    assert "Verified TLS" not in log


def test_dane_ta_record_of_the_issuer_in_the_sent_chain_delivers(tmp_path, dns_zone, server_tls):
    handler, status, port, log = deliver_at(
        tmp_path, dns_zone, "dane-only", server_tls, {"TLSA": [tlsa(CA, 2, 0, 1)]}
    )
    assert status.action == "relayed"
    assert f"Verified TLS connection established to {MX}[127.0.0.1]:{port}" in log


def test_dane_ta_defers_when_the_certificate_does_not_name_the_mx_host(tmp_path, dns_zone):
    ctx = server_context(make_cert("elsewhere.example", issuer=CA), tmp_path, chain=[CA])
    handler, status, _, _ = deliver_at(
        tmp_path, dns_zone, "dane", ctx, {"TLSA": [tlsa(CA, 2, 1, 1)]}
    )
    assert outcome(status) == ("delayed", "4.7.5", "Server certificate not verified")
    assert handler.messages == []


@pytest.mark.parametrize("level", ["dane", "dane-only"])
def test_server_that_stops_offering_starttls_defers(tmp_path, dns_zone, level):
    handler, status, _, _ = deliver_at(
        tmp_path, dns_zone, level, None, {"TLSA": [tlsa(LEAF, 3, 1, 1)]}
    )
    assert status.action == "delayed"
    assert status.dsn == "4.7.4"
    assert status.reason.startswith("TLS is required, but was not offered by host")
    assert handler.messages == []


def test_failed_handshake_with_usable_records_never_falls_back_to_plain_text(tmp_path, dns_zone):
    async def script(reader, writer, received):
        writer.write(b"220 raw.example ESMTP\r\n")
        await read_line(reader, received)
        writer.write(b"250-raw.example\r\n250 STARTTLS\r\n")
        if await read_line(reader, received) == b"STARTTLS\r\n":
            writer.write(b"220 go ahead\r\n")
            await writer.drain()
            await asyncio.sleep(0.2)  # the client is in its handshake by now
            writer.write(b"this is not a TLS server hello at all\r\n" * 4)
            await writer.drain()

    srv = ScriptServer(script)
    _, status, _, _ = deliver_at(
        tmp_path, dns_zone, "dane", None, {"TLSA": [tlsa(LEAF, 3, 1, 1)]}, peer=srv
    )
    assert srv.connections == 1
    assert b"MAIL FROM" not in b"".join(srv.received)
    assert (status.action, status.dsn) == ("delayed", "4.7.5")
    assert status.reason.startswith("Cannot start TLS: handshake failure")


# ---------------------------------------------------------------- no usable records


def test_no_tlsa_records_at_dane_is_opportunistic_tls(tmp_path, dns_zone, server_tls):
    handler, status, _, log = deliver_at(tmp_path, dns_zone, "dane", server_tls)
    assert status.action == "relayed"
    assert handler.tls == [True]
    assert "Verified TLS" not in log


def test_no_tlsa_records_at_dane_delivers_in_plain_text_without_starttls(tmp_path, dns_zone):
    handler, status, _, _ = deliver_at(tmp_path, dns_zone, "dane")
    assert status.action == "relayed"
    assert handler.tls == [False]


def test_no_tlsa_records_at_dane_only_defers(tmp_path, dns_zone, server_tls):
    handler, status, _, _ = deliver_at(tmp_path, dns_zone, "dane-only", server_tls)
    assert outcome(status) == ("delayed", "4.7.5", "no TLSA records found")
    assert handler.messages == []


def test_unusable_records_at_dane_require_tls_without_authentication(
    tmp_path, dns_zone, server_tls
):
    pkix_ee = {"TLSA": [tlsa(STRANGER, 1, 1, 1), tlsa(STRANGER, 0, 0, 1)]}
    handler, status, _, log = deliver_at(tmp_path, dns_zone, "dane", server_tls, pkix_ee)
    assert status.action == "relayed"
    assert handler.tls == [True]
    assert "Verified TLS" not in log
    # ... and TLS is mandatory: no plain text when STARTTLS is missing
    handler, status, _, _ = deliver_at(tmp_path / "b", dns_zone, "dane", None, pkix_ee)
    assert (status.action, status.dsn) == ("delayed", "4.7.4")
    assert handler.messages == []


def test_unusable_records_at_dane_only_defer(tmp_path, dns_zone, server_tls):
    handler, status, _, _ = deliver_at(
        tmp_path, dns_zone, "dane-only", server_tls, {"TLSA": [tlsa(LEAF, 1, 1, 1)]}
    )
    assert outcome(status) == ("delayed", "4.7.5", "TLSA records unusable")
    assert handler.messages == []


def test_failed_tlsa_lookup_defers(tmp_path, dns_zone, server_tls):
    handler, status, port, _ = deliver_at(tmp_path, dns_zone, "dane", server_tls, "SERVFAIL")
    assert outcome(status) == ("delayed", "4.7.5", f"TLSA lookup error for {MX}:{port}")
    assert handler.messages == []


# ---------------------------------------------------------------- what DNSSEC vouched for


def test_answers_without_the_ad_bit_make_dane_opportunistic(tmp_path, dns_zone, server_tls):
    dns_zone.secure = False
    handler, status, _, log = deliver_at(
        tmp_path, dns_zone, "dane", server_tls, {"TLSA": [tlsa(STRANGER, 3, 1, 1)]}
    )
    assert status.action == "relayed"  # the TLSA records were not trusted: "may"
    assert handler.tls == [True]
    assert "Verified TLS" not in log


def test_answers_without_the_ad_bit_defer_dane_only(tmp_path, dns_zone, server_tls):
    dns_zone.secure = False
    handler, status, _, _ = deliver_at(
        tmp_path, dns_zone, "dane-only", server_tls, {"TLSA": [tlsa(LEAF, 3, 1, 1)]}
    )
    assert outcome(status) == ("delayed", "4.7.5", "non DNSSEC destination")
    assert handler.messages == []


def test_insecure_tlsa_answer_is_not_used(tmp_path, dns_zone, server_tls):
    dns_zone.secure = {"example.com", MX}  # the MX and the A record validated, TLSA not
    handler, status, _, _ = deliver_at(
        tmp_path, dns_zone, "dane-only", server_tls, {"TLSA": [tlsa(LEAF, 3, 1, 1)]}
    )
    assert outcome(status) == ("delayed", "4.7.5", "no TLSA records found")


def test_host_address_in_an_unsigned_zone_gets_no_tlsa_lookup(tmp_path, dns_zone, server_tls):
    records = {"TLSA": [tlsa(STRANGER, 3, 1, 1)]}
    handler, status, port, _ = deliver_at(
        tmp_path,
        dns_zone,
        "dane",
        server_tls,
        records,
        secure=lambda port: {"example.com", tlsa_name(port)},  # not the A record
    )
    assert status.action == "relayed"
    assert (f"_{port}._tcp.{MX}", "TLSA") not in dns_zone.queries


def test_forced_tlsa_lookup_for_an_insecure_host_uses_validated_records(
    tmp_path, dns_zone, server_tls
):
    handler, status, port, _ = deliver_at(
        tmp_path,
        dns_zone,
        "dane",
        server_tls,
        {"TLSA": [tlsa(STRANGER, 3, 1, 1)]},
        "smtp_tls_force_insecure_host_tlsa_lookup = yes\n",
        secure=lambda port: {"example.com", tlsa_name(port)},  # not the A record
    )
    assert outcome(status) == ("delayed", "4.7.5", "Server certificate not verified")
    assert handler.messages == []


def test_dane_without_dnssec_lookups_is_may_with_one_warning(tmp_path, dns_zone, server_tls):
    dane._warned.clear()
    records = {"TLSA": [tlsa(STRANGER, 3, 1, 1)]}
    extra = "smtp_dns_support_level = enabled\n"
    handler, status, _, log = deliver_at(tmp_path, dns_zone, "dane", server_tls, records, extra)
    assert status.action == "relayed"
    assert handler.tls == [True]
    assert log.count("dane configured with dnssec lookups disabled") == 1
    assert dns_zone.dnssec_queries == []


def test_dane_only_without_dnssec_lookups_defers(tmp_path, dns_zone, server_tls):
    extra = "smtp_dns_support_level = enabled\n"
    records = {"TLSA": [tlsa(LEAF, 3, 1, 1)]}
    handler, status, _, _ = deliver_at(tmp_path, dns_zone, "dane-only", server_tls, records, extra)
    assert outcome(status) == ("delayed", "4.7.5", "client TLS configuration problem")
    assert handler.messages == []


# ---------------------------------------------------------------- LMTP


def test_lmtp_inet_destination_with_dane_only(tmp_path, dns_zone, server_tls):
    handler = TlsRecorder()
    port = free_port()
    ctl = TlsLmtpController(handler, hostname="127.0.0.1", port=port, tls_context=server_tls)
    ctl.start()
    dns_zone.update({f"_{port}._tcp.{MX}": {"TLSA": [tlsa(LEAF, 3, 0, 2)]}})
    cfg = load_config(
        str(
            make_instance(
                tmp_path,
                "lmtp_tls_security_level = dane-only\nlmtp_dns_support_level = dnssec\n",
            )
        )
    )
    msg = queue_message(cfg, ["u@example.com"])
    try:
        result = run_agent(deliver_lmtp, cfg, request_for(msg, f"inet:{MX}:{port}"), tmp_path)
    finally:
        ctl.stop()
    (status,) = result.statuses
    assert status.action == "delivered", status.reason
    assert (
        f"Verified TLS connection established to {MX}[127.0.0.1]:{port}"
        in (tmp_path / "maillog").read_text()
    )
    assert (MX, "MX") not in dns_zone.queries  # LMTP: no MX look-up, the name is given


def test_lmtp_unix_destination_cannot_use_dane(tmp_path):
    cfg = load_config(str(make_instance(tmp_path, "lmtp_tls_security_level = dane\n")))
    msg = queue_message(cfg, ["u@example.com"])
    result = run_agent(deliver_lmtp, cfg, request_for(msg, f"unix:{tmp_path}/nothing"), tmp_path)
    (status,) = result.statuses
    assert outcome(status) == ("delayed", "4.7.5", "client TLS configuration problem")
    assert (
        "security level is invalid for UNIX-domain delivery" in (tmp_path / "maillog").read_text()
    )


def test_tlsa_answers_are_kept_for_their_ttl(tmp_path, dns_zone):
    dns_zone.update({tlsa_name(2525): {"TLSA": [tlsa(LEAF, 3, 1, 1)]}})
    cfg = load_config(str(make_instance(tmp_path, "smtp_dns_support_level = dnssec\n")))
    target = Target(MX, "127.0.0.1", 2525, False, True, True)

    def policy():
        return asyncio.run(dane.dane_policy(target, "example.com", cfg, "dane-only"))

    first, second = policy(), policy()
    assert first.level == second.level == "dane"
    assert first.records == (parse_tlsa(tlsa(LEAF, 3, 1, 1)),)
    assert first.names == (MX, "example.com")
    assert dns_zone.queries.count((tlsa_name(2525), "TLSA")) == 1


# ---------------------------------------------------------------- smtp_tls_dane_insecure_mx_policy


def insecure_mx(port: int) -> set[str]:
    """The MX answer is not validated; the host's address and TLSA answers are."""
    return {MX, tlsa_name(port)}


def test_insecure_mx_at_dane_uses_the_hosts_records_but_logs_trusted(
    tmp_path, dns_zone, server_tls
):
    handler, status, port, log = deliver_at(
        tmp_path,
        dns_zone,
        "dane",
        server_tls,
        {"TLSA": [tlsa(LEAF, 3, 1, 1)]},
        secure=insecure_mx,
    )
    assert status.action == "relayed"
    assert f"Trusted TLS connection established to {MX}[127.0.0.1]:{port}: TLSv1" in log
    assert "Verified TLS" not in log


def test_insecure_mx_at_dane_still_refuses_a_certificate_that_does_not_match(
    tmp_path, dns_zone, server_tls
):
    handler, status, _, _ = deliver_at(
        tmp_path,
        dns_zone,
        "dane",
        server_tls,
        {"TLSA": [tlsa(STRANGER, 3, 1, 1)]},
        secure=insecure_mx,
    )
    assert outcome(status) == ("delayed", "4.7.5", "Server certificate not verified")
    assert handler.messages == []


def test_insecure_mx_policy_may_ignores_the_records(tmp_path, dns_zone, server_tls):
    handler, status, _, _ = deliver_at(
        tmp_path,
        dns_zone,
        "dane",
        server_tls,
        {"TLSA": [tlsa(STRANGER, 3, 1, 1)]},
        "smtp_tls_dane_insecure_mx_policy = may\n",
        secure=insecure_mx,
    )
    assert status.action == "relayed"


def test_insecure_mx_policy_encrypt_demands_tls_without_authentication(tmp_path, dns_zone):
    records = {"TLSA": [tlsa(STRANGER, 3, 1, 1)]}
    main = "smtp_tls_dane_insecure_mx_policy = encrypt\n"
    ctx = server_context(LEAF, tmp_path, chain=[CA])
    handler, status, _, log = deliver_at(
        tmp_path / "a", dns_zone, "dane", ctx, records, main, secure=insecure_mx
    )
    assert status.action == "relayed"
    assert handler.tls == [True]
    handler, status, _, _ = deliver_at(
        tmp_path / "b", dns_zone, "dane", None, records, main, secure=insecure_mx
    )
    assert (status.action, status.dsn) == ("delayed", "4.7.4")
    assert handler.messages == []


def test_insecure_mx_defers_dane_only_whatever_the_policy(tmp_path, dns_zone, server_tls):
    handler, status, _, _ = deliver_at(
        tmp_path,
        dns_zone,
        "dane-only",
        server_tls,
        {"TLSA": [tlsa(LEAF, 3, 1, 1)]},
        "smtp_tls_dane_insecure_mx_policy = dane\n",
        secure=insecure_mx,
    )
    assert outcome(status) == ("delayed", "4.7.5", "non DNSSEC destination")
