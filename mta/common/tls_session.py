"""common.tls_session - resume the smtp client's TLS sessions within one process

SYNOPSIS
    from mta.common.tls_session import ClientSessions
    sessions = ClientSessions.shared(lmtp, timeout)    # one per process and protocol
    arm_connection()                     # before the connection is opened
    ctx = sessions.context(ctx)          # the same SSLContext object for the same settings
    key = sessions.key(ctx, dest, host, addr, port, level)
    with sessions.offer(ctx, key):       # the cached session, if any, goes into the handshake
        await writer.start_tls(ctx, server_hostname=host)
    sessions.remember(ctx, key, ssl_object)   # after the peer passed every check

DESCRIPTION
    A resumed TLS session saves the server's certificate chain and
    one key agreement per connection. asyncio's start_tls() takes no
    session argument, so context() arms the client context: its
    wrap_bio() passes the session that offer() has put in the slot of
    the connection. The slot is reached through a context variable:
    arm_connection() sets a new one in the task before it opens the
    connection, so that it is in the context the event loop keeps with
    the transport (uvloop starts the handshake in that context, asyncio
    in the task's own); one connection opened at a time per task.

    Sessions are kept in this process only (smtp_tls_session_cache_timeout
    long, or lmtp_tls_session_cache_timeout; 0 or less turns the cache
    off; clamped as Postfix does, see common/tls_ticket.py). A long-lived smtp
    process delivers to the same next hops over and over, which is where
    resumption pays. Python's ssl cannot serialize an SSLSession, so
    smtp_tls_session_cache_database (Postfix's cache shared by every
    smtp process through tlsmgr) is not implemented; it stays listed
    in mta/config/unimplemented.py.

    A session is only ever offered under the policy it was made under:
    the key holds the next hop, the server's name, address and port,
    the security level and a digest of every observable setting of the
    client context (verify mode, host name check, protocol versions,
    options, cipher list, trusted authorities). The context itself
    must be the same object (OpenSSL refuses a session from another),
    which context() ensures for identical settings. remember() is
    called only after the connection passed every check its level
    demands, so a resumed session never stands for a verification that
    did not happen. A session the server declined is replaced by the
    new one; an expired one is dropped when looked up.

    At most SESSION_CACHE_LIMIT sessions are kept; the oldest goes first.

SECURITY
    Holds session secrets of outbound connections in memory only.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import ssl
import time
from collections import OrderedDict
from collections.abc import Iterator

SESSION_CACHE_LIMIT = 10000  # sessions kept per process
CONTEXT_CACHE_LIMIT = 256  # distinct client contexts kept per process


class _Slot:
    """Where offer() puts (context, session) for the handshake of a connection."""

    __slots__ = ("offer",)

    def __init__(self) -> None:
        self.offer: tuple[ssl.SSLContext, ssl.SSLSession] | None = None


# the slot of the connections the current task opens; a context variable, so
# that the event loop's callbacks for those connections see the same slot
_SLOT: contextvars.ContextVar[_Slot | None] = contextvars.ContextVar("mta_tls_slot", default=None)


def arm_connection() -> None:
    """Call before opening a connection that may start TLS: the event loop
    keeps a copy of the task's context with each transport (uvloop runs the
    handshake's first step in it), which then holds this connection's slot."""
    _SLOT.set(_Slot())


def _wrap_bio_offering(ctx: ssl.SSLContext, plain_wrap_bio):
    """ctx.wrap_bio, passing the session that offer() set up for this task."""

    def wrap_bio(incoming, outgoing, server_side=False, server_hostname=None, session=None):
        slot = _SLOT.get()
        offered = slot.offer if slot is not None else None
        if session is None and offered is not None and offered[0] is ctx and not server_side:
            session = offered[1]
        return plain_wrap_bio(incoming, outgoing, server_side, server_hostname, session)

    return wrap_bio


def context_digest(ctx: ssl.SSLContext) -> str:
    """A digest of the settings of ctx that decide which peers it accepts."""
    parts = [
        repr(ctx.verify_mode),
        repr(ctx.check_hostname),
        repr(int(ctx.options)),
        repr(int(ctx.verify_flags)),
        repr(ctx.minimum_version),
        repr(ctx.maximum_version),
        ",".join(c["name"] for c in ctx.get_ciphers()),
    ]
    h = hashlib.sha256("\n".join(parts).encode())
    for der in sorted(ctx.get_ca_certs(binary_form=True)):
        h.update(hashlib.sha256(der).digest())
    return h.hexdigest()


class ClientSessions:
    """The process's client TLS sessions of one protocol; see the module docstring."""

    _shared: dict[bool, ClientSessions] = {}  # lmtp -> the process's instance

    def __init__(self, timeout: float, limit: int = SESSION_CACHE_LIMIT) -> None:
        self.timeout = float(timeout)
        self.limit = limit
        self.sessions: OrderedDict[tuple, tuple[ssl.SSLContext, ssl.SSLSession, float]] = (
            OrderedDict()
        )
        self.contexts: OrderedDict[str, ssl.SSLContext] = OrderedDict()
        self.offered = 0  # handshakes that offered a session
        self.resumed = 0  # handshakes the server resumed

    @classmethod
    def shared(cls, lmtp: bool, timeout: float) -> ClientSessions:
        """The instance of this process for one protocol (smtp or lmtp)."""
        kept = cls._shared.get(lmtp)
        if kept is None or kept.timeout != float(timeout):
            kept = cls._shared[lmtp] = cls(timeout)
        return kept

    @property
    def enabled(self) -> bool:
        return self.timeout > 0

    def context(self, ctx: ssl.SSLContext) -> ssl.SSLContext:
        """The kept context with the same settings as ctx (ctx itself the first
        time), armed to offer sessions."""
        if not self.enabled:
            return ctx
        digest = context_digest(ctx)
        kept = self.contexts.get(digest)
        if kept is not None:
            self.contexts.move_to_end(digest)
            return kept
        ctx.wrap_bio = _wrap_bio_offering(ctx, ctx.wrap_bio)
        self.contexts[digest] = ctx
        while len(self.contexts) > CONTEXT_CACHE_LIMIT:
            self.contexts.popitem(last=False)
        return ctx

    def key(
        self, ctx: ssl.SSLContext, dest: str, host: str, addr: str, port: int, level: str
    ) -> tuple:
        """The cache key of one server under one policy."""
        return (dest.lower(), host.lower(), addr, port, level, context_digest(ctx))

    def lookup(self, ctx: ssl.SSLContext, key: tuple) -> ssl.SSLSession | None:
        entry = self.sessions.get(key)
        if entry is None:
            return None
        kept_ctx, session, stored = entry
        if kept_ctx is not ctx or time.monotonic() - stored >= self.timeout:
            del self.sessions[key]
            return None
        return session

    @contextlib.contextmanager
    def offer(self, ctx: ssl.SSLContext, key: tuple) -> Iterator[ssl.SSLSession | None]:
        """Within the block, a handshake of ctx started by this task offers
        the session kept under key (when there is one)."""
        session = self.lookup(ctx, key) if self.enabled else None
        if session is None:
            yield None
            return
        self.offered += 1
        slot = _SLOT.get()
        if slot is None:
            slot = _Slot()
            _SLOT.set(slot)
        slot.offer = (ctx, session)
        try:
            yield session
        finally:
            slot.offer = None

    def remember(self, ctx: ssl.SSLContext, key: tuple, ssl_object) -> None:
        """Keep the session of a connection that passed its policy's checks."""
        if not self.enabled or ssl_object is None:
            return
        if ssl_object.session_reused:
            self.resumed += 1
        session = ssl_object.session
        if session is None:
            return
        if not session.has_ticket and (ssl_object.version() == "TLSv1.3" or not session.id):
            return  # nothing the server could resume
        self.sessions[key] = (ctx, session, time.monotonic())
        self.sessions.move_to_end(key)
        while len(self.sessions) > self.limit:
            self.sessions.popitem(last=False)

    def forget(self, key: tuple) -> None:
        self.sessions.pop(key, None)
