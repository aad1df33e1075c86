"""smtpd_tls_wrappermode (port 465, submissions): TLS from the first byte, with smtplib.SMTP_SSL,
swaks --tlsc and the submissions entry of the default master.cf under the real master."""

import re
import shutil
import smtplib
import socket
import subprocess

import pytest

from mta.config.instance import MASTER_CF_TEXT
from mta.queue.queue_file import iter_content
from tests.support.instance import incoming_files
from tests.support.running import Instance, free_port, wait_for
from tests.support.tls import SmtpdStarter, client_context, self_signed, tls_main_cf

pytestmark = pytest.mark.interop

MESSAGE = b"Subject: 465\r\nFrom: a@sender.example\r\n\r\nWrapped.\r\n"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("certs"), "mx.test.example")


@pytest.fixture
def start(tmp_path):
    starter = SmtpdStarter(tmp_path)
    yield starter
    starter.close()


def wrapper_cf(certs, level: str = "") -> str:
    return tls_main_cf(*certs, level, smtpd_tls_wrappermode="yes")


def test_smtp_ssl_delivers_over_tls_from_the_first_byte(start, certs):
    smtpd = start(wrapper_cf(certs))  # no security level: wrapper mode alone turns TLS on
    with smtplib.SMTP_SSL("127.0.0.1", smtpd.port, context=client_context()) as s:
        assert s.sock.version() == "TLSv1.3"
        s.ehlo("client.example")
        assert not s.has_extn("starttls")
        assert s.docmd("STARTTLS") == (554, b"5.5.1 Error: TLS already active")
        s.mail("a@sender.example")
        s.rcpt("user@mx.test.example")
        assert s.data(MESSAGE)[0] == 250
    (path,) = incoming_files(smtpd.cdir)
    assert b"with ESMTPS id" in b" ".join(iter_content(path))
    log = smtpd.maillog.read_text()
    assert "Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3" in log


def test_wrapper_mode_uses_the_mandatory_protocols(start, certs):
    main_cf = wrapper_cf(certs, "may") + "smtpd_tls_mandatory_protocols = TLSv1.2\n"
    smtpd = start(main_cf)
    with smtplib.SMTP_SSL("127.0.0.1", smtpd.port, context=client_context()) as s:
        assert s.sock.version() == "TLSv1.2"


def test_a_plain_text_client_gets_no_greeting(start, certs):
    smtpd = start(wrapper_cf(certs))
    with socket.create_connection(("127.0.0.1", smtpd.port), timeout=10) as sock:
        sock.sendall(b"EHLO client.example\r\n")
        got = b""
        while chunk := sock.recv(4096):
            got += chunk
    assert b"220" not in got and b"250" not in got  # only a TLS alert, if anything
    assert wait_for(lambda: "disconnect from" in smtpd.maillog.read_text(), 5)
    assert "SSL_accept error from localhost[127.0.0.1]" in smtpd.maillog.read_text()


def test_without_a_certificate_the_connection_is_dropped_with_a_warning(start, tmp_path):
    smtpd = start("smtpd_tls_wrappermode = yes\n")
    with socket.create_connection(("127.0.0.1", smtpd.port), timeout=10) as sock:
        assert sock.recv(4096) == b""  # nothing in the clear, ever
    assert wait_for(lambda: "disconnect from" in smtpd.maillog.read_text(), 5)
    log = smtpd.maillog.read_text()
    assert "TLS library problem: smtpd_tls_cert_file" in log
    assert re.search(r"warning: wrapper-mode request dropped from localhost\[127\.0\.0\.1\]", log)


def _uncommented(entry: str, port: int) -> str:
    """The default master.cf's commented entry on 127.0.0.1:ENTRY, uncommented on port."""
    text = MASTER_CF_TEXT.split(f"#127.0.0.1:{entry} ", 1)[1]
    lines = [f"#127.0.0.1:{entry} " + text.split("\n", 1)[0]]
    for line in text.split("\n")[1:]:
        if not line.startswith("#  -o "):
            break
        lines.append(line)
    return "\n".join(x[1:] for x in lines).replace(f"127.0.0.1:{entry}", f"127.0.0.1:{port}") + "\n"


def _submissions_service(port: int) -> str:
    entry = _uncommented("10465", port)
    assert "-o smtpd_tls_wrappermode=yes" in entry
    return entry


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_the_default_submissions_entry_under_master_with_swaks_and_smtp_ssl(tmp_path, certs):
    port = free_port()
    inst = Instance(
        tmp_path,
        _submissions_service(port) + "cleanup unix n - n - 0 cleanup\n",
        {"myhostname": "mx.test.example", "smtpd_peername_lookup": "no",
         "smtpd_tls_cert_file": certs[0], "smtpd_tls_key_file": certs[1],
         "smtpd_tls_loglevel": "1"},
    )  # fmt: skip
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr + inst.log()
    try:
        out = subprocess.run(
            ["swaks", "--tlsc", "--server", f"127.0.0.1:{port}", "--helo", "client.example",
             "--from", "a@sender.example", "--to", "user@mx.test.example",
             "--quit-after", "RCPT", "--timeout", "20"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        # the service's overrides hold: no relaying without SASL, refused over TLS
        assert "TLS started with cipher TLSv1.3" in out.stdout, out.stdout + out.stderr
        assert "<~* 554 5.7.1 <user@mx.test.example>: Recipient address rejected" in out.stdout
        with smtplib.SMTP_SSL("127.0.0.1", port, context=client_context(), timeout=30) as s:
            assert s.ehlo("client.example")[0] == 250
            assert not s.has_extn("starttls")
        inst.wait_log(
            r"mta/submissions/smtpd\[\d+\]: Anonymous TLS connection established", count=2
        )
    finally:
        inst.stop()


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_hello_that_arrives_before_the_handshake_starts_is_not_lost(
    tmp_path, certs, loop_kind, monkeypatch
):
    # uvloop reads before connection_made can pause it: the client's hello lands in the
    # session's buffer while smtpd looks up the client's name, and must reach TLS intact
    import asyncio
    import threading

    from mta import log
    from mta.config import Config
    from mta.smtpd import tls
    from mta.smtpd.server import SmtpdServer
    from mta.smtpd.session import SmtpdSession
    from tests.support.instance import make_instance

    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        new_loop = uvloop.new_event_loop
    else:
        new_loop = asyncio.new_event_loop
    fed: list[int] = []
    real_feed = tls._feed
    monkeypatch.setattr(tls, "_feed", lambda p, data: (fed.append(len(data)), real_feed(p, data)))
    slow_names = SmtpdServer.client_names

    async def client_names(self, addr):
        await asyncio.sleep(0.3)  # the hello is on its way meanwhile
        return await slow_names(self, addr)

    monkeypatch.setattr(SmtpdServer, "client_names", client_names)
    cdir = make_instance(tmp_path, wrapper_cf(certs))
    cfg = Config(str(cdir))
    log.init("smtpd", cfg)
    loop = new_loop()
    server = SmtpdServer(cfg)
    listener = loop.run_until_complete(
        loop.create_server(lambda: SmtpdSession(server), "127.0.0.1", 0)
    )
    port = listener.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        for _ in range(3):
            with smtplib.SMTP_SSL("127.0.0.1", port, context=client_context(), timeout=10) as s:
                assert s.ehlo("client.example")[0] == 250
    finally:
        loop.call_soon_threadsafe(listener.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        server.executor.shutdown()
    if loop_kind == "uvloop":
        assert len(fed) == 3 and all(n > 100 for n in fed)  # each hello came early, whole
    else:
        assert fed == []  # asyncio pauses reading in connection_made: nothing early


@pytest.mark.timeout(120)
def test_the_default_submission_entry_demands_starttls(tmp_path, certs):
    port = free_port()
    inst = Instance(
        tmp_path,
        _uncommented("10587", port) + "cleanup unix n - n - 0 cleanup\n",
        {"myhostname": "mx.test.example", "smtpd_peername_lookup": "no",
         "smtpd_tls_cert_file": certs[0], "smtpd_tls_key_file": certs[1]},
    )  # fmt: skip
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr + inst.log()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo("client.example")
            assert s.has_extn("starttls")
            want = (530, b"5.7.0 Must issue a STARTTLS command first")
            assert s.docmd("MAIL", "FROM:<a@sender.example>") == want
            assert s.starttls(context=client_context())[0] == 220
            s.ehlo("client.example")
            s.mail("a@sender.example")
            code, text = s.rcpt("user@mx.test.example")
            assert code == 554 and b"Recipient address rejected" in text  # no SASL: no relay
        inst.wait_log(r"mta/submission/smtpd\[\d+\]: disconnect from")
    finally:
        inst.stop()
