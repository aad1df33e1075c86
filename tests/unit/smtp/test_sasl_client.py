"""SMTP AUTH in the smtp client (mta/smtp/sasl.py) against aiosmtpd as an authenticated smarthost."""

import base64
import ssl
import subprocess

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import AuthResult, LoginPassword

from mta.bounce import logfile
from mta.config import load_config
from mta.queue.queue_file import read_queue_file
from mta.smtp import deliver, deliver_lmtp
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.instance import make_instance
from tests.unit.smtp.peers import (
    AgentServer,
    LmtpHandler,
    ScriptServer,
    SinkHandler,
    free_port,
    read_line,
    sink,
)

USER, PASSWORD = "relayuser", "s3cret-pw"


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        + ["-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=sink"],
        check=True,
        capture_output=True,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


class AuthSink(SinkHandler):
    """A sink that records each login (mechanism, user, TLS) and whether mail came authenticated."""

    def __init__(self):
        super().__init__()
        self.logins = []
        self.authed = []

    def authenticator(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(),
            auth_data.password.decode(),
        ) == (USER, PASSWORD)
        login = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else ""
        self.logins.append((mechanism, login, session.ssl is not None, ok))
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, server, session, envelope):
        self.authed.append(bool(session.authenticated))
        return await super().handle_DATA(server, session, envelope)


def smarthost(tls_context=None, **kw):
    handler = AuthSink()
    kw.setdefault("auth_require_tls", tls_context is not None)
    ctl, _ = sink(handler, tls_context=tls_context, authenticator=handler.authenticator, **kw)
    return ctl, handler


def sasl_cfg(tmp_path, port, extra="", passwd=f"[127.0.0.1] {USER}:{PASSWORD}\n"):
    table = tmp_path / "sasl_passwd"
    table.write_text(passwd)
    return load_config(
        str(
            make_instance(
                tmp_path,
                f"smtp_tcp_port = {port}\nsmtp_helo_timeout = 5s\nsmtp_starttls_timeout = 5s\n"
                f"smtp_sasl_auth_enable = yes\nsmtp_sasl_password_maps = texthash:{table}\n"
                + extra,
            )
        )
    )


def send(tmp_path, ctl, extra="", **kw):
    cfg = sasl_cfg(tmp_path, ctl.port, extra, **kw)
    msg = queue_message(cfg, ["u@example.com"])
    try:
        result = run_agent(deliver, cfg, request_for(msg, "[127.0.0.1]"), tmp_path)
    finally:
        ctl.stop()
    return cfg, msg, result


def deferred(cfg, msg):
    return [
        (s.dsn, s.reason) for s in logfile.read(cfg.get("queue_directory"), "defer", msg.queue_id)
    ]


RELAY_OPTS = "smtp_tls_security_level = encrypt\nsmtp_sasl_security_options = noanonymous\n"


def test_plain_over_starttls_delivers_as_the_right_user(tmp_path, server_tls):
    ctl, handler = smarthost(server_tls, auth_required=True)
    cfg, msg, result = send(tmp_path, ctl, RELAY_OPTS)
    assert [s.action for s in result.statuses] == ["relayed"]
    assert handler.logins == [("PLAIN", USER, True, True)]
    assert handler.authed == [True]
    assert PASSWORD not in (tmp_path / "maillog").read_text()


def test_login_when_the_filter_asks_for_it(tmp_path, server_tls):
    ctl, handler = smarthost(server_tls)
    _, _, result = send(tmp_path, ctl, RELAY_OPTS + "smtp_sasl_mechanism_filter = login\n")
    assert [s.action for s in result.statuses] == ["relayed"]
    assert handler.logins == [("LOGIN", USER, True, True)]


def test_lookup_by_the_remote_host_name_too(tmp_path, server_tls):
    ctl, handler = smarthost(server_tls)
    _, _, result = send(tmp_path, ctl, RELAY_OPTS, passwd=f"127.0.0.1 {USER}:{PASSWORD}\n")
    assert [s.action for s in result.statuses] == ["relayed"]
    assert handler.logins == [("PLAIN", USER, True, True)]


def test_wrong_password_defers_never_bounces(tmp_path, server_tls):
    ctl, handler = smarthost(server_tls, auth_required=True)
    cfg, msg, result = send(tmp_path, ctl, RELAY_OPTS, passwd=f"[127.0.0.1] {USER}:wrong-pw\n")
    assert handler.messages == []
    assert handler.logins == [("PLAIN", USER, True, False)]
    (st,) = result.statuses
    assert (st.action, st.dsn) == ("delayed", "4.7.8")
    reason = "SASL authentication failed; server 127.0.0.1[127.0.0.1] said: 535 5.7.8"
    assert st.reason.startswith(reason)
    ((dsn, logged),) = deferred(cfg, msg)
    assert dsn == "4.7.8" and logged.startswith(reason)
    assert not any(r.done for r in read_queue_file(msg.path).recipients)
    assert "wrong-pw" not in (tmp_path / "maillog").read_text()


def test_soft_bounce_off_lets_a_5xx_auth_reply_bounce(tmp_path, server_tls):
    ctl, _ = smarthost(server_tls)
    extra = RELAY_OPTS + "smtp_sasl_auth_soft_bounce = no\n"
    _, _, result = send(tmp_path, ctl, extra, passwd=f"[127.0.0.1] {USER}:wrong-pw\n")
    assert [(s.action, s.dsn) for s in result.statuses] == [("failed", "5.7.8")]


def test_no_credentials_delivers_without_auth(tmp_path, server_tls):
    ctl, handler = smarthost(server_tls)
    _, _, result = send(tmp_path, ctl, RELAY_OPTS, passwd="[other.example] x:y\n")
    assert [s.action for s in result.statuses] == ["relayed"]
    assert handler.logins == []
    assert handler.authed == [False]


def test_no_credentials_and_a_server_that_requires_auth_its_530_decides(tmp_path, server_tls):
    ctl, handler = smarthost(server_tls, auth_required=True)
    _, _, result = send(tmp_path, ctl, RELAY_OPTS, passwd="[other.example] x:y\n")
    assert handler.logins == [] and handler.messages == []
    (st,) = result.statuses
    assert (st.action, st.dsn) == ("failed", "5.7.0")
    assert "530" in st.reason and "(in reply to MAIL FROM command)" in st.reason


def test_default_options_never_send_a_password_in_plain_text(tmp_path):
    # a server offering AUTH PLAIN LOGIN without TLS; smtp_sasl_security_options left at
    # Postfix's default (noplaintext): no mechanism is usable, the mail waits
    ctl, handler = smarthost(None)
    cfg, msg, result = send(tmp_path, ctl, "smtp_sasl_tls_security_options = noanonymous\n")
    assert handler.logins == [] and handler.messages == []
    (st,) = result.statuses
    assert (st.action, st.dsn) == ("delayed", "4.7.0")
    assert st.reason == (
        "SASL authentication failed; cannot authenticate to server 127.0.0.1[127.0.0.1]: "
        "no mechanism available"
    )
    assert deferred(cfg, msg) == [("4.7.0", st.reason)]


def test_tls_security_options_apply_over_tls(tmp_path, server_tls):
    # the same options as above, but the session is encrypted: the TLS options allow PLAIN
    ctl, handler = smarthost(server_tls)
    extra = "smtp_tls_security_level = may\nsmtp_sasl_tls_security_options = noanonymous\n"
    _, _, result = send(tmp_path, ctl, extra)
    assert [s.action for s in result.statuses] == ["relayed"]
    assert handler.logins == [("PLAIN", USER, True, True)]


def test_plaintext_allowed_by_the_options_is_used_without_tls(tmp_path):
    ctl, handler = smarthost(None)
    _, _, result = send(tmp_path, ctl, "smtp_sasl_security_options = noanonymous\n")
    assert [s.action for s in result.statuses] == ["relayed"]
    assert handler.logins == [("PLAIN", USER, False, True)]


def test_unknown_security_option_defers_as_a_configuration_error(tmp_path, server_tls):
    ctl, handler = smarthost(server_tls)
    _, _, result = send(tmp_path, ctl, "smtp_sasl_security_options = noplaintxt\n")
    assert handler.logins == [] and handler.messages == []
    (st,) = result.statuses
    assert (st.action, st.dsn) == ("delayed", "4.3.5")
    assert "smtp_sasl_security_options" in st.reason and "noplaintxt" in st.reason


def test_an_authenticated_session_is_not_cached(tmp_path, server_tls):
    ctl, handler = smarthost(server_tls)
    cfg = sasl_cfg(
        tmp_path, ctl.port, RELAY_OPTS + "smtp_connection_cache_destinations = [127.0.0.1]\n"
    )
    agent = AgentServer(deliver, cfg, tmp_path)
    try:
        for i in range(2):
            msg = queue_message(cfg, [f"u{i}@example.com"])
            agent.send(request_for(msg, "[127.0.0.1]"))
    finally:
        agent.stop()
        ctl.stop()
    from mta.smtp import session_cache

    assert session_cache.count() == 0
    assert [ok for *_, ok in handler.logins] == [True, True]  # one login per message
    assert len(handler.messages) == 2


class LmtpAuthSink(LmtpHandler):
    def __init__(self):
        super().__init__()
        self.auth = AuthSink()


def lmtp_send(tmp_path, main_cf):
    handler = LmtpAuthSink()

    class Ctl(Controller):
        def factory(self):
            return LMTP(
                self.handler, authenticator=handler.auth.authenticator, auth_require_tls=False
            )

    ctl = Ctl(handler, hostname="127.0.0.1", port=free_port())
    ctl.start()
    table = tmp_path / "sasl_passwd"
    table.write_text(f"127.0.0.1 {USER}:{PASSWORD}\n")
    try:
        cfg = load_config(
            str(make_instance(tmp_path, f"lmtp_tcp_port = {ctl.port}\n" + main_cf.format(table)))
        )
        msg = queue_message(cfg, ["u@example.com"])
        result = run_agent(deliver_lmtp, cfg, request_for(msg, "inet:127.0.0.1"), tmp_path)
    finally:
        ctl.stop()
    return handler, result


def test_lmtp_reads_its_own_lmtp_sasl_parameters(tmp_path):
    main_cf = (
        "lmtp_sasl_auth_enable = yes\nlmtp_sasl_password_maps = texthash:{}\n"
        "lmtp_sasl_security_options = noanonymous\n"
    )
    handler, result = lmtp_send(tmp_path, main_cf)
    assert [s.action for s in result.statuses] == ["delivered"]
    assert handler.auth.logins == [("PLAIN", USER, False, True)]


def test_lmtp_ignores_the_smtp_sasl_parameters(tmp_path):
    main_cf = (
        "smtp_sasl_auth_enable = yes\nsmtp_sasl_password_maps = texthash:{}\n"
        "smtp_sasl_security_options = noanonymous\n"
    )
    handler, result = lmtp_send(tmp_path, main_cf)
    assert [s.action for s in result.statuses] == ["delivered"]
    assert handler.auth.logins == []


async def take_the_message(reader, writer, received) -> None:
    """The server's side of a transaction after AUTH: 250 to each command until DATA,
    then the content, 250 and QUIT."""
    line = await read_line(reader, received)
    while not line.startswith(b"DATA"):
        writer.write(b"250 ok\r\n")
        line = await read_line(reader, received)
    writer.write(b"354 go\r\n")
    while (await read_line(reader, received)) != b".\r\n":
        pass
    writer.write(b"250 2.0.0 queued\r\n")
    await read_line(reader, received)


def deliver_through(script, tmp_path):
    """One message to a scripted server with noanonymous: (the server, the agent's result)."""
    srv = ScriptServer(script)
    try:
        cfg = sasl_cfg(tmp_path, srv.port, "smtp_sasl_security_options = noanonymous\n")
        msg = queue_message(cfg, ["u@example.com"])
        result = run_agent(deliver, cfg, request_for(msg, "[127.0.0.1]"), tmp_path)
    finally:
        srv.stop()
    return srv, result


def test_login_exchange_on_the_wire_with_the_old_auth_equals_keyword(tmp_path):
    async def script(reader, writer, received):
        writer.write(b"220 old.example ESMTP\r\n")
        await read_line(reader, received)
        writer.write(b"250-old.example\r\n250 AUTH=LOGIN\r\n")
        for challenge in (b"VXNlcm5hbWU6", b"UGFzc3dvcmQ6"):
            await read_line(reader, received)
            writer.write(b"334 " + challenge + b"\r\n")
        await read_line(reader, received)
        writer.write(b"235 2.7.0 ok\r\n")
        await take_the_message(reader, writer, received)

    srv, result = deliver_through(script, tmp_path)
    assert [s.action for s in result.statuses] == ["relayed"]
    assert srv.received[1:5] == [
        b"AUTH LOGIN\r\n",
        base64.b64encode(USER.encode()) + b"\r\n",
        base64.b64encode(PASSWORD.encode()) + b"\r\n",
        b"MAIL FROM:<a@example.org>\r\n",
    ]


def test_an_unreadable_password_table_defers_naming_the_parameter(tmp_path, server_tls):
    ctl, handler = smarthost(server_tls)
    cfg = sasl_cfg(tmp_path, ctl.port, RELAY_OPTS)
    (tmp_path / "sasl_passwd").unlink()
    msg = queue_message(cfg, ["u@example.com"])
    try:
        result = run_agent(deliver, cfg, request_for(msg, "[127.0.0.1]"), tmp_path)
    finally:
        ctl.stop()
    assert handler.logins == [] and handler.messages == []
    (st,) = result.statuses
    assert (st.action, st.dsn) == ("delayed", "4.3.5")
    assert st.reason.startswith("smtp_sasl_password_maps: ")
    assert "sasl_passwd" in st.reason


@pytest.mark.parametrize(
    "auth_reply,action", [(b"250 2.0.0 fine", "relayed"), (b"454 4.7.0 later", "delayed")]
)
def test_any_2xx_reply_ends_auth_well_and_a_4xx_defers(tmp_path, auth_reply, action):
    async def script(reader, writer, received):
        writer.write(b"220 any.example ESMTP\r\n")
        await read_line(reader, received)
        writer.write(b"250-any.example\r\n250 AUTH PLAIN\r\n")
        await read_line(reader, received)
        writer.write(auth_reply + b"\r\n")
        await take_the_message(reader, writer, received)

    srv, result = deliver_through(script, tmp_path)
    (st,) = result.statuses
    assert st.action == action
    assert srv.received[1].startswith(b"AUTH PLAIN ")
    if action == "delayed":
        assert st.dsn == "4.7.0"
        assert st.reason == (
            "SASL authentication failed; server 127.0.0.1[127.0.0.1] said: 454 4.7.0 later"
        )
        assert not any(line.startswith(b"MAIL") for line in srv.received)
