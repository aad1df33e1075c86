"""smtpd.sasl_dovecot - SMTP AUTH through Dovecot's auth server

SYNOPSIS
    from mta.smtpd.sasl_dovecot import DovecotBackend
    backend = DovecotBackend(cfg)                 # smtpd_sasl_type = dovecot
    mechs = await backend.mechanisms()            # {"PLAIN": {"plaintext"}, ...}
    conv = backend.start("PLAIN", session_info)   # a conversation (smtpd/sasl.py)
    step = await conv.step(b"\\0joe\\0secret")

DESCRIPTION
    smtpd_sasl_path names Dovecot's auth-client socket: a UNIX socket
    path, taken relative to queue_directory when it does not start with
    "/" (Postfix's "private/auth"), or inet:HOST:PORT.

    Each AUTH command opens its own connection and speaks Dovecot's
    auth client protocol, version 1: the client says "VERSION 1 2" and
    "CPID PID"; the server answers with its VERSION, one MECH line per
    mechanism with its security flags (plaintext, anonymous,
    dictionary, active, forward-secrecy, mutual-auth), SPID, CUID,
    COOKIE and DONE. Then "AUTH ID MECH service=SERVICE nologin lip=
    rip= lport= rport= [secured] [resp=BASE64]" (SERVICE is
    smtpd_sasl_service; secured when the session runs over TLS), and
    for each "CONT ID BASE64" challenge a "CONT ID BASE64" response,
    until "OK ID user=NAME" or "FAIL ID [reason=TEXT] [temp]". Fields
    are tab-separated; values are tab-escaped as Dovecot escapes them.

    The mechanisms EHLO announces are the ones the last handshake
    listed, asked again at most every MECH_REFRESH seconds. A server
    that cannot be reached (a missing socket, a refused connection, a
    handshake that does not finish within DOVECOT_TIMEOUT) is logged as
    a warning; EHLO then announces the mechanisms last seen (PLAIN and
    LOGIN before any), and AUTH gets 454 4.7.0 Temporary
    authentication failure, never a crash. A FAIL marked "temp" is a
    454 too; other FAILs are 535.

    smtpd_sasl_local_domain does not apply here, as with Postfix's
    Dovecot client: Dovecot's auth_default_realm does that job; mta
    check says so when both are set.

SECURITY
    Talks to the administrator's Dovecot; relays the client's base64
    responses after checking that they are base64, and the challenges
    back. A line from Dovecot is bounded by DOVECOT_LINE_MAX.

STANDARDS
    Dovecot's "Authentication Protocol" (doc.dovecot.org, auth client).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import time

from mta import log
from mta.smtpd.sasl import (
    AUTH_STATUS_FAIL,
    AUTH_STATUS_MORE,
    AUTH_STATUS_OK,
    AUTH_STATUS_TEMP,
    Step,
)

DOVECOT_TIMEOUT = 30.0  # seconds for the handshake and for each answer
DOVECOT_LINE_MAX = 65536  # longest line taken from the auth server
MECH_REFRESH = 60.0  # seconds a mechanism list is used before it is asked again
AUTH_PROTOCOL_MAJOR = 1  # the auth client protocol version spoken
AUTH_PROTOCOL_MINOR = 2
FALLBACK_MECHS = {"PLAIN": frozenset({"plaintext"}), "LOGIN": frozenset({"plaintext"})}
_ESCAPES = {"1": "\001", "t": "\t", "r": "\r", "n": "\n", "0": "\0"}


class DovecotError(Exception):
    """The auth server cannot be reached or broke the protocol."""


def unescape(value: str) -> str:
    """Undo Dovecot's tab escaping (\\001 followed by 1, t, r, n or 0)."""
    if "\001" not in value:
        return value
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\001" and i + 1 < len(value):
            out.append(_ESCAPES.get(value[i + 1], value[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def socket_address(cfg) -> tuple[str, str, int]:
    """("unix", path, 0) or ("inet", host, port) from smtpd_sasl_path."""
    path = cfg.get("smtpd_sasl_path").strip()
    if path.startswith("inet:"):
        host, _, port = path[5:].rpartition(":")
        if not host or not port.isdigit():
            raise DovecotError(f'smtpd_sasl_path: bad inet address "{path}": need inet:host:port')
        return "inet", host.strip("[]"), int(port)
    if path.startswith("unix:"):
        path = path[5:]
    if not os.path.isabs(path):
        path = os.path.join(cfg.get("queue_directory"), path)
    return "unix", path, 0


class _Connection:
    """One connection to the auth server, after the handshake."""

    def __init__(self, reader, writer, mechs: dict[str, frozenset[str]]) -> None:
        self.reader = reader
        self.writer = writer
        self.mechs = mechs

    async def line(self) -> list[str]:
        try:
            raw = await asyncio.wait_for(self.reader.readline(), DOVECOT_TIMEOUT)
        except asyncio.TimeoutError:
            raise DovecotError("timeout waiting for the auth server") from None
        except (OSError, ValueError) as exc:
            raise DovecotError(f"auth server connection: {exc}") from None
        if not raw.endswith(b"\n"):
            raise DovecotError("Connection lost to authentication server")
        return raw[:-1].decode("utf-8", "replace").split("\t")

    def send(self, *fields: str) -> None:
        self.writer.write(("\t".join(fields) + "\n").encode("utf-8"))

    def close(self) -> None:
        self.writer.close()


class DovecotBackend:
    """smtpd_sasl_type = dovecot; see the module docstring."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.service = cfg.get("smtpd_sasl_service").strip() or "smtp"
        self.local_domain = cfg.get("smtpd_sasl_local_domain").strip()
        try:
            self.address = socket_address(cfg)
            self.bad_address = ""
        except DovecotError as exc:
            self.address = ("unix", "", 0)
            self.bad_address = str(exc)
        self.known: dict[str, frozenset[str]] = {}
        self.known_at = 0.0
        self.warned = 0.0
        self.ids = itertools.count(1)

    def problems(self) -> list[tuple[str, str]]:
        """What mta check says: an address that cannot work, a socket not there."""
        out = []
        if self.bad_address:
            return [("smtpd_sasl_path", self.bad_address)]
        kind, path, _ = self.address
        if kind == "unix" and not os.path.exists(path):
            out.append(("smtpd_sasl_path", f"Dovecot auth socket {path}: No such file"))
        if self.local_domain:
            out.append(
                (
                    "smtpd_sasl_local_domain",
                    "has no effect with smtpd_sasl_type = dovecot "
                    "(set auth_default_realm in Dovecot instead)",
                )
            )
        return out

    def where(self) -> str:
        kind, host, port = self.address
        return host if kind == "unix" else f"{host}:{port}"

    async def connect(self) -> _Connection:
        """A connection after the handshake; DovecotError when there is none."""
        if self.bad_address:
            raise DovecotError(self.bad_address)
        kind, host, port = self.address
        try:
            if kind == "unix":
                opening = asyncio.open_unix_connection(host, limit=DOVECOT_LINE_MAX)
            else:
                opening = asyncio.open_connection(host, port, limit=DOVECOT_LINE_MAX)
            reader, writer = await asyncio.wait_for(opening, DOVECOT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or "timeout"
            raise DovecotError(
                f"Connect to Dovecot auth socket '{self.where()}' failed: {reason}"
            ) from None
        conn = _Connection(reader, writer, {})
        try:
            conn.send("VERSION", str(AUTH_PROTOCOL_MAJOR), str(AUTH_PROTOCOL_MINOR))
            conn.send("CPID", str(os.getpid()))
            while True:
                fields = await conn.line()
                if fields[0] == "VERSION":
                    if len(fields) < 2 or fields[1] != str(AUTH_PROTOCOL_MAJOR):
                        raise DovecotError(
                            f"Protocol version mismatch ({fields[1:2]} vs. {AUTH_PROTOCOL_MAJOR})"
                        )
                elif fields[0] == "MECH" and len(fields) > 1:
                    conn.mechs[fields[1].upper()] = frozenset(f.lower() for f in fields[2:])
                elif fields[0] == "DONE":
                    break
                elif fields[0] == "VERSION" or not fields[0]:
                    raise DovecotError("Protocol error")
        except BaseException:
            conn.close()
            raise
        self.known, self.known_at = dict(conn.mechs), time.monotonic()
        return conn

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if not self.warned or now - self.warned >= MECH_REFRESH:
            self.warned = now
            log.warning("SASL: %s", exc)

    async def mechanisms(self) -> dict[str, frozenset[str]]:
        """The mechanisms to announce: asked of the server, or the last ones seen."""
        if not self.known or time.monotonic() - self.known_at >= MECH_REFRESH:
            try:
                (await self.connect()).close()
            except DovecotError as exc:
                self._warn(exc)
        return dict(self.known or FALLBACK_MECHS)

    def start(self, mech: str, info: dict[str, str]) -> DovecotConversation:
        return DovecotConversation(self, mech, info)


class DovecotConversation:
    """One AUTH exchange relayed to Dovecot."""

    def __init__(self, backend: DovecotBackend, mech: str, info: dict[str, str]) -> None:
        self.backend = backend
        self.mech = mech
        self.info = info
        self.id = str(next(backend.ids))
        self.conn: _Connection | None = None

    async def step(self, data: bytes | None) -> Step:
        try:
            return await self._step(data)
        except DovecotError as exc:
            self.backend._warn(exc)
            self.close()
            return Step(AUTH_STATUS_TEMP, text="Can't connect to authentication server")

    async def _step(self, data: bytes | None) -> Step:
        encoded = None if data is None else base64.b64encode(data).decode("ascii")
        if self.conn is None:
            self.conn = await self.backend.connect()
            if self.mech not in self.conn.mechs:
                self.close()
                return Step(AUTH_STATUS_FAIL, text="Invalid authentication mechanism")
            fields = ["AUTH", self.id, self.mech, f"service={self.backend.service}", "nologin"]
            for key, name in (
                ("lip", "local_addr"),
                ("rip", "client_addr"),
                ("lport", "local_port"),
                ("rport", "client_port"),
            ):
                if self.info.get(name):
                    fields.append(f"{key}={self.info[name]}")
            if self.info.get("secured"):
                fields.append("secured")
            if encoded is not None:
                fields.append(f"resp={encoded}")
            self.conn.send(*fields)
        else:
            self.conn.send("CONT", self.id, encoded or "")
        while True:
            reply = await self.conn.line()
            if len(reply) >= 2 and reply[1] == self.id:
                break  # anything else is not about this request
        kind, params = reply[0], reply[2:]
        if kind == "CONT":
            try:
                challenge = base64.b64decode(params[0] if params else "", validate=True)
            except ValueError:
                raise DovecotError("Protocol error: bad base64 challenge") from None
            return Step(AUTH_STATUS_MORE, challenge)
        values = {}
        flags = set()
        for param in params:
            key, eq, value = param.partition("=")
            if eq:
                values[key] = unescape(value)
            else:
                flags.add(key)
        self.close()
        user = values.get("user", "")
        if kind == "OK":
            if not user:
                raise DovecotError("missing Dovecot server OK username field")
            return Step(AUTH_STATUS_OK, user=user)
        if kind == "FAIL":
            reason = values.get("reason") or "authentication failure"
            status = AUTH_STATUS_TEMP if "temp" in flags else AUTH_STATUS_FAIL
            return Step(status, text=reason, user=user)
        raise DovecotError(f"Protocol error: unexpected reply {kind}")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
