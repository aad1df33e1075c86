"""common.tlsmgr_clnt - fetch the session-ticket key from the tlsmgr service

SYNOPSIS
    from mta.common.tlsmgr_clnt import TlsmgrClient, TlsmgrError, TicketsOff
    client = TlsmgrClient(cfg)
    keybuf, expires, previous = await client.ticket_key()
    der = await client.lookup_session("smtp", cache_id)     # b"" when none
    await client.update_session("smtp", cache_id, der)
    blocking = TlsmgrBlockingClient(cfg)                    # inside OpenSSL callbacks
    der = blocking.lookup_session("smtpd", cache_id)        # b"" also when tlsmgr fails

DESCRIPTION
    One kept connection to private/$tlsmgr_service_name, with the
    request rules of mta/common/verify_clnt.py and mta/common/ipc.py.
    ticket_key() returns the current 80-byte key, the time it will
    be replaced and the key it replaced (b"" when none); TicketsOff says tlsmgr has tickets turned off (an
    empty key);
    TlsmgrError that it cannot be reached or answered nonsense.

    TlsmgrBlockingClient makes the cache requests on a blocking socket,
    for smtpd's server session cache, whose OpenSSL callbacks run inside
    the handshake on the event loop's thread (as Postfix's smtpd also
    waits for tlsmgr there). Each request is bounded by BLOCKING_LIMIT
    seconds; a failure drops the connection, marks the socket down for
    a while (mta/common/ipc.py: later requests fail at once) and counts
    as "no session".

SECURITY
    Talks only to the local tlsmgr service. The reply holds the ticket
    key: the caller installs it and keeps it nowhere else.
"""

from __future__ import annotations

import socket

from mta.common import attr_proto, ipc
from mta.common.tls_ticket import TICKET_KEY_SIZE
from mta.common.verify_clnt import VerifyClient
from mta.queue.paths import service_socket_path

BLOCKING_LIMIT = 1.0  # seconds a blocking cache request may take, connect included


class TlsmgrError(Exception):
    """The tlsmgr service cannot be reached or gave no usable answer."""


class TicketsOff(TlsmgrError):
    """tlsmgr has session tickets turned off."""


class TlsmgrClient(VerifyClient):
    """A kept connection to the tlsmgr service; see the module docstring."""

    SERVICE = "tlsmgr"
    ERROR = TlsmgrError

    def __init__(self, cfg, socket_path: str | None = None) -> None:
        super().__init__(
            cfg,
            socket_path
            or service_socket_path(
                cfg.get("queue_directory"), cfg.get("tlsmgr_service_name"), True
            ),
        )

    async def ticket_key(self) -> tuple[bytes, float, bytes]:
        """(the current 80-byte ticket key, when tlsmgr replaces it, the previous key)."""
        reply = await self.request({"request": "tktkey"})
        if reply.get("keybuf") == "":
            raise TicketsOff("tlsmgr service: session tickets are turned off")
        try:
            keybuf, expires = bytes.fromhex(reply["keybuf"]), float(reply["expires"])
            previous = bytes.fromhex(reply.get("previous", ""))
        except (KeyError, ValueError):
            raise TlsmgrError("tlsmgr service: malformed reply") from None
        if len(keybuf) != TICKET_KEY_SIZE or len(previous) not in (0, TICKET_KEY_SIZE):
            raise TlsmgrError("tlsmgr service: malformed reply")
        return keybuf, expires, previous

    async def lookup_session(self, cache_type: str, cache_id: str) -> bytes:
        """The client session cached under cache_id (DER), or b""."""
        reply = await self.request(
            {"request": "lookup", "cache_type": cache_type, "cache_id": cache_id}
        )
        try:
            return bytes.fromhex(reply.get("session", ""))
        except ValueError:
            raise TlsmgrError("tlsmgr service: malformed reply") from None

    async def update_session(self, cache_type: str, cache_id: str, der: bytes) -> None:
        await self.request(
            {
                "request": "update",
                "cache_type": cache_type,
                "cache_id": cache_id,
                "session": der.hex(),
            }
        )

    async def delete_session(self, cache_type: str, cache_id: str) -> None:
        await self.request({"request": "delete", "cache_type": cache_type, "cache_id": cache_id})


class TlsmgrBlockingClient:
    """tlsmgr's cache requests on a blocking socket; see the module docstring."""

    def __init__(self, cfg, socket_path: str | None = None) -> None:
        self.path = socket_path or service_socket_path(
            cfg.get("queue_directory"), cfg.get("tlsmgr_service_name"), True
        )
        self.timeout = min(ipc.reply_timeout(cfg), BLOCKING_LIMIT)
        self.sock: socket.socket | None = None
        self.error = ""  # why the last request failed; "" after one that worked

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _once(self, req: dict[str, str]) -> dict[str, str] | None:
        if self.sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
            except OSError:
                sock.close()
                raise
            self.sock = sock
        attr_proto.send(self.sock, req)
        return attr_proto.recv(self.sock)

    def request(self, req: dict[str, str]) -> dict[str, str] | None:
        """tlsmgr's reply, or None (and self.error says why)."""
        if ipc.is_down(self.path):
            self.error = ipc.down_text(self.path)
            return None
        for attempt in (1, 2):  # a kept connection that broke is opened again once
            kept = self.sock is not None
            try:
                reply = self._once(req)
            except TimeoutError:
                self.close()
                ipc.mark_down(self.path, self.timeout)
                self.error = ipc.timeout_text(self.timeout)
                return None
            except (OSError, ValueError) as exc:
                self.close()
                if kept and attempt == 1:
                    continue
                connecting = isinstance(exc, OSError) and not kept
                self.error = ipc.connect_error(exc) if connecting else str(exc)
                return None
            if reply is None:
                self.close()
                if kept and attempt == 1:
                    continue
                self.error = "connection closed"
                return None
            self.error = ""
            return reply
        return None

    def lookup_session(self, cache_type: str, cache_id: str) -> bytes:
        """The session cached under cache_id (DER), or b"" (none, or any failure)."""
        reply = self.request({"request": "lookup", "cache_type": cache_type, "cache_id": cache_id})
        if reply is None or reply.get("status") != "0":
            return b""
        try:
            return bytes.fromhex(reply.get("session", ""))
        except ValueError:
            self.error = "malformed reply"
            return b""

    def update_session(self, cache_type: str, cache_id: str, der: bytes) -> bool:
        req = {"request": "update", "cache_type": cache_type, "cache_id": cache_id}
        reply = self.request({**req, "session": der.hex()})
        return reply is not None and reply.get("status") == "0"

    def delete_session(self, cache_type: str, cache_id: str) -> bool:
        reply = self.request({"request": "delete", "cache_type": cache_type, "cache_id": cache_id})
        return reply is not None and reply.get("status") == "0"
