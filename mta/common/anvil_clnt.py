"""common.anvil_clnt - tell the anvil service about client connections and events

SYNOPSIS
    from mta.common.anvil_clnt import AnvilClient, AnvilError
    client = AnvilClient(cfg)
    count, rate = await client.connect("smtp", "192.0.2.7")
    rate = await client.message("smtp", "192.0.2.7")
    rate = await client.recipient("smtp", "192.0.2.7")
    rate = await client.auth("smtp", "192.0.2.7")
    rate = await client.newtls("smtp", "192.0.2.7")          # newtls_report: without counting
    await client.disconnect("smtp", "192.0.2.7")

DESCRIPTION
    One kept connection to private/anvil, with the request rules of
    mta/common/verify_clnt.py and mta/common/ipc.py: a socket nobody
    serves fails at once, a reply is awaited a bounded time. AnvilError
    says the service gave no usable answer; the caller then goes on
    without limits. The client ident is the service name and the
    client address joined by a colon, as Postfix's.

SECURITY
    Talks only to the local anvil service; the address comes from the
    client's socket.
"""

from __future__ import annotations

from mta.common.verify_clnt import VerifyClient
from mta.queue.paths import service_socket_path

ANVIL_SERVICE = "anvil"  # the master.cf service name, as Postfix's fixed private/anvil


class AnvilError(Exception):
    """The anvil service cannot be reached or gave no usable answer."""


class AnvilClient(VerifyClient):
    """A kept connection to the anvil service; see the module docstring."""

    SERVICE = ANVIL_SERVICE
    ERROR = AnvilError

    def __init__(self, cfg, socket_path: str | None = None) -> None:
        super().__init__(
            cfg,
            socket_path or service_socket_path(cfg.get("queue_directory"), ANVIL_SERVICE, True),
        )

    async def _ask(self, request: str, service: str, addr: str, *keys: str) -> list[int]:
        reply = await self.request({"request": request, "ident": f"{service}:{addr}"})
        try:
            return [int(reply[k]) for k in keys]
        except (KeyError, ValueError):
            raise AnvilError("anvil service: malformed reply") from None

    async def connect(self, service: str, addr: str) -> tuple[int, int]:
        """Count a new connection: (connections open, connection rate)."""
        count, rate = await self._ask("connect", service, addr, "count", "rate")
        return count, rate

    async def disconnect(self, service: str, addr: str) -> None:
        await self._ask("disconnect", service, addr)

    async def message(self, service: str, addr: str) -> int:
        """Count a MAIL FROM: the message rate."""
        return (await self._ask("message", service, addr, "rate"))[0]

    async def recipient(self, service: str, addr: str) -> int:
        """Count a RCPT TO: the recipient rate."""
        return (await self._ask("recipient", service, addr, "rate"))[0]

    async def auth(self, service: str, addr: str) -> int:
        """Count an AUTH command: the AUTH rate."""
        return (await self._ask("auth", service, addr, "rate"))[0]

    async def newtls(self, service: str, addr: str) -> int:
        """Count a new (not resumed) TLS session: the new TLS session rate."""
        return (await self._ask("newtls", service, addr, "rate"))[0]

    async def newtls_report(self, service: str, addr: str) -> int:
        """The new TLS session rate, without counting one."""
        return (await self._ask("newtls_report", service, addr, "rate"))[0]

    async def lookup(self, service: str, addr: str) -> dict[str, int]:
        keys = ("count", "rate", "message", "recipient", "auth")
        return dict(zip(keys, await self._ask("lookup", service, addr, *keys), strict=True))
