"""common.trigger - poke a service: one short write to its socket or fifo

SYNOPSIS
    from mta.common.trigger import send_trigger, TRIGGER_WAKEUP
    send_trigger(paths.service_socket_path(queue_dir, "pickup", private=False))

DESCRIPTION
    Postfix services that work in batches (pickup, qmgr, flush) sleep
    until something pokes them. send_trigger() connects to a UNIX-domain
    stream socket (or opens a fifo) without blocking, writes the request
    bytes and closes; the service's trigger_server reads one trigger per
    connection. It returns False, without raising, when nobody listens:
    the mail system may be stopped, and the service will find the work
    on its next periodic wakeup.

SECURITY
    Writes a few fixed bytes; never waits on the peer.
"""

from __future__ import annotations

import os
import socket
import stat

TRIGGER_WAKEUP = b"W"  # the master's periodic wakeup, and "look now"


def send_trigger(path: str, data: bytes = TRIGGER_WAKEUP) -> bool:
    """Deliver one trigger to the socket or fifo at path; False when nobody listens."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    try:
        if stat.S_ISFIFO(mode):
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            return True
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            sock.connect(path)
            sock.send(data)
        return True
    except OSError:
        return False
