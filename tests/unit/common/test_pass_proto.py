"""Passing a live TCP connection over a UNIX socket: the receiver serves the real
client (its peer address), and a request without a descriptor is refused."""

from __future__ import annotations

import asyncio
import socket

import pytest

from mta.common.pass_proto import pass_connection, receive_connection


def test_passed_socket_reaches_the_same_client(tmp_path):
    path = str(tmp_path / "smtpd")

    async def run():
        loop = asyncio.get_running_loop()
        tcp = socket.socket()
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        tcp.setblocking(False)
        unix = socket.socket(socket.AF_UNIX)
        unix.bind(path)
        unix.listen()
        unix.setblocking(False)
        client = socket.create_connection(tcp.getsockname())
        accepted, _ = await loop.sock_accept(tcp)

        async def receiver():
            conn, _ = await loop.sock_accept(unix)
            conn.setblocking(False)
            return await receive_connection(conn)

        task = asyncio.ensure_future(receiver())
        await pass_connection(path, accepted, timeout=5)
        accepted.close()  # the sender's copy goes; the receiver's stays open
        got = await task
        assert got.getpeername() == client.getsockname()
        client.sendall(b"EHLO x\r\n")
        assert await loop.sock_recv(got, 100) == b"EHLO x\r\n"
        await loop.sock_sendall(got, b"220 hi\r\n")
        assert client.recv(100) == b"220 hi\r\n"
        for s in (got, client, tcp, unix):
            s.close()

    asyncio.run(run())


def test_request_without_a_descriptor_is_refused():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.sendall(b"pass\0")
    with pytest.raises(OSError, match="bad pass request"):
        asyncio.run(receive_connection(a))
    b.close()


def test_no_service_is_an_oserror(tmp_path):
    with socket.socket() as s, pytest.raises(OSError):
        asyncio.run(pass_connection(str(tmp_path / "none"), s, timeout=1))
