"""Opportunistic STARTTLS (smtp_tls_security_level = may) and the plain-text fallback."""

import asyncio
import ssl
import subprocess

import pytest

from mta.bounce import logfile
from mta.config import load_config
from mta.queue.queue_file import read_queue_file
from mta.smtp import deliver
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.instance import make_instance
from tests.unit.smtp.peers import (
    ScriptServer,
    SinkHandler,
    deliver_to_lmtp_sink,
    read_line,
    sink,
)


class TlsRecorder(SinkHandler):
    def __init__(self):
        super().__init__()
        self.tls = []

    async def handle_DATA(self, server, session, envelope):
        self.tls.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=sink",
        ],
        check=True,
        capture_output=True,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def cfg_for(tmp_path, port, level):
    return load_config(
        str(
            make_instance(
                tmp_path,
                f"smtp_tcp_port = {port}\nsmtp_tls_security_level = {level}\n"
                "smtp_helo_timeout = 2s\nsmtp_starttls_timeout = 2s\n",
            )
        )
    )


def send_one(tmp_path, port, level):
    """Queue one message for u@example.com and run the smtp client at [127.0.0.1]:port."""
    cfg = cfg_for(tmp_path, port, level)
    msg = queue_message(cfg, ["u@example.com"])
    return cfg, msg, run_agent(deliver, cfg, request_for(msg, "[127.0.0.1]"), tmp_path)


def send_to_sink(tmp_path, level, tls_context=None):
    """send_one to an aiosmtpd sink (offering STARTTLS when given a tls_context)."""
    handler = TlsRecorder()
    ctl, _ = sink(handler, tls_context=tls_context)
    try:
        cfg, msg, result = send_one(tmp_path, ctl.port, level)
    finally:
        ctl.stop()
    return handler, cfg, msg, result


def send_to_script(tmp_path, level, script):
    """send_one to a ScriptServer running script on each connection."""
    srv = ScriptServer(script)
    try:
        cfg, msg, result = send_one(tmp_path, srv.port, level)
    finally:
        srv.stop()
    return srv, cfg, msg, result


def test_starttls_used_when_offered(tmp_path, server_tls):
    handler, _, _, result = send_to_sink(tmp_path, "may", server_tls)
    assert result.statuses[0].action == "relayed"
    assert handler.tls == [True]


def test_no_tls_without_security_level(tmp_path, server_tls):
    handler, _, _, _ = send_to_sink(tmp_path, "none", server_tls)
    assert handler.tls == [False]


async def offer_starttls(reader, writer, received, ehlo: bytes = b"250 STARTTLS\r\n") -> bytes:
    """Greet, answer EHLO with 250-raw.example and the ehlo lines; the client's next line."""
    writer.write(b"220 raw.example ESMTP\r\n")
    await read_line(reader, received)
    writer.write(b"250-raw.example\r\n" + ehlo)
    return await read_line(reader, received)


def test_failed_handshake_falls_back_to_plain_text(tmp_path):
    async def script(reader, writer, received):
        line = await offer_starttls(reader, writer, received, b"250-STARTTLS\r\n250 8BITMIME\r\n")
        if line == b"STARTTLS\r\n":
            writer.write(b"220 go ahead\r\nthis is not a TLS server hello at all\r\n" * 4)
            await writer.drain()
            return
        while True:
            writer.write(b"354 go\r\n" if line.startswith(b"DATA") else b"250 ok\r\n")
            if line.startswith(b"DATA"):
                break
            line = await read_line(reader, received)
        while (await read_line(reader, received)) != b".\r\n":
            pass
        writer.write(b"250 2.0.0 queued\r\n")
        await read_line(reader, received)

    srv, _, _, result = send_to_script(tmp_path, "may", script)
    assert result.statuses[0].action == "relayed"
    assert srv.connections == 2
    assert "Cannot start TLS" in (tmp_path / "maillog").read_text()


# ---------------------------------------------------------------- levels that demand TLS


def deferred_reasons(cfg, msg):
    return [
        (st.dsn, st.reason)
        for st in logfile.read(cfg.get("queue_directory"), "defer", msg.queue_id)
    ]


def test_encrypt_defers_when_starttls_is_not_offered(tmp_path):
    # no tls_context: no STARTTLS in the EHLO reply
    handler, cfg, msg, result = send_to_sink(tmp_path, "encrypt")
    assert handler.messages == []  # nothing went out in plain text
    assert [(s.action, s.dsn) for s in result.statuses] == [("delayed", "4.7.4")]
    reason = "TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]"
    assert deferred_reasons(cfg, msg) == [("4.7.4", reason)]
    assert not any(r.done for r in read_queue_file(msg.path).recipients)


def test_encrypt_delivers_over_tls_when_offered(tmp_path, server_tls):
    handler, _, _, result = send_to_sink(tmp_path, "encrypt", server_tls)
    assert result.statuses[0].action == "relayed"
    assert handler.tls == [True]


def test_encrypt_never_retries_in_plain_text_after_a_failed_handshake(tmp_path):
    async def script(reader, writer, received):
        if await offer_starttls(reader, writer, received) == b"STARTTLS\r\n":
            writer.write(b"220 go ahead\r\n")
            await writer.drain()
            await asyncio.sleep(0.2)  # the client is in its handshake by now
            writer.write(b"this is not a TLS server hello at all\r\n" * 4)
            await writer.drain()

    srv, _, _, result = send_to_script(tmp_path, "encrypt", script)
    assert srv.connections == 1
    assert b"MAIL FROM" not in b"".join(srv.received)
    (st,) = result.statuses
    assert (st.action, st.dsn) == ("delayed", "4.7.5")
    assert st.reason.startswith("Cannot start TLS: handshake failure with 127.0.0.1[127.0.0.1]")


def test_encrypt_defers_when_starttls_is_refused(tmp_path):
    async def script(reader, writer, received):
        if await offer_starttls(reader, writer, received) == b"STARTTLS\r\n":
            writer.write(b"454 4.7.0 TLS not available due to local problem\r\n")
            await read_line(reader, received)
            writer.write(b"250 ok\r\n")

    srv, _, _, result = send_to_script(tmp_path, "encrypt", script)
    assert b"MAIL FROM" not in b"".join(srv.received)
    (st,) = result.statuses
    assert (st.action, st.dsn) == ("delayed", "4.7.0")
    assert st.reason == (
        "TLS is required, but host 127.0.0.1[127.0.0.1] refused to start TLS: "
        "454 4.7.0 TLS not available due to local problem"
    )


def test_unknown_level_is_a_configuration_error_not_plain_text(tmp_path):
    handler, cfg, msg, result = send_to_sink(tmp_path, "encrpyt")
    assert handler.messages == []
    assert [(s.action, s.dsn) for s in result.statuses] == [("delayed", "4.3.5")]


def test_lmtp_encrypt_defers_when_starttls_is_not_offered(tmp_path):
    handler, result = deliver_to_lmtp_sink(
        tmp_path, "lmtp_tls_security_level = encrypt\n", ["u@example.com"]
    )
    assert handler.messages == []
    (st,) = result.statuses
    assert (st.action, st.dsn) == ("delayed", "4.7.4")
    assert st.reason == "TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]"
