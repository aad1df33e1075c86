"""smtp_tls_policy_maps: the TLS policy by next hop, over main.cf, against a real TLS server."""

from __future__ import annotations

import ssl

import pytest
from aiosmtpd.lmtp import LMTP

from mta.config import load_config
from mta.smtp import deliver_lmtp
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.dns_server import zone_fixtures
from tests.support.instance import make_instance
from tests.support.tls_certs import fingerprint, pubkey_fingerprint
from tests.unit.smtp.peers import LmtpController, LmtpHandler, free_port
from tests.unit.smtp.tls_peers import TLS_ZONE, make_pki, send

dns_server, use_dns = zone_fixtures(TLS_ZONE)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def policy_cf(tmp_path, pki, table: str, main: str = "") -> str:
    path = tmp_path / "tls_policy"
    path.write_text(table)
    return f"smtp_tls_policy_maps = texthash:{path}\nsmtp_tls_CAfile = {pki['ca'].cafile}\n" + main


def tls12_server(pki, cipher: str = "") -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*map(str, pki["good"]))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if cipher:
        ctx.set_ciphers(cipher)
    return ctx


def test_a_table_level_overrides_the_main_cf_level(tmp_path, pki):
    cf = policy_cf(tmp_path, pki, "example.test verify\n", "smtp_tls_security_level = may\n")
    handler, status, _, _, _ = send(tmp_path, pki["wrong_name"], cf)
    assert handler.messages == []
    assert (status.action, status.dsn, status.reason) == (
        "delayed",
        "4.7.5",
        "Server certificate not verified",
    )


def test_a_table_may_relaxes_a_main_cf_verify_for_that_destination(tmp_path, pki):
    cf = policy_cf(tmp_path, pki, "example.test may\n", "smtp_tls_security_level = verify\n")
    handler, status, _, _, _ = send(tmp_path, pki["wrong_name"], cf)
    assert status.action == "relayed" and handler.tls == [True]


def test_another_destination_keeps_the_main_cf_level(tmp_path, pki):
    cf = policy_cf(tmp_path, pki, "other.test verify\n", "smtp_tls_security_level = may\n")
    handler, status, _, _, _ = send(tmp_path, pki["wrong_name"], cf)
    assert status.action == "relayed"


def test_a_parent_domain_entry_covers_sub_domains(tmp_path, pki):
    table = "hosted.test may\n.hosted.test secure\n"
    handler, status, _, _, _ = send(
        tmp_path, pki["good"], policy_cf(tmp_path, pki, table), "sub.hosted.test"
    )
    # secure wants a name under sub.hosted.test; the MX host's certificate has none
    assert handler.messages == [] and status.reason == "Server certificate not verified"


def test_match_attribute_with_colon_separated_names(tmp_path, pki):
    table = ".hosted.test secure match=sub.hosted.test:.example.test\n"
    handler, status, _, _, _ = send(
        tmp_path, pki["good"], policy_cf(tmp_path, pki, table), "sub.hosted.test"
    )
    assert status.action == "relayed"


def test_a_bracketed_next_hop_with_port_is_looked_up_verbatim(tmp_path, pki):
    cert = pki["untrusted"][0]
    port = free_port()
    table = (
        f"[mx.example.test]:{port} fingerprint\n"
        f"    match=00:11:22|{fingerprint(cert)}\n    match={pubkey_fingerprint(pki['good'][0])}\n"
    )
    cf = policy_cf(tmp_path, pki, table, "smtp_tls_security_level = may\n")
    handler, status, maillog, _, _ = send_on_port(tmp_path, pki["untrusted"], cf, port)
    assert status.action == "relayed"
    assert "Verified TLS connection established" in maillog
    # the second match= value (a public-key fingerprint) counts too
    tmp2 = tmp_path / "second"
    tmp2.mkdir()
    handler, status, _, _, _ = send_on_port(tmp2, pki["good"], cf, port)
    assert status.action == "relayed"
    # and any other certificate is refused
    tmp3 = tmp_path / "third"
    tmp3.mkdir()
    handler, status, _, _, _ = send_on_port(tmp3, pki["wildcard"], cf, port)
    assert status.reason == "Server certificate not verified"


def send_on_port(tmp_path, server, cf, port):
    """send() to a sink on a known port, next hop [mx.example.test]:PORT."""
    return send(tmp_path, server, cf, f"[mx.example.test]:{port}", "example.test", port)


@pytest.mark.parametrize(
    "entry,why",
    [
        ("example.test verfy", 'invalid TLS security level "verfy"'),
        ("example.test verify mtach=hostname", 'invalid attribute "mtach=hostname"'),
        ("example.test verify ciphers=strong", 'invalid TLS cipher grade "strong"'),
        ("example.test encrypt protocols=>=TLSv1.9", "unknown TLS protocol version: TLSv1.9"),
    ],
)
def test_an_entry_it_cannot_use_defers_and_warns(tmp_path, pki, entry, why):
    cf = policy_cf(tmp_path, pki, entry + "\n", "smtp_tls_security_level = may\n")
    handler, status, maillog, _, _ = send(tmp_path, pki["good"], cf)
    assert handler.messages == []  # never sent under a weaker policy
    assert (status.action, status.dsn) == ("delayed", "4.7.5")
    assert status.reason.startswith("client TLS configuration problem: ")
    assert why in status.reason
    warned = 'warning: smtp_tls_policy_maps, next-hop destination "example.test": '
    assert any(warned in line and why in line for line in maillog.splitlines())


def test_protocols_attribute(tmp_path, pki):
    cf = policy_cf(tmp_path, pki, "example.test encrypt protocols=>=TLSv1.3\n")
    handler, status, _, _, _ = send(tmp_path, tls12_server(pki), cf)
    assert handler.messages == []
    assert status.reason.startswith("Cannot start TLS: handshake failure")


def test_protocols_attribute_with_colon_separated_exclusions(tmp_path, pki):
    cf = policy_cf(tmp_path, pki, "example.test encrypt protocols=!SSLv2:!SSLv3:!TLSv1.3\n")
    handler, status, _, _, _ = send(tmp_path, pki["good"], cf)
    assert handler.versions == ["TLSv1.2"]


def test_exclude_attribute_preempts_main_cf_exclusions(tmp_path, pki):
    server = tls12_server(pki, "ECDHE-ECDSA-AES128-GCM-SHA256")
    main = "smtp_tls_mandatory_exclude_ciphers = AES128\n"
    cf = policy_cf(tmp_path, pki, "example.test encrypt exclude=3DES\n", main)
    handler, status, _, _, _ = send(tmp_path, server, cf)
    assert status.action == "relayed"
    tmp2 = tmp_path / "2"
    tmp2.mkdir()
    cf = policy_cf(tmp2, pki, "example.test encrypt exclude=3DES:AES128\n")
    handler, status, _, _, _ = send(tmp2, server, cf)
    assert handler.messages == []


def test_tafile_attribute_replaces_the_ca_file(tmp_path, pki):
    rogue = pki["rogue"].cafile
    cf = policy_cf(tmp_path, pki, f"example.test verify tafile={rogue}\n")
    handler, status, _, _, _ = send(tmp_path, pki["untrusted"], cf)
    assert status.action == "relayed"
    tmp2 = tmp_path / "2"
    tmp2.mkdir()
    cf = policy_cf(tmp2, pki, f"example.test verify tafile={rogue}\n")
    handler, status, _, _, _ = send(tmp2, pki["good"], cf)  # signed by the CA file's CA only
    assert status.reason == "Server certificate not trusted"


def test_lmtp_reads_its_own_table_without_the_inet_prefix(tmp_path, pki):
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(*map(str, pki["wrong_name"]))

    class TlsLmtp(LmtpController):
        def factory(self):
            return LMTP(self.handler, tls_context=server)

    handler = LmtpHandler()
    ctl = TlsLmtp(handler, hostname="127.0.0.1", port=free_port())
    ctl.start()
    try:
        table = tmp_path / "lmtp_policy"
        table.write_text(f"mx.example.test:{ctl.port} verify\n")
        cf = (
            f"lmtp_tls_policy_maps = texthash:{table}\nlmtp_tls_CAfile = {pki['ca'].cafile}\n"
            "lmtp_tls_security_level = may\nlmtp_tls_loglevel = 1\n"
        )
        cfg = load_config(str(make_instance(tmp_path, cf)))
        msg = queue_message(cfg, ["u@example.test"])
        req = request_for(msg, f"inet:mx.example.test:{ctl.port}")
        result = run_agent(deliver_lmtp, cfg, req, tmp_path)
    finally:
        ctl.stop()
    assert handler.messages == []
    (status,) = result.statuses
    assert (status.action, status.reason) == ("delayed", "Server certificate not verified")


def test_a_fallback_relay_is_looked_up_as_its_own_next_hop(tmp_path, pki):
    port = free_port()
    closed = free_port()  # the next hop's own server is down
    table = f"[mx.example.test]:{port} verify\n[127.0.0.1]:{closed} may\n"
    cf = policy_cf(
        tmp_path,
        pki,
        table,
        f"smtp_tls_security_level = may\nsmtp_fallback_relay = [mx.example.test]:{port}\n",
    )
    handler, status, _, _, _ = send(
        tmp_path, pki["wrong_name"], cf, f"[127.0.0.1]:{closed}", "example.test", port
    )
    assert handler.messages == []
    assert (status.action, status.reason) == ("delayed", "Server certificate not verified")


def test_a_table_that_fails_for_now_defers_and_warns(tmp_path, pki):
    table = tmp_path / "tls_policy"
    table.write_text("example.test may\n")
    # proxymap is not running: every lookup fails for now
    cf = f"smtp_tls_policy_maps = proxy:texthash:{table}\nsmtp_tls_security_level = may\n"
    handler, status, maillog, _, _ = send(tmp_path, pki["good"], cf)
    assert handler.messages == []
    assert (status.action, status.dsn) == ("delayed", "4.7.5")
    assert status.reason.startswith(
        'client TLS configuration problem: smtp_tls_policy_maps: next-hop destination "example.test": '
        "lookup error: "
    )
    assert "warning: smtp_tls_policy_maps: next-hop destination" in maillog


@pytest.mark.parametrize(
    "attribute,expected",
    [
        ("", None),  # as in Postfix: no SNI unless asked for
        ("servername=hostname", "mx.example.test"),
        ("servername=nexthop", "example.test"),
        ("servername=sni.example.test", "sni.example.test"),
    ],
)
def test_servername_attribute_chooses_the_sni_name(tmp_path, pki, attribute, expected):
    seen = []
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(*map(str, pki["good"]))
    server.sni_callback = lambda sslobj, name, ctx: seen.append(name)
    cf = policy_cf(tmp_path, pki, f"example.test encrypt {attribute}\n")
    handler, status, _, _, _ = send(tmp_path, server, cf)
    assert status.action == "relayed"
    assert seen == [expected]


def sni_server(pki, seen: list) -> ssl.SSLContext:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(*map(str, pki["good"]))
    server.sni_callback = lambda sslobj, name, ctx: seen.append(name)
    return server


@pytest.mark.parametrize(
    "setting,expected",
    [
        ("", None),
        ("hostname", "mx.example.test"),
        ("nexthop", "example.test"),
        ("relay.example.net", "relay.example.net"),
    ],
)
def test_smtp_tls_servername_chooses_the_sni_name(tmp_path, pki, setting, expected):
    seen = []
    cf = f"smtp_tls_security_level = encrypt\nsmtp_tls_servername = {setting}\n"
    _, status, _, _, _ = send(tmp_path, sni_server(pki, seen), cf)
    assert status.action == "relayed"
    assert seen == [expected]


def test_the_table_servername_wins_over_smtp_tls_servername(tmp_path, pki):
    seen = []
    cf = policy_cf(
        tmp_path,
        pki,
        "example.test encrypt servername=nexthop\n",
        "smtp_tls_servername = hostname\n",
    )
    _, status, _, _, _ = send(tmp_path, sni_server(pki, seen), cf)
    assert status.action == "relayed" and seen == ["example.test"]


def test_a_table_entry_without_servername_takes_smtp_tls_servername(tmp_path, pki):
    seen = []
    cf = policy_cf(tmp_path, pki, "example.test encrypt\n", "smtp_tls_servername = hostname\n")
    _, status, _, _, _ = send(tmp_path, sni_server(pki, seen), cf)
    assert status.action == "relayed" and seen == ["mx.example.test"]


@pytest.mark.parametrize("bad", ["bad_name.example", "-x.example", "ünï.example"])
def test_an_invalid_sni_name_defers_and_is_warned_at_check(tmp_path, pki, bad):
    seen = []
    cf = f"smtp_tls_security_level = may\nsmtp_tls_servername = {bad}\n"
    handler, status, _, cfg, _ = send(tmp_path, sni_server(pki, seen), cf)
    assert handler.messages == [] and seen == []
    assert (status.action, status.dsn) == ("delayed", "4.7.5")
    assert status.reason == (
        f"client TLS configuration problem: smtp_tls_servername: invalid SNI name: {bad}"
    )
    from mta.config.validate import config_problems

    got = [str(p) for p in config_problems(cfg) if "smtp_tls_servername" in str(p)]
    assert len(got) == 1 and "main.cf, line" in got[0] and f"invalid SNI name: {bad}" in got[0]


def test_an_invalid_table_servername_defers(tmp_path, pki):
    cf = policy_cf(tmp_path, pki, "example.test encrypt servername=a..b\n")
    handler, status, _, _, _ = send(tmp_path, sni_server(pki, []), cf)
    assert handler.messages == []
    assert (status.action, status.dsn) == ("delayed", "4.7.5")
    assert 'invalid servername "a..b"' in status.reason


def test_lmtp_reads_lmtp_tls_servername(tmp_path):
    from mta.smtp.tls_policy import ClientTls

    cfg = load_config(
        str(make_instance(tmp_path, "lmtp_tls_servername = nexthop\nsmtp_tls_servername = x\n"))
    )
    assert ClientTls.of(cfg, lmtp=True).servername == "nexthop"
    assert ClientTls.of(cfg, lmtp=False).servername == "x"
