"""The client's verified TLS levels (fingerprint, verify, secure) against a real TLS server.

The server is aiosmtpd offering STARTTLS with certificates a test CA made;
the MX names come from a loopback DNS server, so that "hostname" (the MX
host) and "nexthop" (the recipient domain) differ as they do on the
Internet."""

from __future__ import annotations

import subprocess

import pytest

from mta.bounce import logfile
from tests.support.dns_server import zone_fixtures
from tests.support.tls_certs import fingerprint, pubkey_fingerprint
from tests.unit.smtp.tls_peers import TLS_ZONE, make_pki, send

ZONE = TLS_ZONE
dns_server, use_dns = zone_fixtures(ZONE)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def ca_cf(pki, level: str, extra: str = "") -> str:
    return f"smtp_tls_security_level = {level}\nsmtp_tls_CAfile = {pki['ca'].cafile}\n" + extra


def assert_deferred(handler, status, reason: str, dsn: str = "4.7.5") -> None:
    assert handler.messages == []  # nothing went to the unverified server
    assert (status.action, status.dsn, status.reason) == ("delayed", dsn, reason)


# ------------------------------------------------------------------ verify


def test_verify_delivers_to_the_mx_host_named_in_the_certificate(tmp_path, pki):
    handler, status, maillog, _, _ = send(tmp_path, pki["good"], ca_cf(pki, "verify"))
    assert status.action == "relayed"
    assert handler.tls == [True]
    assert "Verified TLS connection established to mx.example.test[127.0.0.1]:" in maillog
    assert " with cipher " in maillog


def test_verify_accepts_a_wildcard_in_the_leftmost_label(tmp_path, pki):
    handler, status, _, _, _ = send(tmp_path, pki["wildcard"], ca_cf(pki, "verify"))
    assert status.action == "relayed"


def test_verify_uses_the_common_name_when_there_is_no_subject_alt_name(tmp_path, pki):
    handler, status, _, _, _ = send(tmp_path, pki["cn_only"], ca_cf(pki, "verify"))
    assert status.action == "relayed"


def test_verify_defers_a_certificate_for_another_name(tmp_path, pki):
    handler, status, maillog, cfg, msg = send(tmp_path, pki["wrong_name"], ca_cf(pki, "verify"))
    assert_deferred(handler, status, "Server certificate not verified")
    # the chain is good: the handshake is logged as trusted, not verified
    assert "Trusted TLS connection established to mx.example.test[127.0.0.1]:" in maillog
    defer_log = logfile.read(cfg.get("queue_directory"), "defer", msg.queue_id)
    assert [(s.dsn, s.reason) for s in defer_log] == [("4.7.5", "Server certificate not verified")]


@pytest.mark.parametrize("cert", ["untrusted", "expired"])
def test_verify_defers_a_certificate_the_cas_do_not_vouch_for(tmp_path, pki, cert):
    handler, status, maillog, _, _ = send(tmp_path, pki[cert], ca_cf(pki, "verify"))
    assert_deferred(handler, status, "Server certificate not trusted")
    assert "certificate verification failed for mx.example.test[127.0.0.1]:" in maillog
    assert "TLS connection established" not in maillog


def test_verify_without_any_ca_trusts_nobody(tmp_path, pki):
    handler, status, _, _, _ = send(tmp_path, pki["good"], "smtp_tls_security_level = verify\n")
    assert_deferred(handler, status, "Server certificate not trusted")


def test_verify_trusts_a_ca_directory(tmp_path, pki):
    capath = tmp_path / "certs"
    capath.mkdir()
    (capath / "ca.pem").write_bytes(pki["ca"].cafile.read_bytes())
    subprocess.run(["openssl", "rehash", str(capath)], check=True, capture_output=True)
    cf = f"smtp_tls_security_level = verify\nsmtp_tls_CApath = {capath}\n"
    handler, status, _, _, _ = send(tmp_path, pki["good"], cf)
    assert status.action == "relayed"


def test_verify_never_falls_back_to_plain_text(tmp_path, pki):
    handler, status, _, _, _ = send(tmp_path, None, ca_cf(pki, "verify"))
    assert_deferred(
        handler,
        status,
        "TLS is required, but was not offered by host mx.example.test[127.0.0.1]",
        "4.7.4",
    )


def test_verify_match_list_names_other_acceptable_names(tmp_path, pki):
    cf = ca_cf(pki, "verify", "smtp_tls_verify_cert_match = hostname, mail.other.example\n")
    handler, status, _, _, _ = send(tmp_path, pki["wrong_name"], cf)
    assert status.action == "relayed"


# ------------------------------------------------------------------ secure


def test_secure_matches_the_next_hop_domain_not_the_mx_name(tmp_path, pki):
    # the certificate names mx.example.test: a sub-domain of example.test (dot-nexthop)
    handler, status, maillog, _, _ = send(tmp_path, pki["good"], ca_cf(pki, "secure"))
    assert status.action == "relayed"
    assert "Verified TLS connection established" in maillog


def test_secure_does_not_trust_the_mx_record_for_another_domain(tmp_path, pki):
    # hosted.test's MX host is mx.example.test: fine for verify (hostname) ...
    handler, status, _, _, _ = send(tmp_path, pki["good"], ca_cf(pki, "verify"), "hosted.test")
    assert status.action == "relayed"
    # ... but secure wants a name under hosted.test, which DNS cannot forge
    handler, status, _, _, _ = send(tmp_path, pki["good"], ca_cf(pki, "secure"), "hosted.test")
    assert_deferred(handler, status, "Server certificate not verified")


def test_secure_with_a_bracketed_next_hop_verifies_that_name(tmp_path, pki):
    handler, status, _, _, _ = send(
        tmp_path, pki["good"], ca_cf(pki, "secure"), "[mx.example.test]"
    )
    assert status.action == "relayed"


@pytest.mark.parametrize("cert", ["untrusted", "expired", "wrong_name"])
def test_secure_defers_a_bad_certificate(tmp_path, pki, cert):
    handler, status, _, _, _ = send(tmp_path, pki[cert], ca_cf(pki, "secure"))
    assert status.action == "delayed" and status.dsn == "4.7.5"
    assert handler.messages == []


# ------------------------------------------------------------------ fingerprint


@pytest.mark.parametrize("kind", ["certificate", "public key"])
def test_fingerprint_delivers_to_the_listed_certificate(tmp_path, pki, kind):
    cert = pki["untrusted"][0]  # no CA involved at this level
    fp = fingerprint(cert) if kind == "certificate" else pubkey_fingerprint(cert)
    cf = f"smtp_tls_security_level = fingerprint\nsmtp_tls_fingerprint_cert_match = {fp}\n"
    handler, status, maillog, _, _ = send(tmp_path, pki["untrusted"], cf)
    assert status.action == "relayed"
    assert handler.tls == [True]
    assert "Verified TLS connection established" in maillog


def test_fingerprint_colons_and_case_do_not_matter(tmp_path, pki):
    fp = fingerprint(pki["good"][0]).replace(":", "").lower()
    cf = f"smtp_tls_security_level = fingerprint\nsmtp_tls_fingerprint_cert_match = 00:11, {fp}\n"
    handler, status, _, _, _ = send(tmp_path, pki["good"], cf)
    assert status.action == "relayed"


def test_fingerprint_with_another_digest(tmp_path, pki):
    fp = fingerprint(pki["good"][0], "sha1")
    cf = (
        "smtp_tls_security_level = fingerprint\nsmtp_tls_fingerprint_digest = sha1\n"
        f"smtp_tls_fingerprint_cert_match = {fp}\n"
    )
    handler, status, _, _, _ = send(tmp_path, pki["good"], cf)
    assert status.action == "relayed"


def test_fingerprint_defers_any_other_certificate(tmp_path, pki):
    fp = fingerprint(pki["good"][0])  # the right name and CA, but not the pinned certificate
    cf = f"smtp_tls_security_level = fingerprint\nsmtp_tls_fingerprint_cert_match = {fp}\n"
    handler, status, maillog, _, _ = send(tmp_path, pki["wildcard"], cf)
    assert_deferred(handler, status, "Server certificate not verified")
    assert "Untrusted TLS connection established" in maillog


def test_fingerprint_never_falls_back_to_plain_text(tmp_path, pki):
    fp = fingerprint(pki["good"][0])
    cf = f"smtp_tls_security_level = fingerprint\nsmtp_tls_fingerprint_cert_match = {fp}\n"
    handler, status, _, _, _ = send(tmp_path, None, cf)
    assert handler.messages == []
    assert (status.action, status.dsn) == ("delayed", "4.7.4")


# ------------------------------------------------------------------ may and encrypt


@pytest.mark.parametrize("cert", ["untrusted", "expired", "wrong_name"])
def test_may_delivers_over_tls_whatever_the_certificate(tmp_path, pki, cert):
    handler, status, maillog, _, _ = send(tmp_path, pki[cert], ca_cf(pki, "may"))
    assert status.action == "relayed"
    assert handler.tls == [True]
    assert "Untrusted TLS connection established to mx.example.test[127.0.0.1]:" in maillog


def test_may_delivers_in_plain_text_when_starttls_is_gone(tmp_path, pki):
    handler, status, _, _, _ = send(tmp_path, None, ca_cf(pki, "may"))
    assert status.action == "relayed"
    assert handler.tls == [False]


def test_fingerprint_with_an_unknown_digest_defers_without_connecting(tmp_path, pki):
    fp = fingerprint(pki["good"][0])
    cf = (
        "smtp_tls_security_level = fingerprint\nsmtp_tls_fingerprint_digest = sha3000\n"
        f"smtp_tls_fingerprint_cert_match = {fp}\n"
    )
    handler, status, maillog, _, _ = send(tmp_path, pki["good"], cf)
    assert_deferred(handler, status, "TLS is required, but our TLS engine is unavailable")
    assert "smtp_tls_fingerprint_digest: unknown digest: sha3000" in maillog
