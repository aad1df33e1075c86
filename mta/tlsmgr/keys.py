"""tlsmgr.keys - the session-ticket key and its rotation

SYNOPSIS
    from mta.tlsmgr.keys import TicketKeys
    keys = TicketKeys(timeout=3600)
    key = keys.current(now)          # TicketKey(name, keybuf, expires)
    keys.lookup(name, now)           # the current or the previous key, or None

DESCRIPTION
    A key is 80 random bytes in OpenSSL's layout: a 16-byte name, a
    32-byte HMAC-SHA256 secret and a 32-byte AES-256 key
    (common/tls_ticket.py). current() draws the first key when first
    asked and a new one once the current one is timeout seconds old;
    the key it replaces stays known to lookup() for one more timeout.
    smtpd keeps the key it replaced itself and accepts tickets under
    both (smtpd/tls_tickets.py, common/tls_ticket_keys.py).

    The timeout is smtpd_tls_session_cache_timeout as
    common/tls_ticket.py's cache_timeout() reads it.

SECURITY
    The keys decrypt every ticket issued under them: memory only,
    never logged (the name alone may be, in hex).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mta.common.tls_ticket import TICKET_KEY_SIZE, TICKET_NAME_SIZE


@dataclass(frozen=True)
class TicketKey:
    keybuf: bytes  # TICKET_KEY_SIZE bytes: name, HMAC secret, AES key
    expires: float  # epoch seconds after which a new key replaces it

    @property
    def name(self) -> bytes:
        return self.keybuf[:TICKET_NAME_SIZE]


class TicketKeys:
    """The current ticket key and the one before it; see the module docstring."""

    def __init__(self, timeout: float) -> None:
        self.timeout = float(timeout)
        self.key: TicketKey | None = None
        self.previous: TicketKey | None = None

    def current(self, now: float) -> TicketKey:
        if self.key is None or now >= self.key.expires:
            self.previous = self.key
            self.key = TicketKey(os.urandom(TICKET_KEY_SIZE), now + self.timeout)
        return self.key

    def lookup(self, name: bytes, now: float) -> TicketKey | None:
        """The key called name while it may still decrypt tickets."""
        for key in (self.key, self.previous):
            if key is not None and key.name == name and now < key.expires + self.timeout:
                return key
        return None
