"""The TLS relay benchmark's tools on a real mail system: not timed, only checked to work.

tls_source.py sends 20 messages over STARTTLS to mta's smtpd under the
real master; qmgr and the smtp client relay them with
smtp_tls_security_level = encrypt to tls_sink.py. The counts both tools
report must add up, so a tool that silently stops doing TLS (or stops
counting) fails here rather than in a benchmark run."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.running import ROOT, free_port, relay_system

pytestmark = pytest.mark.interop

BENCH = Path(ROOT) / "bench" / "relay"
sys.path.insert(0, str(BENCH))
from tls_certs import make_certs  # noqa: E402

MESSAGES = 20


def _source(port: int, *args: str, cafile: Path | None = None) -> dict:
    argv = [sys.executable, str(BENCH / "tls_source.py"), "-s", "4", "-m", str(MESSAGES)]
    argv += ["--cafile", str(cafile)] if cafile else []
    done = subprocess.run(
        [*argv, *args, f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=120
    )
    return {"status": done.returncode, **json.loads(done.stdout)}


@pytest.fixture
def sink(tmp_path):
    certs = make_certs(tmp_path / "certs")
    port, stats = free_port(), tmp_path / "sink.json"
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "tls_sink.py"), "--cert", str(certs.cert),
         "--key", str(certs.key), "--stats", str(stats), f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "ready"

    def stop() -> dict:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        return json.loads(stats.read_text())

    yield certs, port, stop
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_tls_source_through_mta_to_the_tls_sink(tmp_path, sink):
    certs, sink_port, stop_sink = sink
    inst = relay_system(
        tmp_path / "mta",
        "smtp unix - - n - - smtp\n",
        relayhost=f"[127.0.0.1]:{sink_port}",
        smtpd_tls_security_level="may",
        smtpd_tls_cert_file=str(certs.cert),
        smtpd_tls_key_file=str(certs.key),
        smtpd_tls_loglevel="1",
        smtp_tls_security_level="encrypt",
    )
    assert inst.mta("start").returncode == 0, inst.log()
    try:
        # the certificate is checked against the test CA: the tool's TLS is real
        sent = _source(inst.port, cafile=certs.ca)
        assert sent["status"] == 0, sent
        assert sent["messages"] == MESSAGES and sent["errors"] == 0
        assert sent["connections"] == sent["handshakes"] == MESSAGES  # -d 1: one each
        assert 0 <= sent["session_reused"] < MESSAGES  # the first handshake is a full one
        inst.wait_log("Anonymous TLS connection established from", count=MESSAGES)
        inst.wait_log(r"status=sent", count=MESSAGES, timeout=30)
    finally:
        inst.stop()
    got = stop_sink()
    assert got["messages"] == got["recipients"] == MESSAGES
    assert got["handshakes"] >= 1 and got["connections"] >= got["handshakes"]
    # encrypt: no message reached the sink on a connection without TLS
    assert got["connections"] == got["handshakes"]
    assert got["cpu_s"] > 0


def test_tls_source_reuses_connections_and_resumes_sessions_at_the_sink(sink):
    certs, port, stop_sink = sink
    reused = _source(port, "-d", "5")
    assert reused["status"] == 0 and reused["messages"] == MESSAGES
    assert reused["connections"] == reused["handshakes"] == MESSAGES // 5
    fresh = _source(port, "--no-resume")
    assert fresh["handshakes"] == MESSAGES and fresh["session_reused"] == 0
    plain = _source(port, "--plain")
    assert plain["messages"] == MESSAGES and plain["handshakes"] == 0
    resumed = _source(port)
    assert resumed["session_reused"] > 0  # the sink's workers share their ticket keys
    got = stop_sink()
    handshakes = sum(r["handshakes"] for r in (reused, fresh, plain, resumed))
    assert got["handshakes"] == handshakes
    assert got["session_reused"] == reused["session_reused"] + resumed["session_reused"]
    assert got["messages"] == 4 * MESSAGES
    assert got["connections"] == sum(r["connections"] for r in (reused, fresh, plain, resumed))
