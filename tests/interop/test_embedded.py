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
import time

import pytest

from mta.config.instance import QMQP_PORT, SMTP_PORT
from tests.support.running import HERE, ROOT, wait_for

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
    env["PYTHONPATH"] = os.pathsep.join([HERE, ROOT])  # the services run this tree's code

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
    mta.started = r
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

    def sent() -> int:  # the agent may log its line just after the mailbox write
        return (top / "maillog").read_text().count("status=sent (delivered to mailbox)")

    assert wait_for(lambda: sent() >= want, 10)
    time.sleep(0.5)  # and nothing more comes: each delivery is logged once
    assert sent() == want


def test_unknown_local_user_is_refused_at_rcpt(embedded):
    """local_recipient_maps (its default: the password file and alias_maps, through
    proxymap) lets smtpd refuse a local user that does not exist."""
    with smtplib.SMTP("127.0.0.1", SMTP_PORT, timeout=10) as s:
        s.ehlo("client.example")
        s.mail("a@localhost")
        code, text = s.rcpt("no-such-user-here@localhost")
    assert code == 550, text
    assert b"5.1.1" in text and b"User unknown" in text


def delivered_subjects(top) -> list[str]:
    box = top / "mail" / getpass.getuser()
    return [str(m["Subject"]) for m in mailbox.mbox(str(box))] if box.exists() else []


def test_start_says_where_smtp_listens_and_mail_goes(embedded):
    mta, top = embedded
    err = mta.started.stderr.decode()
    assert f"SMTP listens on 127.0.0.1:{SMTP_PORT}" in err, err
    box = top / "mail" / getpass.getuser()
    assert f"local mail for {getpass.getuser()} is delivered to {box}" in err, err


def test_the_names_a_newcomer_types_reach_the_user(embedded):
    """USER@localhost, @localhost.localdomain, @the host name, and the aliases of the
    instance (postmaster, root, MAILER-DAEMON, abuse) all end in the user's mailbox."""
    mta, top = embedded
    user = getpass.getuser()
    short = socket.gethostname().lower()
    names = [f"{user}@localhost", f"{user}@localhost.localdomain", f"{user}@{short}"]
    names += [f"{alias}@localhost" for alias in ("postmaster", "root", "MAILER-DAEMON", "abuse")]
    if "." in short:  # a fully qualified host name is $myhostname itself
        names.remove(f"{user}@{short}")
    with smtplib.SMTP("127.0.0.1", SMTP_PORT, timeout=10) as s:
        for rcpt in names:
            s.sendmail("a@localhost", [rcpt], f"Subject: to {rcpt}\r\n\r\nx\r\n".encode())
    r = mta(
        "-t",
        module="mta.cli.sendmail",
        stdin=f"To: {user}@localhost\nSubject: via -t\n\nx\n".encode(),
    )
    assert r.returncode == 0, r.stderr
    want = {f"to {rcpt}" for rcpt in names} | {"via -t"}
    assert wait_for(lambda: want <= set(delivered_subjects(top)), 30), (
        sorted(delivered_subjects(top)),
        (top / "maillog").read_text(),
    )


def test_newaliases_rebuilds_the_instance_aliases(embedded):
    mta, top = embedded
    user = getpass.getuser()
    with open(top / "aliases", "a") as f:
        f.write(f"webmaster: {user}\n")
    r = mta("-bi", module="mta.cli.sendmail", stdin=b"")
    assert r.returncode == 0, r.stderr
    r = mta("alias", "-q", "webmaster", f"lmdb:{top}/aliases")
    assert r.stdout.decode().strip() == user, r
    with smtplib.SMTP("127.0.0.1", SMTP_PORT, timeout=10) as s:
        s.sendmail("a@localhost", ["webmaster@localhost"], b"Subject: webmaster\r\n\r\nx\r\n")
    assert wait_for(lambda: "webmaster" in delivered_subjects(top), 30)


def test_start_fg_log_is_whole_in_maillog(embedded):
    """The running instance's services log to maillog; under start-fg (below) the
    master's and the services' lines reach maillog as well as stdout."""
    mta, top = embedded
    mta("stop")
    assert wait_for(lambda: port_free(SMTP_PORT), 10)
    env = {k: v for k, v in os.environ.items() if k not in ("MTA_CONFIG_DIR", "MTA_LOG_STDOUT")}
    env["XDG_STATE_HOME"] = str(top.parent)
    env["PYTHONPATH"] = ROOT
    (top / "maillog").unlink()
    fg = subprocess.Popen(
        [sys.executable, "-m", "mta", "start-fg"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_for(lambda: not port_free(SMTP_PORT), 10)
        with smtplib.SMTP("127.0.0.1", SMTP_PORT, timeout=10) as s:
            s.sendmail(
                "a@localhost", [f"{getpass.getuser()}@localhost"], b"Subject: fg\r\n\r\nx\r\n"
            )
        assert wait_for(lambda: "fg" in delivered_subjects(top), 30)
        assert wait_for(lambda: "status=sent" in (top / "maillog").read_text(), 10)
    finally:
        fg.send_signal(2)
        out = fg.communicate(timeout=30)[0].decode()
    log = (top / "maillog").read_text()
    for tag in ("mta/master[", "mta/smtpd[", "mta/qmgr[", "mta/local["):
        assert tag in log, (tag, log)
        assert tag in out, (tag, out)
    assert "SMTP listens on 127.0.0.1:" in out
    assert log.count("status=sent") == 1, log
