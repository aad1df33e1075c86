"""smtp_tls_wrappermode (and lmtp_): TLS from the first byte (SMTPS, port 465), against
aiosmtpd serving TLS from the start and a raw server that speaks plain SMTP."""

from __future__ import annotations

import ssl

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP

from mta.config import load_config
from mta.config.validate import config_problems
from mta.smtp import deliver, deliver_lmtp
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.dns_server import zone_fixtures
from tests.support.instance import make_instance
from tests.support.tls_certs import TestCA
from tests.unit.smtp.peers import LmtpHandler, ScriptServer, SinkHandler, free_port, read_line
from tests.unit.smtp.tls_peers import TLS_ZONE, make_pki

dns_server, use_dns = zone_fixtures(TLS_ZONE)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


class WrappedRecorder(SinkHandler):
    """Notes, per message, the TLS version of the connection it came over (None: plain)."""

    def __init__(self):
        super().__init__()
        self.versions: list[str | None] = []
        self.commands: list[str] = []

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.commands.append("EHLO")
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):
        ssl_object = server.transport.get_extra_info("ssl_object")
        self.versions.append(ssl_object.version() if ssl_object else None)
        return await super().handle_DATA(server, session, envelope)


def smtps(cert, *, tls12_only=False, handler=None, lmtp=False):
    ctx = TestCA.context(*cert)
    if tls12_only:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    handler = handler or WrappedRecorder()

    class Ctl(Controller):
        def factory(self):
            return LMTP(self.handler) if lmtp else super().factory()

    ctl = Ctl(handler, hostname="127.0.0.1", port=free_port(), ssl_context=ctx)
    ctl.start()
    return ctl, handler


def deliver_to(tmp_path, port, main_cf, nexthop="example.test", fn=deliver, prefix="smtp"):
    cfg = load_config(
        str(
            make_instance(
                tmp_path,
                f"{prefix}_tcp_port = {port}\nsmtp_helo_timeout = 5s\n"
                "smtp_starttls_timeout = 5s\nsmtp_tls_loglevel = 1\nlmtp_tls_loglevel = 1\n"
                + main_cf,
            )
        )
    )
    msg = queue_message(cfg, ["u@example.test"])
    result = run_agent(fn, cfg, request_for(msg, nexthop), tmp_path)
    (status,) = result.statuses
    return status, (tmp_path / "maillog").read_text()


WRAP = "smtp_tls_wrappermode = yes\n"


def test_encrypt_delivers_over_tls_from_the_first_byte(tmp_path, pki):
    ctl, handler = smtps(pki["good"])
    try:
        status, maillog = deliver_to(
            tmp_path, ctl.port, WRAP + "smtp_tls_security_level = encrypt\n"
        )
    finally:
        ctl.stop()
    assert status.action == "relayed" and handler.commands == ["EHLO"]
    assert handler.versions[0] is not None and handler.versions[0].startswith("TLSv1")
    assert "Untrusted TLS connection established to mx.example.test[127.0.0.1]:" in maillog


def test_verify_checks_the_certificate_of_a_wrapped_server(tmp_path, pki):
    ctl, handler = smtps(pki["good"])
    cf = WRAP + f"smtp_tls_security_level = verify\nsmtp_tls_CAfile = {pki['ca'].cafile}\n"
    try:
        status, maillog = deliver_to(tmp_path, ctl.port, cf)
    finally:
        ctl.stop()
    assert status.action == "relayed" and len(handler.versions) == 1
    assert "Verified TLS connection established to mx.example.test[127.0.0.1]:" in maillog


@pytest.mark.parametrize(
    "cert,reason",
    [
        ("untrusted", "Server certificate not trusted"),
        ("wrong_name", "Server certificate not verified"),
    ],
)
def test_verify_defers_a_bad_certificate_before_any_smtp(tmp_path, pki, cert, reason):
    ctl, handler = smtps(pki[cert])
    cf = WRAP + f"smtp_tls_security_level = verify\nsmtp_tls_CAfile = {pki['ca'].cafile}\n"
    try:
        status, _ = deliver_to(tmp_path, ctl.port, cf)
    finally:
        ctl.stop()
    assert (status.action, status.dsn, status.reason) == ("delayed", "4.7.5", reason)
    assert handler.messages == [] and handler.commands == []  # not even EHLO


def plain_smtp_server():
    """A server that greets in plain text and would take mail: it records every line."""

    async def script(reader, writer, received):
        writer.write(b"220 plain.example ESMTP\r\n")
        while True:
            line = await read_line(reader, received)
            writer.write(b"354 go\r\n" if line.startswith(b"DATA") else b"250 ok\r\n")

    return ScriptServer(script)


@pytest.mark.parametrize("level", ["", "none", "may", "encrypt"])
def test_a_plain_text_server_never_gets_plain_text(tmp_path, level):
    # wrapper mode below encrypt is used as encrypt: never a plain-text retry
    srv = plain_smtp_server()
    try:
        status, _ = deliver_to(
            tmp_path, srv.port, WRAP + f"smtp_tls_security_level = {level}\n", "[127.0.0.1]"
        )
    finally:
        srv.stop()
    assert (status.action, status.dsn) == ("delayed", "4.7.5")
    assert status.reason.startswith("Cannot start TLS: handshake failure with 127.0.0.1[127.0.0.1]")
    # what reached the server is a TLS ClientHello, never an SMTP command
    assert not any(line.startswith((b"EHLO", b"HELO", b"MAIL")) for line in srv.received)


def test_may_under_wrapper_mode_uses_the_mandatory_protocols(tmp_path, pki):
    # "may" is raised to "encrypt": smtp_tls_mandatory_protocols applies, not smtp_tls_protocols
    ctl, handler = smtps(pki["good"], tls12_only=True)
    cf = WRAP + "smtp_tls_security_level = may\nsmtp_tls_mandatory_protocols = >=TLSv1.3\n"
    try:
        status, _ = deliver_to(tmp_path, ctl.port, cf)
    finally:
        ctl.stop()
    assert (status.action, status.dsn) == ("delayed", "4.7.5")
    assert handler.messages == []


def test_a_policy_table_level_may_is_raised_too(tmp_path, pki):
    (tmp_path / "tls_policy").write_text("example.test may\n")
    ctl, handler = smtps(pki["good"], tls12_only=True)
    cf = (
        WRAP + f"smtp_tls_policy_maps = texthash:{tmp_path / 'tls_policy'}\n"
        "smtp_tls_mandatory_protocols = >=TLSv1.3\n"
    )
    try:
        status, _ = deliver_to(tmp_path, ctl.port, cf)
    finally:
        ctl.stop()
    assert (status.action, status.dsn) == ("delayed", "4.7.5")
    assert handler.messages == []


def test_without_wrapper_mode_the_client_speaks_plain_smtp_first(tmp_path):
    # the control: the same plain server takes the mail when wrapper mode is off
    srv = plain_smtp_server()
    try:
        status, _ = deliver_to(tmp_path, srv.port, "smtp_tls_security_level = may\n", "[127.0.0.1]")
    finally:
        srv.stop()
    assert status.action == "relayed"
    assert srv.received[0].startswith(b"EHLO ")


def test_lmtp_reads_lmtp_tls_wrappermode(tmp_path, pki):
    ctl, handler = smtps(pki["good"], handler=LmtpHandler(), lmtp=True)
    try:
        status, maillog = deliver_to(
            tmp_path,
            ctl.port,
            "lmtp_tls_wrappermode = yes\nlmtp_tls_security_level = encrypt\n",
            "inet:127.0.0.1",
            deliver_lmtp,
            "lmtp",
        )
    finally:
        ctl.stop()
    assert status.action == "delivered" and len(handler.messages) == 1
    assert "Untrusted TLS connection established to 127.0.0.1[127.0.0.1]:" in maillog


# ------------------------------------------------------------------ mta check


def problems(tmp_path, main_cf):
    (tmp_path / "main.cf").write_text(main_cf)
    (tmp_path / "master.cf").write_text("relay unix - - n - - smtp\n")
    from mta.config import Config

    return [str(p) for p in config_problems(Config(str(tmp_path)))], tmp_path / "main.cf"


def test_check_warns_when_wrapper_mode_raises_the_level(tmp_path):
    got, main = problems(tmp_path, "smtp_tls_wrappermode = yes\nsmtp_tls_security_level = may\n")
    assert got == [
        f"{main}, line 2: parameter smtp_tls_security_level: smtp_tls_wrappermode requires "
        "smtp_tls_security_level = encrypt or stronger; using encrypt"
    ]


def test_check_is_quiet_with_encrypt(tmp_path):
    got, _ = problems(tmp_path, "smtp_tls_wrappermode = yes\nsmtp_tls_security_level = encrypt\n")
    assert got == []


def test_check_names_a_bad_wrapper_mode_value(tmp_path):
    got, main = problems(tmp_path, "lmtp_tls_wrappermode = sure\n")
    assert got == [
        f'{main}, line 1: parameter lmtp_tls_wrappermode: bad boolean value "sure" '
        "(expected yes or no)"
    ]


def test_check_is_quiet_when_the_old_enforce_tls_gives_the_level(tmp_path):
    got, _ = problems(tmp_path, "smtp_tls_wrappermode = yes\nsmtp_enforce_tls = yes\n")
    assert got == []
