"""TLS session resumption across smtpd processes under the real master: the
ticket key comes from the real tlsmgr service, so a client that got its ticket
from one smtpd process resumes with another; without tlsmgr it cannot."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess

import pytest

from tests.support.running import Instance, wait_for
from tests.support.tls import client_context, self_signed, two_tls_smtpds

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

TLSMGR = "tlsmgr unix - - n 1000? 1 tlsmgr\n"


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("certs"), "mx.test.example")


def start(tmp_path, cert, services: str) -> tuple[Instance, int, int]:
    """Two smtpd listeners (two processes) offering STARTTLS, and services."""
    return two_tls_smtpds(tmp_path, cert, services)


def read_reply(f) -> str:
    while True:
        line = f.readline().decode()
        assert line, "connection closed"
        if line[3:4] != "-":
            return line


def tls_session(port: int, ctx: ssl.SSLContext, session=None) -> tuple[ssl.SSLSession, bool]:
    """Greeting, EHLO, STARTTLS, the handshake (offering session), EHLO and QUIT:
    (the session, whether it was resumed)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = raw.makefile("rb")
    assert read_reply(f).startswith("220 ")
    raw.sendall(b"EHLO client.example\r\n")
    assert read_reply(f).startswith("250 ")
    raw.sendall(b"STARTTLS\r\n")
    assert read_reply(f).startswith("220 ")
    tls = ctx.wrap_socket(raw, server_hostname="mx.test.example", session=session)
    f = tls.makefile("rb")
    tls.sendall(b"EHLO client.example\r\n")
    assert read_reply(f).startswith("250 ")  # the TLS 1.3 tickets arrived before it
    tls.sendall(b"QUIT\r\n")
    assert read_reply(f).startswith("221 ")
    got = tls.session, tls.session_reused
    tls.close()
    return got


def client(version: ssl.TLSVersion) -> ssl.SSLContext:
    return client_context(maximum_version=version)


def smtpd_pids(inst: Instance) -> set[str]:
    log = inst.wait_log(r"Anonymous TLS connection established", count=2)
    return set(re.findall(r"smtpd\[(\d+)\]: Anonymous TLS connection established", log))


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_a_second_connection_to_another_smtpd_process_resumes(tmp_path, cert, version):
    inst, one, two = start(tmp_path, cert, TLSMGR)
    try:
        ctx = client(version)
        first, reused = tls_session(one, ctx)
        assert first.has_ticket and not reused
        second, reused = tls_session(two, ctx, first)
        assert reused
        assert len(smtpd_pids(inst)) == 2  # two processes served the two connections
        _, reused = tls_session(one, ctx, second)
        assert reused
        assert "session ticket" not in inst.log()  # no warning about the key
    finally:
        inst.stop()


def test_without_tlsmgr_only_the_issuing_process_resumes(tmp_path, cert):
    inst, one, two = start(tmp_path, cert, "")
    try:
        ctx = client(ssl.TLSVersion.TLSv1_3)
        first, _ = tls_session(one, ctx)
        _, reused = tls_session(two, ctx, first)
        assert not reused
        assert len(smtpd_pids(inst)) == 2
        inst.wait_log(r"warning: cannot get the TLS session ticket key: tlsmgr service .*connect")
        _, reused = tls_session(one, ctx, first)
        assert reused  # per-process tickets still work
    finally:
        inst.stop()


def test_openssl_s_client_resumes_with_the_other_process(tmp_path, cert):
    inst, one, two = start(tmp_path, cert, TLSMGR)
    sess = tmp_path / "session.pem"

    def s_client(port: int, *args: str) -> str:
        proc = subprocess.Popen(
            ["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}",
             "-servername", "mx.test.example", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        proc.stdin.write(b"EHLO client.example\r\n")
        proc.stdin.flush()
        # s_client writes -sess_out when the TLS 1.3 ticket arrives, after the handshake
        wait_for(lambda: sess.exists() and sess.stat().st_size > 0, 10)
        out, _ = proc.communicate(b"QUIT\r\n", timeout=30)
        return out.decode(errors="replace")

    try:
        first = s_client(one, "-sess_out", str(sess))
        assert "\nNew, TLSv1.3" in first, first
        second = s_client(two, "-sess_in", str(sess))
        assert "\nReused, TLSv1.3" in second, second
        assert len(smtpd_pids(inst)) == 2
    finally:
        inst.stop()
