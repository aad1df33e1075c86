"""common.tls_session: which client contexts may share kept TLS sessions."""

from __future__ import annotations

import ssl

from mta.common.tls_session import ClientSessions
from mta.config import load_config
from mta.smtp.tls_policy import ClientTls
from mta.smtp.tls_verify import client_context
from tests.support.instance import make_instance
from tests.support.tls_certs import TestCA


def client_tls(tmp_path, name: str, extra: str = "") -> ClientTls:
    cfg = load_config(
        str(make_instance(tmp_path / name, "smtp_tls_security_level = encrypt\n" + extra))
    )
    return ClientTls.of(cfg)


def test_a_context_presenting_a_client_certificate_never_stands_for_one_without(tmp_path):
    cert, key = TestCA(tmp_path / "ca", "Test CA").issue("client", ["client.test"], client=True)
    plain = client_tls(tmp_path, "plain")
    with_cert = client_tls(
        tmp_path, "cert", f"smtp_tls_cert_file = {cert}\nsmtp_tls_key_file = {key}\n"
    )
    sessions = ClientSessions(3600)
    first = sessions.context(client_context(plain, plain.default_policy()))
    second = sessions.context(client_context(with_cert, with_cert.default_policy()))
    assert second is not first  # a session kept for one is never offered by the other
    again = sessions.context(client_context(client_tls(tmp_path, "again"), plain.default_policy()))
    assert again is first  # the same settings in a new configuration: the kept context
    assert isinstance(first, ssl.SSLContext)
