"""smtp client: one session against real peers on 127.0.0.1, through the real agent protocol."""

import asyncio

import pytest

from mta.config import load_config
from mta.queue.queue_file import read_queue_file
from mta.smtp import deliver
from mta.smtp.client import Settings
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.instance import make_instance
from tests.unit.smtp.peers import AgentServer, ScriptServer, SinkHandler, read_line, sink

FAST = (
    "smtp_helo_timeout = 2s\nsmtp_mail_timeout = 2s\nsmtp_rcpt_timeout = 2s\n"
    "smtp_data_init_timeout = 2s\nsmtp_data_done_timeout = 2s\nsmtp_connect_timeout = 2s\n"
    "smtp_quit_timeout = 1s\n"
)


def config(tmp_path, port, extra=""):
    return load_config(str(make_instance(tmp_path, FAST + f"smtp_tcp_port = {port}\n" + extra)))


def run(tmp_path, cfg, rcpts, body=None, nexthop="[127.0.0.1]", **kw):
    msg = queue_message(cfg, rcpts, **({"body": body} if body else {}), **kw)
    result = run_agent(deliver, cfg, request_for(msg, nexthop), tmp_path)
    return msg, result


def by_addr(result):
    return {st.address: st for st in result.statuses}


def test_delivers_to_sink_and_marks_done(tmp_path):
    ctl, handler = sink()
    try:
        cfg = config(tmp_path, ctl.port)
        body = b"Subject: t\n\n.leading dot\nline\n"
        msg, result = run(tmp_path, cfg, ["u@example.com"], body)
    finally:
        ctl.stop()
    (st,) = result.statuses
    assert (st.action, st.dsn) == ("relayed", "2.0.0")
    assert not st.dsn_passed  # no DSN there: a success notice would be ours to send
    assert st.reason == "250 2.0.0 Ok: queued as SINK1"
    assert st.relay == f"127.0.0.1[127.0.0.1]:{ctl.port}"
    assert handler.messages[0][:2] == ("a@example.org", ["u@example.com"])
    assert handler.messages[0][2] == b"Subject: t\r\n\r\n.leading dot\r\nline\r\n"
    assert all(r.done for r in read_queue_file(msg.path).recipients)
    log = (tmp_path / "maillog").read_text()
    assert f"to=<u@example.com>, relay=127.0.0.1[127.0.0.1]:{ctl.port}" in log
    assert "status=sent (250 2.0.0 Ok: queued as SINK1)" in log


def test_size_sent_when_offered(tmp_path):
    ctl, handler = sink()
    try:
        cfg = config(tmp_path, ctl.port)
        run(tmp_path, cfg, ["u@example.com"])
    finally:
        ctl.stop()
    assert any(o.startswith("SIZE=") for o in handler.mail_options[0])


def test_per_recipient_rejects(tmp_path):
    reject = {
        "bad@example.com": "550 5.1.1 no such user",
        "later@example.com": "450 4.2.0 try later",
    }
    ctl, handler = sink(SinkHandler(reject))
    try:
        cfg = config(tmp_path, ctl.port)
        msg, result = run(tmp_path, cfg, ["ok@example.com", "bad@example.com", "later@example.com"])
    finally:
        ctl.stop()
    got = by_addr(result)
    assert got["ok@example.com"].action == "relayed"
    assert got["bad@example.com"].action == "failed"
    assert got["bad@example.com"].dsn == "5.1.1"
    assert got["bad@example.com"].reason == (
        "host 127.0.0.1[127.0.0.1] said: 550 5.1.1 no such user (in reply to RCPT TO command)"
    )
    assert (got["later@example.com"].action, got["later@example.com"].dsn) == ("delayed", "4.2.0")
    done = {r.address: r.done for r in read_queue_file(msg.path).recipients}
    assert done == {"ok@example.com": True, "bad@example.com": True, "later@example.com": False}
    assert handler.messages[0][1] == ["ok@example.com"]


def test_data_end_reject_bounces_accepted(tmp_path):
    ctl, _ = sink(SinkHandler(data_reply="554 5.7.1 spam"))
    try:
        cfg = config(tmp_path, ctl.port)
        _, result = run(tmp_path, cfg, ["a@example.com", "b@example.com"])
    finally:
        ctl.stop()
    assert [(s.action, s.dsn) for s in result.statuses] == [("failed", "5.7.1")] * 2
    assert result.statuses[0].reason.endswith("554 5.7.1 spam (in reply to end of DATA command)")


def test_connection_refused_is_a_hop_failure(tmp_path):
    from tests.unit.smtp.peers import free_port

    port = free_port()
    cfg = config(tmp_path, port)
    _, result = run(tmp_path, cfg, ["u@example.com"])
    assert result.hop_dsn == "4.4.1"
    (st,) = result.statuses
    assert st.action == "delayed"
    assert st.reason == f"connect to 127.0.0.1[127.0.0.1]:{port}: Connection refused"


async def greet_then(reader, writer, received, after_ehlo):
    writer.write(b"220 raw.example ESMTP\r\n")
    await read_line(reader, received)
    await after_ehlo(reader, writer, received)


def scripted(script):
    srv = ScriptServer(script)
    return srv


def test_421_greeting_is_a_hop_failure(tmp_path):
    async def script(reader, writer, received):
        writer.write(b"421 4.3.2 go away\r\n")
        await writer.drain()

    srv = scripted(script)
    try:
        cfg = config(tmp_path, srv.port)
        _, result = run(tmp_path, cfg, ["u@example.com"])
    finally:
        srv.stop()
    assert result.hop_dsn == "4.3.2"
    assert result.statuses[0].reason == (
        "host 127.0.0.1[127.0.0.1] refused to talk to me: 421 4.3.2 go away"
    )


def test_garbage_reply_defers(tmp_path):
    async def script(reader, writer, received):
        writer.write(b"HELLO THERE I AM NOT SMTP\r\n")
        await writer.drain()
        await reader.read(100)

    srv = scripted(script)
    try:
        cfg = config(tmp_path, srv.port)
        _, result = run(tmp_path, cfg, ["u@example.com"])
    finally:
        srv.stop()
    (st,) = result.statuses
    assert st.action == "delayed"
    assert "malformed reply from 127.0.0.1[127.0.0.1] while receiving the initial" in st.reason


def test_silent_server_times_out(tmp_path):
    async def script(reader, writer, received):
        await reader.read(100)

    srv = scripted(script)
    try:
        cfg = config(tmp_path, srv.port, "smtp_helo_timeout = 1s\n")
        _, result = run(tmp_path, cfg, ["u@example.com"])
    finally:
        srv.stop()
    assert result.statuses[0].reason == (
        "conversation with 127.0.0.1[127.0.0.1] timed out while receiving the initial "
        "server greeting"
    )
    assert result.statuses[0].action == "delayed"


async def ehlo_reply(writer, keywords=(b"PIPELINING",)):
    writer.write(b"250-raw.example\r\n" + b"".join(b"250-" + k + b"\r\n" for k in keywords[:-1]))
    writer.write(b"250 " + keywords[-1] + b"\r\n")
    await writer.drain()


async def pipelined_transaction(reader, writer, received, replies: bytes, done: bytes) -> None:
    """Answer nothing until DATA has come (MAIL, RCPT and DATA pipelined), then write replies
    (to those commands), read the message up to its dot and write done (to the end of data)."""
    while not (await read_line(reader, received)).startswith(b"DATA"):
        pass
    writer.write(replies)
    while (await read_line(reader, received)) != b".\r\n":
        pass
    writer.write(done)


async def pipelined_session(reader, writer, received, replies: bytes, done: bytes) -> None:
    """Greet, answer EHLO offering PIPELINING, then pipelined_transaction()."""
    writer.write(b"220 raw.example ESMTP\r\n")
    await read_line(reader, received)
    await ehlo_reply(writer)
    await pipelined_transaction(reader, writer, received, replies, done)


def test_pipelined_commands_arrive_before_any_reply(tmp_path):
    async def script(reader, writer, received):
        # answer nothing until DATA has arrived: only a pipelining client gets on
        await pipelined_session(
            reader,
            writer,
            received,
            b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 nope\r\n354 go\r\n",
            b"250 2.0.0 Ok: queued\r\n",
        )
        await read_line(reader, received)

    srv = scripted(script)
    try:
        cfg = config(tmp_path, srv.port)
        _, result = run(tmp_path, cfg, ["a@example.com", "b@example.com"])
    finally:
        srv.stop()
    got = by_addr(result)
    assert got["a@example.com"].action == "relayed"
    assert got["b@example.com"].action == "failed"


def test_421_at_rcpt_defers_the_rest(tmp_path):
    async def script(reader, writer, received):
        writer.write(b"220 raw.example ESMTP\r\n")
        await read_line(reader, received)
        await ehlo_reply(writer, (b"8BITMIME",))
        await read_line(reader, received)
        writer.write(b"250 2.1.0 Ok\r\n")
        await read_line(reader, received)
        writer.write(b"421 4.7.0 shutting down\r\n")
        await writer.drain()

    srv = scripted(script)
    try:
        cfg = config(tmp_path, srv.port)
        msg, result = run(tmp_path, cfg, ["a@example.com", "b@example.com"])
    finally:
        srv.stop()
    assert [(s.action, s.dsn) for s in result.statuses] == [("delayed", "4.7.0")] * 2
    assert result.statuses[0].reason == (
        "host 127.0.0.1[127.0.0.1] said: 421 4.7.0 shutting down (in reply to RCPT TO command)"
    )
    assert not result.hop_dsn
    assert not any(r.done for r in read_queue_file(msg.path).recipients)


def test_drop_mid_data_defers(tmp_path):
    async def script(reader, writer, received):
        writer.write(b"220 raw.example ESMTP\r\n")
        await read_line(reader, received)
        await ehlo_reply(writer, (b"8BITMIME",))
        for reply in (b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
            await read_line(reader, received)
            writer.write(reply)
        await read_line(reader, received)

    srv = scripted(script)
    try:
        cfg = config(tmp_path, srv.port)
        _, result = run(tmp_path, cfg, ["a@example.com"], body=b"Subject: x\n\n" + b"y\n" * 50)
    finally:
        srv.stop()
    (st,) = result.statuses
    assert st.action == "delayed"
    assert st.reason.startswith("lost connection with 127.0.0.1[127.0.0.1] while sending")


def test_ehlo_refused_falls_back_to_helo(tmp_path):
    async def script(reader, writer, received):
        writer.write(b"220 old.example SMTP\r\n")
        line = await read_line(reader, received)
        assert line.startswith(b"EHLO ")
        writer.write(b"502 5.5.2 what\r\n")
        line = await read_line(reader, received)
        writer.write(b"250 old.example\r\n" if line.startswith(b"HELO ") else b"500 no\r\n")
        for reply in (b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
            line = await read_line(reader, received)
            writer.write(reply)
        while (await read_line(reader, received)) != b".\r\n":
            pass
        writer.write(b"250 2.0.0 queued\r\n")
        await read_line(reader, received)

    srv = scripted(script)
    try:
        cfg = config(tmp_path, srv.port)
        _, result = run(tmp_path, cfg, ["a@example.com"])
    finally:
        srv.stop()
    assert result.statuses[0].action == "relayed"
    assert any(line.startswith(b"HELO mx.test.example") for line in srv.received)
    assert not any(b"SIZE=" in line for line in srv.received)


def dsn_server(keywords):
    async def script(reader, writer, received):
        writer.write(b"220 raw.example ESMTP\r\n")
        await read_line(reader, received)
        await ehlo_reply(writer, keywords)
        line = b""
        while not line.startswith(b"DATA"):
            line = await read_line(reader, received)
            writer.write(b"354 go\r\n" if line.startswith(b"DATA") else b"250 2.0.0 ok\r\n")
        while (await read_line(reader, received)) != b".\r\n":
            pass
        writer.write(b"250 2.0.0 queued\r\n")
        await read_line(reader, received)

    return ScriptServer(script)


def test_dsn_parameters_when_offered(tmp_path):
    srv = dsn_server((b"DSN", b"8BITMIME"))
    try:
        cfg = config(tmp_path, srv.port)
        _, result = run(
            tmp_path,
            cfg,
            ["a@example.com"],
            attrs={"ret": "HDRS", "envid": "id+1"},
            notify=6,
        )
    finally:
        srv.stop()
    assert result.statuses[0].action == "delivered"
    assert result.statuses[0].dsn_passed  # the next hop notifies the sender, not us
    mail = next(line for line in srv.received if line.startswith(b"MAIL"))
    assert b" RET=HDRS" in mail and b" ENVID=id+2B1" in mail
    rcpt = next(line for line in srv.received if line.startswith(b"RCPT"))
    assert b" NOTIFY=SUCCESS,FAILURE" in rcpt


def test_no_dsn_parameters_without_dsn(tmp_path):
    srv = dsn_server((b"8BITMIME",))
    try:
        cfg = config(tmp_path, srv.port)
        _, result = run(tmp_path, cfg, ["a@example.com"], attrs={"ret": "HDRS"}, notify=6)
    finally:
        srv.stop()
    assert result.statuses[0].action == "relayed"
    assert not any(b"RET=" in ln or b"NOTIFY=" in ln for ln in srv.received)


def test_8bit_message_gets_body_8bitmime(tmp_path):
    srv = dsn_server((b"8BITMIME",))
    try:
        cfg = config(tmp_path, srv.port)
        run(tmp_path, cfg, ["a@example.com"], body="Subject: x\n\ncaf\u00e9\n".encode())
    finally:
        srv.stop()
    mail = next(line for line in srv.received if line.startswith(b"MAIL"))
    assert b" BODY=8BITMIME" in mail


def test_utf8_recipient_needs_smtputf8(tmp_path):
    srv = dsn_server((b"8BITMIME",))
    try:
        cfg = config(tmp_path, srv.port)
        _, result = run(tmp_path, cfg, ["j\u00f6rg@example.com"])
    finally:
        srv.stop()
    (st,) = result.statuses
    assert (st.action, st.dsn) == ("failed", "5.6.7")


def test_session_is_reused_with_rset(tmp_path):
    ctl, handler = sink()
    connections = []

    class Counting(SinkHandler):
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            connections.append(hostname)
            session.host_name = hostname
            return responses

    handler = Counting()
    ctl.stop()
    ctl, handler = sink(handler)
    cfg = config(tmp_path, ctl.port, "smtp_connection_cache_time_limit = 5s\n")
    agent = AgentServer(deliver, cfg, tmp_path)
    try:
        results = []
        for i in range(3):
            msg = queue_message(cfg, [f"u{i}@example.com"])
            results.append(agent.send(request_for(msg, "[127.0.0.1]")))
    finally:
        agent.stop()
        ctl.stop()
    assert [r.statuses[0].action for r in results] == ["relayed"] * 3
    assert len(handler.messages) == 3
    assert len(connections) == 1


def test_reused_session_closed_by_server_reconnects(tmp_path):
    async def script(reader, writer, received):
        await pipelined_session(
            reader, writer, received, b"250 ok\r\n250 ok\r\n354 go\r\n", b"250 2.0.0 queued\r\n"
        )
        await writer.drain()
        # then hang up without a word: the cached session is stale

    srv = ScriptServer(script)
    cfg = config(tmp_path, srv.port, "smtp_connection_cache_time_limit = 5s\n")
    agent = AgentServer(deliver, cfg, tmp_path)
    try:
        results = []
        for i in range(2):
            msg = queue_message(cfg, [f"u{i}@example.com"])
            results.append(agent.send(request_for(msg, "[127.0.0.1]")))
            asyncio.run(asyncio.sleep(0.1))
    finally:
        agent.stop()
        srv.stop()
    assert [r.statuses[0].action for r in results] == ["relayed"] * 2
    assert srv.connections == 2


def test_cache_off_quits(tmp_path):
    srv = dsn_server((b"8BITMIME",))
    try:
        cfg = config(tmp_path, srv.port, "smtp_connection_cache_on_demand = no\n")
        run(tmp_path, cfg, ["a@example.com"])
        srv.wait_idle()
    finally:
        srv.stop()
    assert srv.received[-1] == b"QUIT\r\n"


@pytest.mark.parametrize("limit", ["1"])
def test_reuse_count_limit(tmp_path, limit):
    ctl, handler = sink()
    cfg = config(tmp_path, ctl.port, f"smtp_connection_reuse_count_limit = {limit}\n")
    agent = AgentServer(deliver, cfg, tmp_path)
    try:
        for i in range(2):
            msg = queue_message(cfg, [f"u{i}@example.com"])
            agent.send(request_for(msg, "[127.0.0.1]"))
    finally:
        agent.stop()
        ctl.stop()
    from mta.smtp import session_cache

    assert session_cache.count() == 0


def plain_server(keywords):
    """A server without 8BITMIME that keeps the content it received."""
    return dsn_server(keywords)


def content_of(received):
    start = next(i for i, ln in enumerate(received) if ln.startswith(b"DATA")) + 1
    end = received.index(b".\r\n", start)
    return b"".join(received[start:end])


def test_8bit_downgraded_for_server_without_8bitmime(tmp_path):
    srv = plain_server((b"SIZE",))
    body = "Content-Type: text/plain; charset=utf-8\n\ncaf\u00e9\n".encode()
    try:
        cfg = config(tmp_path, srv.port)
        _, result = run(tmp_path, cfg, ["a@example.com"], body=body)
    finally:
        srv.stop()
    assert result.statuses[0].action == "relayed"
    content = content_of(srv.received)
    assert content.isascii()
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in content
    assert b"caf=C3=A9\r\n" in content
    mail = next(line for line in srv.received if line.startswith(b"MAIL"))
    assert b"BODY=" not in mail


def test_8bit_sent_as_is_when_conversion_disabled(tmp_path):
    srv = plain_server((b"SIZE",))
    body = "Content-Type: text/plain; charset=utf-8\n\ncaf\u00e9\n".encode()
    try:
        cfg = config(tmp_path, srv.port, "disable_mime_output_conversion = yes\n")
        run(tmp_path, cfg, ["a@example.com"], body=body)
    finally:
        srv.stop()
    assert "caf\u00e9\r\n".encode() in content_of(srv.received)


def test_replies_in_one_byte_pieces(tmp_path):
    async def trickle(writer, data):
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()

    async def script(reader, writer, received):
        await trickle(writer, b"220 slow.example ESMTP\r\n")
        await read_line(reader, received)
        await trickle(writer, b"250-slow.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        while not (await read_line(reader, received)).startswith(b"DATA"):
            pass
        await trickle(writer, b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n")
        while (await read_line(reader, received)) != b".\r\n":
            pass
        await trickle(writer, b"250-2.0.0 first\r\n250 2.0.0 second\r\n")
        await read_line(reader, received)

    srv = ScriptServer(script)
    try:
        cfg = config(tmp_path, srv.port)
        _, result = run(tmp_path, cfg, ["a@example.com"])
    finally:
        srv.stop()
    assert result.statuses[0].reason == "250 2.0.0 first 2.0.0 second"


def test_5xx_greeting_tries_next_and_defers(tmp_path):
    async def script(reader, writer, received):
        writer.write(b"554 5.7.1 no service\r\n")
        await writer.drain()

    srv = ScriptServer(script)
    try:
        cfg = config(tmp_path, srv.port)
        _, result = run(tmp_path, cfg, ["a@example.com"])
    finally:
        srv.stop()
    (st,) = result.statuses
    assert (st.action, st.dsn) == ("delayed", "4.7.1")
    assert st.reason == "host 127.0.0.1[127.0.0.1] refused to talk to me: 554 5.7.1 no service"


def test_message_over_server_size_limit_bounces(tmp_path):
    async def script(reader, writer, received):
        writer.write(b"220 small.example ESMTP\r\n")
        await read_line(reader, received)
        await ehlo_reply(writer, (b"SIZE 10",))
        await read_line(reader, received)

    srv = ScriptServer(script)
    try:
        cfg = config(tmp_path, srv.port)
        _, result = run(tmp_path, cfg, ["a@example.com"])
    finally:
        srv.stop()
    (st,) = result.statuses
    assert (st.action, st.dsn) == ("failed", "5.3.4")
    assert "exceeds size limit 10 of server 127.0.0.1[127.0.0.1]" in st.reason


def test_data_command_rejected(tmp_path):
    async def script(reader, writer, received):
        writer.write(b"220 x ESMTP\r\n")
        await read_line(reader, received)
        await ehlo_reply(writer, (b"PIPELINING",))
        while not (await read_line(reader, received)).startswith(b"DATA"):
            pass
        writer.write(b"250 ok\r\n250 ok\r\n451 4.3.0 no data today\r\n")
        await read_line(reader, received)

    srv = ScriptServer(script)
    try:
        cfg = config(tmp_path, srv.port)
        _, result = run(tmp_path, cfg, ["a@example.com"])
    finally:
        srv.stop()
    (st,) = result.statuses
    assert (st.action, st.dsn) == ("delayed", "4.3.0")
    assert st.reason.endswith("451 4.3.0 no data today (in reply to DATA command)")


def test_conn_time_is_logged_in_delays(tmp_path):
    async def script(reader, writer, received):
        await asyncio.sleep(0.3)  # a slow greeting: set-up time
        writer.write(b"220 x ESMTP\r\n")
        await read_line(reader, received)
        await ehlo_reply(writer, (b"PIPELINING",))
        await pipelined_transaction(
            reader, writer, received, b"250 ok\r\n250 ok\r\n354 go\r\n", b"250 2.0.0 queued\r\n"
        )
        await read_line(reader, received)

    srv = ScriptServer(script)
    try:
        cfg = config(tmp_path, srv.port)
        run(tmp_path, cfg, ["a@example.com"])
    finally:
        srv.stop()
    line = next(ln for ln in (tmp_path / "maillog").read_text().splitlines() if "status=" in ln)
    conn = float(line.split("delays=")[1].split(",")[0].split("/")[2])
    assert 0.25 <= conn < 2


def test_long_lines_are_broken(tmp_path):
    srv = dsn_server((b"8BITMIME",))
    try:
        cfg = config(tmp_path, srv.port, "smtp_line_length_limit = 20\n")
        run(tmp_path, cfg, ["a@example.com"], body=b"Subject: x\n\n" + b"x" * 45 + b"\n")
    finally:
        srv.stop()
    content = content_of(srv.received)
    assert content.endswith(
        b"\r\n" + b"x" * 20 + b"\r\n " + b"x" * 19 + b"\r\n " + b"x" * 6 + b"\r\n"
    )


def test_bind_address_and_helo_name(tmp_path):
    peers = []

    class Peer(SinkHandler):
        async def handle_DATA(self, server, session, envelope):
            peers.append((session.peer[0], session.host_name))
            return await super().handle_DATA(server, session, envelope)

    ctl, _ = sink(Peer())
    try:
        extra = "smtp_bind_address = 127.0.0.2\nsmtp_helo_name = out.test.example\n"
        cfg = config(tmp_path, ctl.port, extra)
        _, result = run(tmp_path, cfg, ["a@example.com"])
    finally:
        ctl.stop()
    assert result.statuses[0].action == "relayed"
    assert peers == [("127.0.0.2", "out.test.example")]


def test_recipients_are_marked_done_before_quit(tmp_path):
    # a crash while the session ends must not send them again: by the time the
    # server sees QUIT, the queue file already has the done marks
    done_at_quit: list[bool] = []
    message = {}

    async def script(reader, writer, received):
        await pipelined_session(
            reader,
            writer,
            received,
            b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n",
            b"250 2.0.0 Ok: queued\r\n",
        )
        assert (await read_line(reader, received)).startswith(b"QUIT")
        recipients = read_queue_file(message["path"]).recipients
        done_at_quit.append(all(r.done for r in recipients))
        writer.write(b"221 2.0.0 Bye\r\n")
        await writer.drain()

    srv = scripted(script)
    try:
        cfg = config(tmp_path, srv.port, "smtp_connection_cache_on_demand = no\n")
        msg = queue_message(cfg, ["a@example.com", "b@example.com"])
        message["path"] = msg.path
        result = run_agent(deliver, cfg, request_for(msg, "[127.0.0.1]"), tmp_path)
        srv.wait_idle()  # the client may close before the script has read its QUIT
    finally:
        srv.stop()
    assert [st.action for st in result.statuses] == ["relayed", "relayed"]
    assert done_at_quit == [True]


def test_request_reuse_limit_is_a_sites_per_connection(tmp_path):
    """qmgr sends a shaped site's per_connection as the request attribute
    reuse_count_limit: it replaces smtp_connection_reuse_count_limit (0, no limit)."""
    from tests.unit.smtp.peers import SinkHandler

    peers: list[tuple] = []

    class Counting(SinkHandler):
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            peers.append(session.peer)
            session.host_name = hostname
            return responses

    ctl, _ = sink(Counting())
    cfg = config(tmp_path, ctl.port)
    agent = AgentServer(deliver, cfg, tmp_path)
    try:
        for i in range(5):
            msg = queue_message(cfg, [f"u{i}@example.com"])
            req = request_for(msg, "[127.0.0.1]")
            req.attrs["reuse_count_limit"] = "2"
            agent.send(req)
    finally:
        agent.stop()
        ctl.stop()
    assert len(peers) == 3  # 2 + 2 + 1 deliveries, one connection each


def test_connections_per_minute_paces_new_connections(tmp_path):
    """A shaped site's connections_per_minute (60: one a second) spaces the client's
    new connections, through the pace file every smtp process shares."""
    import time as _time

    from tests.unit.smtp.peers import SinkHandler

    opened: list[float] = []

    class Stamping(SinkHandler):
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            opened.append(_time.monotonic())
            session.host_name = hostname
            return responses

    ctl, _ = sink(Stamping())
    cfg = config(tmp_path, ctl.port, "smtp_connection_cache_on_demand = no\n")
    agent = AgentServer(deliver, cfg, tmp_path)
    try:
        for i in range(3):
            msg = queue_message(cfg, [f"u{i}@example.com"])
            req = request_for(msg, "[127.0.0.1]")
            req.attrs.update(connections_per_minute="60", connection_pace_key="site1/ip1")
            agent.send(req)
    finally:
        agent.stop()
        ctl.stop()
    assert len(opened) == 3
    gaps = [b - a for a, b in zip(opened, opened[1:], strict=False)]
    assert min(gaps) >= 0.9, gaps  # turns one second apart, less scheduling noise


def test_pace_turns_and_the_wait_limit(tmp_path):
    import lmdb

    from mta.smtp.conn_pace import PACE_WAIT_LIMIT, take_turn

    env = lmdb.open(str(tmp_path / "pace.lmdb"), subdir=False, map_size=1 << 20)
    assert take_turn(env, "gmail/ip1", 10.0, 1000.0) == 0.0
    assert take_turn(env, "gmail/ip1", 10.0, 1000.0) == 10.0
    assert take_turn(env, "gmail/ip2", 10.0, 1000.0) == 0.0  # another source, its own turns
    assert take_turn(env, "gmail/ip1", 10.0, 1025.0) == 0.0  # turns do not pile up unused
    for _ in range(6):
        take_turn(env, "gmail/ip1", 10.0, 1025.0)
    assert take_turn(env, "gmail/ip1", 10.0, 1025.0) > PACE_WAIT_LIMIT  # not reserved
    assert take_turn(env, "gmail/ip1", 10.0, 1025.0) > PACE_WAIT_LIMIT


def test_lmtp_reads_its_own_connection_reuse_limits(tmp_path):
    """lmtp_connection_reuse_count_limit and _time_limit bound LMTP sessions; the smtp_
    ones bound SMTP sessions, as in Postfix."""
    cfg = config(
        tmp_path,
        2525,
        "smtp_connection_reuse_count_limit = 7\nsmtp_connection_reuse_time_limit = 70s\n"
        "lmtp_connection_reuse_count_limit = 3\nlmtp_connection_reuse_time_limit = 30s\n",
    )
    smtp, lmtp = Settings.of(cfg), Settings.of(cfg, lmtp=True)
    assert (smtp.reuse_count_limit, smtp.reuse_time_limit) == (7, 70.0)
    assert (lmtp.reuse_count_limit, lmtp.reuse_time_limit) == (3, 30.0)
