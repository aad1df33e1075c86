"""smtpd.policy_checks - check_policy_service: delegate an access decision to a policy server

SYNOPSIS
    from mta.smtpd.policy_checks import POLICY_WITH_ARG, apply_policy, policy_client
    client = policy_client(checks, "inet:127.0.0.1:9998")   # SmtpdChecks.parse_restrictions
    result = await apply_policy(checks, ctx, client, reply_name, reply_class)   # ._apply

DESCRIPTION
    check_policy_service SERVICE, in any smtpd_*_restrictions list, sends
    the session's attributes to a policy server (SMTPD_POLICY_README)
    and applies its answer exactly as an access(5) table result
    (SmtpdChecks._table_result): OK, DUNNO, REJECT text, 4NN/5NN text,
    DEFER_IF_PERMIT, PREPEND, HOLD, restriction names, and so on.

    SERVICE is inet:host:port, unix:/path, unix:private/NAME (relative
    to queue_directory; local: is the same as unix:), or a bare master.cf
    service NAME, taken as unix:private/NAME. The Postfix 3.0 form
    "{ SERVICE, name=value ... }" overrides, for that service only, the
    main.cf smtpd_policy_service_NAME settings: timeout, max_idle,
    max_ttl, request_limit, try_limit, retry_delay, default_action,
    policy_context ("{ default_action = 451 4.3.5 text }" for a value
    with spaces). A malformed SERVICE or setting is a ValueError, which
    SmtpdChecks reports as a ConfigError naming the restriction list.

    Protocol: the request is lines "name=value" ended by an empty line;
    the reply is "action=VALUE" and an empty line. Every attribute
    Postfix 3.2+ sends is sent (POLICY_ATTRIBUTES), "" or 0 where smtpd
    does not know the value.

    Connections are kept per service in one smtpd process, reused across
    requests and sessions (an idle pool, one connection per request in
    flight), and closed after smtpd_policy_service_max_idle unused,
    after the request that finds one older than _max_ttl, and after
    _request_limit requests. A request that fails (no connection, no
    answer within _timeout, a closed connection, a malformed or
    oversized reply, malformed UTF-8) is sent again up to _try_limit
    times, _retry_delay apart; then one warning "problem talking to
    server SERVICE: REASON" is logged and the default action applies
    (a check_policy_service named by that action gets Postfix's
    built-in default, "451 4.3.5 Server configuration problem").

SECURITY
    The policy server is trusted by configuration: its action may
    permit relaying, as an access table may. Its reply is read with
    bounds (POLICY_LINE_LIMIT bytes a line, POLICY_LINE_COUNT lines)
    and anything unexpected fails the request. Values sent come from
    the SMTP client (HELO name, addresses) after the session's parser;
    newline, carriage return and NUL are replaced so that a value can
    never add an attribute. Runs inside smtpd, unprivileged.

STANDARDS
    Postfix SMTPD_POLICY_README (the protocol), access(5) (the actions).

SEE ALSO
    postconf(5) check_policy_service, smtpd_policy_service_*;
    mta/smtpd/checks.py (_table_result), mta/smtpd/sasl_checks.py
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import re
from dataclasses import dataclass, replace

from mta import log
from mta.config.errors import ConfigError
from mta.config.values import parse_int, parse_time, split_list

POLICY_WITH_ARG = frozenset({"check_policy_service"})  # restrictions that take a service
POLICY_REQUEST = "smtpd_access_policy"  # the request attribute's value
POLICY_BUILTIN_ACTION = "451 4.3.5 Server configuration problem"  # nested default action
POLICY_LINE_LIMIT = 8192  # longest reply line (Postfix: 4 * line_length_limit)
POLICY_LINE_COUNT = 64  # most reply lines before the empty one
POLICY_STAGES_WITH_COUNT = ("DATA", "END-OF-MESSAGE")  # recipient_count is sent here only
POLICY_ATTRIBUTES = (  # in the order Postfix sends them
    "request",
    "protocol_state",
    "protocol_name",
    "client_address",
    "client_name",
    "client_port",
    "reverse_client_name",
    "server_address",
    "server_port",
    "helo_name",
    "sender",
    "recipient",
    "recipient_count",
    "queue_id",
    "instance",
    "size",
    "etrn_domain",
    "stress",
    "sasl_method",
    "sasl_username",
    "sasl_sender",
    "ccert_subject",
    "ccert_issuer",
    "ccert_fingerprint",
    "ccert_pubkey_fingerprint",
    "encryption_protocol",
    "encryption_cipher",
    "encryption_keysize",
    "policy_context",
    "compatibility_level",
    "mail_version",
)
# per-service settings: name -> (kind, the main.cf parameter it overrides)
POLICY_SETTINGS = {
    "timeout": ("time", "smtpd_policy_service_timeout"),
    "max_idle": ("time", "smtpd_policy_service_max_idle"),
    "max_ttl": ("time", "smtpd_policy_service_max_ttl"),
    "request_limit": ("int", "smtpd_policy_service_request_limit"),
    "try_limit": ("int", "smtpd_policy_service_try_limit"),
    "retry_delay": ("time", "smtpd_policy_service_retry_delay"),
    "default_action": ("str", "smtpd_policy_service_default_action"),
    "policy_context": ("str", "smtpd_policy_service_policy_context"),
}

_UNSAFE = str.maketrans({"\n": "?", "\r": "?", "\0": "?"})
_SERVICE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*$")
_PORT_RE = re.compile(r"(?:\d{1,5}|[A-Za-z][A-Za-z0-9-]*)$")
_nesting: contextvars.ContextVar[int] = contextvars.ContextVar("policy_nesting", default=0)


class PolicyError(Exception):
    """A policy server reply that cannot be used; the text says why."""


@dataclass(frozen=True)
class PolicySettings:
    """The smtpd_policy_service_* values of one service (seconds may be fractions)."""

    timeout: float = 100
    max_idle: float = 300
    max_ttl: float = 1000
    request_limit: int = 0
    try_limit: int = 2
    retry_delay: float = 1
    default_action: str = POLICY_BUILTIN_ACTION
    policy_context: str = ""


# ---------------------------------------------------------------- configuration
def settings_from_config(cfg) -> PolicySettings:
    """The main.cf smtpd_policy_service_* values; ConfigError naming a bad one."""
    values = {}
    for key, (kind, param) in POLICY_SETTINGS.items():
        if kind == "time":
            values[key] = cfg.get_time(param)
        elif kind == "int":
            values[key] = cfg.get_int(param)
        else:
            values[key] = cfg.get(param).strip()
        try:
            _checked(PolicySettings(**values), "")
        except ValueError as exc:
            path, line = cfg.source(param)
            raise ConfigError(str(exc), path=path or cfg.main_cf, line=line, param=param) from None
    return PolicySettings(**values)


def _checked(settings: PolicySettings, prefix: str) -> PolicySettings:
    for key in ("timeout", "max_idle", "max_ttl", "retry_delay", "try_limit"):
        if getattr(settings, key) <= 0:
            raise ValueError(f"{prefix}{key} must be greater than zero")
    if settings.request_limit < 0:
        raise ValueError(f"{prefix}request_limit must not be negative")
    return settings


def parse_service(text: str, defaults: PolicySettings) -> tuple[str, PolicySettings]:
    """Split SERVICE or "{ SERVICE, name=value ... }" into (service, settings)."""
    text = text.strip()
    if not text.startswith("{"):
        return text, defaults
    if not text.endswith("}"):
        raise ValueError(f'policy service syntax error: missing "}}" in "{text}"')
    items = split_list(text[1:-1])
    if not items:
        raise ValueError(f'empty policy service: "{text}"')
    service, overrides = items[0], {}
    for item in items[1:]:
        if item.startswith("{"):
            if not item.endswith("}"):
                raise ValueError(f'policy service syntax error: missing "}}" in "{item}"')
            item = item[1:-1]
        name, eq, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name:
            raise ValueError(f'policy service {service}: need name=value, not "{item.strip()}"')
        if name not in POLICY_SETTINGS:
            raise ValueError(f'policy service {service}: unknown attribute name "{name}"')
        kind = POLICY_SETTINGS[name][0]
        try:
            if kind == "time":
                overrides[name] = parse_time(value)
            elif kind == "int":
                overrides[name] = parse_int(value)
            else:
                overrides[name] = value
        except ValueError as exc:
            raise ValueError(f"policy service {service}: {name}: {exc}") from None
    return service, _checked(replace(defaults, **overrides), f"policy service {service}: ")


def parse_endpoint(service: str, queue_directory: str) -> tuple[str, object, str]:
    """(transport, address, log name) of SERVICE; ValueError when malformed.

    inet -> ("inet", (host, port), "inet:host:port"); unix -> ("unix", path, "unix:NAME")."""
    kind, colon, rest = service.partition(":")
    if not colon:
        if not _SERVICE_NAME_RE.match(service):
            raise ValueError(
                f'malformed policy service "{service}": need inet:host:port or unix:path'
            )
        kind, rest = "unix", f"private/{service}"
    kind = kind.lower()
    if kind == "inet":
        host, colon, port = rest.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if (
            not colon
            or not host
            or not _PORT_RE.match(port)
            or (port.isdigit() and not 0 < int(port) < 65536)
        ):
            raise ValueError(f'malformed policy service "{service}": need inet:host:port')
        return "inet", (host, port), f"inet:{rest}"
    if kind in ("unix", "local"):
        if not rest or "\0" in rest:
            raise ValueError(f'malformed policy service "{service}": need unix:path')
        path = rest if rest.startswith("/") else os.path.join(queue_directory, rest)
        return "unix", path, f"{kind}:{rest}"
    raise ValueError(f'policy service "{service}": unknown transport "{kind}" (need inet or unix)')


def policy_client(checks, arg: str) -> PolicyClient:
    """The client for one check_policy_service argument, one per name per SmtpdChecks."""
    clients = getattr(checks, "_policy_clients", None)
    if clients is None:
        clients = checks._policy_clients = {}
        checks._policy_defaults = settings_from_config(checks.cfg)
        cfg = checks.cfg
        checks._policy_static = {
            "stress": cfg.get("stress"),
            "compatibility_level": cfg.get("compatibility_level"),
            "mail_version": cfg.get("mail_version"),
        }
    client = clients.get(arg)
    if client is None:
        service, settings = parse_service(arg, checks._policy_defaults)
        transport, address, name = parse_endpoint(service, checks.cfg.get("queue_directory"))
        client = clients[arg] = PolicyClient(arg, transport, address, name, settings)
    return client


# ---------------------------------------------------------------- the restriction
async def apply_policy(checks, ctx, client: PolicyClient, reply_name: str, reply_class: str):
    """check_policy_service for SmtpdChecks._apply: CHECK_OK, a Verdict, or None."""
    static = getattr(checks, "_policy_static", {})
    action = await client.query(request_attributes(ctx, client.settings, static))
    if action is not None:
        return await checks._table_result(ctx, client, action, reply_name, reply_class)
    nesting = _nesting.get()
    value = client.settings.default_action if nesting == 0 else POLICY_BUILTIN_ACTION
    token = _nesting.set(nesting + 1)
    try:
        return await checks._table_result(ctx, client, value, reply_name, reply_class)
    finally:
        _nesting.reset(token)


def request_attributes(ctx, settings: PolicySettings, static: dict) -> dict[str, str]:
    """The request of one evaluation, every POLICY_ATTRIBUTES name with its value."""
    st = ctx.st
    stage = ctx.stage
    peer = st.tls_peer
    attrs = {
        "request": POLICY_REQUEST,
        "protocol_state": stage,
        "protocol_name": st.protocol,
        "client_address": st.client_addr,
        "client_name": st.client_name,
        "client_port": str(st.client_port),
        "reverse_client_name": st.reverse_name,
        "server_address": st.server_addr,
        "server_port": str(st.server_port or ""),
        "helo_name": st.helo_name,
        "sender": st.sender or "",
        "recipient": ctx.recipient or "",
        "recipient_count": str(st.recipient_count if stage in POLICY_STAGES_WITH_COUNT else 0),
        "queue_id": st.queue_id,
        "instance": st.instance,
        "size": str(st.size),
        "etrn_domain": ctx.etrn_domain,
        "stress": static.get("stress", ""),
        "sasl_method": st.sasl_method if st.sasl_username else "",
        "sasl_username": st.sasl_username,
        "sasl_sender": st.sasl_sender,
        "ccert_subject": "",
        "ccert_issuer": "",
        "ccert_fingerprint": "",
        "ccert_pubkey_fingerprint": "",
        "encryption_protocol": "",
        "encryption_cipher": "",
        "encryption_keysize": "0",
        "policy_context": settings.policy_context,
        "compatibility_level": static.get("compatibility_level", ""),
        "mail_version": static.get("mail_version", ""),
    }
    if peer is not None:
        attrs["encryption_protocol"] = peer.protocol or ""
        attrs["encryption_cipher"] = peer.cipher or ""
        attrs["encryption_keysize"] = str(peer.bits or 0)
        attrs["ccert_fingerprint"] = peer.fingerprint or ""
        attrs["ccert_pubkey_fingerprint"] = peer.pkey_fingerprint or ""
        if peer.present and peer.trusted:  # names only from a certificate we could verify
            attrs["ccert_subject"] = quote_xtext(peer.peer_cn)
            attrs["ccert_issuer"] = quote_xtext(peer.issuer_cn)
    return attrs


def quote_xtext(text: str) -> str:
    """RFC 3461 xtext, as Postfix encodes certificate names: "+" and non-graphic bytes as +XX."""
    out = []
    for byte in text.encode("utf-8", "replace"):
        if 32 < byte < 127 and byte != 0x2B:
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def format_request(attrs: dict[str, str]) -> bytes:
    """The request on the wire: name=value lines and an empty line."""
    lines = [f"{name}={str(value).translate(_UNSAFE)}\n" for name, value in attrs.items()]
    return ("".join(lines) + "\n").encode("utf-8", "replace")


def parse_reply(lines: list[bytes]) -> str:
    """The action of a reply's lines (without newlines); PolicyError for anything else."""
    action = None
    for raw in lines:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError("malformed UTF-8 in reply") from None
        name, eq, value = line.partition("=")
        if not eq:
            raise PolicyError(f'malformed reply line "{line[:100]}"')
        if name != "action":
            raise PolicyError(f"unexpected attribute {name[:100]} (expecting: action)")
        if action is not None:
            raise PolicyError("duplicate attribute action")
        action = value
    if action is None:
        raise PolicyError("missing attribute action")
    return action


# ---------------------------------------------------------------- the client
class _Conn:
    """One open connection to a policy server."""

    def __init__(self, reader, writer, now: float) -> None:
        self.reader = reader
        self.writer = writer
        self.born = now
        self.used = now
        self.requests = 0
        self.idle_timer: asyncio.TimerHandle | None = None

    def stale(self) -> bool:
        """The server closed it, or sent something unasked, while it was idle."""
        reader = self.reader
        return self.writer.is_closing() or reader.at_eof() or bool(getattr(reader, "_buffer", b""))

    def close(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        try:
            self.writer.close()
        except RuntimeError:
            pass  # its event loop is gone


class PolicyClient:
    """Requests to one policy service over pooled connections; see the module docstring."""

    def __init__(
        self, spec: str, transport: str, address, name: str, settings: PolicySettings
    ) -> None:
        self.spec = spec  # as the restriction names it; "access table SPEC" in warnings
        self.transport = transport  # "inet" or "unix"
        self.address = address  # (host, port) or a path
        self.name = name  # inet:host:port or unix:path, in log lines
        self.settings = settings
        self._idle: list[_Conn] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connects = 0  # connections opened, for tests and diagnostics

    async def query(self, attrs: dict[str, str]) -> str | None:
        """The server's action for attrs, or None (one warning logged) when every try failed."""
        request = format_request(attrs)
        tries = 0
        while True:
            tries += 1
            conn = None
            try:
                conn = await self._take()
                action = await self._exchange(conn, request)
            except BaseException as exc:
                if conn is not None:
                    conn.close()  # half a request or reply on it: never reused
                if not isinstance(exc, (OSError, EOFError, asyncio.TimeoutError, PolicyError)):
                    raise  # the session went away (cancelled), or a bug
                if tries >= self.settings.try_limit:
                    log.warning("problem talking to server %s: %s", self.name, _reason(exc))
                    return None
                await asyncio.sleep(self.settings.retry_delay)
                continue
            self._give_back(conn)
            return action

    def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            self._idle.pop().close()

    async def _take(self) -> _Conn:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self.close()  # connections of another event loop cannot be used here
            self._loop = loop
        now = loop.time()
        while self._idle:
            conn = self._idle.pop()
            if conn.idle_timer is not None:
                conn.idle_timer.cancel()
                conn.idle_timer = None
            if (
                conn.stale()
                or now - conn.used >= self.settings.max_idle
                or now - conn.born >= self.settings.max_ttl
            ):
                conn.close()
                continue
            return conn
        reader, writer = await asyncio.wait_for(self._connect(), self.settings.timeout)
        self.connects += 1
        return _Conn(reader, writer, now)

    def _connect(self):
        if self.transport == "inet":
            host, port = self.address
            return asyncio.open_connection(host, port, limit=POLICY_LINE_LIMIT)
        return asyncio.open_unix_connection(self.address, limit=POLICY_LINE_LIMIT)

    async def _exchange(self, conn: _Conn, request: bytes) -> str:
        timeout = self.settings.timeout
        conn.writer.write(request)
        await asyncio.wait_for(conn.writer.drain(), timeout)
        lines = await asyncio.wait_for(_read_reply(conn.reader), timeout)
        conn.requests += 1
        return parse_reply(lines)

    def _give_back(self, conn: _Conn) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        conn.used = now
        limit = self.settings.request_limit
        if (limit > 0 and conn.requests >= limit) or now - conn.born >= self.settings.max_ttl:
            conn.close()
            return
        conn.idle_timer = loop.call_later(self.settings.max_idle, self._expire, conn)
        self._idle.append(conn)

    def _expire(self, conn: _Conn) -> None:
        conn.idle_timer = None
        if conn in self._idle:
            self._idle.remove(conn)
            conn.close()


async def _read_reply(reader) -> list[bytes]:
    """Reply lines up to the empty one, bounded in length and number."""
    lines: list[bytes] = []
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise EOFError("lost connection") from None
        except asyncio.LimitOverrunError:
            raise PolicyError(f"reply line longer than {POLICY_LINE_LIMIT} bytes") from None
        line = line.rstrip(b"\n")
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            return lines
        if len(lines) >= POLICY_LINE_COUNT:
            raise PolicyError(f"reply longer than {POLICY_LINE_COUNT} lines")
        lines.append(line)


def _reason(exc: Exception) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "Connection timed out"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)  # asyncio words a failed connect its own way
    return str(exc) or type(exc).__name__
