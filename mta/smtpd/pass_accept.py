"""smtpd.pass_accept - serve clients that postscreen hands over ("-t pass")

SYNOPSIS
    from mta.smtpd.pass_accept import PassListener
    listener = PassListener(sock, factory)    # sock: the master's UNIX listener
    listener.start(); ...; listener.close()

DESCRIPTION
    With master.cf type pass ("smtpd pass - - n - - smtpd"), smtpd's
    listener is a UNIX socket on which postscreen connects and sends
    the descriptor of a client's TCP connection (common/pass_proto.py).
    PassListener accepts those hand-overs and gives each client socket
    to the event loop as an accepted connection with the session
    factory, so the session is an ordinary SMTP session: smtpd sends
    its 220 greeting (after postscreen's "220-" teaser, when there was
    one) and the client address is the socket's peer address.

    A hand-over that does not carry exactly one descriptor is logged as
    one warning and dropped. close() stops accepting; sessions already
    running go on.

SECURITY
    The UNIX socket is reachable by mta processes only (private/ or
    public/ under queue_directory as master.cf says); the clients behind
    the descriptors are untrusted, as on an inet listener.
"""

from __future__ import annotations

import asyncio
import socket

from mta import log
from mta.common.deadline import bounded
from mta.common.pass_proto import receive_connection
from mta.master.accept import accept_client

PASS_RECEIVE_TIMEOUT = 10.0  # seconds a sender may take to send the descriptor


class PassListener:
    """Accepts passed client connections on one UNIX listener."""

    def __init__(self, sock: socket.socket, factory) -> None:
        self.sock = sock
        self.factory = factory
        self.task: asyncio.Task | None = None
        self.pending: set[asyncio.Task] = set()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._accept_loop())

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self.sock.close()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn = await accept_client(loop, self.sock)
            if conn is None:
                return
            conn.setblocking(False)
            task = loop.create_task(self._take(conn))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    async def _take(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            client = await bounded(receive_connection(conn), PASS_RECEIVE_TIMEOUT)
        except (OSError, TimeoutError, asyncio.TimeoutError) as exc:
            log.warning("pass connection: %s", exc or "timeout")
            return
        try:
            await loop.connect_accepted_socket(self.factory, client)
        except OSError as exc:
            log.warning("pass connection: %s", exc.strerror or exc)
            client.close()
