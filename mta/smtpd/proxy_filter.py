"""smtpd.proxy_filter - the before-queue content filter (smtpd_proxy_filter)

SYNOPSIS
    master.cf:
        smtp      inet  n - n - 20 smtpd
            -o smtpd_proxy_filter=127.0.0.1:10025
        127.0.0.1:10026 inet n - n - - smtpd
            -o smtpd_authorized_xforward_hosts=127.0.0.0/8 ...

    from mta.smtpd import proxy_filter
    server.proxy = proxy_filter.settings(cfg)      # None: no proxy filter
    ok = await proxy_filter.mail(session)          # after smtpd's own MAIL checks
    ok = await proxy_filter.rcpt(session)          # after smtpd's own RCPT checks
    job, verdict = await proxy_filter.open_job(session, received)   # instead of cleanup
    result = await job.end()                       # at the end of the message

DESCRIPTION
    With smtpd_proxy_filter set (host:port, inet:host:port, or
    unix:path, relative to queue_directory; no host means localhost)
    smtpd queues nothing itself: it hands each message to the filter
    over SMTP and the filter's replies become the client's. smtpd
    connects when MAIL FROM passed its own restrictions, reads the
    greeting, sends EHLO smtpd_proxy_ehlo, XFORWARD with the client's
    name, address, port, protocol and HELO when the filter announces
    XFORWARD (mta/common/xforward.py), then the client's MAIL FROM
    line unchanged; the filter's reply to it is the client's. Each
    RCPT TO that smtpd's restrictions accept goes to the filter the
    same way. At DATA smtpd sends DATA and gives the client 354 only
    after the filter's 354. The content (after a Received: header
    for the client) is kept in a temporary file and sent, dot-stuffed,
    when the client ends the message; the filter's reply to the final
    dot is the client's reply, logged as "NOQUEUE: proxy-accept:
    END-OF-MESSAGE: REPLY; from=<> to=<> proto= helo=<>" or
    "proxy-reject". Then QUIT: one message per connection, commands
    never pipelined.

    smtpd_proxy_options = speed_adjust: smtpd answers MAIL and RCPT
    itself and connects only when the whole message is in, then sends
    MAIL, the RCPTs, DATA and the content in one go; the first refusal
    (of MAIL, of every RCPT, of DATA or of the content) is the reply
    to the end of the message. The filter should accept or refuse all
    recipients alike (a refused one is left out, as Postfix does).

    smtpd_proxy_timeout bounds the connect and each reply. A filter
    that cannot be reached, times out, hangs up or answers garbage is
    logged with a warning naming it and the client gets "451 4.3.0
    Error: queue file write error", as Postfix answers, so that no
    detail of the inside reaches a stranger; the transaction ends and
    the session goes on.

SECURITY
    Sees untrusted network input (the client's commands and content,
    passed on) and the filter's replies (trusted to the extent the
    operator trusts the filter; a reply is passed on only when it is a
    well-formed SMTP reply of printable text).

STANDARDS
    Postfix SMTPD_PROXY_README; RFC 5321.

SEE ALSO
    mta/smtpd/session.py (the hooks), mta/common/xforward.py
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import time
from dataclasses import dataclass

from mta import log
from mta.cleanup.headers import mail_date
from mta.common.xforward import xforward_lines
from mta.config.errors import ConfigError
from mta.smtpd.checks import Verdict
from mta.smtpd.transcript import NOTIFY_RESOURCE

REPLY_PROXY_ERROR = "451 4.3.0 Error: queue file write error"  # all a client learns
SPEED_ADJUST = "speed_adjust"  # smtpd_proxy_options: connect after the whole message
SPOOL_IN_MEMORY = 1 << 20  # content bytes kept in memory before the temporary file
REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])([ -])([\x20-\x7e\t]*)\r?\n\Z")
REPLY_LINES_MAX = 100  # lines of one reply from the filter


class ProxyError(Exception):
    """The filter failed; the text is for the log."""


@dataclass
class ProxySettings:
    endpoint: str  # as configured, for logs
    host: str  # "" for a UNIX-domain socket
    port: int
    path: str  # UNIX-domain socket path
    ehlo: str
    timeout: float
    speed_adjust: bool


@dataclass
class ProxyResult:
    """What the end of the message gave: the filter's whole reply."""

    action: str  # "proxied"
    reply: str
    queue_id: str = ""


def parse_endpoint(value: str, queue_dir: str) -> tuple[str, int, str]:
    """(host, port, path) of host:port, inet:host:port or unix:path; ValueError if bad."""
    value = value.strip()
    if value.startswith("unix:"):
        path = value[5:]
        if not path:
            raise ValueError(f"bad smtpd_proxy_filter {value!r}: no path")
        return "", 0, path if path.startswith("/") else os.path.join(queue_dir, path)
    if value.startswith("inet:"):
        value = value[5:]
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "localhost"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad smtpd_proxy_filter {value!r}: no port")
    return host, int(port), ""


def settings(cfg) -> ProxySettings | None:
    """smtpd_proxy_filter and its companions; None when no filter is configured."""
    value = cfg.get("smtpd_proxy_filter").strip()
    if not value:
        return None
    try:
        host, port, path = parse_endpoint(value, cfg.get("queue_directory"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    options = {o.lower() for o in cfg.get_list("smtpd_proxy_options")}
    for bad in sorted(options - {SPEED_ADJUST}):
        log.warning("smtpd_proxy_options: unknown option %s ignored", bad)
    return ProxySettings(
        endpoint=value,
        host=host,
        port=port,
        path=path,
        ehlo=cfg.get("smtpd_proxy_ehlo").strip() or cfg.get("myhostname"),
        timeout=float(cfg.get_time("smtpd_proxy_timeout") or 100),
        speed_adjust=SPEED_ADJUST in options,
    )


class ProxyConnection:
    """One SMTP conversation with the filter, command by command."""

    def __init__(self, st: ProxySettings) -> None:
        self.st = st
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self, session) -> None:
        """Connect, greet, EHLO and XFORWARD; ProxyError when any of it fails."""
        st = self.st
        try:
            if st.path:
                conn = asyncio.open_unix_connection(st.path)
            else:
                conn = asyncio.open_connection(st.host, st.port)
            self.reader, self.writer = await asyncio.wait_for(conn, st.timeout)
        except asyncio.TimeoutError:
            raise ProxyError(f"connect to proxy filter {st.endpoint}: timed out") from None
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ProxyError(f"connect to proxy filter {st.endpoint}: {why}") from None
        code, _ = await self.read_reply("greeting")
        if code != 220:
            raise ProxyError(f"proxy filter {st.endpoint} greeting: {code}")
        code, text = await self.command(b"EHLO " + st.ehlo.encode("ascii", "replace"))
        if code != 250:
            raise ProxyError(f"proxy filter {st.endpoint} refused EHLO: {text}")
        offered = ""
        for line in text.split("\r\n")[1:]:
            words = line[4:].split(None, 1)
            if words and words[0].upper() == "XFORWARD":
                offered = words[1] if len(words) > 1 else ""
        if offered:
            attrs = client_attrs(session)
            for line in xforward_lines(attrs, "", offered):
                code, text = await self.command(line)
                if code != 250:
                    raise ProxyError(f"proxy filter {st.endpoint} refused XFORWARD: {text}")

    async def read_reply(self, what: str) -> tuple[int, str]:
        """One (multi-line) reply: (code, its lines joined with CRLF)."""
        lines = []
        while True:
            try:
                line = await asyncio.wait_for(self.reader.readline(), self.st.timeout)
            except asyncio.TimeoutError:
                raise ProxyError(f"timeout talking to proxy filter {self.st.endpoint}") from None
            except (OSError, ValueError) as exc:
                raise ProxyError(f"proxy filter {self.st.endpoint}: {exc}") from None
            if not line:
                raise ProxyError(
                    f"lost connection with proxy filter {self.st.endpoint} after {what}"
                )
            m = REPLY_LINE.match(line)
            if m is None or (lines and m.group(1) != lines[0][:3].encode()):
                raise ProxyError(f"proxy filter {self.st.endpoint}: malformed reply after {what}")
            lines.append(line.rstrip(b"\r\n").decode("ascii"))
            if m.group(2) == b" ":
                return int(m.group(1)), "\r\n".join(lines)
            if len(lines) >= REPLY_LINES_MAX:
                raise ProxyError(f"proxy filter {self.st.endpoint}: reply too long after {what}")

    async def command(self, line: bytes) -> tuple[int, str]:
        what = line.split(b" ", 1)[0].decode("ascii", "replace").upper()
        await self.send(line + b"\r\n")
        return await self.read_reply(what)

    async def send(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), self.st.timeout)
        except asyncio.TimeoutError:
            raise ProxyError(f"timeout talking to proxy filter {self.st.endpoint}") from None
        except OSError as exc:
            raise ProxyError(f"proxy filter {self.st.endpoint}: {exc}") from None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    async def quit(self) -> None:
        try:
            await self.command(b"QUIT")
        except ProxyError:
            pass
        self.close()


def client_attrs(session) -> dict[str, str]:
    """The client as XFORWARD names it to the filter."""
    st = session.st
    return {
        "client_name": st.client_name,
        "client_address": st.client_addr,
        "client_port": str(st.client_port),
        "helo_name": st.helo_name,
        "protocol": session.protocol_name(),
    }


def _fail(session, exc: ProxyError) -> str:
    log.warning("%s", exc)
    session.note(NOTIFY_RESOURCE)
    drop(session)
    return REPLY_PROXY_ERROR


def drop(session) -> None:
    """Close the session's connection to the filter, if any (end of a transaction)."""
    conn = getattr(session, "proxy_conn", None)
    if conn is not None:
        conn.close()
        session.proxy_conn = None


async def _passed(session, line: bytes, stage: str) -> str | None:
    """Send a command line: the filter's reply when 2xx, else None (refusal replied)."""
    try:
        code, text = await session.proxy_conn.command(line)
    except ProxyError as exc:
        session.reply(_fail(session, exc))
        return None
    if code >= 400:
        log_proxy(session, "proxy-reject", stage, text)
        session.reply(text)
        return None
    return text


async def mail(session) -> str | None:
    """After smtpd's own checks passed MAIL FROM: connect and pass it on.

    The reply to give when the transaction goes on; None when it does
    not (the refusal has been replied)."""
    st = session.server.proxy
    if st.speed_adjust:
        session.proxy_mail, session.proxy_rcpts = session.line, []  # sent at the end
        return "250 2.1.0 Ok"
    session.proxy_conn = ProxyConnection(st)
    try:
        await session.proxy_conn.open(session)
    except ProxyError as exc:
        session.reply(_fail(session, exc))
        return None
    text = await _passed(session, session.line, "MAIL")
    if text is None:
        drop(session)
    return text


async def rcpt(session) -> str | None:
    """After smtpd's own checks passed a RCPT TO: pass it on; as mail()."""
    if session.server.proxy.speed_adjust:
        session.proxy_rcpts.append(session.line)
        return "250 2.1.5 Ok"
    if session.proxy_conn is None:
        session.reply(REPLY_PROXY_ERROR)
        return None
    return await _passed(session, session.line, "RCPT")


def log_proxy(session, what: str, stage: str, reply: str) -> None:
    st = session.st
    rcpts = session.recipients
    to = rcpts[0][0] if len(rcpts) == 1 else (st.recipient if stage == "RCPT" else "")
    first = reply.split("\r\n")[-1] if "\r\n" in reply else reply
    extra = f"from=<{st.sender or ''}>"
    if to:
        extra += f" to=<{to}>"
    extra += f" proto={st.protocol} helo=<{st.helo_name}>"
    log.info("NOQUEUE: %s: %s: %s; %s", what, stage, first, extra)


class ProxyJob:
    """Stands where the cleanup job would: keeps the content, sends it at end()."""

    def __init__(self, session, received: bytes) -> None:
        self.session = session
        self.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        self.spool.write(received)
        self.queue_id = "NOQUEUE"
        self.closed = False

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.spool.write(data)

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.spool.close()
        drop(self.session)

    async def _speed_adjusted(self, conn: ProxyConnection) -> tuple[int, str] | None:
        """Send MAIL, the RCPTs and DATA at the end; the first refusal, or None."""
        session = self.session
        code, text = await conn.command(session.proxy_mail)
        if code >= 300:
            return code, text
        refused, accepted = None, 0
        for line in session.proxy_rcpts:
            code, text = await conn.command(line)
            if code < 300:
                accepted += 1
            elif refused is None:
                refused = (code, text)
        if not accepted:
            return refused
        code, text = await conn.command(b"DATA")
        return None if code == 354 else (code, text)

    async def end(self) -> ProxyResult:
        """Send the content and the final dot; the filter's reply is the result."""
        session = self.session
        try:
            if session.server.proxy.speed_adjust:
                session.proxy_conn = ProxyConnection(session.server.proxy)
                await session.proxy_conn.open(session)
                refusal = await self._speed_adjusted(session.proxy_conn)
                if refusal is not None:
                    log_proxy(session, "proxy-reject", "END-OF-MESSAGE", refusal[1])
                    return ProxyResult("proxied", refusal[1])
            conn = session.proxy_conn
            if conn is None:
                raise ProxyError("proxy filter connection was closed")
            await self._send_content(conn)
            code, text = await conn.read_reply("END-OF-MESSAGE")
        except ProxyError as exc:
            return ProxyResult("proxied", _fail(session, exc))
        finally:
            if not self.closed:
                self.closed = True
                self.spool.close()
        log_proxy(session, "proxy-accept" if code < 400 else "proxy-reject", "END-OF-MESSAGE", text)
        await session.proxy_conn.quit()
        session.proxy_conn = None
        return ProxyResult("proxied", text)

    async def _send_content(self, conn: ProxyConnection) -> None:
        """The content as SMTP wants it: CRLF line ends, dots stuffed, the final dot."""
        self.spool.seek(0)
        out = bytearray()
        for line in self.spool:
            body = line.rstrip(b"\r\n")
            out += (b"." + body if body.startswith(b".") else body) + b"\r\n"
            if len(out) >= 1 << 16:
                await conn.send(bytes(out))
                out.clear()
        await conn.send(bytes(out) + b".\r\n")


def received_header(session) -> bytes:
    """The Received: line smtpd puts before the content it hands the filter."""
    st = session.st
    addr = st.client_addr
    shown = f"IPv6:{addr}" if ":" in addr else addr
    server = session.server
    text = (
        f"Received: from {st.helo_name or st.client_name} ({st.client_name} [{shown}])\r\n"
        f"\tby {server.hostname} ({server.cfg.get('mail_name')}) with {session.protocol_name()}"
    )
    if len(session.recipients) == 1:
        text += f"\r\n\tfor <{session.recipients[0][0]}>"
    return f"{text}; {mail_date(time.time())}\r\n".encode("utf-8", "replace")


async def open_job(session, prepend: list[str]) -> tuple[ProxyJob | None, Verdict | None]:
    """At DATA: send DATA (unless speed_adjust) and make the job; a refusal Verdict.

    prepend: header lines (PREPEND actions) to put before the content."""
    if not session.server.proxy.speed_adjust:
        conn = session.proxy_conn
        if conn is None:
            return None, Verdict(REPLY_PROXY_ERROR, "defer", error_class=NOTIFY_RESOURCE)
        try:
            code, text = await conn.command(b"DATA")
        except ProxyError as exc:
            return None, Verdict(_fail(session, exc), "defer", error_class=NOTIFY_RESOURCE)
        if code != 354:
            log_proxy(session, "proxy-reject", "DATA", text)
            return None, Verdict(text, "reject" if code >= 500 else "defer")
    lines = b"".join(h.encode("utf-8", "replace") + b"\r\n" for h in prepend)
    return ProxyJob(session, lines + received_header(session)), None


async def end_message(session, job: ProxyJob) -> None:
    """The end of a proxied message: the filter's reply to the final dot is the client's."""
    result = await job.end()
    session.reset_transaction()
    if result.reply[:1] in ("4", "5"):
        await session.error(
            result.reply, NOTIFY_RESOURCE if result.reply == REPLY_PROXY_ERROR else 0
        )
    else:
        session.errors = session.junk = 0
        session.reply(result.reply)
