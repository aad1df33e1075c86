"""common.pass_proto - hand a live client connection to a "pass" service

SYNOPSIS
    from mta.common.pass_proto import pass_connection, receive_connection
    await pass_connection(path, client_sock, timeout=10.0)   # postscreen
    client_sock = await receive_connection(conn)             # smtpd -t pass

DESCRIPTION
    A master.cf service of type pass (smtpd behind postscreen) listens on
    a UNIX socket under queue_directory. The sender connects to it and
    sends one message whose ancillary data carries the client's TCP
    socket (SCM_RIGHTS) and whose payload is PASS_REQUEST; the receiver
    takes the descriptor, answers PASS_ACK and closes the UNIX
    connection. From then on the receiver owns the client socket and
    serves it as if it had accepted it: getpeername() gives the real
    client address. The sender closes its own copy once the answer came.

    pass_connection() raises OSError when the service cannot be reached
    or refuses, TimeoutError when it does not answer within timeout.
    receive_connection() raises OSError when the peer sent no
    descriptor, or more than one (the extra ones are closed).

SECURITY
    Both ends are mta processes; the socket lives under queue_directory
    with the mode master.cf gives it. Descriptors that arrive unasked
    are closed, never used.
"""

from __future__ import annotations

import asyncio
import os
import socket

from mta.common.child_wait import wait_fd
from mta.common.deadline import bounded

PASS_REQUEST = b"pass\0"  # payload that comes with the descriptor
PASS_ACK = b"\0"  # the receiver's answer: the descriptor was taken
PASS_MAX_FDS = 1  # descriptors one request carries


async def pass_connection(path: str, client: socket.socket, timeout: float) -> None:
    """Send client's descriptor to the pass service at path; wait for its answer."""
    loop = asyncio.get_running_loop()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    async def exchange() -> bytes:
        await loop.sock_connect(conn, path)
        while True:
            try:
                socket.send_fds(conn, [PASS_REQUEST], [client.fileno()])
                break
            except BlockingIOError:
                await asyncio.sleep(0.001)
        return await loop.sock_recv(conn, 16)

    try:
        conn.setblocking(False)
        answer = await bounded(exchange(), timeout)
        if answer != PASS_ACK:
            raise OSError(f"{path}: unexpected answer {answer!r} from pass service")
    finally:
        conn.close()


async def receive_connection(conn: socket.socket) -> socket.socket:
    """Take the client socket a sender passes on conn; answer it; close conn."""
    try:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(conn, 64, PASS_MAX_FDS + 1)
                break
            except BlockingIOError:
                await wait_fd(conn.fileno())
        if len(fds) != PASS_MAX_FDS or data != PASS_REQUEST:
            for fd in fds:
                os.close(fd)
            raise OSError(f"bad pass request: {len(fds)} descriptors, payload {data[:16]!r}")
        client = socket.socket(fileno=fds[0])
        try:
            conn.send(PASS_ACK)
        except OSError:
            pass  # the sender gave up; the client is ours all the same
        client.setblocking(False)
        return client
    finally:
        conn.close()
