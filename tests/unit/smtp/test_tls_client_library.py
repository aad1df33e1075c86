"""The client's key exchange groups (tls_eecdh_auto_curves) and the verification depth
of the server's chain (smtp_tls_scert_verifydepth), against a real TLS server on
127.0.0.1 whose certificate hangs from a root CA through an intermediate."""

from __future__ import annotations

import ssl

import pytest

from mta.common import tls_libssl
from mta.common.tls_session import context_digest
from mta.config import load_config
from mta.smtp.tls_policy import ClientTls
from mta.smtp.tls_verify import client_context
from tests.support.certs import make_ca, make_cert, server_context
from tests.support.dns_server import zone_fixtures
from tests.support.instance import make_instance
from tests.unit.smtp.tls_peers import TLS_ZONE, make_pki, send

dns_server, use_dns = zone_fixtures(TLS_ZONE)

pytestmark = pytest.mark.skipif(
    tls_libssl.unavailable() != "", reason="libssl cannot be reached through ctypes here"
)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """(server context: leaf + intermediate, root CA file): a chain of depth 2."""
    d = tmp_path_factory.mktemp("chain")
    root = make_ca("Root CA")
    inter = make_ca("Intermediate CA", issuer=root)
    leaf = make_cert("mx.example.test", issuer=inter)
    (d / "root.pem").write_bytes(root.pem)
    return server_context(leaf, d, chain=[inter]), str(d / "root.pem")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def depth_cf(cafile: str, level: str, depth: int) -> str:
    return (
        f"smtp_tls_security_level = {level}\nsmtp_tls_CAfile = {cafile}\n"
        f"smtp_tls_scert_verifydepth = {depth}\n"
    )


# ------------------------------------------------------------------ verify depth


@pytest.mark.parametrize("level", ["verify", "secure"])
def test_a_chain_longer_than_the_depth_is_not_trusted(tmp_path, chain, level):
    ctx, cafile = chain
    handler, status, maillog, _, _ = send(tmp_path, ctx, depth_cf(cafile, level, 1))
    assert handler.messages == []
    assert (status.action, status.dsn, status.reason) == (
        "delayed",
        "4.7.5",
        "Server certificate not trusted",
    )
    assert "certificate verification failed for mx.example.test[127.0.0.1]" in maillog


@pytest.mark.parametrize("level", ["verify", "secure"])
@pytest.mark.parametrize("depth", [2, 9])
def test_a_chain_within_the_depth_delivers(tmp_path, chain, level, depth):
    ctx, cafile = chain
    handler, status, maillog, _, _ = send(tmp_path, ctx, depth_cf(cafile, level, depth))
    assert status.action == "relayed" and handler.tls == [True]
    assert "Verified TLS connection established to mx.example.test[127.0.0.1]" in maillog


def test_a_depth_of_0_defers_instead_of_verifying_less(tmp_path, chain):
    ctx, cafile = chain
    handler, status, maillog, _, _ = send(tmp_path, ctx, depth_cf(cafile, "verify", 0))
    assert handler.messages == []
    assert (status.action, status.dsn) == ("delayed", "4.7.5")
    assert "smtp_tls_scert_verifydepth: depth 0 cannot be enforced" in maillog


def contexts(tmp_path, main_cf: str, lmtp: bool = False) -> ssl.SSLContext:
    cfg = load_config(str(make_instance(tmp_path / str(abs(hash(main_cf))), main_cf)))
    tls = ClientTls.of(cfg, lmtp)
    return client_context(tls, tls.default_policy())


def test_lmtp_has_its_own_depth(tmp_path):
    cf = "lmtp_tls_security_level = verify\nlmtp_tls_scert_verifydepth = 3\n"
    assert tls_libssl.verify_depth(contexts(tmp_path, cf, lmtp=True)) == 2  # OpenSSL: CAs between
    smtp = contexts(tmp_path, cf.replace("lmtp_", "smtp_").replace("= 3", "= 9"))
    assert tls_libssl.verify_depth(smtp) == 8


# ------------------------------------------------------------------ curves


def server_with_curve(pki, curve: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert, key = pki["good"]
    ctx.load_cert_chain(str(cert), str(key))
    ctx.set_ecdh_curve(curve)
    return ctx


def test_the_client_offers_only_the_auto_curves(tmp_path, pki):
    cf = "smtp_tls_security_level = encrypt\ntls_eecdh_auto_curves = X25519 prime256v1\n"
    handler, status, _, _, _ = send(tmp_path, server_with_curve(pki, "secp384r1"), cf)
    assert handler.messages == [] and status.action == "delayed"


def test_unknown_curves_are_skipped(tmp_path, pki):
    cf = "smtp_tls_security_level = encrypt\ntls_eecdh_auto_curves = nosuchcurve secp384r1\n"
    handler, status, _, _, _ = send(tmp_path, server_with_curve(pki, "secp384r1"), cf)
    assert status.action == "relayed" and handler.tls == [True]


def test_no_usable_curve_defers_mail_that_needs_tls(tmp_path, pki):
    cf = "smtp_tls_security_level = encrypt\ntls_eecdh_auto_curves = nosuchcurve\n"
    handler, status, maillog, _, _ = send(tmp_path, pki["good"], cf)
    assert handler.messages == []
    assert (status.action, status.dsn) == ("delayed", "4.7.5")
    assert "tls_eecdh_auto_curves: no curve OpenSSL can use: nosuchcurve" in maillog


# ------------------------------------------------------------------ session cache


def test_sessions_of_another_depth_or_curve_list_are_not_offered(tmp_path):
    base = "smtp_tls_security_level = verify\n"
    digests = {
        context_digest(contexts(tmp_path, base + extra))
        for extra in (
            "",
            "smtp_tls_scert_verifydepth = 2\n",
            "tls_eecdh_auto_curves = prime256v1\n",
        )
    }
    assert len(digests) == 3
