"""smtp.client - one SMTP or LMTP session to one server

SYNOPSIS
    from mta.smtp.client import Settings, Outgoing, connect, SessionError
    st = Settings.of(cfg, lmtp=False)
    session = await connect(target, st)           # TCP or UNIX socket, greeting, EHLO, STARTTLS
    reusable = await session.transact(job, outgoing, job.pending())
    await session.quit()

DESCRIPTION
    connect() opens the connection (smtp_connect_timeout, from
    smtp_bind_address, or from the request's source address:
    Settings.with_source()), reads the greeting (smtp_helo_timeout) and
    greets with EHLO, falling back to HELO when the server refuses EHLO
    with a 5xx reply (LMTP: LHLO, no fallback). The EHLO reply's
    keywords (minus smtp_discard_ehlo_keywords) go into
    session.features. The TLS level is the next hop's policy
    (Settings.for_nexthop(): smtp_tls_policy_maps, else
    smtp_tls_security_level; mta/smtp/tls_policy.py). With "may" and
    a server that offers STARTTLS the session switches to TLS without
    checking the certificate and greets again; TlsFailed reports a
    failed handshake so that the caller can connect again without TLS.
    The levels "encrypt", "fingerprint", "verify" and "secure" require
    TLS: a server that does not offer STARTTLS ends the session with
    "TLS is required, but was not offered by host ..." (4.7.4), one
    that refuses it or fails the handshake with a 4.x.x error, and the
    caller must not retry in plain text. At "fingerprint", "verify"
    and "secure" the certificate is then judged
    (mta/smtp/tls_verify.py): a chain the CAs do not vouch for is
    "Server certificate not trusted", a name or fingerprint that does
    not match "Server certificate not verified" (both 4.7.5), and the
    session ends before any mail goes out. With
    smtp_tls_block_early_mail_reply, server data that no command asked
    for in a TLS session (before MAIL FROM, or left over at the 354
    reply) ends the session with 4.7.0 before anything more goes out.
    The SNI name is the
    policy's (smtp_tls_servername, the table's servername=): none by
    default, as in Postfix. With smtp_tls_loglevel 1
    the handshake is logged ("Verified TLS connection established to
    ..."); with smtp_tls_note_starttls_offer a server that offers
    STARTTLS when TLS is off is logged ("Host offered STARTTLS:
    [host]"). The DANE levels (dane, dane-only) are decided per server
    before connect() (mta/smtp/dane.py), which gets the outcome as
    Settings with the effective level and, for a server with usable
    TLSA records, the records: after the handshake a server whose
    certificate matches none of them ends the session (4.7.5). An
    unknown level is a configuration error; a policy table entry that
    cannot be used or a TLS context that cannot be built (where TLS is
    required) defers the mail.
    With smtp_tls_wrappermode (lmtp_tls_wrappermode) the handshake
    comes first, before the greeting (SMTPS, port 465), and STARTTLS is
    never sent; the level (at least encrypt: mta/smtp/tls_policy.py)
    judges the certificate as above, and a failed handshake ends the
    session: there is no plain-text retry.
    With smtp_sasl_auth_enable the session then authenticates with
    SMTP AUTH (mta/smtp/sasl.py: login()) before any mail transaction;
    SaslFailed reports a refused or impossible login.

    Outgoing holds the content as it goes out: CRLF line ends, lines
    longer than smtp_line_length_limit broken with CRLF and a blank,
    dots stuffed, and the final dot.

    transact() runs one mail transaction for the given recipients:
    RSET first when the session was reused, XFORWARD with the original
    client when *_send_xforward_command is set and the server offers it
    (its own round trip: mta/common/xforward.py), MAIL FROM with SIZE,
    BODY=8BITMIME, SMTPUTF8 and the DSN parameters RET and ENVID when
    the server offers them, RCPT TO per recipient (with NOTIFY and
    ORCPT under DSN), DATA, the content, and the final dot (for an
    address probe, job.verify, RSET instead of DATA: a recipient the
    server accepts is deliverable). With
    PIPELINING every command up to DATA goes out in one write. Each
    recipient ends on the job with sent() (action "relayed" when the
    server lacks DSN, else "delivered"), defer() for a 4xx reply or
    bounce() for a 5xx reply, its status naming the connection's local
    address as its source, with Postfix's reason text: "host
    mx.example[192.0.2.1] said: 550 5.1.1 no such user (in reply to
    RCPT TO command)". An LMTP server gives one reply per accepted
    recipient after the final dot.

    A timeout, a lost connection, a malformed reply or a 421 reply end
    the session with SessionError (dsn, reason, site, final): site is
    set when the server never became usable (connection, greeting,
    EHLO), final when the message content was already sent, so that
    another server must not be tried. Recipients already decided keep
    their status; the caller decides about the rest.

SECURITY
    Talks to remote servers, which may send anything: replies are
    parsed by the bounded reply parser, every wait has a timeout, and
    reply texts are only copied into reasons.

STANDARDS
    RFC 5321 (SMTP), RFC 2033 (LMTP), RFC 2920 (PIPELINING), RFC 1870
    (SIZE), RFC 6152 (8BITMIME), RFC 3461 (DSN), RFC 6531 (SMTPUTF8),
    RFC 3207 (STARTTLS).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections import deque
from dataclasses import dataclass, replace

from mta import log
from mta.common.deadline import bounded
from mta.common.dkim import DkimError
from mta.common.dkim_keys import resign_for
from mta.common.dsn import ACTION_DELIVERED, ACTION_RELAYED
from mta.common.long_lines import fold_long_lines
from mta.common.tls_session import ClientSessions, arm_connection
from mta.common.tls_ticket import cache_timeout
from mta.common.tlsmgr_clnt import TlsmgrClient
from mta.common.xforward import xforward_lines
from mta.config.params import PARAMS
from mta.queue import rec_type as R
from mta.smtp.dane import DanePolicy
from mta.smtp.dane import check_peer as dane_check_peer
from mta.smtp.generic import GenericMapper
from mta.smtp.nexthop import Target
from mta.smtp.reply import REPLY_LINE_LIMIT, REPLY_MAX_LINES, Reply, ReplyError, ReplyParser
from mta.smtp.sasl import SaslSettings, login
from mta.smtp.tls_policy import TLS_CONFIG_PROBLEM, ClientTls, TlsPolicy, nexthop_name
from mta.smtp.tls_verify import (
    TLS_ENGINE_UNAVAILABLE,
    TLS_NOT_TRUSTED,
    TlsSetupError,
    check_peer,
    client_context,
    established_text,
    verify_error_text,
)

SMTP_READ_SIZE = 65536  # bytes asked of the socket per read
TLS_LEVEL_NONE = frozenset({"", "none"})  # plain text
TLS_LEVELS = frozenset({"may", "encrypt", "dane", "dane-only", "fingerprint", "verify", "secure"})

# what the client was doing, for "timed out while ..." and "lost connection ... while ..."
STAGE_GREETING = "receiving the initial server greeting"
STAGE_EHLO = "performing the EHLO handshake"
STAGE_LHLO = "performing the LHLO handshake"
STAGE_STARTTLS = "performing the STARTTLS handshake"
STAGE_RSET = "sending RSET"
STAGE_XFORWARD = "sending XFORWARD"
STAGE_MAIL = "sending MAIL FROM"
STAGE_RCPT = "sending RCPT TO"
STAGE_DATA = "sending DATA command"
STAGE_CONTENT = "sending message content"
STAGE_DOT = "sending end of data -- message may be sent more than once"
STAGE_QUIT = "sending QUIT"


class SessionError(Exception):
    """The session failed; the recipients without a status are the caller's."""

    def __init__(
        self,
        dsn: str,
        reason: str,
        site: bool = False,
        final: bool = False,
        reply: str = "",
        mta: str = "",
    ) -> None:
        super().__init__(reason)
        self.dsn = dsn
        self.reason = reason
        self.site = site  # the server never became usable
        self.final = final  # content was sent: do not try another server
        self.reply = reply  # the server's reply, when the reason quotes one
        self.mta = mta  # the host name of that server


class SaslFailed(SessionError):
    """SMTP AUTH failed (mta/smtp/sasl.py): the mail waits (or bounces); the site is not dead."""


class TlsFailed(SessionError):
    """The TLS handshake failed; connect again without TLS."""


class StaleSession(Exception):
    """A reused session turned out to be dead before anything happened in it."""


def param_name(lmtp: bool, name: str) -> str:
    if lmtp:
        alt = "lmtp_lhlo_timeout" if name == "helo_timeout" else f"lmtp_{name}"
        if alt in PARAMS:
            return alt
    return f"smtp_{name}"


@dataclass
class Settings:
    """The smtp_* (or lmtp_*) parameters one session needs, read once per configuration."""

    lmtp: bool
    connect_timeout: float
    helo_timeout: float
    mail_timeout: float
    rcpt_timeout: float
    data_init_timeout: float
    data_xfer_timeout: float
    data_done_timeout: float
    rset_timeout: float
    quit_timeout: float
    starttls_timeout: float
    skip_quit_response: bool
    skip_5xx_greeting: bool
    helo_name: str
    bind_address: str
    bind_address6: str
    tls_level: str
    never_send_ehlo: bool
    discard_ehlo: frozenset[str]
    mime_conversion: bool
    smtputf8_enable: bool
    mx_session_limit: int
    cache_on_demand: bool
    cache_destinations: frozenset[str]
    cache_time_limit: float
    reuse_count_limit: int
    reuse_time_limit: float
    line_length_limit: int
    sasl: SaslSettings
    tls_session_timeout: int  # 0: no TLS session resumption (mta/common/tls_session.py)
    tls_session_remote: TlsmgrClient | None  # tlsmgr, when *_tls_session_cache_database is set
    tls: ClientTls  # the main.cf TLS parameters
    tls_policy: TlsPolicy  # this next hop's (main.cf, or smtp_tls_policy_maps)
    source: str = ""  # the request's source address (egress pools), bound for both families
    send_xforward: bool = False  # *_send_xforward_command (mta/common/xforward.py)
    xforward_timeout: float = 300.0  # *_xforward_timeout

    def __post_init__(self) -> None:
        self._with_policy: dict[TlsPolicy, Settings] = {}
        self._with_source: dict[tuple[str, str], Settings] = {}
        self._with_reuse: dict[int, Settings] = {}

    @property
    def tls_required(self) -> bool:
        """The level (or wrapper mode) demands TLS: no plain-text session, no plain-text retry."""
        if self.tls.wrapper:
            return True
        return self.tls_level in TLS_LEVELS and self.tls_level != "may"

    def tls_refusal(self) -> tuple[str, str] | None:
        """(dsn, reason) when the TLS level cannot be served at all, else None.

        An unknown level is a configuration error; a policy table entry
        that cannot be read, and a level that demands TLS when the TLS
        context cannot be built, defer the mail."""
        name = param_name(self.lmtp, "tls_security_level")
        level = self.tls_level
        if self.tls_policy.error:
            return "4.7.5", f"{TLS_CONFIG_PROBLEM}: {self.tls_policy.error}"
        if level not in TLS_LEVELS and level not in TLS_LEVEL_NONE:
            return "4.3.5", f"mail system configuration error: invalid {name} value: {level}"
        if self.tls_required:
            try:
                client_context(self.tls, self.tls_policy)
            except TlsSetupError as exc:
                log.warning("TLS not available: %s", exc)
                return "4.7.5", TLS_ENGINE_UNAVAILABLE
        return None

    def for_nexthop(self, dest: str) -> Settings:
        """These settings under dest's TLS policy (smtp_tls_policy_maps)."""
        policy = self.tls.policy_for(dest)
        if policy == self.tls_policy:
            return self
        found = self._with_policy.get(policy)
        if found is None:
            found = replace(self, tls_level=policy.level, tls_policy=policy)
            self._with_policy[policy] = found
        return found

    def with_source(self, address: str, helo: str) -> Settings:
        """These settings for a request that names its source address and EHLO name
        (mta/common/egress.py): the address replaces smtp_bind_address and
        smtp_bind_address6, so that a server of the other address family is not
        reached from another address; helo, when given, replaces smtp_helo_name."""
        if not address and not helo:
            return self
        found = self._with_source.get((address, helo))
        if found is None:
            found = replace(self, helo_name=helo or self.helo_name)
            if address:
                found = replace(found, bind_address=address, bind_address6=address, source=address)
            self._with_source[(address, helo)] = found
        return found

    def with_reuse_limit(self, limit: int) -> Settings:
        """These settings with another smtp_connection_reuse_count_limit: a shaped site's
        per_connection (mta/qmgr/shaping.py), sent by qmgr with the request."""
        if limit <= 0 or limit == self.reuse_count_limit:
            return self
        found = self._with_reuse.get(limit)
        if found is None:
            found = self._with_reuse[limit] = replace(self, reuse_count_limit=limit)
        return found

    _memo = {}  # (id(cfg), lmtp) -> (cfg, Settings)

    @classmethod
    def of(cls, cfg, lmtp: bool = False) -> Settings:
        memo = cls._memo.get((id(cfg), lmtp))
        if memo is not None and memo[0] is cfg:
            return memo[1]

        def p(name: str) -> str:
            return param_name(lmtp, name)

        connect_timeout = cfg.get_time(p("connect_timeout")) or 30
        tls = ClientTls.of(cfg, lmtp)
        st = cls(
            lmtp=lmtp,
            connect_timeout=float(connect_timeout),
            helo_timeout=float(cfg.get_time(p("helo_timeout"))),
            mail_timeout=float(cfg.get_time(p("mail_timeout"))),
            rcpt_timeout=float(cfg.get_time(p("rcpt_timeout"))),
            data_init_timeout=float(cfg.get_time(p("data_init_timeout"))),
            data_xfer_timeout=float(cfg.get_time(p("data_xfer_timeout"))),
            data_done_timeout=float(cfg.get_time(p("data_done_timeout"))),
            rset_timeout=float(cfg.get_time(p("rset_timeout"))),
            quit_timeout=float(cfg.get_time(p("quit_timeout"))),
            starttls_timeout=float(cfg.get_time(p("starttls_timeout"))),
            skip_quit_response=cfg.get_bool(p("skip_quit_response")),
            skip_5xx_greeting=cfg.get_bool(p("skip_5xx_greeting")),
            helo_name=cfg.get("lmtp_lhlo_name" if lmtp else "smtp_helo_name"),
            bind_address=cfg.get("smtp_bind_address"),
            bind_address6=cfg.get("smtp_bind_address6"),
            tls_level=tls.level,  # raised to encrypt under smtp_tls_wrappermode
            never_send_ehlo=cfg.get_bool("smtp_never_send_ehlo") and not lmtp,
            discard_ehlo=frozenset(k.upper() for k in cfg.get_list("smtp_discard_ehlo_keywords")),
            mime_conversion=not cfg.get_bool("disable_mime_output_conversion"),
            smtputf8_enable=cfg.get_bool("smtputf8_enable"),
            mx_session_limit=cfg.get_int("smtp_mx_session_limit"),
            cache_on_demand=cfg.get_bool(p("connection_cache_on_demand")),
            cache_destinations=frozenset(
                d.lower() for d in cfg.get_list(p("connection_cache_destinations"))
            ),
            cache_time_limit=float(cfg.get_time(p("connection_cache_time_limit"))),
            reuse_count_limit=cfg.get_int(p("connection_reuse_count_limit")),
            reuse_time_limit=float(cfg.get_time(p("connection_reuse_time_limit"))),
            line_length_limit=cfg.get_int(p("line_length_limit")),
            sasl=SaslSettings.of(cfg, lmtp),
            tls=tls,
            tls_policy=tls.default_policy(),
            tls_session_timeout=cache_timeout(cfg, p("tls_session_cache_timeout")),
            tls_session_remote=(
                TlsmgrClient(cfg) if cfg.get(p("tls_session_cache_database")).strip() else None
            ),
            send_xforward=cfg.get_bool(p("send_xforward_command")),
            xforward_timeout=float(cfg.get_time(p("xforward_timeout"))),
        )
        cls._memo[(id(cfg), lmtp)] = (cfg, st)
        return st


class Outgoing:
    """The message as it goes on the wire: dot-stuffed, CRLF line ends, the final dot.

    retry holds the recipients a server refused with a 4xx reply: they
    are deferred with that reply, and the next server (another MX host,
    a fallback relay) may try them again (recipients_for()).

    With a generic mapper (smtp_generic_maps) the sender, the recipients
    and the primary address headers go out mapped; MapRetry passes to
    the caller. A message cleanup signed whose headers the mapping
    changed is signed again with the same keys (DkimError when that
    cannot be done)."""

    def __init__(self, job, line_limit: int = 0, generic: GenericMapper | None = None) -> None:
        msg = job.message()
        self.mapped: dict[int, str] = {}  # recipient offset -> address sent in RCPT TO
        self.retry: set[int] = set()  # offsets deferred by a 4xx reply: another server may try
        if generic is None:
            data, longest = job.content_text(b"\r\n")
            if 0 < line_limit < longest:
                lines = fold_long_lines(list(job.content_lines()), line_limit)
                data = b"".join(line + b"\r\n" for line in lines)
            self.sender = job.req.sender
        else:
            original = list(job.content_lines())
            lines = generic.header_lines(original)
            mapped = lines != original
            if line_limit > 0 and any(len(line) > line_limit for line in lines):
                lines = fold_long_lines(lines, line_limit)
            data = b"".join(line + b"\r\n" for line in lines)
            names = _dkim_names(job.req.attrs)
            if mapped and names:
                # cleanup's signatures covered the headers before the mapping
                data = resign_for(job.cfg, data, names)
            self.sender = generic.address(job.req.sender)
            self.mapped = {r.offset: generic.address(r.address) for r in job.pending()}
        self.size = len(data)
        self.eightbit = bool(msg.flags & R.QF_8BIT) or not data.isascii()
        self.smtputf8 = bool(msg.flags & R.QF_SMTPUTF8)
        self.attrs = job.req.attrs
        self.cfg = job.cfg
        self._raw = data
        self.payload = stuff_dots(data)
        self._payload7: bytes | None = None

    def recipients_for(self, job) -> list:
        """The recipients the next transaction is for: those without a status, and
        those only deferred by a 4xx reply, in request order."""
        done = job.statuses
        return [r for r in job.req.recipients if r.offset not in done or r.offset in self.retry]

    def address_of(self, rcpt) -> str:
        """The address RCPT TO names for rcpt (generic-mapped, or its own)."""
        return self.mapped.get(rcpt.offset, rcpt.address)

    def payload_7bit(self) -> bytes:
        """The content with 8-bit text parts made quoted-printable (for servers without 8BITMIME).

        A message cleanup signed (attribute dkim_keys) is signed again
        over the converted content with the same keys: DkimError when
        that cannot be done, and the message must wait."""
        if self._payload7 is None:
            from mta.smtp.mime_7bit import downgrade_8bit

            data = downgrade_8bit(self._raw)
            names = _dkim_names(self.attrs)
            if names:
                data = resign_for(self.cfg, data, names)
            self._payload7 = stuff_dots(data)
        return self._payload7


def _dkim_names(attrs: dict[str, str]) -> list[str]:
    """The keys cleanup signed the message with (attribute dkim_keys), in order."""
    return [n for n in attrs.get("dkim_keys", "").split(",") if n]


def stuff_dots(data: bytes) -> bytes:
    """Double every dot that starts a line and add the end-of-data line."""
    out = data.replace(b"\r\n.", b"\r\n..")
    if out.startswith(b"."):
        out = b"." + out
    return out + b".\r\n"


def xtext(text: str) -> bytes:
    """RFC 3461 xtext: "+XX" for '+', '=', blanks, controls and non-ASCII."""
    out = bytearray()
    for byte in text.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (43, 61):
            out.append(byte)
        else:
            out += b"+%02X" % byte
    return bytes(out)


def _notify_words(bits: int) -> bytes:
    if bits & R.DSN_NOTIFY_NEVER:
        return b"NEVER"
    words = []
    if bits & R.DSN_NOTIFY_SUCCESS:
        words.append(b"SUCCESS")
    if bits & R.DSN_NOTIFY_FAILURE:
        words.append(b"FAILURE")
    if bits & R.DSN_NOTIFY_DELAY:
        words.append(b"DELAY")
    return b",".join(words)


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "Connection timed out"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class Session:
    """An open, greeted connection to one server."""

    def __init__(self, target: Target, reader, writer, st: Settings) -> None:
        self.target = target
        self.reader = reader
        self.writer = writer
        self.st = st
        self.parser = ReplyParser(REPLY_LINE_LIMIT, REPLY_MAX_LINES)
        self.replies: deque[Reply] = deque()
        self.features: dict[str, str] = {}
        self.created = time.monotonic()
        self.uses = 0
        self.reused = False
        self.tls = False
        self.tls_verified = False  # the certificate met a verifying level (SASL options)
        self.authenticated = False  # SMTP AUTH succeeded: never cached (mta/smtp/sasl.py)
        self.dane: DanePolicy | None = None  # TLSA records the server must match (dane.py)
        self.dest = ""  # the next hop, for the TLS session cache
        self.tls_resume: tuple | None = None  # (sessions, context, key) of the handshake
        self.closed = False
        self.timed_out = False
        sockname = writer.get_extra_info("sockname")
        self.local = sockname[0] if isinstance(sockname, tuple) else ""  # our address

    @property
    def hostaddr(self) -> str:
        return f"{self.target.host}[{self.target.addr}]"

    # ------------------------------------------------------------- wire
    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.writer.close()
            except (OSError, RuntimeError):
                pass

    def alive(self) -> bool:
        return not self.closed and not self.reader.at_eof() and not self.writer.is_closing()

    def write(self, data: bytes) -> None:
        try:
            self.writer.write(data)
        except (OSError, RuntimeError) as exc:
            raise SessionError("4.4.2", f"lost connection with {self.hostaddr}: {exc}") from None

    def _time_out(self) -> None:
        self.timed_out = True
        self.writer.transport.abort()  # the pending read or drain ends at once

    async def drain(self, timeout: float, stage: str, final: bool = False) -> None:
        if not self.writer.transport.get_write_buffer_size() and not self.writer.is_closing():
            return  # all of it is with the kernel already
        try:
            await bounded(self.writer.drain(), timeout)
        except asyncio.TimeoutError:
            raise SessionError(
                "4.4.2", f"conversation with {self.hostaddr} timed out while {stage}", final=final
            ) from None
        except (OSError, RuntimeError):
            raise SessionError(
                "4.4.2", f"lost connection with {self.hostaddr} while {stage}", final=final
            ) from None

    async def read_reply(self, timeout: float, stage: str, final: bool = False) -> Reply:
        while not self.replies:
            # a timer, not wait_for(): this runs several times per message
            timer = asyncio.get_running_loop().call_later(timeout, self._time_out)
            try:
                data = await self.reader.read(SMTP_READ_SIZE)
            except (OSError, ssl.SSLError):
                data = b""
            finally:
                timer.cancel()
            if self.timed_out:
                self.close()
                raise SessionError(
                    "4.4.2",
                    f"conversation with {self.hostaddr} timed out while {stage}",
                    final=final,
                )
            if not data:
                raise SessionError(
                    "4.4.2", f"lost connection with {self.hostaddr} while {stage}", final=final
                )
            try:
                found = self.parser.feed(data)
            except ReplyError as exc:
                raise SessionError(
                    "4.4.2",
                    f"malformed reply from {self.hostaddr} while {stage}: {exc}",
                    final=final,
                ) from None
            self.replies.extend(Reply(code, enh, lines) for code, enh, lines in found)
        return self.replies.popleft()

    def said(self, reply: Reply, command: str) -> str:
        return f"host {self.hostaddr} said: {reply.text} (in reply to {command} command)"

    # ------------------------------------------------------------- greeting
    async def greet(self, allow_tls: bool = True, dest: str = "", sender: str = "") -> None:
        """Greeting, EHLO, STARTTLS and EHLO again, then AUTH; dest names the next hop
        (and sender the envelope sender) for the SASL password lookup."""
        st = self.st
        self.dest = dest
        if st.tls.wrapper:  # SMTPS: TLS before the first byte of SMTP
            await self.wrap(dest)
        reply = await self.read_reply(st.helo_timeout, STAGE_GREETING)
        if reply.code != 220:
            dsn = reply.dsn
            if reply.klass == 5 and st.skip_5xx_greeting:
                dsn = "4" + dsn[1:]
            raise SessionError(
                dsn,
                f"host {self.hostaddr} refused to talk to me: {reply.text}",
                site=True,
                reply=reply.text,
                mta=self.target.host,
            )
        await self.ehlo()
        if self.tls:
            pass  # wrapper mode: the session is encrypted already
        elif st.tls_required:
            if "STARTTLS" not in self.features:
                raise SessionError(
                    "4.7.4", f"TLS is required, but was not offered by host {self.hostaddr}"
                )
            await self.starttls(dest)
            await self.ehlo()
        elif "STARTTLS" not in self.features:
            pass
        elif allow_tls and st.tls_level in TLS_LEVELS and not self.target.unix:
            if await self.starttls(dest):
                await self.ehlo()
        elif st.tls.note_starttls_offer:
            log.info("Host offered STARTTLS: [%s]", self.target.host)
        if self.tls_resume is not None:  # every check passed: the session may be resumed
            sessions, ctx, key = self.tls_resume
            await sessions.remember(ctx, key, self.writer.get_extra_info("ssl_object"))
        if st.sasl.enabled:
            await login(self, st.sasl, dest, sender)

    async def ehlo(self) -> None:
        st = self.st
        name = st.helo_name.encode("idna" if not st.helo_name.isascii() else "ascii")
        if st.lmtp:
            verb, stage = b"LHLO", STAGE_LHLO
        elif st.never_send_ehlo:
            verb, stage = b"HELO", STAGE_EHLO
        else:
            verb, stage = b"EHLO", STAGE_EHLO
        self.write(verb + b" " + name + b"\r\n")
        reply = await self.read_reply(st.helo_timeout, stage)
        if reply.klass == 5 and verb == b"EHLO":
            self.write(b"HELO " + name + b"\r\n")
            verb = b"HELO"
            reply = await self.read_reply(st.helo_timeout, stage)
        if reply.klass != 2:
            raise SessionError(
                reply.dsn if reply.klass == 4 else "4" + reply.dsn[1:],
                self.said(reply, verb.decode()),
                site=True,
                reply=reply.text,
                mta=self.target.host,
            )
        self.features = {}
        if verb != b"HELO":
            for line in reply.lines[1:]:
                word, _, rest = line.decode("ascii", "replace").strip().partition(" ")
                key = word.upper()
                if key and key not in st.discard_ehlo:
                    self.features[key] = rest.strip()

    async def starttls(self, dest: str = "") -> bool:
        """STARTTLS and the handshake; False when the session goes on in plain text
        (a level that allows it). The certificate is judged as the level says."""
        st = self.st
        try:
            ctx = client_context(st.tls, st.tls_policy)
        except TlsSetupError as exc:  # tls_refusal() stopped the levels that need TLS
            log.warning("TLS not available: %s; no TLS for %s", exc, self.hostaddr)
            return False
        self.write(b"STARTTLS\r\n")
        try:
            reply = await self.read_reply(st.starttls_timeout, STAGE_STARTTLS)
        except SessionError as exc:
            self.close()
            raise TlsFailed(exc.dsn, f"Cannot start TLS: {exc.reason}", site=True) from None
        if reply.code != 220:
            if st.tls_required:
                raise SessionError(
                    "4" + reply.dsn[1:],
                    f"TLS is required, but host {self.hostaddr} refused to start TLS: {reply.text}",
                    reply=reply.text,
                    mta=self.target.host,
                )
            return False  # not now: carry on in plain text
        if self.replies or self.parser.pending():
            self.close()
            raise TlsFailed(
                "4.7.5",
                f"Cannot start TLS: {self.hostaddr} sent data after its reply to STARTTLS",
                site=True,
            )
        await self.handshake(ctx, dest)
        return True

    async def wrap(self, dest: str = "") -> None:
        """smtp_tls_wrappermode: the handshake before the greeting; never plain text."""
        try:
            ctx = client_context(self.st.tls, self.st.tls_policy)
        except TlsSetupError as exc:  # tls_refusal() defers before connecting; be safe
            log.warning("TLS not available: %s", exc)
            self.close()
            raise SessionError("4.7.5", TLS_ENGINE_UNAVAILABLE, site=True) from None
        await self.handshake(ctx, dest)

    async def handshake(self, ctx: ssl.SSLContext, dest: str) -> None:
        """The TLS handshake on the open connection, then the check of the peer."""
        st = self.st
        sni = self._sni_name(dest)
        # a session kept from an earlier handshake under the same settings is
        # offered (mta/common/tls_session.py); the peer is judged all the same
        sessions = ClientSessions.shared(st.lmtp, st.tls_session_timeout, st.tls_session_remote)
        ctx = sessions.context(ctx)
        t = self.target
        key = sessions.key(ctx, self.dest, t.host, t.addr, t.port, st.tls_level)
        await sessions.fetch(ctx, key)  # from tlsmgr, when this process has none
        try:
            with sessions.offer(ctx, key):
                await asyncio.wait_for(
                    self.writer.start_tls(ctx, server_hostname=sni), st.starttls_timeout
                )
        except ssl.SSLCertVerificationError as exc:
            self.close()
            sessions.forget(key)
            if st.tls.loglevel >= 1:
                log.info("%s", verify_error_text(self.target.relay, exc))
            raise SessionError("4.7.5", TLS_NOT_TRUSTED, site=True) from None
        except (OSError, ssl.SSLError, asyncio.TimeoutError, RuntimeError, ValueError) as exc:
            self.close()
            sessions.forget(key)
            raise TlsFailed(
                "4.7.5",
                f"Cannot start TLS: handshake failure with {self.hostaddr}: {_os_reason(exc)}",
                site=True,
            ) from None
        self.tls = True
        self.tls_resume = (sessions, ctx, key)
        self.parser = ReplyParser(REPLY_LINE_LIMIT, REPLY_MAX_LINES)
        self.replies.clear()
        self._judge_peer(dest)

    def _sni_name(self, dest: str) -> str | None:
        """The SNI name to send: the policy's servername (none when empty); at the
        DANE levels always the server's host name (RFC 7672)."""
        st = self.st
        host = st.tls.myhostname if self.target.unix else self.target.host
        if self.dane is not None or st.tls_level in ("dane", "dane-only"):
            return host
        name = st.tls_policy.servername
        low = name.lower()
        if not low:
            return None
        if low == "hostname":
            return host
        if low == "nexthop":
            return nexthop_name(dest or self.target.host, st.lmtp, st.tls.myhostname)
        return name.rstrip(".")

    def _judge_peer(self, dest: str) -> None:
        """Log the handshake and end the session when the certificate fails the level."""
        st = self.st
        ssl_object = self.writer.get_extra_info("ssl_object")
        if ssl_object is None:
            self.close()
            raise SessionError("4.7.5", f"Cannot start TLS: no TLS session with {self.hostaddr}")
        if self.dane is not None:  # DANE: the certificate must match a TLSA record
            reason = dane_check_peer(ssl_object, self.dane, self.target.relay)
            if reason is not None:
                self.close()
                raise SessionError("4.7.5", reason)
            self.tls_verified = True
            return
        tls = st.tls
        hostname = tls.myhostname if self.target.unix else self.target.host
        nexthop = nexthop_name(dest or self.target.host, st.lmtp, tls.myhostname)
        outcome = check_peer(tls, st.tls_policy, ssl_object, hostname, nexthop)
        if tls.loglevel >= 1:
            log.info("%s", established_text(outcome.status, self.target.relay, ssl_object))
        if outcome.failure:
            if tls.loglevel >= 1:
                log.info(
                    "server certificate verification failed for %s: %s",
                    self.target.relay,
                    outcome.detail,
                )
            self.close()
            raise SessionError("4.7.5", outcome.failure, site=True)
        self.tls_verified = outcome.status == "Verified"

    # ------------------------------------------------------------- transaction
    def _mail_command(self, out: Outgoing, body: str, utf8: bool) -> bytes:
        feats = self.features
        cmd = b"MAIL FROM:<" + out.sender.encode("utf-8") + b">"
        if "SIZE" in feats:
            cmd += b" SIZE=%d" % out.size
        if body:
            cmd += b" BODY=" + body.encode()
        if "SMTPUTF8" in feats and self.st.smtputf8_enable and (utf8 or out.smtputf8):
            cmd += b" SMTPUTF8"
        if "DSN" in feats:
            ret = out.attrs.get("ret", "")
            if ret:
                cmd += b" RET=" + ret.encode("ascii", "replace")
            envid = out.attrs.get("envid", "")
            if envid:
                cmd += b" ENVID=" + xtext(envid)
        return cmd

    def _rcpt_command(self, out: Outgoing, rcpt) -> bytes:
        cmd = b"RCPT TO:<" + out.address_of(rcpt).encode("utf-8") + b">"
        if "DSN" in self.features:
            if rcpt.notify:
                cmd += b" NOTIFY=" + _notify_words(rcpt.notify)
            if rcpt.dsn_orcpt:
                kind, _, addr = rcpt.dsn_orcpt.partition(";")
                if addr:
                    cmd += b" ORCPT=" + kind.encode("ascii", "replace") + b";" + xtext(addr)
        return cmd

    def _fail(self, job, out: Outgoing, rcpt, reply: Reply, command: str) -> None:
        reason = self.said(reply, command)
        host = self.target.host
        if reply.klass == 5:
            job.bounce(rcpt, reason, reply.dsn, self.target.relay, reply.text, host)
        else:
            dsn = "4" + reply.dsn[1:] if reply.klass != 4 else reply.dsn
            job.defer(rcpt, reason, dsn, self.target.relay, reply.text, host)
            out.retry.add(rcpt.offset)  # another server may take it

    def _abort_421(self, reply: Reply, command: str) -> None:
        """The server is going away: end the session; the caller has the open recipients."""
        self.close()
        raise SessionError(
            reply.dsn, self.said(reply, command), reply=reply.text, mta=self.target.host
        )

    async def transact(self, job, out: Outgoing, rcpts: list) -> bool:
        """One mail transaction; True when the session may be used again. Each
        status it decides names the connection's local address (its source)."""
        before = {r.offset: job.statuses.get(r.offset) for r in rcpts}
        try:
            return await self._transact(job, out, rcpts)
        finally:
            if self.local:
                for r in rcpts:
                    status = job.statuses.get(r.offset)
                    if status is not None and status is not before[r.offset]:
                        status.source = self.local

    async def _transact(self, job, out: Outgoing, rcpts: list) -> bool:
        st = self.st
        relay = self.target.relay
        feats = self.features
        out.retry.difference_update(r.offset for r in rcpts)
        envelope_utf8 = not out.sender.isascii() or any(
            not out.address_of(r).isascii() for r in rcpts
        )
        if envelope_utf8 and ("SMTPUTF8" not in feats or not st.smtputf8_enable):
            for r in rcpts:
                job.bounce(
                    r,
                    f"SMTPUTF8 is required, but was not offered by host {self.hostaddr}",
                    "5.6.7",
                    relay,
                )
            return True
        size_limit = feats.get("SIZE", "")
        if size_limit.isdigit() and 0 < int(size_limit) < out.size:
            for r in rcpts:
                job.bounce(
                    r,
                    f"message size {out.size} exceeds size limit {size_limit} of server "
                    f"{self.hostaddr}",
                    "5.3.4",
                    relay,
                )
            return True
        body, payload = "", out.payload
        if out.eightbit:
            if "8BITMIME" in feats:
                body = "8BITMIME"
            elif st.mime_conversion:
                try:
                    payload = out.payload_7bit()
                except DkimError as exc:
                    # never out unsigned, nor with a signature the conversion broke
                    for r in rcpts:
                        job.defer(
                            r,
                            f"cannot sign the message again after 8BITMIME conversion: {exc}",
                            "4.7.0",
                            relay,
                        )
                    return True
        if st.send_xforward and "XFORWARD" in feats and not await self._xforward(job, out, rcpts):
            return True  # the server refused XFORWARD: the recipients have its reply
        pipelining = "PIPELINING" in feats
        self._check_early_reply("MAIL FROM")
        cmds: list[tuple[bytes, str, float, str]] = []  # (line, command name, timeout, stage)
        if self.reused:
            cmds.append((b"RSET", "RSET", st.rset_timeout, STAGE_RSET))
        cmds.append(
            (self._mail_command(out, body, envelope_utf8), "MAIL FROM", st.mail_timeout, STAGE_MAIL)
        )
        for r in rcpts:
            cmds.append((self._rcpt_command(out, r), "RCPT TO", st.rcpt_timeout, STAGE_RCPT))
        verify = job.verify  # a probe: stop after RCPT TO
        if not verify:
            cmds.append((b"DATA", "DATA", st.data_init_timeout, STAGE_DATA))
        if pipelining:
            self.write(b"".join(c[0] + b"\r\n" for c in cmds))
        self.uses += 1
        it = iter(cmds)

        async def reply_to() -> tuple[Reply, str]:
            line, name, timeout, stage = next(it)
            if not pipelining:
                self.write(line + b"\r\n")
            return await self.read_reply(timeout, stage), name

        if self.reused:

            async def rset_reply() -> Reply:
                return (await reply_to())[0]

            await self._confirm_reused(rset_reply())
        reply, name = await reply_to()
        if reply.code == 421:
            self._abort_421(reply, name)
        mail_reply = reply if reply.klass != 2 else None
        accepted = []
        if mail_reply is None or pipelining:
            for r in rcpts:
                reply, name = await reply_to()
                if reply.code == 421:
                    self._abort_421(reply, name)
                if mail_reply is not None:
                    continue
                if reply.klass == 2:
                    accepted.append(r)
                    if verify:
                        job.sent(r, self.said(reply, name), relay=relay, dsn=reply.dsn)
                else:
                    self._fail(job, out, r, reply, name)
        if mail_reply is not None:
            for r in rcpts:
                self._fail(job, out, r, mail_reply, "MAIL FROM")
        if verify:
            return await self._reset()
        if not accepted and not pipelining:
            return True  # DATA was never sent
        reply, name = await reply_to()
        if reply.code == 421:
            self._abort_421(reply, name)
        if not accepted:
            if reply.code == 354:  # a confused server: end the empty message
                self.write(b".\r\n")
                await self.read_reply(st.data_done_timeout, STAGE_DOT)
            return True
        if reply.code != 354:
            for r in accepted:
                self._fail(job, out, r, reply, "DATA")
            return True
        self._check_early_reply("message content")
        self.write(payload)
        await self.drain(st.data_xfer_timeout, STAGE_CONTENT)
        action = ACTION_DELIVERED if "DSN" in feats or st.lmtp else ACTION_RELAYED
        for r in accepted if st.lmtp else [None]:
            reply = await self.read_reply(st.data_done_timeout, STAGE_DOT, final=True)
            if reply.code == 421 and not st.lmtp:
                self.close()
                for a in accepted:
                    reason = self.said(reply, "end of DATA")
                    job.defer(a, reason, reply.dsn, relay, reply.text, self.target.host)
                return False
            targets = [r] if st.lmtp else accepted
            for a in targets:
                if reply.klass == 2:
                    passed = "DSN" in feats and not st.lmtp  # an LMTP server delivers
                    job.sent(
                        a, reply.text, relay=relay, dsn=reply.dsn, action=action, dsn_passed=passed
                    )
                else:
                    self._fail(job, out, a, reply, "end of DATA")
        return True

    async def _confirm_reused(self, pending) -> None:
        """Await the reply to a reused session's RSET: none, or one that is not 2xx,
        means the cached session died meanwhile (closed, StaleSession)."""
        try:
            reply = await pending
        except SessionError:
            self.close()
            raise StaleSession() from None
        if reply.klass != 2:
            self.close()
            raise StaleSession()

    async def _xforward(self, job, out: Outgoing, rcpts: list) -> bool:
        """Send XFORWARD (mta/common/xforward.py) before the transaction; False when
        the server refused it and the recipients got its reply."""
        lines = xforward_lines(job.req.attrs, job.req.queue_id, self.features["XFORWARD"])
        if not lines:
            return True
        if self.reused:
            # RSET first (it would reset what XFORWARD says): a dead session shows here
            self.write(b"RSET\r\n")
            await self._confirm_reused(self.read_reply(self.st.rset_timeout, STAGE_RSET))
            self.reused = False  # the transaction needs no RSET of its own now
        self.write(b"".join(line + b"\r\n" for line in lines))
        refused = None
        for _ in lines:
            reply = await self.read_reply(self.st.xforward_timeout, STAGE_XFORWARD)
            if reply.code == 421:
                self._abort_421(reply, "XFORWARD")
            if reply.klass != 2 and refused is None:
                refused = reply
        if refused is not None:
            for r in rcpts:
                self._fail(job, out, r, refused, "XFORWARD")
            return False
        return True

    def _check_early_reply(self, before: str) -> None:
        """smtp_tls_block_early_mail_reply: in a TLS session, server data that no
        command asked for (replies injected before the handshake, CVE-2009-3555)
        ends the session before the next commands or the content go out."""
        if not (self.tls and self.st.tls.block_early_mail_reply):
            return
        buffered = len(getattr(self.reader, "_buffer", b""))  # StreamReader has no peek()
        if self.replies or self.parser.pending() or buffered:
            self.close()
            raise SessionError(
                "4.7.0",
                f"host {self.hostaddr} sent a reply before {before} was sent in a TLS "
                "session: possible command injection (CVE-2009-3555)",
                mta=self.target.host,
            )

    async def _reset(self) -> bool:
        """End a transaction that sends no DATA (a probe); True when the session is usable."""
        try:
            self.write(b"RSET\r\n")
            reply = await self.read_reply(self.st.rset_timeout, STAGE_RSET)
        except SessionError:
            self.close()
            return False
        return reply.klass == 2

    async def quit(self) -> None:
        if self.closed:
            return
        try:
            self.write(b"QUIT\r\n")
            if not self.st.skip_quit_response:
                await self.read_reply(self.st.quit_timeout, STAGE_QUIT)
        except SessionError:
            pass
        self.close()


async def connect(
    target: Target,
    st: Settings,
    allow_tls: bool = True,
    dest: str = "",
    dane: DanePolicy | None = None,
    sender: str = "",
) -> Session:
    """Connect to target (reached as next hop dest) and greet it; SessionError
    (site=True) when it fails before the server became usable. dane: the TLSA
    records the server's certificate must match (st.tls_level is then "dane");
    sender: the envelope sender, for sender-dependent SASL credentials."""
    arm_connection()  # a place for a TLS session to resume (mta/common/tls_session.py)
    try:
        if target.unix:
            coro = asyncio.open_unix_connection(target.addr, limit=SMTP_READ_SIZE * 4)
        else:
            bind = st.bind_address6 if ":" in target.addr else st.bind_address
            coro = asyncio.open_connection(
                target.addr,
                target.port,
                local_addr=(bind, 0) if bind else None,
                limit=SMTP_READ_SIZE * 4,
            )
        reader, writer = await asyncio.wait_for(coro, st.connect_timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        where = target.addr if target.unix else target.relay
        raise SessionError("4.4.1", f"connect to {where}: {_os_reason(exc)}", site=True) from None
    session = Session(target, reader, writer, st)
    session.dane = dane
    try:
        await session.greet(allow_tls, dest, sender)
    except SessionError:
        session.close()
        raise
    return session
