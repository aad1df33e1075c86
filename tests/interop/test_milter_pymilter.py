"""smtpd_milters against Sendmail's libmilter (Debian python3-milter): every reply and every
modification a milter can make, checked in the queue file and the maillog."""

from __future__ import annotations

import os
import smtplib
from pathlib import Path

import pytest

from mta.config import Config
from mta.queue import rec_type as R
from mta.queue.queue_file import iter_content, read_queue_file
from tests.support.instance import RawClient, SmtpdThread, greet, make_instance
from tests.support.milter_peers import pymilter_peer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]


def queued(cdir: Path, queue: str = "incoming") -> list[tuple[object, bytes]]:
    """(QueueMessage, content) of every complete file in the queue."""
    spool = Path(Config(str(cdir)).get("queue_directory")) / queue
    out = []
    for root, _, files in os.walk(spool):
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = os.path.join(root, name)
            msg = read_queue_file(path)
            out.append((msg, b"\n".join(iter_content(path, msg)) + b"\n"))
    return out


def maillog(tmp_path: Path) -> str:
    path = tmp_path / "maillog"
    return path.read_text() if path.exists() else ""


@pytest.fixture
def smtpd(tmp_path):
    """An in-process smtpd whose smtpd_milters is the scripted libmilter peer."""
    with pymilter_peer() as port:
        cdir = make_instance(
            tmp_path,
            f"smtpd_milters = {{ inet:127.0.0.1:{port}, content_timeout=2s }}\n"
            "milter_connect_macros = j {daemon_name} {daemon_addr} v _ {client_addr}\n"
            f"smtpd_recipient_restrictions = check_recipient_access texthash:{tmp_path}/rcpt_access,"
            " permit_mynetworks, reject\n"
            "milter_header_checks = regexp:" + str(tmp_path / "mhc") + "\n",
        )
        (tmp_path / "mhc").write_text("/^X-Milter-Saw: 2 / REJECT header says no\n")
        (tmp_path / "rcpt_access").write_text("blocked@test.example REJECT no thanks\n")
        with SmtpdThread(cdir) as server:
            yield server, cdir, tmp_path


def send(
    port: int,
    subject: str,
    rcpts=("user@test.example",),
    sender="a@sender.example",
    body=b"hello\r\n",
    helo="client.example",
    extra=b"",
):
    message = b"Subject: " + subject.encode() + b"\r\n" + extra + b"\r\n" + body
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.ehlo(helo)
        s.mail(sender, ["BODY=8BITMIME"])
        for r in rcpts:
            s.rcpt(r)
        s.putcmd("DATA")
        code, _ = s.getreply()
        assert code == 354
        s.send(message + b".\r\n")
        return s.getreply()


def test_every_modification_lands_in_the_queue_file(smtpd):
    server, cdir, tmp_path = smtpd
    code, text = send(
        server.port,
        "edit",
        rcpts=("user@test.example", "gone@test.example"),
        extra=b"X-Change-Me: before\r\nX-Delete-Me: doomed\r\n",
    )
    assert code == 250, text
    [(msg, content)] = queued(cdir)
    assert msg.sender == "new-sender@test.example"
    addrs = sorted(r.address for r in msg.recipients)
    assert addrs == ["added-par@test.example", "added@test.example", "user@test.example"]
    [par] = [r for r in msg.recipients if r.address == "added-par@test.example"]
    assert par.notify == R.DSN_NOTIFY_SUCCESS | R.DSN_NOTIFY_DELAY  # NOTIFY= kept
    assert par.dsn_orcpt == "rfc822;orig@test.example"  # ORCPT= kept, xtext decoded
    text = maillog(tmp_path)  # the rest is ignored with Postfix's warnings
    qid = msg.queue_id
    assert (
        f'{qid}: cleanup_add_rcpt_par: added-par@test.example: ignoring ESMTP argument "XYZ=1"'
        in text
    )
    assert f'{qid}: cleanup_chg_from: ignoring ESMTP arguments "BODY=8BITMIME"' in text
    head, _, body = content.partition(b"\n\n")
    lines = head.split(b"\n")
    # index 0: above every header the milter saw (cleanup's Received: goes on top later)
    assert head.index(b"\nX-Inserted: at the top\n") < head.index(b"\nSubject: edit\n")
    assert b"X-Change-Me: changed" in lines and b"X-Added: appended" in lines
    assert not any(line.startswith(b"X-Delete-Me") for line in lines)
    assert body == b"replaced body\n"


def test_macros_reach_the_milter(smtpd):
    server, cdir, _ = smtpd
    assert send(server.port, "plain")[0] == 250
    [(msg, content)] = queued(cdir)
    macros = [line for line in content.split(b"\n") if line.startswith(b"X-Milter-Macros:")][0]
    text = macros.decode()
    assert "j=mx.test.example" in text
    assert "{client_addr}=127.0.0.1" in text
    assert "{mail_addr}=a@sender.example" in text and "{mail_host}=sender.example" in text
    assert "{rcpt_addr}=user@test.example" in text
    assert f"i={msg.queue_id}" in text
    assert "_=localhost [127.0.0.1]" in text or "_=" in text
    assert "{daemon_name}=mx.test.example" in text
    saw = [line for line in content.split(b"\n") if line.startswith(b"X-Milter-Saw:")][0]
    assert saw.startswith(b"X-Milter-Saw: 1 'plain' BODY=8BITMIME")  # no leading space


def test_reject_at_rcpt_with_a_multiline_reply(smtpd, tmp_path):
    server, cdir, _ = smtpd
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        s.ehlo("client.example")
        s.mail("a@sender.example")
        code, text = s.rcpt("rej@test.example")
        assert (code, text) == (550, b"5.7.1 first line\n5.7.1 second line")
        assert s.rcpt("temp@test.example") == (451, b"4.7.1 Service unavailable - try again later")
        assert s.rcpt("user@test.example")[0] == 250
    log = maillog(tmp_path)
    assert "NOQUEUE: milter-reject: RCPT from localhost[127.0.0.1]: 550-5.7.1 first line" in log
    assert (
        "milter-reject: RCPT from localhost[127.0.0.1]: 451 4.7.1 Service unavailable - "
        "try again later; from=<a@sender.example> to=<temp@test.example> proto=ESMTP "
        "helo=<client.example>" in log
    )


def test_reject_at_helo(smtpd):
    server, _, _ = smtpd
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        assert s.ehlo("helo-reject") == (550, b"5.7.1 no such greeting")


@pytest.mark.parametrize(
    ("subject", "reply"),
    [
        ("reject", (550, b"5.7.1 Command rejected")),
        ("tempfail", (451, b"4.7.1 Service unavailable - try again later")),
        ("reply", (554, b"5.7.0 content refused\n5.7.0 see the policy")),
    ],
)
def test_refusals_at_end_of_message(smtpd, subject, reply):
    server, cdir, tmp_path = smtpd
    assert send(server.port, subject) == reply
    assert queued(cdir) == []
    assert "milter-reject: END-OF-MESSAGE from localhost[127.0.0.1]: " in maillog(tmp_path)


def test_discard_at_end_of_message(smtpd):
    server, cdir, tmp_path = smtpd
    code, text = send(server.port, "discard")
    assert code == 250 and text.startswith(b"2.0.0 Ok: queued as ")
    assert queued(cdir) == []
    assert (
        "milter-discard: END-OF-MESSAGE from localhost[127.0.0.1]: milter triggers DISCARD "
        "action; from=<a@sender.example> to=<user@test.example> proto=ESMTP "
        "helo=<client.example>" in maillog(tmp_path)
    )


def test_discard_at_rcpt(smtpd):
    server, cdir, tmp_path = smtpd
    assert send(server.port, "plain", rcpts=("disc@test.example",))[0] == 250
    assert queued(cdir) == []
    assert "milter-discard: RCPT from localhost[127.0.0.1]" in maillog(tmp_path)


def test_quarantine_goes_to_hold_with_the_reason(smtpd):
    server, cdir, tmp_path = smtpd
    assert send(server.port, "quarantine")[0] == 250
    assert queued(cdir) == []
    [(msg, _)] = queued(cdir, "hold")
    assert (
        f"{msg.queue_id}: milter-hold: END-OF-MESSAGE from localhost[127.0.0.1]: milter "
        "triggers HOLD action; from=<a@sender.example> to=<user@test.example> proto=ESMTP "
        "helo=<client.example>: suspicious content" in maillog(tmp_path)
    )


def test_accept_ends_the_milter_for_the_message(smtpd):
    server, cdir, _ = smtpd
    assert send(server.port, "accept")[0] == 250
    [(_, content)] = queued(cdir)
    assert b"X-Milter-Macros" not in content  # accept: no edits


def test_accept_at_rcpt_skips_the_content(smtpd):
    server, cdir, _ = smtpd
    assert send(server.port, "reject", rcpts=("acc@test.example",))[0] == 250
    [(_, content)] = queued(cdir)
    assert b"X-Milter-Saw" not in content


def test_progress_keeps_a_slow_milter_alive(smtpd):
    server, cdir, tmp_path = smtpd  # content_timeout=2s, the milter works 4 s
    assert send(server.port, "progress")[0] == 250
    [(_, content)] = queued(cdir)
    assert b"X-Milter-Saw" in content
    assert "warning" not in maillog(tmp_path)


def test_skip_stops_the_body_chunks(smtpd):
    server, cdir, _ = smtpd
    body = b"".join(b"line %06d of a long body\r\n" % i for i in range(10000))  # ~270 KB
    assert send(server.port, "skip", body=body)[0] == 250
    [(_, content)] = queued(cdir)
    assert b"X-Body-Chunks: 1\n" in content
    assert content.endswith(b"line 009999 of a long body\n")  # the body itself is kept


def test_milter_header_checks_see_added_headers(smtpd):
    server, cdir, tmp_path = smtpd
    assert send(server.port, "plain")[0] == 250  # X-Milter-Saw: 1 ...: no match
    code, text = send(server.port, "plain", extra=b"X-Note: two headers\r\n")
    assert (code, text) == (550, b"5.7.1 header says no")  # X-Milter-Saw: 2 ...
    assert "reject: header X-Milter-Saw: 2 'plain'" in maillog(tmp_path)
    assert len(queued(cdir)) == 1


def test_session_goes_on_after_a_refusal(smtpd):
    server, cdir, _ = smtpd
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        s.ehlo("client.example")
        for subject, want in (("reject", 550), ("plain", 250)):
            s.mail("a@sender.example")
            s.rcpt("user@test.example")
            assert s.data(b"Subject: " + subject.encode() + b"\r\n\r\nx\r\n")[0] == want
    assert len(queued(cdir)) == 1


def test_unix_socket_milter_and_macro_defaults(tmp_path):
    with pymilter_peer(tmp_path / "milter.sock") as path:
        cdir = make_instance(
            tmp_path,
            f"smtpd_milters = unix:{path}\n"
            "milter_connect_macros = j {client_addr} {client_connections}\n"
            "milter_macro_defaults = {client_connections}=7\n",
        )
        with SmtpdThread(cdir) as server:
            assert send(server.port, "plain")[0] == 250
    [(_, content)] = queued(cdir)
    assert b"{client_connections}=7" in content and b"{client_addr}=127.0.0.1" in content


@pytest.mark.parametrize(("answer", "milters_ran"), [("DISABLE", False), ("OTHER", True)])
def test_smtpd_milter_maps_by_client_address(tmp_path, answer, milters_ran):
    with pymilter_peer() as port:
        table = tmp_path / "milter_maps"
        value = "DISABLE" if answer == "DISABLE" else f"inet:127.0.0.1:{port}"
        table.write_text(f"127.0.0.1/32 {value}\n")
        cdir = make_instance(
            tmp_path,
            "smtpd_milters = inet:127.0.0.1:1\n"  # nothing listens: only the map's list works
            f"smtpd_milter_maps = cidr:{table}\n",
        )
        with SmtpdThread(cdir) as server:
            assert send(server.port, "plain")[0] == 250
    [(_, content)] = queued(cdir)
    assert (b"X-Milter-Saw" in content) == milters_ran
    assert "warning" not in maillog(tmp_path)


def test_a_later_milter_sees_the_earlier_milters_edits(tmp_path):
    with pymilter_peer() as first, pymilter_peer() as second:
        cdir = make_instance(
            tmp_path, f"smtpd_milters = inet:127.0.0.1:{first}, inet:127.0.0.1:{second}\n"
        )
        with SmtpdThread(cdir) as server:
            assert send(server.port, "edit", extra=b"X-Delete-Me: x\r\n")[0] == 250
    [(msg, content)] = queued(cdir)
    saw = [line for line in content.split(b"\n") if line.startswith(b"X-Milter-Saw:")]
    # the first milter saw mta's Received:, Subject and X-Delete-Me; the second saw the
    # first's result: X-Inserted above the Received:, Subject, X-Delete-Me gone, X-Added,
    # X-Change-Me (a change of a header that is not there adds it), X-Milter-Macros,
    # X-Milter-Received, X-Milter-Connect and X-Milter-Saw
    assert saw[0].startswith(b"X-Milter-Saw: 2 'edit'")
    assert saw[1].startswith(b"X-Milter-Saw: 9 'at the top'")
    assert msg.sender == "new-sender@test.example"


def test_bdat_content_goes_through_the_milters(smtpd):
    server, cdir, _ = smtpd
    client = RawClient(server.port)
    try:
        greet(client)
        part1, part2 = b"Subject: edit\r\n", b"\r\nbody\r\n"  # one header: see mhc
        client.send(b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<user@test.example>\r\n")
        assert client.reply().startswith("250") and client.reply().startswith("250")
        client.send(b"BDAT %d\r\n" % len(part1) + part1)
        assert client.reply().startswith("250 2.0.0 Ok: ")
        client.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
        assert client.reply().startswith("250 2.0.0 Ok: queued as ")
        client.send(b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<user@test.example>\r\n")
        assert client.reply().startswith("250") and client.reply().startswith("250")
        body = b"Subject: reject\r\n\r\nx\r\n"
        client.send(b"BDAT %d LAST\r\n" % len(body) + body)
        assert client.reply() == "550 5.7.1 Command rejected"
    finally:
        client.close()
    [(msg, content)] = queued(cdir)
    assert msg.sender == "new-sender@test.example"
    assert b"X-Change-Me: changed\n" in content and content.endswith(b"\nreplaced body\n")


def test_rejected_recipients_reach_a_milter_that_asks(smtpd):
    server, cdir, _ = smtpd
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        s.ehlo("client.example")
        s.mail("a@sender.example")
        assert s.rcpt("blocked@test.example")[0] == 554
        assert s.rcpt("user@test.example")[0] == 250
        assert s.data(b"Subject: plain\r\n\r\nx\r\n")[0] == 250
    [(_, content)] = queued(cdir)
    assert (
        b"X-Milter-Rejected: <blocked@test.example> 5.7.1 <blocked@test.example>: "
        b"Recipient address rejected: no thanks\n" in content
    )


def test_unknown_command_goes_to_the_milter(smtpd, tmp_path):
    server, _, _ = smtpd
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        s.ehlo("client.example")
        assert s.docmd("XYZZY") == (550, b"5.5.1 nothing happens")
        assert s.docmd("FROBNICATE") == (502, b"5.5.2 Error: command not recognized")
    assert "milter-reject: UNKNOWN from localhost[127.0.0.1]: 550 5.5.1 nothing happens" in (
        maillog(tmp_path)
    )


def test_a_milter_slower_than_content_timeout_gets_the_default_action(smtpd, tmp_path):
    server, cdir, _ = smtpd  # content_timeout=2s; the milter takes 3 s without progress
    assert send(server.port, "slow") == (451, b"4.7.1 Service unavailable - try again later")
    assert queued(cdir) == []
    warnings = [line for line in maillog(tmp_path).splitlines() if "warning:" in line]
    assert len(warnings) == 1
    assert "can't read SMFIC_BODYEOB reply packet header: Connection timed out" in warnings[0]
    assert send(server.port, "plain")[0] == 250  # the next session is served


def test_xclient_gives_the_milter_a_connect_event_for_the_new_client(tmp_path):
    """XCLIENT starts the session over for another client: the milter conversation of
    the old client ends and a new one starts with the new client's connect event and
    macros, as Postfix's smtpd does."""
    with pymilter_peer() as port:
        cdir = make_instance(
            tmp_path,
            f"smtpd_milters = inet:127.0.0.1:{port}\n"
            "milter_connect_macros = j {client_addr} {client_name}\n"
            "smtpd_authorized_xclient_hosts = 127.0.0.1\n",
        )
        with SmtpdThread(cdir) as server:
            with smtplib.SMTP("127.0.0.1", server.port) as s:
                s.ehlo("proxy.example")
                code, _ = s.docmd("XCLIENT", "NAME=new.example ADDR=192.0.2.9")
                assert code == 220
                s.ehlo("new.example")
                s.sendmail(
                    "a@sender.example", ["user@mx.test.example"], b"Subject: xc\r\n\r\nhi\r\n"
                )
    [(_, content)] = queued(cdir)
    lines = content.split(b"\n")
    assert b"X-Milter-Connect: new.example 192.0.2.9" in lines
    macros = [line for line in lines if line.startswith(b"X-Milter-Macros:")][0].decode()
    assert "{client_addr}=192.0.2.9" in macros and "{client_name}=new.example" in macros


def test_the_milter_sees_mtas_own_received_header_first(smtpd):
    """As Postfix's milters see its own Received: on top: the same header mta writes, with
    the queue id; the message keeps exactly one Received:."""
    server, cdir, _ = smtpd
    assert send(server.port, "plain", helo="client.example")[0] == 250
    [(msg, content)] = queued(cdir)
    lines = content.split(b"\n")
    seen = [line for line in lines if line.startswith(b"X-Milter-Received:")]
    assert seen == [b"X-Milter-Received: from client.example (localhost [127.0.0.1])"]
    received = [i for i, line in enumerate(lines) if line.startswith(b"Received:")]
    assert received == [0]
    assert lines[0] == b"Received: from client.example (localhost [127.0.0.1])"
    assert f"with ESMTP id {msg.queue_id}".encode() in lines[1]
    assert b"X-Milter-Saw: 1 'plain'" in content  # the client's one header after it


@pytest.mark.parametrize("subject", ["received", "noreceived"])
def test_a_milter_may_change_or_delete_the_received_header(smtpd, subject):
    server, cdir, _ = smtpd
    assert send(server.port, subject)[0] == 250
    [(_, content)] = queued(cdir)
    received = [line for line in content.split(b"\n") if line.startswith(b"Received:")]
    if subject == "received":
        assert received == [b"Received: from milter.example (changed by the milter)"]
        assert content.startswith(b"Received: from milter.example")  # still on top
    else:
        assert received == []
