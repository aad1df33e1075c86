"""master.accept - the next client from a listening socket, with accept errors waited out

SYNOPSIS
    from mta.master.accept import accept_client
    conn = await accept_client(loop, listener)     # None: the listener was closed

DESCRIPTION
    Every service that owns a listening socket (multi_server, trigger_server,
    postscreen, smtpd's pass listener) takes its clients the same way: a
    closed listener (EBADF, EINVAL) ends the accepting, and any other error
    (EMFILE, ENFILE, ECONNABORTED and the like) is logged as "warning:
    accept: ..." and tried again after ACCEPT_ERROR_PAUSE, so a full
    descriptor table slows a service down instead of spinning or ending it.

SECURITY
    Only accepts; what the client sends is the caller's business.
"""

from __future__ import annotations

import asyncio
import errno
import socket

from mta import log

ACCEPT_ERROR_PAUSE = 0.1  # seconds to wait after a failed accept (EMFILE and the like)


async def accept_client(loop: asyncio.AbstractEventLoop, sock: socket.socket):
    """The next connection on sock, or None once sock is closed."""
    while True:
        try:
            conn, _ = await loop.sock_accept(sock)
            return conn
        except OSError as exc:
            if exc.errno in (errno.EBADF, errno.EINVAL):
                return None
            log.warning("accept: %s", exc.strerror or exc)
            await asyncio.sleep(ACCEPT_ERROR_PAUSE)
