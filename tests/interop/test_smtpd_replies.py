"""smtpd replies as Postfix gives them: recipient limits, VRFY, reject footers, HELO text."""

import re
import smtplib

import pytest

from mta.queue.queue_file import iter_content, read_queue_file
from tests.support.instance import RawClient, SmtpdThread, greet, incoming_files, make_instance

pytestmark = pytest.mark.interop

MESSAGE = b"Subject: test\r\nFrom: a@sender.example\r\n\r\nHello.\r\n"


# ---------------------------------------------------------------- recipient limits


def test_recipients_past_the_limit_get_452_and_the_rest_is_queued(smtpd):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        s.mail("a@sender.example")
        # more over the limit than smtpd_hard_error_limit (20) errors
        codes = [s.rcpt(f"u{i}@mx.test.example") for i in range(1030)]
        code, text = s.data(MESSAGE)
    assert [c for c, _ in codes[:1000]] == [250] * 1000
    assert codes[1000:] == [(452, b"4.5.3 Error: too many recipients")] * 30
    assert code == 250, text
    (path,) = incoming_files(smtpd.cdir)
    rcpts = [r.address for r in read_queue_file(path).recipients]
    assert rcpts == [f"u{i}@mx.test.example" for i in range(1000)]


@pytest.mark.main_cf(
    "smtpd_recipient_limit = 2\nsmtpd_recipient_overshoot_limit = 3\nsmtpd_hard_error_limit = 2\n"
)
def test_recipients_past_the_overshoot_limit_count_as_errors(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"MAIL FROM:<a@sender.example>\r\n")
    assert client.reply() == "250 2.1.0 Ok"
    replies = []
    for i in range(6):
        client.send(b"RCPT TO:<u%d@mx.test.example>\r\n" % i)
        replies.append(client.reply())
    assert replies == ["250 2.1.5 Ok"] * 2 + ["452 4.5.3 Error: too many recipients"] * 4
    # the fourth over the limit was the first error, this one the second
    client.send(b"RCPT TO:<u9@mx.test.example>\r\n")
    assert client.reply() == "421 4.7.0 mx.test.example Error: too many errors"
    assert client.closed()


@pytest.mark.main_cf(
    "smtpd_recipient_limit = 1\nsmtpd_recipient_overshoot_limit = 1\nsmtpd_hard_error_limit = 2\n"
)
def test_the_overshoot_count_starts_again_with_each_message(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    for _ in range(3):
        client.send(b"MAIL FROM:<a@sender.example>\r\n")
        assert client.reply() == "250 2.1.0 Ok"
        client.send(b"RCPT TO:<u@mx.test.example>\r\nRCPT TO:<v@mx.test.example>\r\n")
        assert client.reply() == "250 2.1.5 Ok"
        assert client.reply() == "452 4.5.3 Error: too many recipients"
        client.send(b"RSET\r\n")
        assert client.reply() == "250 2.0.0 Ok"
    client.close()


# ---------------------------------------------------------------- VRFY

KNOWN_USERS = "local_recipient_maps = inline:{known=yes}\n"


@pytest.mark.main_cf(KNOWN_USERS)
def test_vrfy_looks_the_recipient_up(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    cases = [
        (b"VRFY known@mx.test.example", "252 2.0.0 known@mx.test.example"),
        (b"VRFY <known@mx.test.example>", "252 2.0.0 <known@mx.test.example>"),
        (
            b"VRFY nobody@mx.test.example",
            "550 5.1.1 <nobody@mx.test.example>: Recipient address rejected: "
            "User unknown in local recipient table",
        ),
        (b"VRFY postmaster", "252 2.0.0 postmaster"),
        (b"VRFY someone@elsewhere.example", "252 2.0.0 someone@elsewhere.example"),
        (b"VRFY known@mx.test.example SMTPUTF8", "252 2.0.0 known@mx.test.example"),
        (b"VRFY", "501 5.5.4 Syntax: VRFY address [SMTPUTF8]"),
        (b"VRFY <>", "501 5.1.3 Bad recipient address syntax"),
        (b"VRFY <a b@c", "501 5.1.3 Bad recipient address syntax"),
    ]
    for line, expected in cases:
        client.send(line + b"\r\n")
        assert client.reply() == expected, line
    client.close()
    assert re.search(
        r"NOQUEUE: reject: VRFY from \S+\[127\.0\.0\.1\]: 550 5\.1\.1 <nobody@mx\.test\.example>"
        r".*; to=<nobody@mx\.test\.example> proto=ESMTP helo=<client\.example>",
        smtpd.maillog.read_text(),
    )


@pytest.mark.main_cf(KNOWN_USERS)
def test_vrfy_applies_the_relay_restrictions(smtpd):
    client = RawClient(smtpd.port, source="127.0.0.2")
    greet(client)
    client.send(b"VRFY someone@elsewhere.example\r\n")
    assert client.reply() == "454 4.7.1 <someone@elsewhere.example>: Relay access denied"
    client.send(b"VRFY known@mx.test.example\r\n")
    assert client.reply() == "252 2.0.0 known@mx.test.example"
    client.close()


@pytest.mark.main_cf("disable_vrfy_command = yes\n")
def test_vrfy_can_be_disabled(smtpd):
    client = RawClient(smtpd.port)
    ehlo = greet(client)
    assert "VRFY" not in ehlo.split()
    client.send(b"VRFY known@mx.test.example\r\n")
    assert client.reply() == "502 5.5.1 VRFY command is disabled"
    client.close()


# ---------------------------------------------------------------- HELO text


@pytest.mark.parametrize(
    ("helo", "shown"),
    [
        (b"evil\x00host\r.example", "evil?host?.example"),
        (b"a\x1b[31m\x7f.example", "a?[31m?.example"),
        (b"two  \twords\x0b", "two words?"),
        (b"bad\xffutf8.example", "bad?utf8.example"),
    ],
)
def test_helo_control_bytes_never_reach_received(smtpd, helo, shown):
    client = RawClient(smtpd.port)
    assert client.reply().startswith("220 ")
    client.send(b"EHLO " + helo + b"\r\n")
    assert client.reply().startswith("250-mx.test.example")
    client.send(b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<u@mx.test.example>\r\nDATA\r\n")
    assert [client.reply() for _ in range(3)][-1].startswith("354")
    client.send(MESSAGE + b".\r\n")
    assert client.reply().startswith("250 2.0.0 Ok: queued as")
    client.close()
    (path,) = incoming_files(smtpd.cdir)
    assert read_queue_file(path).attrs["helo_name"] == shown
    received = b"\n".join(iter_content(path)).split(b"\n\n")[0].split(b"\n")[:2]
    assert received[0].startswith(b"Received: from " + shown.encode() + b" (")
    header = b"\n".join(received)
    assert not any((c < 0x20 and c not in b"\n\t") or c == 0x7F for c in header), header
    log = smtpd.maillog.read_text()
    assert not any((ord(c) < 0x20 and c != "\n") or c == "\x7f" for c in log)


# ---------------------------------------------------------------- smtpd_reject_footer

FOOTER = (
    "smtpd_reject_footer = \\c; see https://help.example/ ($client_address)"
    "\\nCall $server_name about ${helo_name}$$\n"
)


@pytest.mark.main_cf(FOOTER)
def test_reject_footer_follows_every_4xx_and_5xx_reply(smtpd):
    client = RawClient(smtpd.port, source="127.0.0.2")
    assert greet(client).startswith("250-mx.test.example")
    client.send(b"MAIL FROM:<a@outside.example>\r\n")
    assert client.reply() == "250 2.1.0 Ok"
    client.send(b"RCPT TO:<victim@elsewhere.example>\r\n")
    assert client.reply() == (
        "454-4.7.1 <victim@elsewhere.example>: Relay access denied;"
        " see https://help.example/ (127.0.0.2)\n"
        "454 4.7.1 Call mx.test.example about client.example$"
    )
    client.send(b"BOGUS\r\n")
    assert client.reply() == (
        "502-5.5.2 Error: command not recognized; see https://help.example/ (127.0.0.2)\n"
        "502 5.5.2 Call mx.test.example about client.example$"
    )
    client.send(b"NOOP\r\n")
    assert client.reply() == "250 2.0.0 Ok"
    client.close()
    # the footer is for the client, not for the log
    assert "help.example" not in smtpd.maillog.read_text()


def test_reject_footer_maps_pick_a_footer_by_reply(tmp_path):
    cdir = make_instance(
        tmp_path,
        "smtpd_reject_footer = generic footer\n"
        "smtpd_reject_footer_maps = regexp:${config_directory}/footers\n",
    )
    (cdir / "footers").write_text("/Relay access denied/ relaying: ask $$server_name\n")
    server = SmtpdThread(cdir)
    try:
        client = RawClient(server.port, source="127.0.0.2")
        greet(client)
        client.send(b"MAIL FROM:<a@outside.example>\r\nRCPT TO:<v@elsewhere.example>\r\n")
        assert client.reply() == "250 2.1.0 Ok"
        assert client.reply() == (
            "454-4.7.1 <v@elsewhere.example>: Relay access denied\n"
            "454 4.7.1 relaying: ask mx.test.example"
        )
        client.send(b"BOGUS\r\n")
        assert client.reply() == "502-5.5.2 Error: command not recognized\n502 5.5.2 generic footer"
        client.close()
    finally:
        server.close()


# ---------------------------------------------------------------- strict MIME checks


@pytest.mark.main_cf("strict_8bitmime = yes\nstrict_mime_encoding_domain = yes\n")
def test_strict_mime_checks_refuse_content_through_smtpd(smtpd):
    def send(content: bytes) -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
            s.ehlo("client.example")
            s.mail("a@sender.example", ["BODY=8BITMIME"])
            s.rcpt("u@mx.test.example")
            return s.data(content)

    assert send(b"Subject: caf\xc3\xa9\r\n\r\nbody\r\n") == (
        550,
        b"5.6.0 improper use of 8-bit data in message header",
    )
    assert send(b"Subject: s\r\n\r\ncaf\xc3\xa9\r\n") == (
        550,
        b"5.6.0 improper use of 8-bit data in message body",
    )
    assert send(
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n"
    ) == (550, b"5.6.0 invalid message/* or multipart/* encoding domain")
    assert incoming_files(smtpd.cdir) == []
    code, _ = send(
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9\r\n"
    )
    assert code == 250
    assert len(incoming_files(smtpd.cdir)) == 1
    assert (
        "reject: mime-error improper use of 8-bit data in message body" in smtpd.maillog.read_text()
    )
