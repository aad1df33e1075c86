"""Opportunistic STARTTLS (smtp_tls_security_level = may) and the plain-text fallback."""

import ssl
import subprocess

import pytest

from mta.config import load_config
from mta.smtp import deliver
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.instance import make_instance
from tests.unit.smtp.peers import ScriptServer, SinkHandler, read_line, sink


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


def test_starttls_used_when_offered(tmp_path, server_tls):
    handler = TlsRecorder()
    ctl, _ = sink(handler, tls_context=server_tls)
    try:
        cfg = cfg_for(tmp_path, ctl.port, "may")
        msg = queue_message(cfg, ["u@example.com"])
        result = run_agent(deliver, cfg, request_for(msg, "[127.0.0.1]"), tmp_path)
    finally:
        ctl.stop()
    assert result.statuses[0].action == "relayed"
    assert handler.tls == [True]


def test_no_tls_without_security_level(tmp_path, server_tls):
    handler = TlsRecorder()
    ctl, _ = sink(handler, tls_context=server_tls)
    try:
        cfg = cfg_for(tmp_path, ctl.port, "none")
        msg = queue_message(cfg, ["u@example.com"])
        run_agent(deliver, cfg, request_for(msg, "[127.0.0.1]"), tmp_path)
    finally:
        ctl.stop()
    assert handler.tls == [False]


def test_failed_handshake_falls_back_to_plain_text(tmp_path):
    async def script(reader, writer, received):
        writer.write(b"220 raw.example ESMTP\r\n")
        await read_line(reader, received)
        writer.write(b"250-raw.example\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
        line = await read_line(reader, received)
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

    srv = ScriptServer(script)
    try:
        cfg = cfg_for(tmp_path, srv.port, "may")
        msg = queue_message(cfg, ["u@example.com"])
        result = run_agent(deliver, cfg, request_for(msg, "[127.0.0.1]"), tmp_path)
    finally:
        srv.stop()
    assert result.statuses[0].action == "relayed"
    assert srv.connections == 2
    assert "Cannot start TLS" in (tmp_path / "maillog").read_text()
