"""The client's TLS log lines, protocols, ciphers and certificates, against a real TLS server."""

from __future__ import annotations

import ssl

import pytest

from mta.smtp.tls_proto import protocol_range
from mta.smtp.tls_verify import expand_patterns, name_matches
from tests.support.dns_server import zone_fixtures
from tests.support.tls_certs import fingerprint
from tests.unit.smtp.tls_peers import TLS_ZONE, make_pki, send

dns_server, use_dns = zone_fixtures(TLS_ZONE)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def server_context(pki, *, tls12_only=False, cipher="", client_ca=False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert, key = pki["good"]
    ctx.load_cert_chain(str(cert), str(key))
    if tls12_only:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if cipher:
        ctx.set_ciphers(cipher)
    if client_ca:
        ctx.load_verify_locations(cafile=str(pki["ca"].cafile))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# ------------------------------------------------------------------ log lines


def test_loglevel_0_logs_no_handshake(tmp_path, pki):
    cf = "smtp_tls_security_level = may\nsmtp_tls_loglevel = 0\n"
    handler, status, maillog, _, _ = send(tmp_path, pki["good"], cf)
    assert status.action == "relayed" and handler.tls == [True]
    assert "TLS connection established" not in maillog


def test_loglevel_1_logs_protocol_and_cipher_in_postfixs_form(tmp_path, pki):
    ctx = server_context(pki, tls12_only=True, cipher="ECDHE-ECDSA-AES256-GCM-SHA384")
    handler, status, maillog, _, _ = send(tmp_path, ctx, "smtp_tls_security_level = encrypt\n")
    assert status.action == "relayed"
    assert "Untrusted TLS connection established to mx.example.test[127.0.0.1]:" in maillog
    assert ": TLSv1.2 with cipher ECDHE-ECDSA-AES256-GCM-SHA384 (256/256 bits)" in maillog


@pytest.mark.parametrize("note", ["yes", "no"])
def test_note_starttls_offer_names_the_host_when_tls_is_off(tmp_path, pki, note):
    cf = f"smtp_tls_security_level = none\nsmtp_tls_note_starttls_offer = {note}\n"
    handler, status, maillog, _, _ = send(tmp_path, pki["good"], cf)
    assert status.action == "relayed" and handler.tls == [False]
    assert ("Host offered STARTTLS: [mx.example.test]" in maillog) == (note == "yes")


def test_note_starttls_offer_is_quiet_when_tls_is_used(tmp_path, pki):
    cf = "smtp_tls_security_level = may\nsmtp_tls_note_starttls_offer = yes\n"
    _, status, maillog, _, _ = send(tmp_path, pki["good"], cf)
    assert "Host offered STARTTLS" not in maillog


# ------------------------------------------------------------------ protocols


def test_mandatory_protocols_refuse_an_older_server(tmp_path, pki):
    cf = "smtp_tls_security_level = encrypt\nsmtp_tls_mandatory_protocols = >=TLSv1.3\n"
    handler, status, _, _, _ = send(tmp_path, server_context(pki, tls12_only=True), cf)
    assert handler.messages == []
    assert (status.action, status.dsn) == ("delayed", "4.7.5")
    assert status.reason.startswith("Cannot start TLS: handshake failure with mx.example.test")


def test_opportunistic_protocols_fall_back_to_plain_text(tmp_path, pki):
    cf = "smtp_tls_security_level = may\nsmtp_tls_protocols = >=TLSv1.3\n"
    handler, status, _, _, _ = send(tmp_path, server_context(pki, tls12_only=True), cf)
    assert status.action == "relayed"
    assert handler.tls == [False]


@pytest.mark.parametrize("value", ["<=TLSv1.2", "!SSLv2, !SSLv3, !TLSv1.3", ">=0x0303 <=0303"])
def test_an_upper_bound_caps_the_version(tmp_path, pki, value):
    cf = f"smtp_tls_security_level = encrypt\nsmtp_tls_mandatory_protocols = {value}\n"
    handler, status, _, _, _ = send(tmp_path, pki["good"], cf)
    assert status.action == "relayed"
    assert handler.versions == ["TLSv1.2"]


def test_mandatory_protocols_do_not_apply_at_may(tmp_path, pki):
    cf = "smtp_tls_security_level = may\nsmtp_tls_mandatory_protocols = >=TLSv1.3\n"
    handler, status, _, _, _ = send(tmp_path, server_context(pki, tls12_only=True), cf)
    assert handler.versions == ["TLSv1.2"]


@pytest.mark.parametrize(
    "value,expected",
    [
        ("", (None, None)),
        (">=TLSv1", (ssl.TLSVersion.TLSv1, None)),
        (">=TLSv1.2, <=TLSv1.3", (ssl.TLSVersion.TLSv1_2, None)),
        ("!SSLv2, !SSLv3", (ssl.TLSVersion.TLSv1, None)),
        ("!SSLv2:!SSLv3:!TLSv1.1", (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1)),
        ("TLSv1.2 TLSv1.3", (ssl.TLSVersion.TLSv1_2, None)),
        (">=0x0301, <=0305", (ssl.TLSVersion.TLSv1, None)),
        ("<=303", (None, ssl.TLSVersion.TLSv1_2)),
        ("TLSv1.3", (ssl.TLSVersion.TLSv1_3, None)),
    ],
)
def test_protocol_range(value, expected):
    assert protocol_range(value) == expected


@pytest.mark.parametrize(
    "value", [">=TLSv1.4", "SSLv3", "!TLSv1 TLSv1", "bogus", ">=0305", "tlsv1.3"]
)
def test_protocol_range_refuses_what_it_cannot_honour(value):
    with pytest.raises(ValueError):
        protocol_range(value)


# ------------------------------------------------------------------ ciphers

TLS12_CIPHER = "ECDHE-ECDSA-AES128-GCM-SHA256"


@pytest.mark.parametrize(
    "setting,level,delivered",
    [
        ("", "encrypt", True),
        ("smtp_tls_mandatory_exclude_ciphers = AES128", "encrypt", False),
        ("smtp_tls_exclude_ciphers = AES128", "encrypt", False),
        ("smtp_tls_exclude_ciphers = AES128", "fingerprint", False),
        ("smtp_tls_mandatory_exclude_ciphers = AES128", "may", True),
        ("smtp_tls_mandatory_ciphers = high", "encrypt", True),
    ],
)
def test_cipher_exclusions_and_grades(tmp_path, pki, setting, level, delivered):
    ctx = server_context(pki, tls12_only=True, cipher=TLS12_CIPHER)
    fp = fingerprint(pki["good"][0])
    cf = (
        f"smtp_tls_security_level = {level}\nsmtp_tls_fingerprint_cert_match = {fp}\n"
        + setting
        + "\n"
    )
    handler, status, _, _, _ = send(tmp_path, ctx, cf)
    if delivered:
        assert status.action == "relayed"
        assert handler.tls == [True]
    else:
        assert handler.messages == []
        assert (status.action, status.dsn) == ("delayed", "4.7.5")
        assert status.reason.startswith("Cannot start TLS: handshake failure")


# ------------------------------------------------------------------ client certificates


def test_client_certificate_from_cert_and_key_files(tmp_path, pki):
    cert, key = pki["client"]
    cf = (
        f"smtp_tls_security_level = encrypt\nsmtp_tls_cert_file = {cert}\n"
        f"smtp_tls_key_file = {key}\n"
    )
    handler, status, _, _, _ = send(tmp_path, server_context(pki, client_ca=True), cf)
    assert status.action == "relayed"
    (peer,) = handler.client_certs
    assert (("commonName", "client.example.test"),) in peer["subject"]


def test_client_certificate_from_the_ecdsa_pair(tmp_path, pki):
    cert, key = pki["client"]
    cf = (
        f"smtp_tls_security_level = encrypt\nsmtp_tls_eccert_file = {cert}\n"
        f"smtp_tls_eckey_file = {key}\n"
    )
    handler, status, _, _, _ = send(tmp_path, server_context(pki, client_ca=True), cf)
    assert status.action == "relayed"
    assert (("commonName", "client.example.test"),) in handler.client_certs[0]["subject"]


def test_client_certificate_from_a_chain_file(tmp_path, pki):
    cert, key = pki["client"]
    chain = tmp_path / "chain.pem"
    chain.write_bytes(key.read_bytes() + cert.read_bytes())
    cf = f"smtp_tls_security_level = encrypt\nsmtp_tls_chain_files = {chain}\n"
    handler, status, _, _, _ = send(tmp_path, server_context(pki, client_ca=True), cf)
    assert status.action == "relayed"
    assert (("commonName", "client.example.test"),) in handler.client_certs[0]["subject"]


def test_without_a_client_certificate_a_server_that_demands_one_gets_no_mail(tmp_path, pki):
    handler, status, _, _, _ = send(
        tmp_path, server_context(pki, client_ca=True), "smtp_tls_security_level = encrypt\n"
    )
    assert handler.messages == []
    assert status.action == "delayed"


def test_an_unusable_client_certificate_defers_mandatory_tls(tmp_path, pki):
    cf = f"smtp_tls_security_level = encrypt\nsmtp_tls_cert_file = {tmp_path / 'missing.pem'}\n"
    handler, status, maillog, _, _ = send(tmp_path, pki["good"], cf)
    assert handler.messages == []
    assert (status.action, status.dsn, status.reason) == (
        "delayed",
        "4.7.5",
        "TLS is required, but our TLS engine is unavailable",
    )
    assert "warning: TLS not available: smtp_tls_cert_file: " in maillog


def test_an_unusable_client_certificate_means_plain_text_at_may(tmp_path, pki):
    cf = f"smtp_tls_security_level = may\nsmtp_tls_cert_file = {tmp_path / 'missing.pem'}\n"
    handler, status, maillog, _, _ = send(tmp_path, pki["good"], cf)
    assert status.action == "relayed" and handler.tls == [False]
    assert "warning: TLS not available: smtp_tls_cert_file: " in maillog


def test_a_missing_ca_file_defers_verify(tmp_path, pki):
    cf = f"smtp_tls_security_level = verify\nsmtp_tls_CAfile = {tmp_path / 'none.pem'}\n"
    handler, status, _, _, _ = send(tmp_path, pki["good"], cf)
    assert handler.messages == []
    assert status.reason == "TLS is required, but our TLS engine is unavailable"


# ------------------------------------------------------------------ name matching


@pytest.mark.parametrize(
    "cert_name,pattern,multi,expected",
    [
        ("mx.example.com", "mx.example.com", True, True),
        ("mx.example.com", "example.com", True, False),
        ("mx.example.com", ".example.com", True, True),
        ("example.com", ".example.com", True, False),
        ("a.b.example.com", ".example.com", True, True),
        ("*.example.com", "mx.example.com", True, True),
        ("*.example.com", "example.com", True, False),
        ("*.example.com", "a.b.example.com", True, True),
        ("*.example.com", "a.b.example.com", False, False),
        ("*.example.com", "mx.example.com", False, True),
        ("f*.example.com", "foo.example.com", True, False),
        ("mx.*.com", "mx.example.com", True, False),
        ("*.com", "example.com", True, False),
        ("*.example.com", ".example.com", True, True),
    ],
)
def test_name_matches(cert_name, pattern, multi, expected):
    assert name_matches(cert_name, pattern, multi) is expected


def test_strategies_expand_to_the_names_they_stand_for():
    got = expand_patterns(
        ("hostname", "NEXTHOP", "dot-nexthop", ".Other.Example", "x.example"),
        "mx.example.net",
        "example.com",
    )
    assert got == ["mx.example.net", "example.com", ".example.com", ".other.example", "x.example"]


def test_the_tls_library_settings_apply_to_the_client_too(tmp_path):
    from mta.common.tls_options import OP_TLSEXT_PADDING
    from mta.config import load_config
    from mta.smtp.tls_policy import ClientTls
    from mta.smtp.tls_verify import client_context
    from tests.support.instance import make_instance

    def context(extra: str):
        main_cf = "smtp_tls_security_level = encrypt\n" + extra
        cfg = load_config(str(make_instance(tmp_path / str(len(extra)), main_cf)))
        tls = ClientTls.of(cfg)
        return client_context(tls, tls.default_policy())

    plain = context("")
    tuned = context("tls_ssl_options = NO_TICKET\ntls_disable_workarounds = TLSEXT_PADDING\n")
    assert not plain.options & ssl.OP_NO_TICKET and plain.options & OP_TLSEXT_PADDING
    assert tuned.options & ssl.OP_NO_TICKET
    assert not tuned.options & OP_TLSEXT_PADDING
