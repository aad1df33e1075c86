"""SMTP AUTH under the real master: swaks --auth PLAIN/LOGIN (and --tls with
smtpd_tls_auth_only), smtplib, and the AUTH rate limit counted by the real anvil."""

from __future__ import annotations

import shutil
import smtplib
import subprocess
import sys

import pytest

from tests.support.instance import RawClient
from tests.support.running import Instance, free_port

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

SERVICES = "anvil unix - - n - 1 anvil\ncleanup unix n - n - 0 cleanup\n"
OUTSIDER = "127.0.0.2"  # not in mynetworks nor in smtpd_client_event_limit_exceptions


def start(tmp_path, **main: str) -> Instance:
    port = free_port()
    inst = Instance(
        tmp_path,
        f"127.0.0.1:{port} inet n - n - - smtpd\n{SERVICES}",
        {
            "myhostname": "mx.test.example",
            "mydestination": "mx.test.example",
            "mynetworks": "192.0.2.0/24",
            "smtpd_peername_lookup": "no",
            "alias_maps": "",
            "local_recipient_maps": "",
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_sasl_type": "mta",
            "smtpd_sasl_path": "sasl_users",
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject_unauth_destination",
            **main,
        },
    )
    inst.port = port
    add = subprocess.run(
        [sys.executable, "-m", "mta", "sasl", "-c", inst.dir, "add", "joe@test.example"],
        input="pw for joe\n",
        env=inst.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert add.returncode == 0, add.stderr
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    return inst


def swaks(port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{port}", "--from", "joe@test.example",
         "--to", "someone@elsewhere.example", "--helo", "client.example", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


needs_swaks = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")


@needs_swaks
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_authenticates_and_relays(tmp_path, mech):
    inst = start(tmp_path)
    try:
        r = swaks(inst.port, "--auth", mech, "--auth-user", "joe@test.example",
                  "--auth-password", "pw for joe")  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        assert "<-  235 2.7.0 Authentication successful" in r.stdout
        assert "<-  250 2.0.0 Ok: queued as" in r.stdout
        inst.wait_log(
            rf"client=unknown\[127\.0\.0\.1\], sasl_method={mech}, sasl_username=joe@test\.example"
        )
        bad = swaks(inst.port, "--auth", mech, "--auth-user", "joe@test.example",
                    "--auth-password", "wrong")  # fmt: skip
        assert bad.returncode != 0
        assert "535 5.7.8 Error: authentication failed: authentication failure" in bad.stdout
        inst.wait_log(
            rf"warning: unknown\[127\.0\.0\.1\]: SASL {mech} authentication failed: "
            r"authentication failure, sasl_username=joe@test\.example"
        )
        # without AUTH the same relay is refused
        plain = swaks(inst.port)
        assert "554 5.7.1 <someone@elsewhere.example>: Relay access denied" in plain.stdout
    finally:
        inst.stop()


def test_auth_rate_limit_holds_across_connections(tmp_path):
    inst = start(tmp_path, smtpd_client_auth_rate_limit="3")
    try:
        replies = []
        for _ in range(2):
            client = RawClient(inst.port, source=OUTSIDER)
            client.reply()
            client.send(b"EHLO client.example\r\n")
            client.reply()
            for _ in range(2):
                client.send(b"AUTH PLAIN AGpvZUB0ZXN0LmV4YW1wbGUAbm9wZQ==\r\n")
                replies.append(client.reply())
            client.close()
        assert replies[:3] == ["535 5.7.8 Error: authentication failed: authentication failure"] * 3
        assert replies[3] == "450 4.7.1 Error: too many AUTH commands from 127.0.0.2"
        inst.wait_log(
            r"warning: AUTH command rate limit exceeded: 4 from unknown\[127\.0\.0\.2\]"
            r" for service 127\.0\.0\.1:\d+"
        )
        # another address has its own count
        with smtplib.SMTP("127.0.0.1", inst.port) as s:
            s.ehlo("client.example")
            assert s.login("joe@test.example", "pw for joe")[0] == 235
    finally:
        inst.stop()


def test_a_thousand_failed_logins_are_limited(tmp_path):
    """50 connections of 20 wrong passwords each: anvil lets 10 AUTH commands through to
    the password check, the rest get 450, and every session ends at the hard error limit."""
    inst = start(tmp_path, smtpd_client_auth_rate_limit="10", smtpd_error_sleep_time="0")
    try:
        counts: dict[str, int] = {}
        guess = b"AUTH PLAIN AGpvZUB0ZXN0LmV4YW1wbGUAbm9wZQ==\r\n"
        for _ in range(50):
            client = RawClient(inst.port, source=OUTSIDER)
            client.reply()
            client.send(b"EHLO client.example\r\n")
            client.reply()
            client.send(guess * 20)  # AUTH may be pipelined
            for _ in range(20):
                code = client.reply()[:3]
                counts[code] = counts.get(code, 0) + 1
            assert client.closed()
            client.close()
        assert counts == {"535": 10, "450": 940, "421": 50}
        log = inst.wait_log(r"too many errors after AUTH from unknown\[127\.0\.0\.2\]", count=50)
        assert log.count("SASL PLAIN authentication failed") == 10
    finally:
        inst.stop()
