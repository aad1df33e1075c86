"""common.showq_clnt - get the queue listing from the showq service

SYNOPSIS
    from mta.common.showq_clnt import ShowqError, fetch_listing
    try:
        nbytes = fetch_listing(cfg, as_json=False, out=sys.stdout.buffer)
    except ShowqError as exc:
        print(f"mail system is down: {exc}")

DESCRIPTION
    Connects to $queue_directory/public/$showq_service_name, asks for
    the text (mailq) or JSON (postqueue -j) listing with one attr_proto
    request, and copies the bytes that come back to out, as they come,
    until the service closes the connection. Returns how many bytes were
    copied.

    ShowqError names what went wrong: no socket or nobody listening
    (the mail system is down), no permission to reach public/, a
    service that answered nothing to a text request (a text listing
    always has at least "Mail queue is empty"), or a service that went
    quiet for ipc_timeout. Bytes already copied stay copied.

SECURITY
    Runs with the invoking user's rights, which is the point: the user
    need not read the queue. What comes back is only copied, never
    interpreted.
"""

from __future__ import annotations

import socket
from typing import BinaryIO

from mta.common import attr_proto
from mta.queue.paths import service_socket_path

SHOWQ_READ_CHUNK = 1 << 16  # bytes asked of the socket per read


class ShowqError(Exception):
    """The showq service could not be reached, or gave no complete answer."""


def showq_path(cfg) -> str:
    """Where the showq service of cfg's instance listens."""
    return service_socket_path(
        cfg.get("queue_directory"), cfg.get("showq_service_name"), private=False
    )


def _talk(path: str, timeout: float, step):
    """Run one socket step; its errors become ShowqError."""
    try:
        return step()
    except TimeoutError:
        raise ShowqError(f"{path}: no answer within {timeout:g}s") from None
    except OSError as exc:
        raise ShowqError(f"{path}: {exc.strerror or exc}") from None


def fetch_listing(cfg, as_json: bool, out: BinaryIO, timeout: float | None = None) -> int:
    """Copy the service's listing to out; the number of bytes. ShowqError on failure."""
    path = showq_path(cfg)
    if timeout is None:
        timeout = float(cfg.get_time("ipc_timeout"))
    copied = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        request = {"request": "list", "format": "json" if as_json else "text"}
        _talk(path, timeout, lambda: (sock.connect(path), attr_proto.send(sock, request)))
        while True:
            data = _talk(path, timeout, lambda: sock.recv(SHOWQ_READ_CHUNK))
            if not data:
                break
            out.write(data)  # a closed stdout is the caller's business, not showq's
            copied += len(data)
    if not copied and not as_json:
        raise ShowqError(f"{path}: the service sent no listing")
    return copied
