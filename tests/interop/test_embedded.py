"""The embedded default instance, as the README's first command starts it: mail in
by swaks, smtplib, sendmail -t and QMQP is queued and delivered to the local
user's mailbox under the instance directory."""

from __future__ import annotations

import getpass
import mailbox
import os
import shutil
import smtplib
import socket
import subprocess
import sys

import pytest

from mta.config.instance import QMQP_PORT, SMTP_PORT
from tests.support.running import wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        # as the master binds: connections of an earlier test in TIME_WAIT do not count
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def embedded(tmp_path):
    # an instance of an earlier test may still be letting go of the ports
    if not wait_for(lambda: port_free(SMTP_PORT) and port_free(QMQP_PORT), 10):
        pytest.skip("the embedded instance's ports are taken on this machine")
    env = {k: v for k, v in os.environ.items() if k not in ("MTA_CONFIG_DIR", "MTA_LOG_STDOUT")}
    env["XDG_STATE_HOME"] = str(tmp_path)

    def mta(*args, stdin=None, module="mta"):
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            env=env,
            input=stdin,
            capture_output=True,
            timeout=30,
        )

    r = mta("start")
    assert r.returncode == 0, r.stderr
    top = tmp_path / "mta"
    assert wait_for(lambda: not port_free(SMTP_PORT), 10)
    yield mta, top
    mta("stop")


def incoming(top) -> list[str]:
    out = []
    for root, _, files in os.walk(top / "spool" / "incoming"):
        out += [os.path.join(root, f) for f in files if not f.startswith(".")]
    return out


def test_mail_arrives_through_every_door(embedded):
    mta, top = embedded
    me = f"{getpass.getuser()}@localhost"  # local recipients must be real users
    with smtplib.SMTP("127.0.0.1", SMTP_PORT, timeout=10) as s:
        s.sendmail("a@localhost", [me], b"Subject: smtplib\r\n\r\nx\r\n")
    if shutil.which("swaks"):
        r = subprocess.run(
            [
                "swaks",
                "--server",
                f"127.0.0.1:{SMTP_PORT}",
                "--from",
                "a@localhost",
                "--to",
                me,
                "--silent",
                "2",
            ],
            capture_output=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stdout
    r = mta("-t", module="mta.cli.sendmail", stdin=f"To: {me}\nSubject: t\n\nx\n".encode())
    assert r.returncode == 0, r.stderr
    with socket.create_connection(("127.0.0.1", QMQP_PORT), timeout=10) as s:
        parts = [b"x: y\n\nz\n", b"a@localhost", me.encode()]
        inner = b"".join(b"%d:%s," % (len(p), p) for p in parts)
        s.sendall(b"%d:%s," % (len(inner), inner))
        assert s.recv(100).partition(b":")[2].startswith(b"K")
    want = 4 if shutil.which("swaks") else 3
    box = top / "mail" / getpass.getuser()

    def delivered():
        return len(mailbox.mbox(str(box))) if box.exists() else 0

    assert wait_for(lambda: delivered() >= want, 30), delivered()
    received = " ".join(str(m.get_all("Received")) for m in mailbox.mbox(str(box)))
    for proto in ("with ESMTP", "from userid", "with QMQP"):
        assert proto in received
    assert wait_for(lambda: not incoming(top), 10)
    log = (top / "maillog").read_text()
    assert log.count("status=sent (delivered to mailbox)") == want


def test_unknown_local_user_is_refused_at_rcpt(embedded):
    """local_recipient_maps (its default: the password file and alias_maps, through
    proxymap) lets smtpd refuse a local user that does not exist."""
    with smtplib.SMTP("127.0.0.1", SMTP_PORT, timeout=10) as s:
        s.ehlo("client.example")
        s.mail("a@localhost")
        code, text = s.rcpt("no-such-user-here@localhost")
    assert code == 550, text
    assert b"5.1.1" in text and b"User unknown" in text
