"""smtp_tls_block_early_mail_reply: a TLS server that sends replies nobody asked for
(what a CVE-2009-3555 injection produces), against a scripted STARTTLS server."""

from __future__ import annotations

import pytest

from mta.config import load_config
from mta.smtp import deliver
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.instance import make_instance
from tests.support.tls_certs import TestCA
from tests.unit.smtp.peers import ScriptServer, read_line


@pytest.fixture(scope="module")
def server_ctx(tmp_path_factory):
    cert = TestCA(tmp_path_factory.mktemp("ca"), "Early CA").issue("s", ["s.example.test"])
    return TestCA.context(*cert)


def tls_server(server_ctx, after_ehlo: bytes, after_data: bytes = b""):
    """STARTTLS, then after_ehlo follows the EHLO reply (and after_data the 354)."""

    async def script(reader, writer, received):
        writer.write(b"220 s.example.test ESMTP\r\n")
        await read_line(reader, received)
        writer.write(b"250-s.example.test\r\n250 STARTTLS\r\n")
        await read_line(reader, received)
        writer.write(b"220 2.0.0 go ahead\r\n")
        await writer.drain()
        await writer.start_tls(server_ctx)
        await read_line(reader, received)
        writer.write(b"250 s.example.test\r\n" + after_ehlo)
        while True:
            line = await read_line(reader, received)
            if line.startswith(b"DATA"):
                writer.write(b"354 go\r\n" + after_data)
                while await read_line(reader, received) != b".\r\n":
                    pass
                writer.write(b"250 2.0.0 queued\r\n")
            elif line.startswith(b"QUIT"):
                writer.write(b"221 bye\r\n")
                return
            else:
                writer.write(b"250 ok\r\n")

    return ScriptServer(script)


def deliver_to(tmp_path, srv, main_cf):
    cfg = load_config(
        str(
            make_instance(
                tmp_path,
                f"smtp_tcp_port = {srv.port}\nsmtp_tls_security_level = encrypt\n"
                "smtp_helo_timeout = 5s\nsmtp_starttls_timeout = 5s\n" + main_cf,
            )
        )
    )
    msg = queue_message(cfg, ["u@example.com"])
    try:
        (status,) = run_agent(deliver, cfg, request_for(msg, "[127.0.0.1]"), tmp_path).statuses
    finally:
        srv.stop()
    return status


BLOCK = "smtp_tls_block_early_mail_reply = yes\n"


def test_an_early_reply_ends_the_session_before_mail_from(tmp_path, server_ctx):
    srv = tls_server(server_ctx, b"250 2.1.0 Sender ok\r\n")
    status = deliver_to(tmp_path, srv, BLOCK)
    assert (status.action, status.dsn) == ("delayed", "4.7.0")
    assert status.reason == (
        "host 127.0.0.1[127.0.0.1] sent a reply before MAIL FROM was sent in a TLS session: "
        "possible command injection (CVE-2009-3555)"
    )
    assert not any(line.startswith(b"MAIL") for line in srv.received)


def test_a_left_over_reply_at_354_keeps_the_content_back(tmp_path, server_ctx):
    srv = tls_server(server_ctx, b"", b"250 2.0.0 extra\r\n")
    status = deliver_to(tmp_path, srv, BLOCK)
    assert (status.action, status.dsn) == ("delayed", "4.7.0")
    assert "before message content was sent" in status.reason
    assert b".\r\n" not in srv.received


def test_without_the_parameter_the_early_reply_is_taken_for_mail_froms(tmp_path, server_ctx):
    # the hijack the parameter is for: the injected reply answers our MAIL FROM
    srv = tls_server(server_ctx, b"250 2.1.0 Sender ok\r\n")
    deliver_to(tmp_path, srv, "")
    assert any(line.startswith(b"MAIL") for line in srv.received)


def test_a_well_behaved_server_gets_the_mail(tmp_path, server_ctx):
    srv = tls_server(server_ctx, b"")
    status = deliver_to(tmp_path, srv, BLOCK)
    assert status.action == "relayed"
