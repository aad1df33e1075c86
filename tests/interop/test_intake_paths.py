"""Mail in through every door under the real master: SMTP, sendmail/pickup, QMQP,
sendmail -bs; and what a crash at the worst moment leaves behind."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys

import pytest

from mta.queue.queue_file import iter_content, read_queue_file
from tests.support.running import Instance, intake_instance, queue_files, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

SENDMAIL = [sys.executable, "-m", "mta.cli.sendmail"]


@pytest.fixture
def inst(tmp_path):
    inst = intake_instance(tmp_path)
    assert inst.mta("check").returncode == 0
    yield inst
    inst.stop()


def sendmail(inst: Instance, *args: str, stdin: bytes) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SENDMAIL, "-C", inst.dir, *args],
        input=stdin,
        capture_output=True,
        timeout=30,
        env=inst.env,
    )


def test_sendmail_while_running_is_picked_up_at_once(inst):
    assert inst.mta("start").returncode == 0
    r = sendmail(
        inst,
        "-f",
        "me@mx.test.example",
        "you@mx.test.example",
        stdin=b"Subject: via pickup\n\nhello\n",
    )
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: queue_files(inst, "incoming"), 10)
    (path,) = queue_files(inst, "incoming")
    msg = read_queue_file(path)
    assert msg.sender == "me@mx.test.example"
    assert [x.address for x in msg.recipients] == ["you@mx.test.example"]
    assert b"Subject: via pickup" in list(iter_content(path))
    assert queue_files(inst, "maildrop") == []
    inst.wait_log(r"mta/pickup\[\d+\]: \w+: uid=\d+ from=<me@mx.test.example>")


def test_sendmail_while_stopped_waits_for_start(inst):
    r = sendmail(inst, "you@mx.test.example", stdin=b"Subject: queued while down\n\nx\n")
    assert r.returncode == 0, r.stderr
    assert len(queue_files(inst, "maildrop")) == 1
    assert inst.mta("start").returncode == 0
    assert wait_for(lambda: queue_files(inst, "incoming"), 10)
    assert queue_files(inst, "maildrop") == []


def test_broken_maildrop_file_goes_to_corrupt(inst):
    bad = os.path.join(inst.queue, "maildrop", "5BRdsX0QmDzJ9MV")
    with open(bad, "wb") as f:
        f.write(b"C\x05garbage")
    sendmail(inst, "you@mx.test.example", stdin=b"Subject: good\n\nx\n")
    assert inst.mta("start").returncode == 0
    assert wait_for(lambda: queue_files(inst, "corrupt"), 10)
    assert wait_for(lambda: len(queue_files(inst, "incoming")) == 1, 10)
    inst.wait_log(r"5BRdsX0QmDzJ9MV: .*moved to corrupt")


def netstring(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


def qmqp(port: int, message: bytes, sender: bytes, *rcpts: bytes, source="127.0.0.1") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        body = netstring(message) + netstring(sender) + b"".join(netstring(r) for r in rcpts)
        s.sendall(netstring(body))
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
        return reply


def test_qmqp_message_is_queued(inst):
    assert inst.mta("start").returncode == 0
    reply = qmqp(
        inst.qmqp,
        b"Subject: qmqp\n\nbody\n",
        b"q@mx.test.example",
        b"a@mx.test.example",
        b"b@mx.test.example",
    )
    length, _, rest = reply.partition(b":")
    assert rest.startswith(b"KOk: queued as") and int(length) == len(rest) - 1
    (path,) = queue_files(inst, "incoming")
    msg = read_queue_file(path)
    assert msg.attrs["protocol"] == "QMQP"
    assert [x.address for x in msg.recipients] == ["a@mx.test.example", "b@mx.test.example"]


def test_qmqp_refuses_unauthorized_clients(inst):
    assert inst.mta("start").returncode == 0
    reply = qmqp(inst.qmqp, b"x\n", b"q@x.example", b"a@mx.test.example", source="127.0.0.2")
    assert reply.partition(b":")[2].startswith(b"D")
    assert queue_files(inst, "incoming") == []


def test_qmqp_garbage_gets_a_permanent_error(inst):
    assert inst.mta("start").returncode == 0
    with socket.create_connection(("127.0.0.1", inst.qmqp), timeout=10) as s:
        s.sendall(b"12:not a netstring,")
        assert s.recv(4096).partition(b":")[2].startswith(b"D")


def test_sendmail_bs_speaks_smtp_on_stdio(inst):
    script = (
        b"EHLO local.example\r\nMAIL FROM:<me@mx.test.example>\r\n"
        b"RCPT TO:<you@mx.test.example>\r\nDATA\r\nSubject: bs\r\n\r\nhi\r\n.\r\nQUIT\r\n"
    )
    r = subprocess.run(
        [*SENDMAIL, "-C", inst.dir, "-bs"],
        input=script,
        capture_output=True,
        timeout=30,
        env=inst.env,
    )
    replies = r.stdout.decode().splitlines()
    assert replies[0].startswith("220 ")
    assert any(x.startswith("250 2.0.0 Ok: queued as") for x in replies), replies
    assert replies[-1] == "221 2.0.0 Bye"
    assert len(queue_files(inst, "maildrop")) == 1


def smtpd_pids(inst: Instance) -> list[int]:
    return inst.children(f"127.0.0.1:{inst.port}")


def test_kill_9_after_250_loses_nothing_and_mid_data_leaves_nothing(inst):
    assert inst.mta("start").returncode == 0
    s = smtplib.SMTP("127.0.0.1", inst.port, timeout=10)
    s.ehlo("c.example")
    s.mail("a@mx.test.example")
    s.rcpt("u@mx.test.example")
    code, text = s.data(b"Subject: acknowledged\r\n\r\nkeep me\r\n")
    assert code == 250
    # a second message, cut off in the middle of DATA
    s.mail("a@mx.test.example")
    s.rcpt("u@mx.test.example")
    s.putcmd("DATA")
    assert s.getreply()[0] == 354
    s.send(b"Subject: half\r\n\r\nhalf of a mess")
    pids = wait_for(lambda: smtpd_pids(inst), 5)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    s.close()
    files = queue_files(inst, "incoming")
    assert len(files) == 1
    assert text.split()[-1].decode() == os.path.basename(files[0])
    assert b"keep me" in list(iter_content(files[0]))
    # and the master starts a new smtpd for the next client
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s2:
        assert s2.ehlo()[0] == 250


def test_maildrop_file_cleanup_refuses_goes_to_hold_not_lost(inst):
    checks = os.path.join(inst.dir, "header_checks")
    with open(checks, "w") as f:
        f.write("/^Subject: reject me/ REJECT not wanted here\n")
    with open(os.path.join(inst.dir, "main.cf"), "a") as f:
        f.write(f"header_checks = regexp:{checks}\n")
    r = sendmail(inst, "you@mx.test.example", stdin=b"Subject: reject me\n\nx\n")
    assert r.returncode == 0, r.stderr
    assert inst.mta("start").returncode == 0
    assert wait_for(lambda: queue_files(inst, "hold"), 10)
    assert queue_files(inst, "maildrop") == [] and queue_files(inst, "incoming") == []
    inst.wait_log(r"rejected: .*; moved to hold")


def test_maildrop_file_with_undecodable_sender_goes_to_corrupt(inst):
    from mta.queue.queue_file import QueueFileWriter, Recipient

    w = QueueFileWriter(inst.queue, "maildrop")
    w.write_envelope("ab@x.example", [Recipient("you@mx.test.example")])
    w.write_content(b"Subject: odd\n\nx\n")
    w.commit()
    with open(w.path, "rb") as f:
        data = f.read()
    with open(w.path, "wb") as f:  # a sender that is not UTF-8, same length
        f.write(data.replace(b"ab@x.example", b"\xff\xfe@x.example"))
    sendmail(inst, "you@mx.test.example", stdin=b"Subject: good\n\nx\n")
    assert inst.mta("start").returncode == 0
    assert wait_for(lambda: len(queue_files(inst, "incoming")) == 1, 10)
    assert wait_for(lambda: queue_files(inst, "corrupt"), 10)
