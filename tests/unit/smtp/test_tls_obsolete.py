"""Postfix's pre-2.3 client TLS switches (smtp_use_tls, smtp_enforce_tls,
smtp_tls_enforce_peername) when smtp_tls_security_level is empty, against a real TLS server."""

from __future__ import annotations

import pytest

from tests.support.dns_server import zone_fixtures
from tests.unit.smtp.tls_peers import TLS_ZONE, make_pki, send

dns_server, use_dns = zone_fixtures(TLS_ZONE)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_use_tls_is_may(tmp_path, pki):
    handler, status, maillog, _, _ = send(tmp_path, pki["untrusted"], "smtp_use_tls = yes\n")
    assert status.action == "relayed" and handler.tls == [True]
    assert "Untrusted TLS connection established" in maillog


def test_use_tls_falls_back_to_plain_text_like_may(tmp_path):
    handler, status, _, _, _ = send(tmp_path, None, "smtp_use_tls = yes\n")
    assert status.action == "relayed" and handler.tls == [False]


def test_enforce_tls_verifies_the_server_name_by_default(tmp_path, pki):
    cf = f"smtp_enforce_tls = yes\nsmtp_tls_CAfile = {pki['ca'].cafile}\n"
    handler, status, maillog, _, _ = send(tmp_path, pki["good"], cf)
    assert status.action == "relayed" and handler.tls == [True]
    assert "Verified TLS connection established to mx.example.test" in maillog


@pytest.mark.parametrize(
    "cert,reason",
    [
        ("wrong_name", "Server certificate not verified"),
        ("untrusted", "Server certificate not trusted"),
    ],
)
def test_enforce_tls_defers_a_certificate_that_fails_verify(tmp_path, pki, cert, reason):
    cf = f"smtp_enforce_tls = yes\nsmtp_tls_CAfile = {pki['ca'].cafile}\n"
    handler, status, _, _, _ = send(tmp_path, pki[cert], cf)
    assert handler.messages == []
    assert (status.action, status.dsn, status.reason) == ("delayed", "4.7.5", reason)


def test_enforce_tls_without_enforce_peername_is_encrypt(tmp_path, pki):
    cf = "smtp_enforce_tls = yes\nsmtp_tls_enforce_peername = no\n"
    handler, status, maillog, _, _ = send(tmp_path, pki["wrong_name"], cf)
    assert status.action == "relayed" and handler.tls == [True]
    assert "Untrusted TLS connection established" in maillog


def test_enforce_tls_never_sends_plain_text(tmp_path):
    cf = "smtp_enforce_tls = yes\nsmtp_tls_enforce_peername = no\n"
    handler, status, _, _, _ = send(tmp_path, None, cf)
    assert handler.messages == []
    assert (status.action, status.dsn) == ("delayed", "4.7.4")
    assert status.reason.startswith("TLS is required, but was not offered by host")


def test_a_security_level_overrides_the_old_switches(tmp_path, pki):
    cf = "smtp_tls_security_level = may\nsmtp_enforce_tls = yes\n"
    handler, status, _, _, _ = send(tmp_path, pki["wrong_name"], cf)
    assert status.action == "relayed" and handler.tls == [True]


def test_lmtp_has_its_own_switches(tmp_path):
    from mta.config import load_config
    from mta.smtp.tls_policy import ClientTls
    from tests.support.instance import make_instance

    cfg = load_config(str(make_instance(tmp_path, "lmtp_enforce_tls = yes\nsmtp_use_tls = yes\n")))
    assert ClientTls.of(cfg, lmtp=True).level == "verify"
    assert ClientTls.of(cfg, lmtp=False).level == "may"
