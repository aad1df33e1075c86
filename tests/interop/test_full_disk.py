"""A full disk: the client hears 4.3.x, no queue file is left, and nothing already
queued is lost. The spool is a small tmpfs mounted for the test (root only)."""

import os
import smtplib
import subprocess

import pytest

from mta.bounce.notice import NOTICE_ATTR
from mta.queue.queue_file import read_queue_file
from tests.support.instance import SmtpdThread, incoming_files, make_instance
from tests.support.running import wait_for

pytestmark = pytest.mark.interop


@pytest.fixture
def small_spool(tmp_path):
    if os.getuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    spool = tmp_path / "spool"
    spool.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(spool)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield spool
    subprocess.run(["umount", "-l", str(spool)], capture_output=True)


def send(port, body: bytes):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("c.example")
        s.mail("a@mx.test.example")
        s.rcpt("u@mx.test.example")
        return s.data(body)


def notice_files(cdir):
    """Files in incoming/ that hold smtpd's error notice to the postmaster."""
    return [p for p in incoming_files(cdir) if read_queue_file(p).attrs.get(NOTICE_ATTR)]


def leftovers(spool):
    return [os.path.join(r, f) for r, _, files in os.walk(spool / "incoming") for f in files]


def test_full_disk_defers_and_keeps_what_was_queued(tmp_path, small_spool):
    cdir = make_instance(tmp_path)
    server = SmtpdThread(cdir)
    try:
        code, text = send(server.port, b"Subject: first\r\n\r\nsmall\r\n")
        assert code == 250
        first = incoming_files(cdir)
        with open(small_spool / "filler", "wb") as f:
            try:
                f.write(b"\0" * (600 << 10))
            except OSError:
                pass
        code, text = send(server.port, b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 3000)
        assert code in (451, 452) and text.startswith(b"4.3."), (code, text)
        # a resource problem (default notify_classes): smtpd tries to tell the
        # postmaster when the session ends; the notice fits or fails cleanly
        maillog = tmp_path / "maillog"
        assert wait_for(lambda: "error notice" in maillog.read_text() or notice_files(cdir))
        notices = notice_files(cdir)
        # no temporary or partial file remains
        assert sorted(set(leftovers(small_spool)) - set(notices)) == first
        assert read_queue_file(first[0]).sender == "a@mx.test.example"
        os.unlink(small_spool / "filler")
        code, _ = send(server.port, b"Subject: after\r\n\r\nroom again\r\n")
        assert code == 250
        assert len(incoming_files(cdir)) == 2 + len(notices)
    finally:
        server.close()


def test_declared_size_beyond_free_space_gets_452(tmp_path, small_spool):
    cdir = make_instance(tmp_path, "queue_minfree = 100000\n")
    server = SmtpdThread(cdir)
    try:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as s:
            s.ehlo("c.example")
            code, text = s.mail("a@mx.test.example", ["SIZE=500000"])
            assert (code, text) == (452, b"4.3.1 Insufficient system storage")
            code, _ = s.mail("a@mx.test.example", ["SIZE=1000"])
            assert code == 250
    finally:
        server.close()
