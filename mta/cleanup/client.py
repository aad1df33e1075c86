"""cleanup.client - hand a message to the cleanup service over its socket

SYNOPSIS
    from mta.cleanup.client import CleanupClient
    job = CleanupClient(socket_path).open(sender, attrs, local_submit=False, flags=0)
    job.add_recipient("user@example.com")
    job.write(chunk)
    result = job.close()                  # CleanupResult, as the library returns

DESCRIPTION
    The same job interface as the in-process library (open,
    add_recipient, write, close, abort), spoken over a UNIX socket to
    the cleanup service (mta.cleanup.server) with blocking I/O, for
    processes that do not load cleanup themselves. Content is sent in
    pieces of at most CLIENT_CHUNK bytes. A service that answers with
    an error, or a connection that breaks, raises CleanupClientError.

SECURITY
    Talks only to the local cleanup socket; sends what the caller gives.

SEE ALSO
    mta/cleanup/server.py (the protocol)
"""

from __future__ import annotations

import base64
import socket

from mta.cleanup.cleanup import CleanupResult
from mta.common import attr_proto

CLIENT_CHUNK = 256 * 1024  # content bytes per data request (base64 stays under 1 MiB)


class CleanupClientError(Exception):
    """The service refused a request or the connection broke."""


class RemoteJob:
    """One message on its way through the cleanup service."""

    def __init__(self, sock: socket.socket, reader: attr_proto.AttrReader, queue_id: str) -> None:
        self.sock = sock
        self.reader = reader
        self.queue_id = queue_id

    def _send(self, attrs: dict[str, str]) -> None:
        try:
            attr_proto.send(self.sock, attrs)
        except OSError as exc:
            raise CleanupClientError(f"cleanup service: {exc}") from exc

    def _reply(self) -> dict[str, str]:
        try:
            reply = attr_proto.recv(self.sock, self.reader)
        except (OSError, ValueError) as exc:
            raise CleanupClientError(f"cleanup service: {exc}") from exc
        if reply is None:
            raise CleanupClientError("cleanup service closed the connection")
        if reply.get("status") != "0":
            raise CleanupClientError(f"cleanup service: {reply.get('reply', 'error')}")
        return reply

    def add_recipient(self, addr: str, orig: str = "", notify: int = 0, dsn_orcpt: str = ""):
        self._send(
            {
                "request": "rcpt",
                "address": addr,
                "orig": orig,
                "notify": str(notify),
                "orcpt": dsn_orcpt,
            }
        )

    def write(self, chunk: bytes) -> None:
        for i in range(0, len(chunk), CLIENT_CHUNK):
            piece = base64.b64encode(bytes(chunk[i : i + CLIENT_CHUNK])).decode("ascii")
            self._send({"request": "data", "data": piece})

    def close(self, queue: str = "incoming") -> CleanupResult:
        try:
            self._send({"request": "close", "queue": queue})
            r = self._reply()
        finally:
            self.sock.close()
        return CleanupResult(
            r.get("action", ""),
            r.get("queue_id", ""),
            r.get("reply", ""),
            r.get("hold") == "1",
            int(r.get("size", "0")),
            int(r.get("nrcpt", "0")),
        )

    def abort(self) -> None:
        try:
            self._send({"request": "abort"})
            self._reply()
        except CleanupClientError:
            pass
        finally:
            self.sock.close()


class CleanupClient:
    """Opens jobs on the cleanup service at socket_path."""

    def __init__(self, socket_path: str, timeout: float = 300.0) -> None:
        self.path = socket_path
        self.timeout = timeout

    def open(
        self, sender: str, attrs: dict, *, local_submit: bool = False, flags: int = 0
    ) -> RemoteJob:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise CleanupClientError(f"cleanup service {self.path}: {exc.strerror}") from exc
        req = {
            "request": "open",
            "sender": sender,
            "local_submit": "1" if local_submit else "0",
            "flags": str(flags),
        }
        req.update({f"attr.{k}": str(v) for k, v in attrs.items()})
        job = RemoteJob(sock, attr_proto.AttrReader(), "")
        job._send(req)
        job.queue_id = job._reply().get("queue_id", "")
        return job
