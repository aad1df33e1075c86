"""screen_client() in one process with real sockets: PASS OLD hands the client's
socket to the pass service without a word to the client; postscreen_pre_queue_limit
turns the next client away with 421; a bad action is a configuration error."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

from mta import log
from mta.common.kv_store import MemoryStore
from mta.common.pass_proto import receive_connection
from mta.config import ConfigError, load_config
from mta.maps import clear_cache
from mta.postscreen.cache import TEST_NAMES
from mta.postscreen.server import PscServer
from mta.postscreen.session import ClientState, screen_client


@pytest.fixture
def server_from(tmp_path):
    def build(text: str = "") -> PscServer:
        conf = tmp_path / "conf"
        conf.mkdir(exist_ok=True)
        os.makedirs(tmp_path / "q" / "private", exist_ok=True)
        (conf / "main.cf").write_text(
            f"queue_directory = {tmp_path}/q\nmaillog_file = {tmp_path}/maillog\n"
            "mynetworks = 10.0.0.0/8\nmyhostname = mx.example\npostscreen_greet_wait = 2s\n" + text
        )
        clear_cache()
        cfg = load_config(str(conf))
        log.init("postscreen", cfg)
        return PscServer(cfg, store=MemoryStore())

    yield build
    log.init("postscreen", None, stdout=False)


def _logged(tmp_path) -> str:
    log.flush()
    return (tmp_path / "maillog").read_text()


async def _accepted_pair(listener: socket.socket, source: str = "127.0.0.1"):
    loop = asyncio.get_running_loop()
    client = socket.socket()
    client.setblocking(False)
    client.bind((source, 0))
    await loop.sock_connect(client, listener.getsockname())
    conn, _ = await loop.sock_accept(listener)
    conn.setblocking(False)
    return client, conn


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    return sock


def test_pass_old_hands_the_socket_over_silently(tmp_path, server_from):
    server = server_from()
    server.cache.put("127.0.0.1", [int(time.time()) + 3600] * len(TEST_NAMES))

    async def run():
        loop = asyncio.get_running_loop()
        pass_sock = socket.socket(socket.AF_UNIX)
        pass_sock.bind(str(tmp_path / "q" / "private" / "smtpd"))
        pass_sock.listen()
        pass_sock.setblocking(False)
        lst = _listener()
        client, conn = await _accepted_pair(lst)

        async def smtpd():
            c, _ = await loop.sock_accept(pass_sock)
            c.setblocking(False)
            return await receive_connection(c)

        taken = asyncio.ensure_future(smtpd())
        await screen_client(server, conn)
        conn.close()
        got = await taken
        assert got.getpeername() == client.getsockname()
        await loop.sock_sendall(got, b"220 smtpd here\r\n")
        assert await loop.sock_recv(client, 100) == b"220 smtpd here\r\n"  # nothing before
        for s in (got, client, lst, pass_sock):
            s.close()

    asyncio.run(run())
    assert "PASS OLD [127.0.0.1]:" in _logged(tmp_path)


def test_pre_queue_limit_turns_the_next_client_away(tmp_path, server_from):
    server = server_from("postscreen_pre_queue_limit = 1\n")

    async def run():
        loop = asyncio.get_running_loop()
        lst = _listener()
        c1, s1 = await _accepted_pair(lst)
        first = asyncio.ensure_future(screen_client(server, s1))
        assert (await loop.sock_recv(c1, 100)).startswith(b"220-")  # under test
        c2, s2 = await _accepted_pair(lst)
        await screen_client(server, s2)
        s2.close()
        reply = await loop.sock_recv(c2, 100)
        c1.close()  # the first hangs up during the greet wait
        await first
        s1.close()
        for s in (c2, lst):
            s.close()
        return reply

    reply = asyncio.run(run())
    assert reply == b"421 4.3.2 All screening ports are busy\r\n"
    text = _logged(tmp_path)
    assert "NOQUEUE: reject: CONNECT from [127.0.0.1]:" in text
    assert "all screening ports busy" in text
    assert "HANGUP after " in text and "in tests before SMTP handshake" in text


def test_an_unknown_action_is_a_configuration_error(server_from):
    with pytest.raises(ConfigError, match="postscreen_greet_action"):
        server_from("postscreen_greet_action = reject\n")


def test_a_malformed_dnsbl_site_is_a_configuration_error(server_from):
    with pytest.raises(ConfigError, match="postscreen_dnsbl_sites"):
        server_from("postscreen_dnsbl_sites = zen.example*heavy\n")


def test_command_filter_and_per_client_ehlo_keywords(tmp_path, server_from):
    (tmp_path / "filter.regexp").write_text("/^HELO$/ HELO unknown\n")
    (tmp_path / "discard.cidr").write_text("192.0.2.0/24 SIZE, DSN\n")
    server = server_from(
        f"postscreen_command_filter = regexp:{tmp_path}/filter.regexp\n"
        f"postscreen_discard_ehlo_keyword_address_maps = cidr:{tmp_path}/discard.cidr\n"
    )
    assert server.filter_command(b"HELO") == b"HELO unknown"
    assert server.filter_command(b"EHLO x") == b"EHLO x"
    assert server.discard_ehlo_for("192.0.2.7") == {"SIZE", "DSN"}
    assert server.discard_ehlo_for("198.51.100.1") == frozenset()


def test_dnsbl_reply_map_hides_the_real_list_name(tmp_path, server_from):
    server = server_from(
        "postscreen_dnsbl_reply_map = inline:{ secret.zen.example=zen.example }\n"
        "postscreen_dnsbl_sites = secret.zen.example*3\n"
    )
    assert server.dnsbl_reply_name("secret.zen.example") == "zen.example"
    assert server.dnsbl_reply_name("other.example") == "other.example"
    assert server.dnsbl_ttl(None) == 3600 and server.dnsbl_ttl(5) == 60
    assert server.dnsbl_ttl(600) == 600 and server.dnsbl_ttl(10**6) == 3600


def test_reject_footer_follows_smtpd_reject_footer_by_default(server_from):
    server = server_from("smtpd_reject_footer = \\c Contact postmaster about $client_address\n")
    reply = ClientState.with_footer(
        _state(server, "192.0.2.5"), "450 4.3.2 Service currently unavailable"
    )
    assert reply == ("450 4.3.2 Service currently unavailable Contact postmaster about 192.0.2.5")
    own = server_from("postscreen_reject_footer = For help see http://x.example/$client_port\n")
    reply = _state(own, "192.0.2.5", 2525).with_footer("550 5.7.1 Service unavailable")
    assert reply == "550-5.7.1 Service unavailable\r\n550 5.7.1 For help see http://x.example/2525"
    assert _state(own, "192.0.2.5").with_footer("250 2.0.0 Ok") == "250 2.0.0 Ok"


def _state(server, addr: str, port: int = 1234) -> ClientState:
    st = ClientState(None, addr, port)
    st.footer = server.footer
    return st


async def _dialogue(server, script):
    """Run screen_client() against a client coroutine script(client_sock); return its result."""
    loop = asyncio.get_running_loop()
    lst = _listener()
    client, conn = await _accepted_pair(lst)
    screening = asyncio.ensure_future(screen_client(server, conn))
    try:
        return await script(loop, client)
    finally:
        client.close()
        await screening
        conn.close()
        lst.close()


async def _read_reply(loop, sock, code: bytes) -> bytes:
    data = b""
    while not any(line.startswith(code + b" ") for line in data.split(b"\r\n")):
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            break
        data += chunk
    return data


def test_pregreet_with_enforce_is_refused_at_rcpt(tmp_path, server_from):
    server = server_from("postscreen_greet_wait = 1s\npostscreen_greet_action = enforce\n")

    async def script(loop, c):
        assert (await loop.sock_recv(c, 100)).startswith(b"220-mx.example")
        await loop.sock_sendall(c, b"HELO early.example\r\n")
        greeting = await _read_reply(loop, c, b"220")  # the engine's final 220
        assert b"220 mx.example" in greeting
        assert b"250 mx.example" in await _read_reply(loop, c, b"250")  # the early HELO
        await loop.sock_sendall(c, b"MAIL FROM:<a@b.example>\r\n")
        await _read_reply(loop, c, b"250")
        await loop.sock_sendall(c, b"RCPT TO:<u@mx.example>\r\n")
        return await _read_reply(loop, c, b"550")

    assert asyncio.run(_dialogue(server, script)) == b"550 5.5.1 Protocol error\r\n"
    text = _logged(tmp_path)
    assert "PREGREET 20 after " in text and ": HELO early.example\\r\\n" in text
    assert "NOQUEUE: reject: RCPT from [127.0.0.1]:" in text
    assert "550 5.5.1 Protocol error; from=<a@b.example>, to=<u@mx.example>, proto=SMTP" in text


def test_command_count_and_time_limits_end_the_dummy_session(tmp_path, server_from):
    server = server_from(
        "postscreen_greet_wait = 1s\npostscreen_pipelining_enable = yes\n"
        "postscreen_command_count_limit = 3\npostscreen_command_time_limit = 1s\n"
    )

    async def count(loop, c):
        await _read_reply(loop, c, b"220")
        replies = b""
        for _ in range(4):
            await loop.sock_sendall(c, b"NOOP\r\n")
            replies += await loop.sock_recv(c, 4096)
        return replies

    async def slow(loop, c):
        await _read_reply(loop, c, b"220")
        return await _read_reply(loop, c, b"421")

    assert asyncio.run(_dialogue(server, count)).endswith(
        b"421 4.7.0 mx.example Error: too many commands\r\n"
    )
    assert asyncio.run(_dialogue(server, slow)) == (
        b"421 4.4.2 mx.example Error: timeout exceeded\r\n"
    )
    text = _logged(tmp_path)
    assert "COMMAND COUNT LIMIT from [127.0.0.1]:" in text and " after NOOP" in text
    assert "COMMAND TIME LIMIT from [127.0.0.1]:" in text and " after CONNECT" in text


def test_helo_required_and_no_starttls_in_the_dummy_engine(tmp_path, server_from):
    server = server_from(
        "postscreen_greet_wait = 1s\npostscreen_pipelining_enable = yes\n"
        "smtpd_helo_required = yes\n"
    )

    async def script(loop, c):
        await _read_reply(loop, c, b"220")
        out = []
        for cmd, code in (
            (b"MAIL FROM:<a@b.example>", b"503"),
            (b"STARTTLS", b"502"),
            (b"DATA", b"554"),
            (b"QUIT", b"221"),
        ):
            await loop.sock_sendall(c, cmd + b"\r\n")
            out.append(await _read_reply(loop, c, code))
        return out

    assert asyncio.run(_dialogue(server, script)) == [
        b"503 5.5.1 Error: send HELO/EHLO first\r\n",
        b"502 5.5.1 Error: command not implemented\r\n",
        b"554 5.5.1 Error: no valid recipients\r\n",
        b"221 2.0.0 Bye\r\n",
    ]
