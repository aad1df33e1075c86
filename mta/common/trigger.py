"""common.trigger - poke a service: one short write to its socket or fifo

SYNOPSIS
    from mta.common.trigger import send_trigger, trigger_qmgr, TRIGGER_DEFERRED, TRIGGER_WAKEUP
    send_trigger(paths.service_socket_path(queue_dir, "pickup", private=False))
    trigger_qmgr(cfg, TRIGGER_DEFERRED)          # qmgr of cfg's instance

DESCRIPTION
    Postfix services that work in batches (pickup, qmgr, flush) sleep
    until something pokes them. send_trigger() connects to a UNIX-domain
    stream socket (or opens a fifo) without blocking, writes the request
    bytes and closes; the service's trigger_server reads one trigger per
    connection. It returns False, without raising, when nobody listens:
    the mail system may be stopped, and the service will find the work
    on its next periodic wakeup. trigger_qmgr() pokes the queue manager
    of an instance (public/$queue_service_name); several request bytes
    may go in one trigger.

SECURITY
    Writes a few fixed bytes; never waits on the peer.
"""

from __future__ import annotations

import os
import socket
import stat

TRIGGER_WAKEUP = b"W"  # the master's periodic wakeup, and "look now"
TRIGGER_INCOMING = b"I"  # qmgr: new mail in incoming/
TRIGGER_DEFERRED = b"D"  # qmgr: scan deferred/ now
TRIGGER_FLUSH = b"F"  # qmgr: deferred mail is due now, whatever its back-off


def trigger_qmgr(cfg, data: bytes) -> bool:
    """Poke the queue manager of cfg's instance (public/qmgr); False when it does not run."""
    from mta.queue.paths import service_socket_path

    qmgr = service_socket_path(
        cfg.get("queue_directory"), cfg.get("queue_service_name"), private=False
    )
    return send_trigger(qmgr, data)


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


class Kicker:
    """Poke one service often and cheaply (cleanup -> qmgr after every message).

    A fifo stays open between kicks, so a kick is one non-blocking write;
    a full fifo already holds a kick, so that write may be dropped. A
    socket gets one connection per kick. Safe to call from several
    threads: a race costs at most one extra open.
    """

    def __init__(self, path: str, data: bytes = TRIGGER_WAKEUP) -> None:
        self.path = path
        self.data = data
        self.fd = -1
        self.is_fifo: bool | None = None

    def kick(self) -> bool:
        if self.is_fifo is False:
            return send_trigger(self.path, self.data)
        fd = self.fd
        if fd < 0:
            try:
                mode = os.stat(self.path).st_mode
            except OSError:
                return False
            if not stat.S_ISFIFO(mode):
                self.is_fifo = False
                return send_trigger(self.path, self.data)
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                return False  # nobody reads it: qmgr will scan on its own
            self.is_fifo = True
            self.fd = fd
        try:
            os.write(fd, self.data)
        except BlockingIOError:
            return True  # full of kicks already
        except OSError:
            self.close()
            return False
        return True

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
