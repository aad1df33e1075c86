"""Milters under the real master: smtpd_milters for mail over SMTP and non_smtpd_milters for
mail from sendmail (maildrop -> pickup), with the scripted libmilter peer."""

from __future__ import annotations

import smtplib
import subprocess
import sys

import pytest

from mta.queue.queue_file import iter_content, read_queue_file
from tests.support.milter_peers import pymilter_peer
from tests.support.running import Instance, intake_instance, queue_files, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]


@pytest.fixture
def inst(tmp_path):
    with pymilter_peer() as milter:
        inst = intake_instance(
            tmp_path,
            {
                "smtpd_milters": f"inet:127.0.0.1:{milter}",
                "non_smtpd_milters": "$smtpd_milters",
            },
        )
        r = inst.mta("check")
        assert r.returncode == 0, r.stderr
        assert inst.mta("start").returncode == 0
        try:
            yield inst
        finally:
            inst.stop()


def test_smtp_mail_is_edited_under_the_master(inst):
    message = b"Subject: edit\r\nX-Change-Me: before\r\n\r\nhello\r\n"
    with smtplib.SMTP("127.0.0.1", inst.port) as s:
        s.ehlo("client.example")
        s.sendmail("a@sender.example", ["you@mx.test.example", "gone@test.example"], message)
    assert wait_for(lambda: queue_files(inst, "incoming"), 10)
    (path,) = queue_files(inst, "incoming")
    msg = read_queue_file(path)
    assert msg.sender == "new-sender@test.example"
    assert "gone@test.example" not in [r.address for r in msg.recipients]
    content = list(iter_content(path, msg))
    assert b"X-Change-Me: changed" in content and b"replaced body" in content


def test_smtp_refusal_under_the_master(inst):
    with smtplib.SMTP("127.0.0.1", inst.port) as s:
        s.ehlo("client.example")
        s.mail("a@sender.example")
        assert s.rcpt("rej@test.example") == (550, b"5.7.1 first line\n5.7.1 second line")
    inst.wait_log(r"NOQUEUE: milter-reject: RCPT from \S+\[127\.0\.0\.1\]: 550-5\.7\.1 first line")


def sendmail(inst: Instance, subject: str) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mta.cli.sendmail",
            "-C",
            inst.dir,
            "-f",
            "me@mx.test.example",
            "you@mx.test.example",
        ],
        input=f"Subject: {subject}\n\nhello\n".encode(),
        capture_output=True,
        timeout=30,
        env=inst.env,
    )
    assert r.returncode == 0, r.stderr


def test_local_mail_gets_the_non_smtpd_milters(inst):
    sendmail(inst, "plain")
    assert wait_for(lambda: queue_files(inst, "incoming"), 10)
    (path,) = queue_files(inst, "incoming")
    content = b"\n".join(iter_content(path))
    # the fake connect from localhost [127.0.0.1], as Postfix gives non-SMTP mail
    assert b"{mail_addr}=me@mx.test.example" in content
    assert b"{rcpt_addr}=you@mx.test.example" in content


def test_local_mail_quarantined_goes_to_hold(inst):
    sendmail(inst, "quarantine")
    assert wait_for(lambda: queue_files(inst, "hold"), 10)
    inst.wait_log(
        r"milter-hold: END-OF-MESSAGE from local: milter triggers HOLD action; "
        r"from=<me@mx.test.example> to=<you@mx.test.example>: suspicious content"
    )
    assert queue_files(inst, "maildrop") == []


def test_local_mail_rejected_is_kept_in_hold(inst):
    sendmail(inst, "reject")
    inst.wait_log(r"milter-reject: END-OF-MESSAGE from local: 5\.7\.1 Command rejected")
    assert wait_for(lambda: queue_files(inst, "hold"), 10)
    assert queue_files(inst, "incoming") == []


@pytest.mark.parametrize(
    ("subject", "answer"), [("plain", b"K"), ("reject", b"D"), ("tempfail", b"Z")]
)
def test_qmqp_mail_gets_the_non_smtpd_milters(inst, subject, answer):
    from tests.interop.test_intake_paths import qmqp

    message = f"Subject: {subject}\n\nhello\n".encode()
    reply = qmqp(inst.qmqp, message, b"me@mx.test.example", b"you@mx.test.example")
    assert reply.split(b":", 1)[1][:1] == answer, reply  # the netstring's first byte
    if answer == b"K":
        (path,) = queue_files(inst, "incoming")
        assert b"X-Milter-Saw: 1 'plain'" in b"\n".join(iter_content(path))
    else:
        assert queue_files(inst, "incoming") == []
