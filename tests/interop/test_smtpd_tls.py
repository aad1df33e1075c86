"""smtpd STARTTLS with real TLS peers on 127.0.0.1: smtplib, raw sockets with ssl, swaks."""

import os
import shutil
import smtplib
import ssl
import subprocess
import tempfile
from pathlib import Path

import pytest

from mta.config import Config
from mta.config.validate import config_problems
from mta.queue.queue_file import iter_content
from tests.support.instance import RawClient, SmtpdThread, greet, incoming_files, make_instance
from tests.support.running import Instance, free_port, wait_for
from tests.support.tls import client_context, self_signed

pytestmark = pytest.mark.interop

MESSAGE = b"Subject: tls\r\nFrom: a@sender.example\r\n\r\nOver TLS.\r\n"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """Two self-signed server certificates with their keys: (cert, key, other_key)."""
    d = tmp_path_factory.mktemp("certs")
    cert, key = self_signed(d, "mx.test.example")
    _, other_key = self_signed(d, "other.example")
    return cert, key, other_key


@pytest.fixture
def start(tmp_path):
    """start(main_cf) -> a running in-process smtpd with .cdir and .maillog."""
    servers = []

    def run(main_cf: str) -> SmtpdThread:
        cdir = make_instance(tmp_path, main_cf)
        server = SmtpdThread(cdir)
        server.cdir = cdir
        server.maillog = tmp_path / "maillog"
        servers.append(server)
        return server

    yield run
    for server in servers:
        server.close()


def _may(certs, level: str = "may") -> str:
    cert, key, _ = certs
    return (
        f"smtpd_tls_security_level = {level}\nsmtpd_tls_cert_file = {cert}\n"
        f"smtpd_tls_key_file = {key}\nsmtpd_tls_loglevel = 1\n"
    )


def test_smtplib_starttls_delivers_with_esmtps_and_logs_the_handshake(start, certs):
    smtpd = start(_may(certs))
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.has_extn("starttls")
        code, text = s.starttls(context=client_context())
        assert (code, text) == (220, b"2.0.0 Ready to start TLS")
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        s.ehlo("client.example")
        assert not s.has_extn("starttls")  # not offered a second time
        assert s.docmd("STARTTLS") == (554, b"5.5.1 Error: TLS already active")
        s.mail("a@sender.example")
        s.rcpt("user@mx.test.example")
        code, _ = s.data(MESSAGE)
        assert code == 250
    (path,) = incoming_files(smtpd.cdir)
    received = [x for x in iter_content(path) if x.startswith(b"Received:")]
    assert received and b"with ESMTPS id" in b" ".join(iter_content(path))
    assert wait_for(lambda: "disconnect from" in smtpd.maillog.read_text(), 5)
    log = smtpd.maillog.read_text()
    assert (
        "Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3 "
        "with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)" in log
    )
    assert "starttls=2" in log  # the second one was refused


def test_the_session_starts_over_after_the_handshake(start, certs):
    smtpd = start(_may(certs))
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        s.mail("a@sender.example")  # a transaction begun in the clear is forgotten
        s.starttls(context=client_context())
        assert s.docmd("RCPT", "TO:<user@mx.test.example>")[0] == 503


def test_level_none_offers_no_starttls(start, certs):
    cert, key, _ = certs
    smtpd = start(f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n")
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert not s.has_extn("starttls")
        assert s.docmd("STARTTLS") == (502, b"5.5.1 Error: command not implemented")


def test_encrypt_refuses_mail_before_starttls(start, certs):
    smtpd = start(_may(certs, "encrypt"))
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.has_extn("starttls")
        want = (530, b"5.7.0 Must issue a STARTTLS command first")
        assert s.docmd("MAIL", "FROM:<a@sender.example>") == want
        assert s.docmd("RCPT", "TO:<user@mx.test.example>") == want
        assert s.docmd("DATA") == want
        assert s.docmd("VRFY", "user") == want
        s.starttls(context=client_context())
        s.ehlo("client.example")
        s.mail("a@sender.example")
        s.rcpt("user@mx.test.example")
        assert s.data(MESSAGE)[0] == 250
    assert len(incoming_files(smtpd.cdir)) == 1


def test_commands_pipelined_after_starttls_are_discarded(start, certs):
    smtpd = start(_may(certs))
    client = RawClient(smtpd.port)
    assert "STARTTLS" in greet(client)
    client.send(b"STARTTLS\r\nRSET\r\n")  # one write: RSET is an injection attempt
    assert client.reply() == "220 2.0.0 Ready to start TLS"
    assert client.buf == b""
    tls = client_context().wrap_socket(client.sock, server_hostname="mx.test.example")
    tls.settimeout(1)
    tls.sendall(b"NOOP\r\n")
    got = b""
    while got.count(b"\r\n") < 2:
        try:
            chunk = tls.recv(4096)
        except TimeoutError:
            break
        if not chunk:
            break
        got += chunk
    # only NOOP's reply: no "250 2.0.0 Ok" for the injected RSET before it
    assert got == b"250 2.0.0 Ok\r\n"
    tls.sendall(b"QUIT\r\n")
    tls.close()
    assert wait_for(lambda: "disconnect from" in smtpd.maillog.read_text(), 5)
    assert "rset=" not in smtpd.maillog.read_text()


def test_a_key_that_does_not_match_gets_454_and_a_check_warning(start, certs):
    cert, _, other_key = certs
    main_cf = f"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {cert}\n"
    main_cf += f"smtpd_tls_key_file = {other_key}\n"
    smtpd = start(main_cf)
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.docmd("STARTTLS") == (454, b"4.7.0 TLS not available due to local problem")
        s.mail("a@sender.example")  # the session goes on in the clear at level may
        s.rcpt("user@mx.test.example")
        assert s.data(MESSAGE)[0] == 250
    problems = [str(p) for p in config_problems(Config(str(smtpd.cdir)))]
    (found,) = [p for p in problems if "smtpd_tls_key_file" in p]
    assert other_key in found and "does not match" in found
    assert "TLS library problem" in smtpd.maillog.read_text()


def test_missing_certificate_file_is_named_by_check(cdir, tmp_path):
    missing = tmp_path / "nope.pem"
    with open(cdir / "main.cf", "a") as f:
        f.write(f"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {missing}\n")
    problems = config_problems(Config(str(cdir)))
    (found,) = [p for p in problems if "smtpd_tls_cert_file" in str(p)]
    assert str(missing) in str(found) and not found.fatal
    assert "No such file" in str(found)


def test_chain_files_hold_key_and_certificate(start, certs, tmp_path):
    cert, key, _ = certs
    chain = tmp_path / "chain.pem"
    chain.write_bytes(open(key, "rb").read() + open(cert, "rb").read())
    smtpd = start(f"smtpd_tls_security_level = may\nsmtpd_tls_chain_files = {chain}\n")
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.starttls(context=client_context())[0] == 220
        der = s.sock.getpeercert(binary_form=True)
    assert ssl.DER_cert_to_PEM_cert(der).split() == open(cert).read().split()


@pytest.mark.parametrize("after", [b"garbage that is no TLS hello\r\n" * 10, b""])
def test_garbage_or_hangup_during_the_handshake_ends_the_session(start, certs, after):
    smtpd = start(_may(certs))
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"STARTTLS\r\n")
    assert client.reply() == "220 2.0.0 Ready to start TLS"
    if after:
        client.send(after)
        assert client.closed()
    client.close()
    assert wait_for(lambda: "disconnect from" in smtpd.maillog.read_text(), 5)
    log = smtpd.maillog.read_text()
    assert "SSL_accept error from localhost[127.0.0.1]" in log or not after
    assert "unexpected error" not in log and "Traceback" not in log
    # the server still serves
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.starttls(context=client_context())[0] == 220


def test_a_client_that_stalls_in_the_handshake_is_dropped_at_smtpd_starttls_timeout(start, certs):
    smtpd = start(_may(certs) + "smtpd_starttls_timeout = 1s\n")
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"STARTTLS\r\n")
    assert client.reply() == "220 2.0.0 Ready to start TLS"
    assert wait_for(lambda: "disconnect from" in smtpd.maillog.read_text(), 10)
    assert client.closed()
    log = smtpd.maillog.read_text()
    assert "SSL_accept error from localhost[127.0.0.1]" in log
    assert "Traceback" not in log and "unexpected error" not in log
    client.close()


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_swaks_tls(start, certs):
    smtpd = start(_may(certs))
    out = subprocess.run(
        ["swaks", "--tls", "--server", f"127.0.0.1:{smtpd.port}", "--helo", "client.example",
         "--from", "a@sender.example", "--to", "user@mx.test.example"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "<-  220 2.0.0 Ready to start TLS" in out.stdout
    assert "~> QUIT" in out.stdout  # everything after STARTTLS went encrypted
    assert len(incoming_files(smtpd.cdir)) == 1


@pytest.mark.timeout(120)
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run smtpd as nobody")
def test_a_key_only_root_can_read_serves_an_smtpd_running_as_nobody():
    # the usual setup: the key is 0600 root's; smtpd loads it before it becomes mail_owner
    top = tempfile.mkdtemp(prefix="mta-tls-", dir="/tmp")
    os.chmod(top, 0o755)  # nobody must reach the queue
    try:
        keys = os.path.join(top, "keys")
        os.mkdir(keys, 0o700)
        cert, key = self_signed(Path(keys), "mx.test.example")
        os.chmod(key, 0o600)
        port = free_port()
        inst = Instance(
            top,
            f"127.0.0.1:{port} inet n - n - - smtpd\n",
            {
                "mail_owner": "nobody",
                "myhostname": "mx.test.example",
                "smtpd_peername_lookup": "no",
                "smtpd_tls_security_level": "may",
                "smtpd_tls_cert_file": cert,
                "smtpd_tls_key_file": key,
                "smtpd_tls_loglevel": "1",
            },
        )
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr + inst.log()
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
                s.ehlo("client.example")
                assert s.starttls(context=client_context())[0] == 220, inst.log()
                assert s.ehlo("client.example")[0] == 250
            inst.wait_log(r"Anonymous TLS connection established from unknown\[127\.0\.0\.1\]")
            assert "TLS library problem" not in inst.log()
        finally:
            inst.stop()
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_openssl_s_client_starttls(start, certs):
    smtpd = start(_may(certs))
    out = subprocess.run(
        ["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{smtpd.port}",
         "-name", "client.example", "-quiet"],
        input="QUIT\r\n", capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    # s_client said EHLO and STARTTLS itself; the QUIT it typed next went over TLS
    assert "221 2.0.0 Bye" in out.stdout, out.stdout + out.stderr
    assert wait_for(lambda: "disconnect from" in smtpd.maillog.read_text(), 5)
    log = smtpd.maillog.read_text()
    assert "ehlo=1 starttls=1 quit=1" in log and "Anonymous TLS connection established" in log
