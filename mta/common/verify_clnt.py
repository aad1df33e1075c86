"""common.verify_clnt - ask the verify service about an address, or tell it a result

SYNOPSIS
    from mta.common.verify_clnt import VerifyClient, VerifyError
    client = VerifyClient(cfg)
    status, text = await client.query("user@example.com")
    await client.update("user@example.com", STATUS_OK, "250 2.1.5 Ok")
    client.close()

DESCRIPTION
    One connection to private/$address_verify_service_name, opened on
    first use and kept; requests on it go one at a time. A kept
    connection that broke is opened again once per request. Statuses
    are those of mta/verify/cache.py. VerifyError says the service
    cannot be reached (at once, when nobody serves the socket) or did
    not answer within ipc_timeout, at most IPC_REPLY_LIMIT seconds
    (after which requests fail at once for a while); see
    mta/common/ipc.py. The caller treats it as a temporary failure.

SECURITY
    Talks only to the local verify service. Addresses come from SMTP
    clients; they travel as attr_proto values, never as commands.
"""

from __future__ import annotations

import asyncio

from mta.common import ipc
from mta.common.attr_proto import read_attrs, write_attrs
from mta.queue.paths import service_socket_path


class VerifyError(Exception):
    """The verify service cannot be reached or gave no usable answer."""


class VerifyClient:
    """A kept connection to the verify service; see the module docstring.
    SERVICE names the service in error texts and ERROR is the exception
    raised, so that clients of other request/reply services reuse it."""

    SERVICE = "verify"
    ERROR: type[Exception] = VerifyError

    def __init__(self, cfg, socket_path: str | None = None) -> None:
        self.path = socket_path or service_socket_path(
            cfg.get("queue_directory"), cfg.get("address_verify_service_name"), True
        )
        self.timeout = ipc.reply_timeout(cfg)
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock: asyncio.Lock | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None

    async def _once(self, req: dict[str, str]) -> dict[str, str]:
        reader, writer = self._conn
        await write_attrs(writer, req)
        reply = await read_attrs(reader)
        if reply is None:
            raise ConnectionError(f"the {self.SERVICE} service closed the connection")
        return reply

    async def request(self, req: dict[str, str]) -> dict[str, str]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            reply = await self._exchange(req)
            if reply.get("status") != "0":
                raise self.ERROR(
                    f"{self.SERVICE} service: request failed (status {reply.get('status')})"
                )
            return reply

    async def _exchange(self, req: dict[str, str]) -> dict[str, str]:
        path = self.path
        if ipc.is_down(path):
            raise self.ERROR(f"{self.SERVICE} service {path}: {ipc.down_text(path)}")
        while True:
            fresh = self._conn is None
            if fresh:
                try:
                    self._conn = await asyncio.wait_for(
                        asyncio.open_unix_connection(path), self.timeout
                    )
                except asyncio.TimeoutError:
                    ipc.mark_down(path, self.timeout)
                    raise self.ERROR(f"{self.SERVICE} service {path}: connect timed out") from None
                except OSError as exc:
                    raise self.ERROR(
                        f"{self.SERVICE} service {path}: {ipc.connect_error(exc)}"
                    ) from None
            try:
                return await asyncio.wait_for(self._once(req), self.timeout)
            except asyncio.TimeoutError:
                self.close()
                ipc.mark_down(path, self.timeout)
                raise self.ERROR(
                    f"{self.SERVICE} service {path}: {ipc.timeout_text(self.timeout)}"
                ) from None
            except (OSError, ValueError) as exc:
                self.close()
                if fresh:
                    raise self.ERROR(f"{self.SERVICE} service {path}: {exc}") from None
                # a kept connection went stale: once more on a new one

    async def query(self, address: str) -> tuple[int, str]:
        """(status, text) of address; a probe goes out when nothing is known."""
        reply = await self.request({"request": "query", "address": address})
        try:
            return int(reply.get("addr_status", "")), reply.get("text", "")
        except ValueError:
            raise VerifyError("verify service: malformed reply") from None

    async def update(self, address: str, status: int, text: str) -> None:
        """Record the result of a probe for address."""
        await self.request(
            {"request": "update", "address": address, "addr_status": str(status), "text": text}
        )
