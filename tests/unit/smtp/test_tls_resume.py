"""The smtp client resumes its TLS session with a server it delivered to before
(mta/common/tls_session.py): the server sees session_reused on the second
delivery, never across TLS policies, and not at all with the cache turned off;
with smtp_tls_session_cache_database, a new process resumes a session another
one left in tlsmgr's cache."""

import asyncio
import ssl
import subprocess

import pytest

from mta.common.tls_session import ClientSessions
from mta.config import load_config
from mta.queue.paths import service_socket_path
from mta.smtp import deliver
from mta.tlsmgr.server import TlsmgrService
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.instance import make_instance
from tests.support.unix_server import HandlerServer
from tests.unit.smtp.peers import ScriptServer, read_line


@pytest.fixture(autouse=True)
def fresh_sessions():
    ClientSessions._shared.clear()
    yield
    ClientSessions._shared.clear()


@pytest.fixture(scope="module")
def server_ctx(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=mx"],
        check=True, capture_output=True,
    )  # fmt: skip
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def tls_sink(server_ctx, resumed: list):
    """A STARTTLS server that records, per handshake, whether it resumed a session."""

    async def script(reader, writer, received):
        writer.write(b"220 mx.example ESMTP\r\n")
        await read_line(reader, received)
        writer.write(b"250-mx.example\r\n250 STARTTLS\r\n")
        assert await read_line(reader, received) == b"STARTTLS\r\n"
        writer.write(b"220 go ahead\r\n")
        await writer.drain()
        await writer.start_tls(server_ctx)
        resumed.append(writer.get_extra_info("ssl_object").session_reused)
        while True:
            line = await read_line(reader, received)
            if line.startswith(b"DATA"):
                writer.write(b"354 go\r\n")
                while (await read_line(reader, received)) != b".\r\n":
                    pass
                writer.write(b"250 2.0.0 queued\r\n")
            elif line.startswith(b"QUIT"):
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()

    return ScriptServer(script)


def instance_config(tmp_path, port: int, level: str, extra: str = ""):
    return load_config(
        str(
            make_instance(
                tmp_path,
                f"smtp_tcp_port = {port}\nsmtp_tls_security_level = {level}\n"
                f"smtp_helo_timeout = 5s\nsmtp_starttls_timeout = 5s\n{extra}",
            )
        )
    )


def deliver_once(tmp_path, port: int, level: str, extra: str = "") -> str:
    cfg = instance_config(tmp_path, port, level, extra)
    msg = queue_message(cfg, ["u@example.com"])
    result = run_agent(deliver, cfg, request_for(msg, "[127.0.0.1]"), tmp_path)
    return result.statuses[0].action


@pytest.fixture(params=["asyncio", "uvloop"])
def event_loop_kind(request):
    """Both loops: uvloop runs the handshake in the transport's context, asyncio in the task's."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    yield request.param
    asyncio.set_event_loop_policy(None)


def test_second_delivery_resumes_the_tls_session(tmp_path, server_ctx, event_loop_kind):
    resumed: list[bool] = []
    srv = tls_sink(server_ctx, resumed)
    try:
        for _ in range(3):
            assert deliver_once(tmp_path, srv.port, "may") == "relayed"
    finally:
        srv.stop()
    assert resumed == [False, True, True]
    sessions = ClientSessions._shared[False]
    assert (sessions.offered, sessions.resumed) == (2, 2)


def test_a_session_is_never_offered_under_another_policy(tmp_path, server_ctx):
    resumed: list[bool] = []
    srv = tls_sink(server_ctx, resumed)
    try:
        assert deliver_once(tmp_path, srv.port, "may") == "relayed"
        # the same server at level encrypt: the session made at "may" is not offered
        assert deliver_once(tmp_path, srv.port, "encrypt") == "relayed"
        assert deliver_once(tmp_path, srv.port, "encrypt") == "relayed"
    finally:
        srv.stop()
    assert resumed == [False, False, True]


def test_no_resumption_when_the_cache_timeout_is_zero(tmp_path, server_ctx):
    resumed: list[bool] = []
    srv = tls_sink(server_ctx, resumed)
    try:
        for _ in range(2):
            assert (
                deliver_once(tmp_path, srv.port, "may", "smtp_tls_session_cache_timeout = 0\n")
                == "relayed"
            )
    finally:
        srv.stop()
    assert resumed == [False, False]


def test_a_new_process_resumes_a_session_from_tlsmgrs_cache(tmp_path, server_ctx):
    extra = f"smtp_tls_session_cache_database = lmdb:{tmp_path}/smtp_scache\n"
    resumed: list[bool] = []
    srv = tls_sink(server_ctx, resumed)
    cfg = instance_config(tmp_path, srv.port, "may", extra)
    svc = TlsmgrService(cfg)
    path = service_socket_path(cfg.get("queue_directory"), "tlsmgr", True)
    tlsmgr = HandlerServer(path, svc.handle_client, cfg)
    try:
        for _ in range(3):
            ClientSessions._shared.clear()  # as a new smtp process: nothing in memory
            assert deliver_once(tmp_path, srv.port, "may", extra) == "relayed"
    finally:
        srv.stop()
        tlsmgr.stop()
    assert resumed == [False, True, True]
    (entry,) = list(svc.caches["smtp"].store.items())
    assert entry[0].startswith(f"127.0.0.1[127.0.0.1]:{srv.port}&may&[127.0.0.1]&")


def test_without_the_database_a_new_process_starts_afresh(tmp_path, server_ctx):
    resumed: list[bool] = []
    srv = tls_sink(server_ctx, resumed)
    try:
        for _ in range(2):
            ClientSessions._shared.clear()
            assert deliver_once(tmp_path, srv.port, "may") == "relayed"
    finally:
        srv.stop()
    assert resumed == [False, False]


def test_tlsmgr_down_costs_one_warning_and_no_delivery(tmp_path, server_ctx):
    extra = f"smtp_tls_session_cache_database = lmdb:{tmp_path}/smtp_scache\n"
    resumed: list[bool] = []
    srv = tls_sink(server_ctx, resumed)
    try:
        for _ in range(2):
            assert deliver_once(tmp_path, srv.port, "may", extra) == "relayed"
    finally:
        srv.stop()
    assert resumed == [False, True]  # this process's own cache still works
    log = (tmp_path / "maillog").read_text()
    assert log.count("warning: TLS session cache: tlsmgr service") == 1


def test_contexts_that_differ_only_in_ca_directory_or_client_certificate_differ(tmp_path):
    # neither a CA directory (loaded lazily) nor a client certificate shows in the
    # context's own settings: without them in the digest, the session cache handed
    # one policy's context to another
    from mta.common.tls_session import context_digest
    from mta.config import load_config
    from mta.smtp.tls_policy import ClientTls
    from mta.smtp.tls_verify import client_context
    from tests.support.instance import make_instance
    from tests.support.tls_certs import TestCA

    ca = TestCA(tmp_path / "ca", "Digest CA")
    cert, key = ca.issue("client", ["client.example.test"], client=True)
    digests = []
    for n, extra in enumerate(
        [
            "",
            f"smtp_tls_CApath = {tmp_path}\n",
            f"smtp_tls_cert_file = {cert}\nsmtp_tls_key_file = {key}\n",
        ]
    ):
        top = tmp_path / f"i{n}"
        cfg = load_config(str(make_instance(top, "smtp_tls_security_level = verify\n" + extra)))
        tls = ClientTls.of(cfg)
        digests.append(context_digest(client_context(tls, tls.default_policy())))
    assert len(set(digests)) == 3
