"""common.tlsmgr_clnt - fetch the session-ticket key from the tlsmgr service

SYNOPSIS
    from mta.common.tlsmgr_clnt import TlsmgrClient, TlsmgrError, TicketsOff
    client = TlsmgrClient(cfg)
    keybuf, expires, previous = await client.ticket_key()
    der = await client.lookup_session("smtp", cache_id)     # b"" when none
    await client.update_session("smtp", cache_id, der)

DESCRIPTION
    One kept connection to private/$tlsmgr_service_name, with the
    request rules of mta/common/verify_clnt.py and mta/common/ipc.py.
    ticket_key() returns the current 80-byte key, the time it will
    be replaced and the key it replaced (b"" when none); TicketsOff says tlsmgr has tickets turned off (an
    empty key);
    TlsmgrError that it cannot be reached or answered nonsense.

SECURITY
    Talks only to the local tlsmgr service. The reply holds the ticket
    key: the caller installs it and keeps it nowhere else.
"""

from __future__ import annotations

from mta.common.tls_ticket import TICKET_KEY_SIZE
from mta.common.verify_clnt import VerifyClient
from mta.queue.paths import service_socket_path


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
