"""The client's SASL options by TLS state (smtp_sasl_tls_verified_security_options) and
smtp_sasl_type, against aiosmtpd as an authenticated smarthost with a test CA's certificate."""

from __future__ import annotations

import pytest

from mta.config import Config
from mta.config.validate import config_problems
from mta.smtp import deliver
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.tls_certs import TestCA, fingerprint
from tests.unit.smtp.test_sasl_client import USER, sasl_cfg, smarthost


@pytest.fixture(scope="module")
def server_cert(tmp_path_factory):
    ca = TestCA(tmp_path_factory.mktemp("ca"), "SASL Test CA")
    return ca.issue("relay", ["relay.example.test"])


# PLAIN only over a verified session: the unverified options forbid it
STRICT = (
    "smtp_sasl_security_options = noplaintext, noanonymous\n"
    "smtp_sasl_tls_security_options = noplaintext, noanonymous\n"
    "smtp_sasl_tls_verified_security_options = noanonymous\n"
)


def send(tmp_path, server_cert, extra):
    ctl, handler = smarthost(TestCA.context(*server_cert))
    cfg = sasl_cfg(tmp_path, ctl.port, extra)
    msg = queue_message(cfg, ["u@example.com"])
    try:
        result = run_agent(deliver, cfg, request_for(msg, "[127.0.0.1]"), tmp_path)
    finally:
        ctl.stop()
    (status,) = result.statuses
    return handler, status


def test_verified_options_apply_when_the_certificate_is_verified(tmp_path, server_cert):
    level = (
        "smtp_tls_security_level = fingerprint\n"
        f"smtp_tls_fingerprint_cert_match = {fingerprint(server_cert[0])}\n"
    )
    handler, status = send(tmp_path, server_cert, STRICT + level)
    assert status.action == "relayed"
    assert handler.logins == [("PLAIN", USER, True, True)]


def test_unverified_tls_keeps_the_tls_options(tmp_path, server_cert):
    handler, status = send(tmp_path, server_cert, STRICT + "smtp_tls_security_level = encrypt\n")
    assert handler.logins == [] and handler.messages == []
    assert (status.action, status.dsn) == ("delayed", "4.7.0")
    assert status.reason.endswith("no mechanism available")


def test_verified_options_can_forbid_what_the_tls_options_allow(tmp_path, server_cert):
    extra = (
        "smtp_sasl_tls_security_options = noanonymous\n"
        "smtp_sasl_tls_verified_security_options = noplaintext\n"
        "smtp_tls_security_level = fingerprint\n"
        f"smtp_tls_fingerprint_cert_match = {fingerprint(server_cert[0])}\n"
    )
    handler, status = send(tmp_path, server_cert, extra)
    assert handler.logins == []
    assert (status.action, status.dsn) == ("delayed", "4.7.0")


def test_an_unknown_verified_option_defers_naming_the_parameter(tmp_path, server_cert):
    extra = "smtp_sasl_tls_verified_security_options = noplain\n"
    handler, status = send(tmp_path, server_cert, extra)
    assert handler.logins == []
    assert (status.action, status.dsn) == ("delayed", "4.3.5")
    assert "smtp_sasl_tls_verified_security_options" in status.reason


def test_sasl_type_cyrus_is_the_built_in_client(tmp_path, server_cert):
    extra = "smtp_sasl_type = cyrus\nsmtp_tls_security_level = encrypt\n"
    extra += "smtp_sasl_tls_security_options = noanonymous\n"
    handler, status = send(tmp_path, server_cert, extra)
    assert status.action == "relayed"
    assert handler.logins == [("PLAIN", USER, True, True)]


def test_another_sasl_type_defers_as_a_configuration_error(tmp_path, server_cert):
    extra = "smtp_sasl_type = dovecot\nsmtp_tls_security_level = encrypt\n"
    extra += "smtp_sasl_tls_security_options = noanonymous\n"
    handler, status = send(tmp_path, server_cert, extra)
    assert handler.logins == [] and handler.messages == []
    assert (status.action, status.dsn) == ("delayed", "4.3.5")
    assert "unsupported smtp_sasl_type value: dovecot" in status.reason


def test_check_rejects_another_sasl_type_naming_file_and_line(tmp_path):
    (tmp_path / "main.cf").write_text("myhostname = mx.example\nlmtp_sasl_type = dovecot\n")
    (tmp_path / "master.cf").write_text("relay unix - - n - - smtp\n")
    got = [str(p) for p in config_problems(Config(str(tmp_path))) if p.fatal]
    assert got == [
        f'{tmp_path / "main.cf"}, line 2: parameter lmtp_sasl_type: bad value "dovecot" '
        "(expected cyrus)"
    ]
