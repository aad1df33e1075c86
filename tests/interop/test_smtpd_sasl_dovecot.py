"""smtpd_sasl_type = dovecot against a real Dovecot auth server (dovecot-core), started by
the test with a passwd-file and its auth-client socket in the instance's queue directory."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import smtplib
import subprocess
import time

import pytest

from tests.support.instance import RawClient, SmtpdThread, greet, make_instance
from tests.support.running import wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

DOVECOT = shutil.which("dovecot") or (
    "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None
)
needs_dovecot = pytest.mark.skipif(
    DOVECOT is None, reason="dovecot is not installed (apt-get install dovecot-core)"
)
USERS = {"joe@test.example": "pw for joe", "amy@test.example": "amys pw"}


def dovecot_conf(top, socket_path: str) -> str:
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    passwd = top / "passwd"
    passwd.write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in USERS.items()))
    for d in ("run", "state"):
        (top / d).mkdir(exist_ok=True)
    return f"""
base_dir = {top}/run
state_dir = {top}/state
log_path = {top}/dovecot.log
protocols =
listen = 127.0.0.1
ssl = no
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
auth_mechanisms = plain login cram-md5
auth_failure_delay = 0
disable_plaintext_auth = no
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = static
  args = uid={os.getuid()} gid={os.getgid()} home={top}
}}
service auth {{
  unix_listener {socket_path} {{
    mode = 0666
  }}
}}
"""


@pytest.fixture
def dovecot(tmp_path):
    """A running Dovecot whose auth-client socket is spool/private/auth; yields its path."""
    top = tmp_path / "dovecot"
    top.mkdir()
    sock = tmp_path / "spool" / "private" / "auth"
    sock.parent.mkdir(parents=True, exist_ok=True)
    conf = top / "dovecot.conf"
    conf.write_text(dovecot_conf(top, str(sock)))
    proc = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        if not wait_for(lambda: sock.exists() or proc.poll() is not None, 20):
            pytest.fail("dovecot did not create its auth socket")
        if proc.poll() is not None:
            pytest.fail(f"dovecot exited: {proc.stdout.read().decode()}")
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def start(tmp_path):
    servers = []

    def run(extra: str = "") -> SmtpdThread:
        cdir = make_instance(
            tmp_path,
            "smtpd_sasl_auth_enable = yes\n"
            "smtpd_sasl_type = dovecot\n"
            "smtpd_sasl_path = private/auth\n"  # relative to queue_directory, as in Postfix
            "mynetworks = 192.0.2.0/24\n"
            "smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination\n"
            + extra,
        )
        server = SmtpdThread(cdir)
        server.cdir = cdir
        server.maillog = tmp_path / "maillog"
        servers.append(server)
        return server

    yield run
    for server in servers:
        server.close()


@needs_dovecot
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_smtplib_logs_in_through_dovecot(dovecot, start, mech):
    smtpd = start()
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN", "CRAM-MD5"]
        s.user, s.password = "joe@test.example", "pw for joe"
        method = getattr(s, "auth_" + mech.lower().replace("-", "_"))
        assert s.auth(mech, method) == (235, b"2.7.0 Authentication successful")
        s.mail("joe@test.example")
        assert s.rcpt("someone@elsewhere.example")[0] == 250
        assert s.data(b"Subject: dovecot\r\n\r\nhi\r\n")[0] == 250
    assert wait_for(lambda: "sasl_username=joe@test.example" in smtpd.maillog.read_text(), 5)
    assert f"sasl_method={mech}, sasl_username=joe@test.example" in smtpd.maillog.read_text()


@needs_dovecot
def test_a_wrong_password_is_refused_by_dovecot(dovecot, start):
    smtpd = start()
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
            s.login("amy@test.example", "not amys pw")
        assert caught.value.smtp_code == 535
    log = smtpd.maillog.read_text()
    assert "SASL PLAIN authentication failed: authentication failure, " in log or (
        "SASL LOGIN authentication failed: authentication failure, " in log
    )
    assert "sasl_username=amy@test.example" in log


@needs_dovecot
def test_noplaintext_leaves_cram_md5(dovecot, start):
    smtpd = start("smtpd_sasl_security_options = noanonymous, noplaintext\n")
    client = RawClient(smtpd.port)
    reply = greet(client)
    assert "250-AUTH CRAM-MD5\n" in reply
    client.send(b"AUTH PLAIN AGpvZUB0ZXN0LmV4YW1wbGUAcHcgZm9yIGpvZQ==\r\n")
    assert client.reply() == (
        "535 5.7.8 Error: authentication failed: Invalid authentication mechanism"
    )


def test_a_missing_dovecot_socket_gets_454_and_a_warning(start):
    smtpd = start()
    client = RawClient(smtpd.port)
    reply = greet(client)
    assert "250-AUTH PLAIN LOGIN\n" in reply  # what it would offer
    client.send(b"AUTH PLAIN AGpvZUB0ZXN0LmV4YW1wbGUAcHcgZm9yIGpvZQ==\r\n")
    assert client.reply() == (
        "454 4.7.0 Temporary authentication failure: Can't connect to authentication server"
    )
    client.send(b"NOOP\r\n")
    assert client.reply() == "250 2.0.0 Ok"  # the session goes on
    log = smtpd.maillog.read_text()
    assert "warning: SASL: Connect to Dovecot auth socket" in log
    assert "private/auth' failed: No such file or directory" in log


@needs_dovecot
def test_dovecot_started_later_is_found(tmp_path, start, request):
    smtpd = start()
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"AUTH PLAIN AGpvZUB0ZXN0LmV4YW1wbGUAcHcgZm9yIGpvZQ==\r\n")
    assert client.reply().startswith("454 4.7.0 ")
    request.getfixturevalue("dovecot")
    time.sleep(0.1)
    client.send(b"AUTH PLAIN AGpvZUB0ZXN0LmV4YW1wbGUAcHcgZm9yIGpvZQ==\r\n")
    assert client.reply() == "235 2.7.0 Authentication successful"
