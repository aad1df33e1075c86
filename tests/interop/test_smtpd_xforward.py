"""XFORWARD in smtpd over real sockets: smtplib and raw bytes as the client."""

import re
import smtplib

import pytest

from mta import log
from mta.queue.queue_file import iter_content, read_queue_file
from tests.support.instance import RawClient, greet, incoming_files

pytestmark = pytest.mark.interop

MESSAGE = b"Subject: xf\r\n\r\nbody\r\n"
AUTHORIZED = pytest.mark.main_cf("smtpd_authorized_xforward_hosts = 127.0.0.1\n")


def read_log(smtpd) -> str:
    log.flush()
    return smtpd.maillog.read_text()


def queued(smtpd, qid: str):
    (path,) = [p for p in incoming_files(smtpd.cdir) if p.endswith(qid)]
    return read_queue_file(path), list(iter_content(path))


@AUTHORIZED
def test_ehlo_announces_xforward_to_an_authorized_client(smtpd):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("filter.example")
        assert s.esmtp_features["xforward"] == "NAME ADDR PROTO HELO SOURCE PORT IDENT"


def test_xforward_is_refused_and_not_announced_by_default(smtpd):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("filter.example")
        assert not s.has_extn("xforward")
        code, text = s.docmd("XFORWARD", "NAME=spike.example")
        assert (code, text) == (550, b"5.7.0 Error: insufficient authorization")


@AUTHORIZED
def test_forwarded_client_goes_into_the_message_and_the_log(smtpd):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("filter.example")
        assert s.docmd("XFORWARD", "NAME=spike.example ADDR=192.0.2.7 PROTO=ESMTP")[0] == 250
        assert s.docmd("XFORWARD", "HELO=spike.helo.example IDENT=ABC123 PORT=4711")[0] == 250
        s.mail("a@sender.example")
        s.rcpt("user@mx.test.example")
        code, text = s.data(MESSAGE)
    assert code == 250
    qid = text.split()[-1].decode()
    msg, lines = queued(smtpd, qid)
    assert msg.attrs["client_name"] == "spike.example"
    assert msg.attrs["client_address"] == "192.0.2.7"
    assert msg.attrs["client_port"] == "4711"
    assert msg.attrs["helo_name"] == "spike.helo.example"
    assert lines[0] == b"Received: from spike.helo.example (spike.example [192.0.2.7])"
    assert re.search(
        rf"{qid}: client=\S+\[127\.0\.0\.1\], orig_queue_id=ABC123, "
        r"orig_client=spike\.example\[192\.0\.2\.7\]$",
        read_log(smtpd),
        re.M,
    )


@AUTHORIZED
def test_values_are_reset_after_the_message(smtpd):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("filter.example")
        s.docmd("XFORWARD", "NAME=spike.example ADDR=192.0.2.7")
        s.sendmail("a@sender.example", ["user@mx.test.example"], MESSAGE)
        s.mail("a@sender.example")
        s.rcpt("user@mx.test.example")
        code, text = s.data(MESSAGE)
    qid = text.split()[-1].decode()
    msg, _ = queued(smtpd, qid)
    assert msg.attrs["client_address"] == "127.0.0.1"
    assert "orig_client" not in next(ln for ln in read_log(smtpd).splitlines() if qid in ln)


@AUTHORIZED
def test_values_are_reset_by_rset(smtpd):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("filter.example")
        s.docmd("XFORWARD", "ADDR=192.0.2.7")
        s.rset()
        s.mail("a@sender.example")
        s.rcpt("user@mx.test.example")
        code, text = s.data(MESSAGE)
    msg, _ = queued(smtpd, text.split()[-1].decode())
    assert msg.attrs["client_address"] == "127.0.0.1"


@AUTHORIZED
def test_first_xforward_makes_every_attribute_unavailable(smtpd):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("filter.example")
        s.docmd("XFORWARD", "ADDR=192.0.2.8")
        s.mail("a@sender.example")
        s.rcpt("user@mx.test.example")
        code, text = s.data(MESSAGE)
    msg, lines = queued(smtpd, text.split()[-1].decode())
    assert msg.attrs["client_address"] == "192.0.2.8"
    assert msg.attrs["client_name"] == "unknown"  # never mixed with the session's own
    assert lines[0] == b"Received: from unknown (unknown [192.0.2.8])"


@AUTHORIZED
def test_unavailable_and_xtext_values(smtpd):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("filter.example")
        code, _ = s.docmd("XFORWARD", "NAME=[unavailable] ADDR=IPV6:2001:db8::1 HELO=a+2Bb")
        assert code == 250
        s.mail("a@sender.example")
        s.rcpt("user@mx.test.example")
        code, text = s.data(MESSAGE)
    msg, lines = queued(smtpd, text.split()[-1].decode())
    assert msg.attrs["client_name"] == "unknown"
    assert msg.attrs["client_address"] == "2001:db8::1"
    assert msg.attrs["helo_name"] == "a+b"


@AUTHORIZED
@pytest.mark.parametrize(
    "arg, reply",
    [
        (b"", "501 5.5.4 Syntax: XFORWARD attribute=value..."),
        (b"NAME", "501 5.5.4 Error: attribute=value expected"),
        (b"NAME=", "501 5.5.4 Error: attribute=value expected"),
        (b"LOGIN=x", "501 5.5.4 Bad XFORWARD attribute name: LOGIN"),
        (b"ADDR=300.1.1.1", "501 5.5.4 Bad ADDR syntax: 300.1.1.1"),
        (b"PORT=70000", "501 5.5.4 Bad PORT syntax: 70000"),
        (b"SOURCE=NEAR", "501 5.5.4 Bad SOURCE syntax: NEAR"),
        (b"NAME=a+zz", "501 5.5.4 Bad NAME syntax: a+zz"),
        (b"NAME=bad<name>", "501 5.5.4 Bad NAME syntax: bad<name>"),
    ],
)
def test_syntax_errors_get_501(smtpd, arg, reply):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"XFORWARD " + arg + b"\r\n" if arg else b"XFORWARD\r\n")
    assert client.reply() == reply
    client.close()


@AUTHORIZED
def test_xforward_inside_a_transaction_gets_503(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"MAIL FROM:<a@sender.example>\r\n")
    assert client.reply().startswith("250")
    client.send(b"XFORWARD NAME=x.example\r\n")
    assert client.reply() == "503 5.5.1 Error: MAIL transaction in progress"
    client.close()


@AUTHORIZED
def test_xforward_can_be_pipelined(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(
        b"XFORWARD NAME=p.example ADDR=192.0.2.9\r\nMAIL FROM:<a@sender.example>\r\n"
        b"RCPT TO:<user@mx.test.example>\r\nDATA\r\n"
    )
    replies = [client.reply() for _ in range(4)]
    assert [r[:3] for r in replies] == ["250", "250", "250", "354"]
    client.send(MESSAGE + b".\r\n")
    reply = client.reply()
    assert re.match(r"250 2.0.0 Ok: queued as \w+", reply)
    msg, _ = queued(smtpd, reply.split()[-1])
    assert msg.attrs["client_address"] == "192.0.2.9"
    client.close()
