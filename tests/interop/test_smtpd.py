"""smtpd over real sockets: smtplib, raw bytes, swaks and smtp-source as clients."""

import os
import re
import shutil
import smtplib
import subprocess
import time

import pytest

from mta.queue.queue_file import iter_content, read_queue_file
from tests.support.instance import RawClient, greet, incoming_files
from tests.support.running import wait_for

pytestmark = pytest.mark.interop

MESSAGE = b"Subject: test\r\nFrom: a@sender.example\r\n\r\nHello.\r\n.leading dot\r\n"


def test_smtplib_message_is_queued_durably(smtpd):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        s.mail("a@sender.example")
        s.rcpt("user@mx.test.example")
        code, text = s.data(MESSAGE)
    assert code == 250 and text.startswith(b"2.0.0 Ok: queued as ")
    qid = text.split()[-1].decode()
    (path,) = incoming_files(smtpd.cdir)
    assert path.endswith(qid)
    msg = read_queue_file(path)
    assert msg.sender == "a@sender.example"
    assert [r.address for r in msg.recipients] == ["user@mx.test.example"]
    assert msg.attrs["protocol"] == "ESMTP"
    assert msg.attrs["helo_name"] == "client.example"
    lines = list(iter_content(path))
    assert b"Hello." in lines and b".leading dot" in lines
    assert any(line.startswith(b"Received: from client.example") for line in lines)


def test_ehlo_announces_the_extensions(smtpd):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("c.example")
        for ext in (
            "pipelining",
            "size",
            "8bitmime",
            "smtputf8",
            "enhancedstatuscodes",
            "dsn",
            "chunking",
            "etrn",
        ):
            assert s.has_extn(ext), ext
        assert s.has_extn("vrfy")  # disable_vrfy_command = no, as in Postfix
        assert s.esmtp_features["size"] == "10240000"


def test_outside_client_cannot_relay(smtpd):
    client = RawClient(smtpd.port, source="127.0.0.2")
    greet(client)
    client.send(b"MAIL FROM:<a@outside.example>\r\n")
    assert client.reply().startswith("250")
    client.send(b"RCPT TO:<victim@elsewhere.example>\r\n")
    reply = client.reply()
    assert reply == "454 4.7.1 <victim@elsewhere.example>: Relay access denied"
    client.send(b"RCPT TO:<user@mx.test.example>\r\n")
    assert client.reply().startswith("250")
    client.close()
    log = (smtpd.cdir.parent / "maillog").read_text()
    assert "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 454 4.7.1" in log
    assert "to=<victim@elsewhere.example> proto=ESMTP helo=<client.example>" in log


def test_trusted_client_may_relay(smtpd):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("c.example")
        s.mail("a@mx.test.example")
        assert s.rcpt("someone@elsewhere.example")[0] == 250


@pytest.mark.parametrize("smuggle", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n"])
def test_smuggling_never_ends_data_early(smtpd, smuggle):
    client = RawClient(smtpd.port)  # 127.0.0.1 is excluded from the bare-LF rule
    greet(client)
    client.send(b"MAIL FROM:<a@mx.test.example>\r\n")
    client.reply()
    client.send(b"RCPT TO:<u@mx.test.example>\r\n")
    client.reply()
    client.send(b"DATA\r\n")
    assert client.reply().startswith("354")
    client.send(
        b"Subject: s\r\n\r\nbefore" + smuggle + b"MAIL FROM:<evil@x>\r\nRCPT TO:<x@y>\r\n"
        b"DATA\r\nsmuggled\r\n.\r\n"
    )
    reply = client.reply()
    assert reply.startswith("250 2.0.0 Ok: queued as")
    (path,) = incoming_files(smtpd.cdir)
    assert [r.address for r in read_queue_file(path).recipients] == ["u@mx.test.example"]
    assert b"MAIL FROM:<evil@x>" in b"\n".join(iter_content(path))


def test_bare_lf_from_outside_is_refused(smtpd):
    client = RawClient(smtpd.port, source="127.0.0.2")
    greet(client)
    client.send(b"MAIL FROM:<a@x.example>\r\nRCPT TO:<u@mx.test.example>\r\n")
    client.reply(), client.reply()
    client.send(b"DATA\r\n")
    client.reply()
    client.send(b"line\n.\nmore\r\n")
    assert client.reply() == "521 5.5.2 mx.test.example Error: bare <LF> received"
    assert client.closed()
    assert incoming_files(smtpd.cdir) == []


def test_pipelined_transaction_is_answered_in_one_batch(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(
        b"MAIL FROM:<a@mx.test.example>\r\nRCPT TO:<u@mx.test.example>\r\n"
        b"RCPT TO:<v@mx.test.example>\r\nDATA\r\n"
    )
    assert [client.reply() for _ in range(4)] == [
        "250 2.1.0 Ok",
        "250 2.1.5 Ok",
        "250 2.1.5 Ok",
        "354 End data with <CR><LF>.<CR><LF>",
    ]
    client.send(b"Subject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert client.reply().startswith("250 2.0.0 Ok: queued as")
    assert client.reply() == "221 2.0.0 Bye"


def test_commands_sent_ahead_of_ehlo_reply_end_the_session(smtpd):
    client = RawClient(smtpd.port)
    assert client.reply().startswith("220")
    client.send(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n")
    assert client.reply() == "554 5.5.0 Error: SMTP protocol synchronization"
    assert client.closed()


def test_data_sent_before_354_is_a_violation(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"MAIL FROM:<a@mx.test.example>\r\nRCPT TO:<u@mx.test.example>\r\n")
    client.reply(), client.reply()
    client.send(b"DATA\r\nSubject: early\r\n\r\nx\r\n.\r\n")
    assert client.reply() == "554 5.5.0 Error: SMTP protocol synchronization"
    assert incoming_files(smtpd.cdir) == []


@pytest.mark.main_cf("message_size_limit = 1000\n")
def test_size_limits(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"MAIL FROM:<a@mx.test.example> SIZE=2000\r\n")
    assert client.reply() == "552 5.3.4 Message size exceeds fixed limit"
    client.send(b"MAIL FROM:<a@mx.test.example> SIZE=100\r\n")
    assert client.reply() == "250 2.1.0 Ok"
    client.send(b"RCPT TO:<u@mx.test.example>\r\n")
    client.reply()
    client.send(b"DATA\r\n")
    client.reply()
    client.send(
        b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n" * 1 + (b"y" * 70 + b"\r\n") * 20 + b".\r\n"
    )
    assert client.reply() == "552 5.3.4 Message size exceeds fixed limit"
    client.send(b"NOOP\r\n")
    assert client.reply() == "250 2.0.0 Ok"
    assert incoming_files(smtpd.cdir) == []


def test_bdat_chunks(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"MAIL FROM:<a@mx.test.example>\r\nRCPT TO:<u@mx.test.example>\r\n")
    client.reply(), client.reply()
    first = b"Subject: chunked\r\n\r\n"
    second = b"body line\r\n"
    client.send(b"BDAT %d\r\n" % len(first) + first + b"BDAT %d LAST\r\n" % len(second) + second)
    assert client.reply() == f"250 2.0.0 Ok: {len(first)} bytes"
    assert client.reply().startswith("250 2.0.0 Ok: queued as")
    (path,) = incoming_files(smtpd.cdir)
    assert list(iter_content(path))[-2:] == [b"", b"body line"]


@pytest.mark.main_cf("smtpd_hard_error_limit = 3\n")
def test_error_flood_ends_with_421(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"BOGUS\r\n")
    assert client.reply() == "502 5.5.2 Error: command not recognized"
    client.send(b"RCPT TO:<x@y>\r\n")
    assert client.reply() == "503 5.5.1 Error: need MAIL command"
    client.send(b"DATA\r\n")
    assert client.reply() == "421 4.7.0 mx.test.example Error: too many errors"
    assert client.closed()


def test_malformed_commands_get_rfc_replies(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    cases = [
        (b"MAIL FROM:<bad address@x>\r\n", "501 5.1.7 Bad sender address syntax"),
        (b"MAIL TO:<a@b>\r\n", "501 5.5.4 Syntax: MAIL FROM:<address>"),
        (b"MAIL FROM:<a@mx.test.example> FOO=1\r\n", "555 5.5.4 Unsupported option: FOO"),
        (b"EHLO\r\n", "501 5.5.4 Syntax: EHLO hostname"),
        (b"\r\n", "500 5.5.2 Error: bad syntax"),
        (b"MAIL FROM:<a@mx.test.example>\r\n", "250 2.1.0 Ok"),
        (b"MAIL FROM:<a@mx.test.example>\r\n", "503 5.5.1 Error: nested MAIL command"),
        (b"RCPT TO:<>\r\n", "501 5.1.3 Bad recipient address syntax"),
        (
            b"RCPT TO:<u@mx.test.example> NOTIFY=SOMETIMES\r\n",
            "501 5.5.4 Error: Bad NOTIFY parameter syntax",
        ),
        (b"DATA\r\n", "503 5.5.1 Error: need RCPT command"),
        (b"RSET\r\n", "250 2.0.0 Ok"),
        (b"VRFY u@mx.test.example\r\n", "252 2.0.0 u@mx.test.example"),
        (b"NOOP\r\n", "250 2.0.0 Ok"),
    ]
    for line, expected in cases:
        client.send(line)
        assert client.reply() == expected, line


@pytest.mark.parametrize(
    "strict",
    [
        pytest.param(False, marks=pytest.mark.main_cf("strict_rfc821_envelopes = no\n")),
        pytest.param(True, marks=pytest.mark.main_cf("strict_rfc821_envelopes = yes\n")),
    ],
)
def test_strict_rfc821_envelopes_wants_angle_brackets(smtpd, strict):
    """strict_rfc821_envelopes = yes refuses MAIL FROM and RCPT TO addresses without <>,
    with the bad-syntax replies; the default takes them, as Postfix does."""
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"MAIL FROM:a@mx.test.example\r\n")
    assert client.reply() == ("501 5.1.7 Bad sender address syntax" if strict else "250 2.1.0 Ok")
    if strict:
        client.send(b"MAIL FROM:<a@mx.test.example>\r\n")
        assert client.reply() == "250 2.1.0 Ok"
    client.send(b"RCPT TO:u@mx.test.example\r\n")
    expected = "501 5.1.3 Bad recipient address syntax" if strict else "250 2.1.5 Ok"
    assert client.reply() == expected
    client.send(b"RCPT TO:<u@mx.test.example>\r\n")
    assert client.reply() == "250 2.1.5 Ok"


def test_over_long_command_line_is_refused_and_session_goes_on(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"NOOP " + b"x" * 5000 + b"\r\nNOOP\r\n")
    assert client.reply() == "500 5.5.0 Error: line too long"
    assert client.reply() == "250 2.0.0 Ok"


@pytest.mark.parametrize(
    "line",
    [b"GET / HTTP/1.1", b"CONNECT mx.example:25 HTTP/1.0", b"Subject: spam", b"1nvalid verb"],
)
def test_non_smtp_commands_end_the_session_with_221(smtpd, line):
    # smtpd_forbidden_commands (CONNECT GET POST and verbs not starting with a letter)
    # and header lines where a command belongs: a web proxy probe or a dumb spam bot
    client = RawClient(smtpd.port)
    greet(client)
    client.send(line + b"\r\nNOOP\r\n")
    assert client.reply() == "221 2.7.0 Error: I can break rules, too. Goodbye."
    with pytest.raises(ConnectionError):
        client.reply()  # the NOOP is never answered: the session is over
    assert wait_for(lambda: "non-SMTP command from" in smtpd.maillog.read_text(), 5)
    pattern = r"warning: non-SMTP command from \S+\[127\.0\.0\.1\]: " + re.escape(line.decode())
    assert re.search(pattern, smtpd.maillog.read_text())


@pytest.mark.main_cf("smtpd_forbidden_commands = CONNECT\n")
def test_forbidden_commands_follow_the_parameter(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"GET / HTTP/1.1\r\n")
    assert client.reply() == "502 5.5.2 Error: command not recognized"
    client.send(b"CONNECT x:25\r\n")
    assert client.reply() == "221 2.7.0 Error: I can break rules, too. Goodbye."


@pytest.mark.main_cf("smtpd_timeout = 1s\n")
def test_idle_client_times_out(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    start = time.monotonic()
    assert client.reply() == "421 4.4.2 mx.test.example Error: timeout exceeded"
    assert 0.5 < time.monotonic() - start < 5


def test_dsn_parameters_are_kept(smtpd):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("c.example")
        s.mail("a@mx.test.example", ["RET=HDRS", "ENVID=abc+2B1"])
        s.rcpt("u@mx.test.example", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;U+40mx.test.example"])
        s.data(MESSAGE)
    (path,) = incoming_files(smtpd.cdir)
    msg = read_queue_file(path)
    assert (msg.attrs["ret"], msg.attrs["envid"]) == ("HDRS", "abc+1")
    (rcpt,) = msg.recipients
    assert (rcpt.notify, rcpt.dsn_orcpt) == (6, "rfc822;U@mx.test.example")


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_sends_a_message(smtpd):
    result = subprocess.run(
        [
            "swaks",
            "--server",
            f"127.0.0.1:{smtpd.port}",
            "--from",
            "a@mx.test.example",
            "--to",
            "u@mx.test.example",
            "--helo",
            "swaks.example",
            "--pipeline",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout
    assert "Ok: queued as" in result.stdout
    assert len(incoming_files(smtpd.cdir)) == 1


@pytest.mark.skipif(shutil.which("smtp-source") is None, reason="smtp-source not installed")
def test_smtp_source_load(smtpd):
    result = subprocess.run(
        [
            "smtp-source",
            "-s",
            "5",
            "-m",
            "40",
            "-l",
            "2000",
            "-f",
            "a@mx.test.example",
            "-t",
            "u@mx.test.example",
            f"127.0.0.1:{smtpd.port}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert len(incoming_files(smtpd.cdir)) == 40


def test_log_lines_in_postfix_form(smtpd):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        s.mail("a@sender.example")
        s.rcpt("user@mx.test.example")
        qid = s.data(MESSAGE)[1].split()[-1].decode()
    maillog = smtpd.cdir.parent / "maillog"
    assert wait_for(lambda: "disconnect from" in maillog.read_text(), 5)
    log = maillog.read_text()
    assert f"mta/smtpd[{os.getpid()}]: connect from localhost[127.0.0.1]" in log
    assert f": {qid}: client=localhost[127.0.0.1]\n" in log
    assert re.search(rf": {qid}: message-id=<[^>]+@mx.test.example>\n", log)
    assert re.search(
        r"disconnect from localhost\[127.0.0.1\] ehlo=1 mail=1 rcpt=1 data=1 quit=1 "
        r"commands=5\n",
        log,
    )


def test_pipelined_bdat_with_bare_lfs_keeps_exact_byte_counts(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"MAIL FROM:<a@mx.test.example>\r\nRCPT TO:<u@mx.test.example>\r\n")
    client.reply(), client.reply()
    chunk = b"Subject: lf\n\nline one\nMAIL FROM:<evil@x>\nRSET\n"
    client.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"NOOP\r\n")
    assert client.reply().startswith("250 2.0.0 Ok: queued as")
    assert client.reply() == "250 2.0.0 Ok"
    (path,) = incoming_files(smtpd.cdir)
    assert list(iter_content(path))[-2:] == [b"MAIL FROM:<evil@x>", b"RSET"]


@pytest.mark.main_cf("smtpd_forbid_unauth_pipelining = no\nsmtpd_forbid_bare_newline = no\n")
def test_pipelined_data_with_bare_lf_dot_is_not_smuggled(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(
        b"MAIL FROM:<a@mx.test.example>\r\nRCPT TO:<u@mx.test.example>\r\nDATA\r\n"
        b"Subject: s\r\n\r\nbody\n.\nMAIL FROM:<evil@x>\r\nRCPT TO:<v@x>\r\n.\r\n"
    )
    replies = [client.reply() for _ in range(4)]
    assert replies[:3] == ["250 2.1.0 Ok", "250 2.1.5 Ok", "354 End data with <CR><LF>.<CR><LF>"]
    assert replies[3].startswith("250 2.0.0 Ok: queued as")
    (path,) = incoming_files(smtpd.cdir)
    assert [r.address for r in read_queue_file(path).recipients] == ["u@mx.test.example"]


def test_rcpt_after_bdat_is_refused(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"MAIL FROM:<a@mx.test.example>\r\nRCPT TO:<u@mx.test.example>\r\n")
    client.reply(), client.reply()
    client.send(b"BDAT 5\r\nhello")
    assert client.reply() == "250 2.0.0 Ok: 5 bytes"
    client.send(b"RCPT TO:<late@mx.test.example>\r\n")
    assert client.reply() == "503 5.5.1 Error: RCPT command after BDAT"


def test_ehlo_in_the_middle_of_bdat_leaves_no_file(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    for _ in range(5):
        client.send(b"MAIL FROM:<a@mx.test.example>\r\nRCPT TO:<u@mx.test.example>\r\n")
        client.reply(), client.reply()
        client.send(b"BDAT 5\r\nhello")
        client.reply()
        client.send(b"EHLO again.example\r\n")
        assert client.reply().startswith("250-mx.test.example")
    client.send(b"QUIT\r\n")
    client.reply()
    spool = smtpd.cdir.parent / "spool" / "incoming"
    assert wait_for(lambda: os.listdir(spool) == [], 5), os.listdir(spool)


@pytest.mark.main_cf("smtpd_hard_error_limit = 3\n")
def test_a_queued_message_resets_the_error_count(smtpd):
    client = RawClient(smtpd.port, source="127.0.0.2")
    greet(client)
    for _ in range(4):
        client.send(b"MAIL FROM:<a@x.example>\r\n")
        assert client.reply() == "250 2.1.0 Ok"
        client.send(b"RCPT TO:<v@elsewhere.example>\r\n")
        assert client.reply().startswith("454")
        client.send(b"RCPT TO:<u@mx.test.example>\r\n")
        assert client.reply() == "250 2.1.5 Ok"
        client.send(b"DATA\r\n")
        client.reply()
        client.send(b"Subject: ok\r\n\r\nx\r\n.\r\n")
        assert client.reply().startswith("250 2.0.0 Ok: queued as")
