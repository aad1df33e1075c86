"""smtp client XFORWARD (smtp_send_xforward_command): the lines, and a session with a
scripted server on 127.0.0.1 through the real agent protocol."""

from mta.common.xforward import xforward_lines
from tests.unit.smtp.peers import ScriptServer, read_line
from tests.unit.smtp.test_client import config, run

ATTRS = {
    "client_name": "spike.example",
    "client_address": "192.0.2.7",
    "client_port": "4711",
    "helo_name": "spike helo",
    "protocol": "ESMTP",
}
ALL = "NAME ADDR PROTO HELO SOURCE PORT IDENT"


def test_lines_carry_the_original_client_in_two_commands():
    assert xforward_lines(ATTRS, "QID1", ALL) == [
        b"XFORWARD NAME=spike.example ADDR=192.0.2.7 PORT=4711",
        b"XFORWARD PROTO=ESMTP HELO=spike+20helo IDENT=QID1 SOURCE=REMOTE",
    ]


def test_only_offered_names_are_sent():
    assert xforward_lines(ATTRS, "QID1", "NAME ADDR") == [
        b"XFORWARD NAME=spike.example ADDR=192.0.2.7"
    ]


def test_unknown_values_are_unavailable_and_local_mail_is_local():
    lines = xforward_lines({"protocol": "local"}, "Q", ALL)
    assert lines == [
        b"XFORWARD NAME=[UNAVAILABLE] ADDR=[UNAVAILABLE] PORT=[UNAVAILABLE]",
        b"XFORWARD PROTO=local HELO=[UNAVAILABLE] IDENT=Q SOURCE=LOCAL",
    ]


def test_ipv6_address_gets_its_prefix():
    lines = xforward_lines({"client_address": "2001:db8::1"}, "Q", "ADDR")
    assert lines == [b"XFORWARD ADDR=IPV6:2001:db8::1"]


def xforward_server(xforward_reply: bytes = b"250 2.0.0 Ok"):
    async def script(reader, writer, received):
        writer.write(b"220 filter.example ESMTP\r\n")
        await read_line(reader, received)
        writer.write(
            b"250-filter.example\r\n250-XFORWARD " + ALL.encode() + b"\r\n250 8BITMIME\r\n"
        )
        while True:
            line = await read_line(reader, received)
            verb = line.split()[0].upper()
            if verb == b"XFORWARD":
                writer.write(xforward_reply + b"\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go\r\n")
                while await read_line(reader, received) != b".\r\n":
                    pass
                writer.write(b"250 2.0.0 Ok: queued as F1\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                return
            else:
                writer.write(b"250 2.0.0 Ok\r\n")

    return ScriptServer(script)


def commands(srv) -> list[bytes]:
    return [line.rstrip(b"\r\n") for line in srv.received if line[:1].isalpha()]


def test_client_sends_xforward_before_mail_when_enabled(tmp_path):
    srv = xforward_server()
    try:
        cfg = config(tmp_path, srv.port, "smtp_send_xforward_command = yes\n")
        msg, result = run(tmp_path, cfg, ["u@example.com"], attrs=ATTRS)
    finally:
        srv.stop()
    assert result.statuses[0].action == "relayed"
    sent = commands(srv)
    assert sent[1] == b"XFORWARD NAME=spike.example ADDR=192.0.2.7 PORT=4711"
    assert sent[2] == (
        f"XFORWARD PROTO=ESMTP HELO=spike+20helo IDENT={msg.queue_id} SOURCE=REMOTE".encode()
    )
    assert sent[3].startswith(b"MAIL FROM:")


def test_client_sends_no_xforward_by_default(tmp_path):
    srv = xforward_server()
    try:
        cfg = config(tmp_path, srv.port)
        _, result = run(tmp_path, cfg, ["u@example.com"], attrs=ATTRS)
    finally:
        srv.stop()
    assert result.statuses[0].action == "relayed"
    assert not [c for c in commands(srv) if c.startswith(b"XFORWARD")]


def test_refused_xforward_defers_with_the_servers_reply(tmp_path):
    srv = xforward_server(b"450 4.7.0 not now")
    try:
        cfg = config(tmp_path, srv.port, "smtp_send_xforward_command = yes\n")
        _, result = run(tmp_path, cfg, ["u@example.com"], attrs=ATTRS)
    finally:
        srv.stop()
    (st,) = result.statuses
    assert st.action == "delayed"
    assert st.reason.endswith("said: 450 4.7.0 not now (in reply to XFORWARD command)")
    assert not [c for c in commands(srv) if c.startswith(b"MAIL")]
