"""The smtp client under the real master resumes TLS sessions across its own
processes: with smtp_tls_session_cache_database the session of one delivery
waits in tlsmgr's cache, and the next smtp process (the test ends each one after
its delivery, as max_idle or max_use would) offers it; the TLS server sees the
resumption."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import ssl
import subprocess

import pytest

from tests.support.running import relay_system, wait_for
from tests.unit.smtp.test_tls_resume import tls_sink

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def server_ctx(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=mx.far.example"],
        check=True, capture_output=True,
    )  # fmt: skip
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def deliver_three(tmp_path, server_ctx, services: str, **main) -> tuple[list[bool], str]:
    resumed: list[bool] = []
    srv = tls_sink(server_ctx, resumed)
    inst = relay_system(
        tmp_path,
        "smtp unix - - n - - smtp\n" + services,
        relayhost=f"[127.0.0.1]:{srv.port}",
        smtp_tls_security_level="may",
        **main,
    )
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    try:
        for n in range(1, 4):
            with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
                s.sendmail("a@sender.example", ["u@far.example"], b"Subject: %d\r\n\r\nx\r\n" % n)
            log = inst.wait_log(r"status=sent", 30, count=n)
            for pid in inst.children("smtp"):  # the next delivery: a new smtp process
                os.kill(pid, signal.SIGTERM)
            assert wait_for(lambda: not inst.children("smtp"), 10)
        return resumed, log
    finally:
        inst.stop()
        srv.stop()


def smtp_pids(log: str) -> set[str]:
    return set(re.findall(r"smtp\[(\d+)\]: \w+: to=<u@far\.example>.*status=sent", log))


def test_a_new_smtp_process_resumes_the_session_of_the_last(tmp_path, server_ctx):
    resumed, log = deliver_three(
        tmp_path,
        server_ctx,
        "tlsmgr unix - - n 1000? 1 tlsmgr\n",
        smtp_tls_session_cache_database=f"lmdb:{tmp_path}/data/smtp_scache",
    )
    assert len(smtp_pids(log)) == 3  # three processes, one delivery each
    assert resumed == [False, True, True]
    assert "TLS session cache" not in log  # no warning


def test_without_the_shared_cache_each_process_starts_afresh(tmp_path, server_ctx):
    resumed, log = deliver_three(tmp_path, server_ctx, "")
    assert len(smtp_pids(log)) == 3
    assert resumed == [False, False, False]
