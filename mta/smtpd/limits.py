"""smtpd.limits - per-client connection, message and recipient limits through anvil

SYNOPSIS
    limits = ClientLimits(cfg, service="smtp")            # one per process
    counter = limits.session(addr, name, "name[addr]")    # None: not counted
    reply = await counter.connect()     # "421 ..." or None
    reply = await counter.message()     # "450 ..." or None, at MAIL
    reply = await counter.recipient()   # "450 ..." or None, at RCPT
    reply = await counter.auth()        # "450 ..." or None, at AUTH
    reply = await counter.tls_allowed() # "454 ..." or None, before STARTTLS
    reply = await counter.new_tls(True) # count a new TLS session; "421 ..." (wrapper mode)
    counter.disconnect()

DESCRIPTION
    Every smtpd process reports its clients' connections, MAIL and RCPT
    commands to the anvil service (mta/anvil), which counts them for all
    processes together, and refuses what is past the limits, with
    Postfix's replies and warnings:

        smtpd_client_connection_count_limit (connections open at once)
        smtpd_client_connection_rate_limit  (connections per anvil_rate_time_unit)
            421 4.7.0 HOSTNAME Error: too many connections from ADDR
        smtpd_client_message_rate_limit     (MAIL commands per time unit)
            450 4.7.1 Error: too much mail from ADDR
        smtpd_client_recipient_rate_limit   (RCPT commands per time unit)
            450 4.7.1 Error: too many recipients from ADDR
        smtpd_client_auth_rate_limit        (AUTH commands per time unit)
            450 4.7.1 Error: too many AUTH commands from ADDR
        smtpd_client_new_tls_session_rate_limit (new, not resumed, TLS sessions
                                            per time unit)
            454 4.7.0 Error: too many new TLS sessions from NAME[ADDR] (STARTTLS
            refused; the session goes on in plain text), or in wrapper mode
            421 4.7.0 HOSTNAME Error: too many new TLS sessions from NAME[ADDR]

    A limit of 0 is no limit. Clients matching
    smtpd_client_event_limit_exceptions (default $mynetworks) are not
    counted. When anvil cannot be reached the session goes on without
    limits, and a warning says so at most once per ANVIL_WARN_EVERY
    seconds.

SECURITY
    A missing anvil lifts the limits instead of refusing mail: the
    limits guard against overload, not against delivery.
"""

from __future__ import annotations

import asyncio
import time

from mta import log
from mta.common.anvil_clnt import AnvilClient, AnvilError
from mta.common.match_list import AddrList

ANVIL_WARN_EVERY = 60.0  # seconds between warnings that anvil cannot be reached


class ClientLimits:
    """The anvil limits of one smtpd process; see the module docstring."""

    def __init__(self, cfg, service: str = "smtp") -> None:
        self.service = service
        self.hostname = cfg.get("myhostname")
        self.count_limit = cfg.get_int("smtpd_client_connection_count_limit")
        self.rate_limit = cfg.get_int("smtpd_client_connection_rate_limit")
        self.message_limit = cfg.get_int("smtpd_client_message_rate_limit")
        self.recipient_limit = cfg.get_int("smtpd_client_recipient_rate_limit")
        self.auth_limit = cfg.get_int("smtpd_client_auth_rate_limit")
        self.newtls_limit = cfg.get_int("smtpd_client_new_tls_session_rate_limit")
        self.exceptions = AddrList(cfg.get_list("smtpd_client_event_limit_exceptions"), cfg)
        self.enabled = any(
            (
                self.count_limit,
                self.rate_limit,
                self.message_limit,
                self.recipient_limit,
                self.auth_limit,
                self.newtls_limit,
            )
        )
        self.client = AnvilClient(cfg) if self.enabled else None
        self.warned = 0.0
        self.tasks: set[asyncio.Task] = set()

    def _unreachable(self, exc: AnvilError) -> None:
        now = time.monotonic()
        if not self.warned or now - self.warned >= ANVIL_WARN_EVERY:
            self.warned = now
            log.warning("%s; client limits are not enforced", exc)

    def session(self, addr: str, name: str, client_text: str) -> SessionLimits | None:
        """The counter of one session's client; None when it is not counted."""
        if self.client is None or self.exceptions.match(addr, name):
            return None
        return SessionLimits(self, addr, client_text)


class SessionLimits:
    """One session's part: what it told anvil, and the replies past a limit."""

    def __init__(self, limits: ClientLimits, addr: str, client_text: str) -> None:
        self.limits = limits
        self.addr = addr
        self.client_text = client_text
        self.connected = False

    def _warn(self, what: str, value: int) -> None:
        log.warning(
            "%s limit exceeded: %d from %s for service %s",
            what,
            value,
            self.client_text,
            self.limits.service,
        )

    async def connect(self) -> str | None:
        """Count the session's connection; the 421 reply when past a limit."""
        lim = self.limits
        try:
            count, rate = await lim.client.connect(lim.service, self.addr)
        except AnvilError as exc:
            lim._unreachable(exc)
            return None
        self.connected = True
        if lim.count_limit > 0 and count > lim.count_limit:
            self._warn("Connection concurrency", count)
        elif lim.rate_limit > 0 and rate > lim.rate_limit:
            self._warn("Connection rate", rate)
        else:
            return None
        return f"421 4.7.0 {lim.hostname} Error: too many connections from {self.addr}"

    def disconnect(self) -> None:
        """The session ended: anvil counts one connection fewer (sent in the background)."""
        if not self.connected:
            return
        self.connected = False
        task = asyncio.get_running_loop().create_task(self._disconnect())
        self.limits.tasks.add(task)
        task.add_done_callback(self.limits.tasks.discard)

    async def _disconnect(self) -> None:
        lim = self.limits
        try:
            await lim.client.disconnect(lim.service, self.addr)
        except AnvilError as exc:
            lim._unreachable(exc)

    async def _rate(self, kind: str, limit: int) -> int:
        """The rate anvil counted for this event; 0 when not counted."""
        if limit <= 0:
            return 0
        lim = self.limits
        try:
            return await getattr(lim.client, kind)(lim.service, self.addr)
        except AnvilError as exc:
            lim._unreachable(exc)
            return 0

    async def message(self) -> str | None:
        """Count a MAIL command; the 450 reply when past the message rate."""
        limit = self.limits.message_limit
        rate = await self._rate("message", limit)
        if rate <= limit:
            return None
        self._warn("Message delivery request rate", rate)
        return f"450 4.7.1 Error: too much mail from {self.addr}"

    async def recipient(self) -> str | None:
        """Count a RCPT command; the 450 reply when past the recipient rate."""
        limit = self.limits.recipient_limit
        rate = await self._rate("recipient", limit)
        if rate <= limit:
            return None
        self._warn("Recipient address rate", rate)
        return f"450 4.7.1 Error: too many recipients from {self.addr}"

    async def auth(self) -> str | None:
        """Count an AUTH command; the 450 reply when past the AUTH rate."""
        limit = self.limits.auth_limit
        rate = await self._rate("auth", limit)
        if rate <= limit:
            return None
        self._warn("AUTH command rate", rate)
        return f"450 4.7.1 Error: too many AUTH commands from {self.addr}"

    async def tls_allowed(self) -> str | None:
        """Before STARTTLS: the 454 reply when the client is past its new TLS session rate."""
        limit = self.limits.newtls_limit
        rate = await self._rate("newtls_report", limit) + 1  # this one would be the next
        if limit <= 0 or rate <= limit:
            return None
        self._warn("New TLS session rate", rate)
        return f"454 4.7.0 Error: too many new TLS sessions from {self.client_text}"

    async def new_tls(self, wrapper: bool) -> str | None:
        """Count a new TLS session; in wrapper mode, the 421 reply when past the rate."""
        limit = self.limits.newtls_limit
        rate = await self._rate("newtls", limit)
        if not wrapper or rate <= limit:
            return None
        self._warn("New TLS session rate", rate)
        lim = self.limits
        return f"421 4.7.0 {lim.hostname} Error: too many new TLS sessions from {self.client_text}"
