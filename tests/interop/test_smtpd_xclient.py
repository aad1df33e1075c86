"""XCLIENT in smtpd over real sockets: smtplib, raw bytes and swaks as clients."""

import shutil
import smtplib
import subprocess

import pytest

from mta import log
from mta.queue.queue_file import iter_content, read_queue_file
from tests.support.instance import RawClient, greet, incoming_files

pytestmark = pytest.mark.interop

MESSAGE = b"Subject: xc\r\n\r\nbody\r\n"
AUTHORIZED = pytest.mark.main_cf(
    "smtpd_authorized_xclient_hosts = 127.0.0.1\n"
    "smtpd_client_restrictions = check_client_access inline:{{192.0.2.66=REJECT go away}}\n"
)


def read_log(smtpd) -> str:
    log.flush()
    return smtpd.maillog.read_text()


@AUTHORIZED
def test_ehlo_announces_xclient_to_an_authorized_client(smtpd):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("tester.example")
        assert s.esmtp_features["xclient"] == (
            "NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT"
        )


def test_xclient_is_refused_and_not_announced_by_default(smtpd):
    client = RawClient(smtpd.port)
    ehlo = greet(client)
    assert "XCLIENT" not in ehlo
    client.send(b"XCLIENT ADDR=192.0.2.1\r\n")
    assert client.reply() == "550 5.7.0 Error: insufficient authorization"
    client.close()


@AUTHORIZED
def test_success_greets_again_and_the_session_is_the_new_clients(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"XCLIENT NAME=spike.example ADDR=192.0.2.5 PORT=2525 HELO=spike.helo\r\n")
    assert client.reply() == "220 mx.test.example ESMTP mta"
    client.send(b"EHLO spike.helo\r\n")
    ehlo = client.reply()
    assert ehlo.startswith("250-mx.test.example")
    assert "XCLIENT" not in ehlo  # the new client is not on the list
    client.send(b"MAIL FROM:<a@sender.example>\r\n")
    assert client.reply().startswith("250")
    client.send(b"RCPT TO:<user@mx.test.example>\r\n")
    assert client.reply().startswith("250")
    client.send(b"DATA\r\n")
    assert client.reply().startswith("354")
    client.send(MESSAGE + b".\r\n")
    reply = client.reply()
    qid = reply.split()[-1]
    client.close()
    (path,) = [p for p in incoming_files(smtpd.cdir) if p.endswith(qid)]
    msg = read_queue_file(path)
    assert msg.attrs["client_address"] == "192.0.2.5"
    assert msg.attrs["client_name"] == "spike.example"
    assert (
        next(iter(iter_content(path))) == b"Received: from spike.helo (spike.example [192.0.2.5])"
    )
    assert f"{qid}: client=spike.example[192.0.2.5]" in read_log(smtpd)


@AUTHORIZED
def test_restrictions_judge_the_new_client(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"XCLIENT ADDR=192.0.2.66 NAME=[UNAVAILABLE]\r\n")
    assert client.reply().startswith("220 ")
    client.send(b"EHLO x.example\r\n")
    client.reply()
    client.send(b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<user@mx.test.example>\r\n")
    assert client.reply().startswith("250")
    assert client.reply() == "554 5.7.1 <unknown[192.0.2.66]>: Client host rejected: go away"
    client.close()
    assert "NOQUEUE: reject: RCPT from unknown[192.0.2.66]: 554 5.7.1" in read_log(smtpd)


@AUTHORIZED
def test_outside_client_given_by_xclient_cannot_relay(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"XCLIENT ADDR=192.0.2.10 NAME=outside.example\r\n")
    assert client.reply().startswith("220 ")
    client.send(b"EHLO outside.example\r\n")
    client.reply()
    client.send(b"MAIL FROM:<a@outside.example>\r\nRCPT TO:<victim@elsewhere.example>\r\n")
    assert client.reply().startswith("250")
    assert client.reply().endswith("<victim@elsewhere.example>: Relay access denied")
    client.close()


@AUTHORIZED
def test_login_counts_as_authenticated(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"XCLIENT LOGIN=alice ADDR=192.0.2.11\r\n")
    assert client.reply().startswith("220 ")
    client.send(b"EHLO a.example\r\n")
    client.reply()
    client.send(b"MAIL FROM:<alice@sender.example>\r\nRCPT TO:<u@elsewhere.example>\r\n")
    assert client.reply().startswith("250")
    assert client.reply().startswith("250")
    client.close()


@AUTHORIZED
@pytest.mark.parametrize(
    "arg, reply",
    [
        (b"", "501 5.5.4 Syntax: XCLIENT attribute=value..."),
        (b"ADDR", "501 5.5.4 Error: attribute=value expected"),
        (b"IDENT=x", "501 5.5.4 Bad XCLIENT attribute name: IDENT"),
        (b"PROTO=LMTP", "501 5.5.4 Bad PROTO syntax: LMTP"),
        (b"ADDR=not-an-address", "501 5.5.4 Bad ADDR syntax: not-an-address"),
        (b"DESTPORT=x", "501 5.5.4 Bad DESTPORT syntax: x"),
    ],
)
def test_syntax_errors_get_501(smtpd, arg, reply):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"XCLIENT " + arg + b"\r\n" if arg else b"XCLIENT\r\n")
    assert client.reply() == reply
    client.close()


@AUTHORIZED
def test_xclient_inside_a_transaction_gets_503(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"MAIL FROM:<a@sender.example>\r\n")
    assert client.reply().startswith("250")
    client.send(b"XCLIENT ADDR=192.0.2.1\r\n")
    assert client.reply() == "503 5.5.1 Error: MAIL transaction in progress"
    client.close()


@AUTHORIZED
def test_swaks_xclient(smtpd):
    swaks = shutil.which("swaks")
    if swaks is None:
        pytest.skip("swaks is not installed")
    r = subprocess.run(
        [
            swaks,
            "--server",
            f"127.0.0.1:{smtpd.port}",
            "--from",
            "a@sender.example",
            "--to",
            "user@mx.test.example",
            "--xclient-addr",
            "192.0.2.44",
            "--xclient-name",
            "swaks.example",
            "--body",
            "hello",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "<-  220 mx.test.example ESMTP" in r.stdout
    assert "client=swaks.example[192.0.2.44]" in read_log(smtpd)
