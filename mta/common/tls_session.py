"""common.tls_session - resume the smtp client's TLS sessions, in one process and through tlsmgr

SYNOPSIS
    from mta.common.tls_session import ClientSessions
    sessions = ClientSessions.shared(lmtp, timeout, tlsmgr_client_or_none)
    arm_connection()                     # before the connection is opened
    ctx = sessions.context(ctx)          # the same SSLContext object for the same settings
    key = sessions.key(ctx, dest, host, addr, port, level)
    await sessions.fetch(ctx, key)       # from tlsmgr, when this process has none
    with sessions.offer(ctx, key):       # the cached session, if any, goes into the handshake
        await writer.start_tls(ctx, server_hostname=host)
    await sessions.remember(ctx, key, ssl_object)   # after the peer passed every check

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

    Sessions are kept in this process (smtp_tls_session_cache_timeout
    long, or lmtp_tls_session_cache_timeout; 0 or less turns caching
    off; clamped as Postfix does, see common/tls_ticket.py): a
    long-lived smtp process delivers to the same next hops over and
    over. With smtp_tls_session_cache_database
    (lmtp_tls_session_cache_database) set, as in Postfix, every new
    session also goes to tlsmgr's cache (tlsmgr/scache.py) in DER form
    (common/tls_serial.py), and a process that has none for a server
    asks tlsmgr before the handshake: a new smtp process resumes what
    another left. When tlsmgr cannot be reached, one warning, and the
    process goes on with its own sessions.

    A session is only ever offered under the policy it was made under:
    the key holds the next hop, the server's name, address and port,
    the security level and a digest of every observable setting of the
    client context (verify mode, host name check, protocol versions,
    options, cipher list, trusted authorities). The context itself
    must be the same object (OpenSSL refuses a session from another),
    which context() ensures for identical settings; a context handed to
    context() must not be changed afterwards (its digest is kept). remember() is
    called only after the connection passed every check its level
    demands, so a resumed session never stands for a verification that
    did not happen. A session the server declined is replaced by the
    new one; an expired one is dropped when looked up.

    At most SESSION_CACHE_LIMIT sessions are kept; the oldest goes first.

SECURITY
    Holds session secrets of outbound connections in memory, and hands
    them to tlsmgr over its private socket when the shared cache is on.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import ssl
import time
from collections import OrderedDict
from collections.abc import Iterator

from mta import log
from mta.common.tls_serial import offer_der, session_der
from mta.common.tlsmgr_clnt import TlsmgrClient, TlsmgrError

CACHE_ID_MAX = 400  # characters of an id in tlsmgr's cache (tlsmgr/scache.py)
SESSION_CACHE_LIMIT = 10000  # sessions kept per process
CONTEXT_CACHE_LIMIT = 256  # distinct client contexts kept per process


class _Slot:
    """Where offer() puts (context, session) for the handshake of a connection."""

    __slots__ = ("offer",)

    def __init__(self) -> None:
        # (context, a session of this process or None, a DER session from tlsmgr or b"")
        self.offer: tuple[ssl.SSLContext, ssl.SSLSession | None, bytes] | None = None


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
        der = b""
        if session is None and offered is not None and offered[0] is ctx and not server_side:
            session, der = offered[1], offered[2]
        obj = plain_wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        if session is None and der:
            offer_der(obj, der)  # when it does not check out: a full handshake
        return obj

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
        # what the context was built from that it cannot show: a CA directory
        # (loaded lazily, absent from get_ca_certs()) and the client certificates
        str(getattr(ctx, "mta_sources", "")),
    ]
    h = hashlib.sha256("\n".join(parts).encode())
    for der in sorted(ctx.get_ca_certs(binary_form=True)):
        h.update(hashlib.sha256(der).digest())
    return h.hexdigest()


class ClientSessions:
    """The process's client TLS sessions of one protocol; see the module docstring."""

    _shared: dict[bool, ClientSessions] = {}  # lmtp -> the process's instance

    def __init__(
        self, timeout: float, limit: int = SESSION_CACHE_LIMIT, cache_type: str = "smtp"
    ) -> None:
        self.timeout = float(timeout)
        self.cache_type = cache_type  # of the shared cache in tlsmgr
        self.remote: TlsmgrClient | None = None  # the shared cache, when configured
        self.fetched: dict[tuple, bytes] = {}  # from tlsmgr, for the coming offer()
        self.warned = False
        self.limit = limit
        self.sessions: OrderedDict[tuple, tuple[ssl.SSLContext, ssl.SSLSession, float]] = (
            OrderedDict()
        )
        self.contexts: OrderedDict[str, ssl.SSLContext] = OrderedDict()
        self.offered = 0  # handshakes that offered a session
        self.resumed = 0  # handshakes the server resumed

    @classmethod
    def shared(
        cls, lmtp: bool, timeout: float, remote: TlsmgrClient | None = None
    ) -> ClientSessions:
        """The instance of this process for one protocol (smtp or lmtp); remote
        is the tlsmgr client when *_tls_session_cache_database is set."""
        kept = cls._shared.get(lmtp)
        if kept is None or kept.timeout != float(timeout):
            kept = cls._shared[lmtp] = cls(timeout, cache_type="lmtp" if lmtp else "smtp")
        kept.remote = remote
        return kept

    @staticmethod
    def cache_id(key: tuple) -> str:
        """The key as the id of the shared cache: readable, or a digest when long."""
        dest, host, addr, port, level, digest = key
        text = f"{host}[{addr}]:{port}&{level}&{dest}&{digest[:32]}"
        if len(text) <= CACHE_ID_MAX:
            return text
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()

    def _warn(self, exc: Exception) -> None:
        if not self.warned:
            log.warning("TLS session cache: %s; sessions are kept in this process only", exc)
            self.warned = True

    async def fetch(self, ctx: ssl.SSLContext, key: tuple) -> None:
        """Ask tlsmgr for a session when this process has none for key."""
        if not self.enabled or self.remote is None or self.lookup(ctx, key) is not None:
            return
        try:
            der = await self.remote.lookup_session(self.cache_type, self.cache_id(key))
        except TlsmgrError as exc:
            self._warn(exc)
            return
        if der:
            self.fetched[key] = der

    @property
    def enabled(self) -> bool:
        return self.timeout > 0

    def context(self, ctx: ssl.SSLContext) -> ssl.SSLContext:
        """The kept context with the same settings as ctx (ctx itself the first
        time), armed to offer sessions."""
        if not self.enabled:
            return ctx
        digest = self._digest(ctx)
        kept = self.contexts.get(digest)
        if kept is not None:
            self.contexts.move_to_end(digest)
            return kept
        ctx.wrap_bio = _wrap_bio_offering(ctx, ctx.wrap_bio)
        ctx._mta_digest = digest  # type: ignore[attr-defined]  # kept: settings no longer change
        self.contexts[digest] = ctx
        while len(self.contexts) > CONTEXT_CACHE_LIMIT:
            self.contexts.popitem(last=False)
        return ctx

    @staticmethod
    def _digest(ctx: ssl.SSLContext) -> str:
        """context_digest(ctx), remembered on the contexts context() keeps."""
        return getattr(ctx, "_mta_digest", None) or context_digest(ctx)

    def key(
        self, ctx: ssl.SSLContext, dest: str, host: str, addr: str, port: int, level: str
    ) -> tuple:
        """The cache key of one server under one policy."""
        return (dest.lower(), host.lower(), addr, port, level, self._digest(ctx))

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
    def offer(self, ctx: ssl.SSLContext, key: tuple) -> Iterator[ssl.SSLSession | bytes | None]:
        """Within the block, a handshake of ctx started by this task offers
        the session kept under key (when there is one)."""
        session = self.lookup(ctx, key) if self.enabled else None
        der = self.fetched.pop(key, b"") if session is None else b""
        if session is None and not der:
            yield None
            return
        self.offered += 1
        slot = _SLOT.get()
        if slot is None:
            slot = _Slot()
            _SLOT.set(slot)
        slot.offer = (ctx, session, der)
        try:
            yield session or der
        finally:
            slot.offer = None

    async def remember(self, ctx: ssl.SSLContext, key: tuple, ssl_object) -> None:
        """Keep the session of a connection that passed its policy's checks,
        here and, when configured, in tlsmgr's cache for the other processes."""
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
        if self.remote is not None:
            der = session_der(ssl_object)
            if der:
                try:
                    await self.remote.update_session(self.cache_type, self.cache_id(key), der)
                except TlsmgrError as exc:
                    self._warn(exc)

    def forget(self, key: tuple) -> None:
        self.sessions.pop(key, None)
        self.fetched.pop(key, None)
