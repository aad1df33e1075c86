"""smtpd.tls_tickets - TLS session resumption across smtpd processes

SYNOPSIS
    from mta.smtpd.tls_tickets import TicketKeeper
    keeper = TicketKeeper(cfg, server.tls_context)
    await keeper.start()        # first key fetched (bounded), then kept fresh
    keeper.stop()

DESCRIPTION
    A client that resumes a TLS session skips the certificate exchange
    and the key agreement. It presents a session ticket (TLS 1.2
    RFC 5077, TLS 1.3 RFC 8446 4.6.1) that some smtpd process issued,
    encrypted under that process's ticket key; another process can
    only accept it when it holds the same key. The keeper fetches the
    key from the tlsmgr service (common/tlsmgr_clnt.py), installs it in
    the server context (common/tls_ticket.py), and fetches it again
    when tlsmgr says it will be replaced, every
    smtpd_tls_session_cache_timeout.

    After a rotation, tickets issued under the previous key are still
    accepted (and replaced by one under the new key): smtpd sets
    OpenSSL's ticket key callback with both keys
    (common/tls_ticket_keys.py). Where that callback cannot be set, it
    falls back to the one-key call of common/tls_ticket.py, and a
    ticket under the previous key gets a full handshake, once per
    client per rotation.

    Sessions and ticket lifetime hints last
    smtpd_tls_session_cache_timeout (clamped as Postfix does:
    common/tls_ticket.py). With 0 or less, or tls_session_ticket_cipher
    empty, smtpd issues no tickets; with 0 or less it keeps no session
    cache either, as Postfix.

    When tlsmgr cannot be reached, or the ctypes route is not usable
    in this Python, smtpd warns once and keeps OpenSSL's own,
    per-process key: clients then resume only with the process that
    issued their ticket. It asks tlsmgr again after
    TICKET_RETRY_DELAY seconds.

    Clients that do not use tickets resume by session id: within one
    process (OpenSSL's in-memory cache), or in every smtpd process with
    smtpd_tls_session_cache_database (smtpd/tls_scache.py).

SECURITY
    The key exists in this process's memory and in OpenSSL's context,
    never on disk or in the log.
"""

from __future__ import annotations

import asyncio
import ssl
import time

from mta import log
from mta.common.tls_ticket import (
    cache_timeout,
    disable_session_cache,
    install_ticket_key,
    set_session_timeout,
    unavailable,
)
from mta.common.tls_ticket_keys import install_ticket_keys
from mta.common.tlsmgr_clnt import TicketsOff, TlsmgrClient, TlsmgrError

TICKET_RETRY_DELAY = 60.0  # seconds before asking tlsmgr again after a failure
TICKET_REFRESH_SLACK = 1.0  # seconds after the announced rotation before asking again
TICKET_REFRESH_MIN = 5.0  # seconds between two requests, at least


class TicketKeeper:
    """Keep the ticket key of one server context in step with tlsmgr."""

    def __init__(self, cfg, context: ssl.SSLContext | None, client: TlsmgrClient | None = None):
        self.cfg = cfg
        self.context = context
        self.timeout = cache_timeout(cfg)
        self.tickets = self.timeout > 0 and bool(cfg.get("tls_session_ticket_cipher").strip())
        self.client = client
        self.task: asyncio.Task | None = None
        self.shared = False  # the context holds tlsmgr's key now
        self.current = b""  # the key new tickets are encrypted under
        self.previous = b""  # the one before it, still accepted
        self.warned = False

    def configure(self) -> bool:
        """Apply the timeout and the ticket switch; True when keys are to be fetched."""
        ctx = self.context
        if not isinstance(ctx, ssl.SSLContext):
            return False
        if not self.tickets:
            ctx.options |= ssl.OP_NO_TICKET
            ctx.num_tickets = 0
        if self.timeout <= 0:
            why = disable_session_cache(ctx)
            if why:
                log.warning("cannot turn off the TLS session cache: %s", why)
            return False
        why = set_session_timeout(ctx, self.timeout) or unavailable()
        if why:
            log.warning(
                "TLS session tickets cannot be shared by smtpd processes: %s;"
                " sessions resume only with the process that issued them",
                why,
            )
            return False
        return self.tickets

    async def refresh(self) -> float:
        """Fetch and install the key once; seconds until the next attempt, or -1 to stop."""
        if self.client is None:
            self.client = TlsmgrClient(self.cfg)
        try:
            keybuf, expires, previous = await self.client.ticket_key()
        except TicketsOff as exc:
            log.warning("%s; smtpd keeps its own session ticket key", exc)
            return -1
        except TlsmgrError as exc:
            if not self.warned:
                log.warning(
                    "cannot get the TLS session ticket key: %s;"
                    " sessions resume only with the smtpd process that issued them",
                    exc,
                )
                self.warned = True
            self.shared = False
            return TICKET_RETRY_DELAY
        why = self.install(keybuf, previous)
        if why:
            log.warning("cannot install the TLS session ticket key: %s", why)
            self.shared = False
            return -1
        if self.warned:
            log.info("TLS session ticket key from tlsmgr installed")
        self.warned = False
        self.shared = True
        return max(expires - time.time() + TICKET_REFRESH_SLACK, TICKET_REFRESH_MIN)

    def install(self, keybuf: bytes, previous: bytes = b"") -> str:
        """Make keybuf the current key and keep the one it replaces (or, the
        first time, the previous one tlsmgr names); "" or why not."""
        if keybuf == self.current:
            return ""
        previous = self.current or previous
        why = install_ticket_keys(self.context, keybuf, previous)
        if why:
            why = install_ticket_key(self.context, keybuf)
        if not why:
            self.current, self.previous = keybuf, previous
        return why

    async def start(self) -> None:
        """Fetch the first key (so the first client already gets a shared
        ticket), then keep it fresh in the background."""
        try:
            if not self.configure():
                return
        except Exception as exc:  # noqa: BLE001 - resumption is no reason to stop serving
            log.warning("TLS session tickets cannot be shared by smtpd processes: %s", exc)
            return
        delay = await self.refresh()
        if delay >= 0:
            self.task = asyncio.get_running_loop().create_task(self._run(delay))

    async def _run(self, delay: float) -> None:
        while delay >= 0:
            await asyncio.sleep(delay)
            delay = await self.refresh()

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
        if self.client is not None:
            self.client.close()
