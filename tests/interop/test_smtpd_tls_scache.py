"""smtpd_tls_session_cache_database under the real master: openssl s_client with TLS 1.2
and no tickets resumes by session id with another smtpd process (or after smtpd was
restarted), through the real tlsmgr; without the parameter it cannot."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from mta.verify.cache import LmdbStore
from tests.support.running import Instance, wait_for
from tests.support.tls import self_signed, two_tls_smtpds

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

TLSMGR = "tlsmgr unix - - n 1000? 1 tlsmgr\n"
CACHE = "btree:${data_directory}/smtpd_scache"


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("certs"), "mx.test.example")


def start(tmp_path, cert, database: str, services: str = TLSMGR) -> tuple[Instance, int, int]:
    """Two smtpd listeners (two processes) offering STARTTLS, and tlsmgr."""
    return two_tls_smtpds(tmp_path, cert, services, smtpd_tls_session_cache_database=database)


def s_client(port: int, *args: str) -> str:
    """One STARTTLS session of openssl s_client (TLS 1.2, no ticket), in its own process."""
    proc = subprocess.Popen(
        ["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}",
         "-tls1_2", "-no_ticket", *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = proc.communicate(b"EHLO client.example\r\nQUIT\r\n", timeout=30)
    return out.decode(errors="replace")


def smtpd_pids(inst: Instance, count: int) -> set[str]:
    log = inst.wait_log(r"Anonymous TLS connection established", count=count)
    return set(re.findall(r"smtpd\[(\d+)\]: Anonymous TLS connection established", log))


def test_s_client_resumes_by_session_id_with_the_other_smtpd_process(tmp_path, cert):
    inst, one, two = start(tmp_path, cert, CACHE)
    sess = tmp_path / "session.pem"
    try:
        first = s_client(one, "-sess_out", str(sess))
        assert "\nNew, TLSv1.2" in first, first
        assert "TLS session ticket:" not in first  # resumption can only be by id
        second = s_client(two, "-sess_in", str(sess))
        assert "\nReused, TLSv1.2" in second, second
        assert len(smtpd_pids(inst, 2)) == 2  # two processes served the two connections
        assert (tmp_path / "data" / "smtpd_scache.lmdb").exists()
        assert "session_cache" not in inst.log() and "session cache" not in inst.log()
    finally:
        inst.stop()


def test_s_client_resumes_after_smtpd_was_restarted(tmp_path, cert):
    inst, one, _ = start(tmp_path, cert, CACHE)
    sess = tmp_path / "session.pem"
    try:
        assert "\nNew, TLSv1.2" in s_client(one, "-sess_out", str(sess))
        old = smtpd_pids(inst, 1)
        service = f"127.0.0.1:{one}"
        assert set(map(str, inst.children(service))) == old
        for pid in inst.children(service):  # the smtpd process goes; the master starts anew
            os.kill(pid, signal.SIGTERM)
        assert wait_for(lambda: not set(map(str, inst.children(service))) & old, 10)
        second = s_client(one, "-sess_in", str(sess))
        assert "\nReused, TLSv1.2" in second, second
        assert len(smtpd_pids(inst, 2)) == 2
    finally:
        inst.stop()


def test_without_the_parameter_the_other_process_makes_a_new_session(tmp_path, cert):
    inst, one, two = start(tmp_path, cert, "")
    sess = tmp_path / "session.pem"
    try:
        assert "\nNew, TLSv1.2" in s_client(one, "-sess_out", str(sess))
        second = s_client(two, "-sess_in", str(sess))
        assert "\nNew, TLSv1.2" in second, second
        assert len(smtpd_pids(inst, 2)) == 2
    finally:
        inst.stop()


def test_without_tlsmgr_a_full_handshake_and_a_warning(tmp_path, cert):
    inst, one, two = start(tmp_path, cert, CACHE, services="")
    sess = tmp_path / "session.pem"
    try:
        assert "\nNew, TLSv1.2" in s_client(one, "-sess_out", str(sess))
        second = s_client(two, "-sess_in", str(sess))
        assert "\nNew, TLSv1.2" in second, second
        inst.wait_log(r"warning: TLS session cache: tlsmgr service: connect")
        inst.wait_log(r"ehlo=2 starttls=1", count=2)  # the session went on after the miss
    finally:
        inst.stop()


def test_tls13_tickets_still_resume_with_the_cache_set(tmp_path, cert):
    inst, one, two = start(tmp_path, cert, CACHE)
    sess = tmp_path / "session.pem"

    def tls13(port: int, *args: str) -> str:
        proc = subprocess.Popen(
            ["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}",
             "-tls1_3", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        proc.stdin.write(b"EHLO client.example\r\n")
        proc.stdin.flush()
        # s_client writes -sess_out when the TLS 1.3 ticket arrives, after the handshake
        wait_for(lambda: sess.exists() and sess.stat().st_size > 0, 10)
        out, _ = proc.communicate(b"QUIT\r\n", timeout=30)
        return out.decode(errors="replace")

    try:
        assert "\nNew, TLSv1.3" in tls13(one, "-sess_out", str(sess))
        second = tls13(two, "-sess_in", str(sess))
        assert "\nReused, TLSv1.3" in second, second
        assert len(smtpd_pids(inst, 2)) == 2
        store = LmdbStore(str(tmp_path / "data" / "smtpd_scache.lmdb"), 1 << 20)
        assert list(store.items()) == []  # the tickets carry the sessions: nothing stored
    finally:
        inst.stop()
