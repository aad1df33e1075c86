"""notify_classes in smtpd: the postmaster's notice with the session transcript, over smtplib."""

import email
import email.policy
import smtplib
import time

import pytest

from mta.bounce.notice import NOTICE_ATTR
from mta.queue.queue_file import iter_content, read_queue_file
from tests.support.instance import RawClient, incoming_files
from tests.support.running import wait_for

pytestmark = pytest.mark.interop

SECRET = b"the-body-must-never-show-up-in-a-notice"
MESSAGE = b"Subject: test\r\nFrom: a@mx.test.example\r\n\r\n" + SECRET + b"\r\n"


def queued(cdir):
    """(QueueMessage, content bytes) of each file in incoming/."""
    out = []
    for path in incoming_files(cdir):
        msg = read_queue_file(path)
        out.append((msg, b"\n".join(iter_content(path, msg)) + b"\n"))
    return out


def notices(cdir):
    return [(msg, data) for msg, data in queued(cdir) if msg.attrs.get(NOTICE_ATTR)]


def sessions_ended(smtpd, count):
    """Wait until count sessions have logged their disconnect, then a little longer."""
    wait_for(lambda: smtpd.maillog.read_text().count("disconnect from") >= count)
    time.sleep(0.3)  # a notice would have been fsynced and renamed by now


def parse(data):
    return email.message_from_bytes(data, policy=email.policy.default)


def clean_session(port):
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.ehlo("client.example")
        s.sendmail("a@mx.test.example", ["user@mx.test.example"], MESSAGE)


@pytest.mark.main_cf("notify_classes = protocol\n")
def test_unknown_command_gives_one_notice_with_the_transcript(smtpd):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.docmd("BOGUS", "stuff")[0] == 502
        assert s.docmd("FROBNICATE")[0] == 502
        s.sendmail("a@mx.test.example", ["user@mx.test.example"], MESSAGE)
    wait_for(lambda: notices(smtpd.cdir))
    sessions_ended(smtpd, 1)
    ((msg, data),) = notices(smtpd.cdir)
    assert msg.sender == ""
    assert msg.attrs[NOTICE_ATTR] == "postmaster"
    assert [r.address.split("@")[0] for r in msg.recipients] == ["postmaster"]
    mail = parse(data)
    assert mail["Subject"] == "mta SMTP server: errors from localhost[127.0.0.1]" or mail[
        "Subject"
    ] == ("mta SMTP server: errors from unknown[127.0.0.1]")
    assert mail["From"].addresses[0].username == "MAILER-DAEMON"
    body = mail.get_content()
    lines = body.splitlines()
    start = lines.index("S: 220 mx.test.example ESMTP mta")
    assert lines[start + 1] == "C: ehlo client.example"
    assert "C: BOGUS stuff" in lines and "C: FROBNICATE" in lines
    assert lines[lines.index("C: BOGUS stuff") + 1] == "S: 502 5.5.2 Error: command not recognized"
    assert "-- (message content not shown)" in lines
    assert lines[-2:] == ["C: QUIT", "S: 221 2.0.0 Bye"]
    assert SECRET not in data and b"Subject: test" not in data
    assert len(queued(smtpd.cdir)) == 2  # the message and the one notice
    log = smtpd.maillog.read_text()
    assert f"{msg.queue_id}: notice to postmaster: protocol errors from " in log


def test_default_classes_send_nothing_for_clean_or_protocol_sessions(smtpd):
    clean_session(smtpd.port)
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.docmd("BOGUS")[0] == 502
        assert s.docmd("RCPT", "TO:<user@mx.test.example>")[0] == 503
    sessions_ended(smtpd, 2)
    assert [msg.sender for msg, _ in queued(smtpd.cdir)] == ["a@mx.test.example"]
    assert "notice to" not in smtpd.maillog.read_text()


def test_default_classes_keep_no_transcript(smtpd):
    session_seen = []
    smtpd.server.on_session_end = lambda: session_seen.extend(smtpd.server.sessions)
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        (session,) = smtpd.server.sessions
        assert session.transcript is None
        assert s.docmd("BOGUS")[0] == 502
        assert session.transcript is None and session.trouble


@pytest.mark.main_cf("notify_classes = policy\n")
def test_policy_reject_gives_a_notice(smtpd):
    client = RawClient(smtpd.port, source="127.0.0.2")
    assert client.reply().startswith("220")
    client.send(b"EHLO client.example\r\n")
    client.reply()
    client.send(b"MAIL FROM:<a@outside.example>\r\n")
    assert client.reply().startswith("250")
    client.send(b"RCPT TO:<victim@elsewhere.example>\r\n")
    assert client.reply().startswith("454 4.7.1")
    client.send(b"QUIT\r\n")
    client.reply()
    client.close()
    wait_for(lambda: notices(smtpd.cdir))
    sessions_ended(smtpd, 1)
    ((msg, data),) = notices(smtpd.cdir)
    assert msg.sender == "" and msg.attrs[NOTICE_ATTR] == "postmaster"
    mail = parse(data)
    assert mail["Subject"].endswith("[127.0.0.2]")
    lines = mail.get_content().splitlines()
    i = lines.index("C: RCPT TO:<victim@elsewhere.example>")
    assert lines[i + 1] == "S: 454 4.7.1 <victim@elsewhere.example>: Relay access denied"
    assert "C: MAIL FROM:<a@outside.example>" in lines[:i]


@pytest.mark.main_cf("notify_classes = resource, software, protocol\n")
def test_policy_reject_alone_is_not_reported_without_policy(smtpd):
    client = RawClient(smtpd.port, source="127.0.0.2")
    client.reply()
    for line in (b"EHLO client.example", b"MAIL FROM:<a@outside.example>"):
        client.send(line + b"\r\n")
        assert client.reply().startswith("250")
    client.send(b"RCPT TO:<victim@elsewhere.example>\r\n")
    assert client.reply().startswith("454")
    client.send(b"QUIT\r\n")
    client.reply()
    client.close()
    sessions_ended(smtpd, 1)
    assert notices(smtpd.cdir) == []


@pytest.mark.main_cf(
    "smtpd_sender_restrictions = check_sender_access inline:{ b.example=bogus_thing }\n"
)
def test_broken_table_gives_a_software_notice_with_default_classes(smtpd):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        s.mail("a@b.example")
        code, text = s.rcpt("user@mx.test.example")
        assert (code, text) == (451, b"4.3.5 Server configuration error")
    wait_for(lambda: notices(smtpd.cdir))
    sessions_ended(smtpd, 1)
    ((msg, data),) = notices(smtpd.cdir)
    assert msg.sender == "" and msg.attrs[NOTICE_ATTR] == "postmaster"
    body = parse(data).get_content()
    assert ": software." in body
    lines = body.splitlines()
    # no ring with the default classes: the transcript starts at the failing command
    first = lines.index("C: rcpt TO:<user@mx.test.example>")
    assert lines[first - 1] == ""
    assert lines[first + 1] == "S: 451 4.3.5 Server configuration error"
    assert lines[-2:] == ["C: QUIT", "S: 221 2.0.0 Bye"]
    assert "C: ehlo client.example" not in lines
    assert "software errors from" in smtpd.maillog.read_text()


@pytest.mark.main_cf("queue_minfree = 1000000000000000\n")
def test_short_queue_space_gives_a_resource_notice(smtpd):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.mail("a@mx.test.example") == (452, b"4.3.1 Insufficient system storage")
    wait_for(lambda: notices(smtpd.cdir))
    ((msg, data),) = notices(smtpd.cdir)
    lines = parse(data).get_content().splitlines()
    i = lines.index("C: mail FROM:<a@mx.test.example>")
    assert lines[i + 1] == "S: 452 4.3.1 Insufficient system storage"


@pytest.mark.main_cf("notify_classes = protocol\n")
def test_data_and_bdat_content_never_enter_the_transcript(smtpd):
    client = RawClient(smtpd.port)
    client.reply()
    steps = [
        (b"EHLO client.example\r\n", "250"),
        (b"BOGUS\r\n", "502"),
        (b"MAIL FROM:<a@mx.test.example>\r\n", "250"),
        (b"RCPT TO:<user@mx.test.example>\r\n", "250"),
        (b"DATA\r\n", "354"),
        (b"Subject: one\r\n\r\nRCPT TO:<" + SECRET + b"@x>\r\n.\r\n", "250"),
        (b"MAIL FROM:<a@mx.test.example>\r\n", "250"),
        (b"RCPT TO:<user@mx.test.example>\r\n", "250"),
    ]
    for line, code in steps:
        client.send(line)
        assert client.reply().startswith(code)
    chunk = b"Subject: two\r\n\r\n" + SECRET + b"\r\n"
    client.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
    assert client.reply().startswith("250")
    client.send(b"QUIT\r\n")
    client.reply()
    client.close()
    wait_for(lambda: notices(smtpd.cdir))
    sessions_ended(smtpd, 1)
    ((msg, data),) = notices(smtpd.cdir)
    assert SECRET not in data
    lines = parse(data).get_content().splitlines()
    assert lines.count("-- (message content not shown)") == 1
    assert f"C: BDAT {len(chunk)} LAST" in lines
    assert len(queued(smtpd.cdir)) == 3


def send_too_big(port):
    """A message over message_size_limit, without SIZE=: refused at the end of DATA."""
    big = b"Subject: big\r\n\r\n" + b"x" * 3000 + b"\r\n"
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.ehlo("client.example")
        s.mail("a@mx.test.example")
        s.rcpt("user@mx.test.example")
        assert s.data(big)[0] == 552


@pytest.mark.main_cf(
    "notify_classes = bounce\nmessage_size_limit = 2000\n"
    "bounce_notice_recipient = bounces@mx.test.example\n"
)
def test_bounce_class_sends_a_message_refused_for_size_to_bounce_notice_recipient(smtpd):
    send_too_big(smtpd.port)
    wait_for(lambda: notices(smtpd.cdir))
    sessions_ended(smtpd, 1)
    ((msg, data),) = notices(smtpd.cdir)
    assert [r.address for r in msg.recipients] == ["bounces@mx.test.example"]
    mail = parse(data)
    assert mail["To"] == "bounces@mx.test.example"
    assert "552 5.3.4 Message size exceeds fixed limit" in mail.get_content()
    assert b"xxxx" not in data  # never the content


@pytest.mark.main_cf("message_size_limit = 2000\n")
def test_without_the_bounce_class_a_refused_message_sends_nothing(smtpd):
    send_too_big(smtpd.port)
    sessions_ended(smtpd, 1)
    assert notices(smtpd.cdir) == []
