"""smtpd.session - one SMTP server session, as an asyncio protocol

SYNOPSIS
    from mta.smtpd.session import SmtpdSession
    server = SmtpdServer(cfg)                    # mta.smtpd.server: shared state
    loop.create_server(lambda: SmtpdSession(server), sock=listener)

DESCRIPTION
    data_received() only appends to the input buffer and wakes the
    session's task. The task takes every complete command line in the
    buffer at once (split_lines, a Cython kernel), answers each, queues
    the replies and writes them in one transport.write() when it has to
    wait for more input, so a pipelined batch costs one write. In DATA
    the buffer goes through the DataStream kernel, which undoes dot
    stuffing and finds the end only at CRLF.CRLF; content streams into
    the cleanup job as it arrives. The reply to the message comes after
    cleanup has fsynced and renamed the queue file, which runs in a
    worker thread so other sessions go on meanwhile.

    Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY ETRN HELP,
    XCLIENT (smtpd/xclient.py) and XFORWARD (smtpd/xforward.py);
    extensions PIPELINING SIZE VRFY ETRN ENHANCEDSTATUSCODES 8BITMIME DSN
    SMTPUTF8 CHUNKING (minus smtpd_discard_ehlo_keywords). Replies and
    limits follow Postfix: message_size_limit, smtpd_recipient_limit
    (452 4.5.3 for each recipient past it; past
    smtpd_recipient_overshoot_limit more each also counts as an error),
    smtpd_timeout, line_length_limit, smtpd_soft_error_limit (then
    smtpd_error_sleep_time before each error reply),
    smtpd_hard_error_limit (then 421 and disconnect),
    smtpd_junk_command_limit, smtpd_forbidden_commands (a web proxy
    request or a header line where a command belongs: a warning, 221 and
    hang up, as Postfix), smtpd_forbid_bare_newline (521 and
    disconnect on a bare LF, except for smtpd_forbid_bare_newline_
    exclusions) and smtpd_forbid_unauth_pipelining (554 and disconnect
    when a client sends ahead where RFC 2920 forbids it).

    MAIL FROM takes XVERP (default_verp_delimiters) and XVERP=xy from
    clients on smtpd_authorized_verp_clients, as Postfix: xy must be two
    characters of verp_delimiter_filter (else 501 5.5.4), the sender
    must not be null (503 5.5.4); from other clients XVERP is an
    unsupported option (555 5.5.4). The delimiters go to cleanup as the
    envelope attribute verp_delimiters (common/verp.py).

    VRFY answers 252 only for an address the relay and recipient
    restrictions (and smtpd_reject_unlisted_recipient) would take at
    RCPT TO, and their refusal otherwise (550 5.1.1 for an unknown
    local user), as Postfix; 502 5.5.1 with disable_vrfy_command. In
    sendmail -bs mode (stand_alone) there is no lookup.

    STARTTLS (smtpd_tls_security_level may or encrypt) is answered in
    smtpd/tls.py; at encrypt, MAIL, RCPT, DATA, BDAT, VRFY and ETRN
    get 530 5.7.0 until the session runs over TLS. The lines a client
    pipelined after STARTTLS are dropped with the rest of the buffer
    (self.restarted), never answered after the handshake.

    With smtpd_proxy_filter (smtpd/proxy_filter.py) MAIL, RCPT and the
    message go to the before-queue filter after smtpd's own checks, and
    its replies are the client's; nothing is queued here.

    smtpd_milters (smtpd/milters.py) see the connect, HELO, MAIL, RCPT,
    DATA and unknown commands after the restrictions; while they are
    active the content is spooled and shown to them at end of data,
    before cleanup gets it with their edits.

    Every 4xx and 5xx reply gets smtpd_reject_footer (or the footer
    smtpd_reject_footer_maps finds for it) through smtpd/footer.py.
    The HELO/EHLO name is kept printable (smtpd/address.py
    printable_arg) before it reaches logs and the Received: header.

    Each error reply notes its notify_classes class (resource,
    software, protocol, policy; see smtpd/transcript.py for which is
    which). When the session ends and it ran into a class in
    notify_classes, the server queues one notice with the session's
    transcript to error_notice_recipient. The transcript is a fixed
    ring kept from connect only when protocol or policy is enabled;
    otherwise it starts at the first such error, and a clean session
    records nothing.

SECURITY
    Sees untrusted network input; every reply is built from fixed text
    and addresses that passed the parser. Runs as mail_owner.

STANDARDS
    RFC 5321 (SMTP), RFC 1870 (SIZE), RFC 2920 (PIPELINING), RFC 3030
    (CHUNKING), RFC 3461 (DSN), RFC 6152 (8BITMIME), RFC 6531 (SMTPUTF8),
    RFC 2034 (ENHANCEDSTATUSCODES), RFC 1985 (ETRN), RFC 3207 (STARTTLS).
"""

from __future__ import annotations

import asyncio
import os
import time

from mta import log
from mta.cleanup.cleanup import (
    REPLY_ALIAS_ERROR,
    REPLY_HOPS,
    REPLY_LOOKUP_ERROR,
    REPLY_NO_RCPT,
    REPLY_TOO_BIG,
    REPLY_WRITE_ERROR,
)
from mta.common.dsn_params import notify_mask, orcpt_value
from mta.common.forbidden_commands import is_non_smtp
from mta.common.verp import VERP_ATTR, delimiters_problem
from mta.queue import rec_type as R
from mta.smtpd import proxy_filter, sasl, xclient, xforward
from mta.smtpd.address import AddressError, decode_xtext, parse_path, printable_arg
from mta.smtpd.checks import SessionState
from mta.smtpd.milters import milter_refuse, start_milters
from mta.smtpd.tls import counted_wrapper_tls, received_comment, starttls, wrapper_start
from mta.smtpd.transcript import (
    NOTE_CONTENT,
    NOTIFY_BOUNCE,
    NOTIFY_POLICY,
    NOTIFY_PROTOCOL,
    NOTIFY_RESOURCE,
    NOTIFY_RING,
    NOTIFY_SOFTWARE,
    TRANSCRIPT_LINE_BYTES,
    Transcript,
)
from mta.smtpd.wire import DataStream, LineTooLong, parse_command, parse_esmtp_params, split_lines

PAUSE_INPUT_AT = 1 << 20  # stop reading a client whose unprocessed input passes this
MODE_COMMAND = 0  # reading command lines
MODE_DATA = 1  # reading DATA content
MODE_BDAT = 2  # reading a BDAT chunk
MODE_SKIP = 3  # discarding the rest of an over-long command line
MODE_AUTH = 4  # reading a response in an AUTH exchange (smtpd/sasl.py)

# commands after which the client must wait for the reply (RFC 2920 section 3.1)
SYNC_COMMANDS = frozenset({b"EHLO", b"HELO", b"DATA", b"QUIT", b"NOOP", b"VRFY", b"ETRN", b"HELP"})
JUNK_COMMANDS = frozenset({b"NOOP", b"VRFY", b"ETRN", b"RSET"})
# refused with 530 before STARTTLS at smtpd_tls_security_level = encrypt
TLS_FIRST_COMMANDS = frozenset({b"MAIL", b"RCPT", b"DATA", b"BDAT", b"VRFY", b"ETRN", b"AUTH"})

LINE_END_OF_DATA = b"."  # what the client sent to end DATA content

# notify_classes bit of a message that cleanup did not queue, by its reply;
# content refused by header or body checks is policy, the size and hop
# limits are the bounce class
CLEANUP_CLASSES = {
    REPLY_WRITE_ERROR: NOTIFY_RESOURCE,
    REPLY_LOOKUP_ERROR: NOTIFY_RESOURCE,
    REPLY_ALIAS_ERROR: NOTIFY_SOFTWARE,
    REPLY_TOO_BIG: NOTIFY_BOUNCE,
    REPLY_HOPS: NOTIFY_BOUNCE,
    REPLY_NO_RCPT: 0,
}


class SessionClosed(Exception):
    """The client went away or the session was ended."""


def _log_flush_error(task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("ETRN: %s", task.exception())


class SmtpdSession(asyncio.Protocol):
    """One client connection; see the module docstring."""

    def __init__(self, server) -> None:
        self.server = server
        self.cfg = server.cfg
        self.transport: asyncio.Transport | None = None
        self.inbuf = bytearray()
        self.replies: list[bytes] = []
        self.waiter: asyncio.Future | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.write_paused = False
        self.deadline = 0.0
        self.timed_out = False
        self.closed = False
        self.paused = False
        self.mode = MODE_COMMAND
        self.task: asyncio.Task | None = None
        self.errors = 0
        self.junk = 0
        self.counts: dict[str, int] = {}
        self.last_command = "CONNECT"
        self.line = b""  # the command line being answered, for a transcript
        self.trouble = 0  # NOTIFY_* bits of what went wrong in this session
        # the whole session is recorded only when protocol or policy
        # errors are reported; otherwise from the first trouble on
        self.transcript = Transcript() if server.notify_mask & NOTIFY_RING else None
        self.st: SessionState | None = None
        self.session_actions: list = []
        self.tls = False  # the session runs over TLS (after STARTTLS)
        self.restarted = False  # STARTTLS just completed: drop what was pipelined after it
        self.tls_peer = None  # smtpd.tls_ccert.TlsPeer once TLS is up
        self.anvil = None  # smtpd.limits.SessionLimits once counted
        self.sasl_method = ""  # the mechanism of a successful AUTH (st.sasl_username: who)
        self.sasl_exchange = None  # an AUTH exchange waiting for a response
        self.mail_count = 0  # MAIL commands parsed, for the policy "instance"
        self.milters = None  # smtpd.milters.SessionMilters when smtpd_milters apply
        self.reset_transaction()

    # ------------------------------------------------------------ transport events
    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.server.tls_wrapper:
            transport.pause_reading()  # the first bytes are the TLS hello: wrapper_start()
            self.paused = True
        self.server.session_started(self)
        self.task = asyncio.get_running_loop().create_task(self.run())

    def data_received(self, data: bytes) -> None:
        self.inbuf += data
        if len(self.inbuf) > PAUSE_INPUT_AT and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def pause_writing(self) -> None:
        # A client that does not read its replies gets no more input read
        # until it does, so replies never pile up without bound.
        self.write_paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.paused:
            self.transport.resume_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # ------------------------------------------------------------ output
    def reply(self, text: str) -> None:
        if text[:1] in ("4", "5") and self.server.footer:
            text = self.server.footer.apply(text, self.footer_attrs())
        data = text.encode("utf-8", "replace") + b"\r\n"
        self.replies.append(data)
        if self.transcript is not None:
            self.transcript.append(data)  # Transcript.server(), without the lookup

    def footer_attrs(self) -> dict[str, str]:
        """The session attributes smtpd_reject_footer may name."""
        st = self.st
        if st is None:
            return {}
        return {
            "client_address": st.client_addr,
            "client_port": str(st.client_port),
            "client_name": st.client_name,
            "reverse_client_name": st.reverse_name,
            "client": f"{st.client_name}[{st.client_addr}]",
            "helo_name": st.helo_name,
        }

    def note(self, error_class: int) -> None:
        """Remember trouble of error_class (NOTIFY_*) for the notice at the session's end.

        The first trouble of a class in notify_classes starts the
        transcript, with the command being answered, if none is kept."""
        self.trouble |= error_class
        if self.transcript is None and error_class & self.server.notify_mask:
            self.transcript = Transcript()
            if self.line:
                self.transcript.client(self.line)

    def flush(self) -> None:
        if self.replies and not self.transport.is_closing():
            self.transport.write(b"".join(self.replies))
        self.replies.clear()

    async def wait_input(self) -> None:
        """Flush replies and wait for more input, at most smtpd_timeout."""
        self.flush()
        if self.closed:
            raise SessionClosed("lost connection")
        if self.paused:
            self.paused = False
            if not self.write_paused:
                self.transport.resume_reading()
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        # One timer per session, moved forward lazily, instead of a new
        # timeout for every wait: most waits end long before smtpd_timeout.
        self.deadline = loop.time() + self.server.timeout
        if self.timer is None:
            self.timer = loop.call_at(self.deadline, self._check_deadline)
        try:
            await self.waiter
        finally:
            self.waiter = None
        if self.timed_out:
            log.info("timeout after %s from %s", self.last_command, self.client_text)
            self.reply(f"421 4.4.2 {self.server.hostname} Error: timeout exceeded")
            raise SessionClosed("timeout")
        if self.closed and not self.inbuf:
            raise SessionClosed("lost connection")

    def _check_deadline(self) -> None:
        self.timer = None
        if self.waiter is None or self.waiter.done():
            return  # busy, not waiting: the next wait arms a new timer
        loop = asyncio.get_running_loop()
        if loop.time() >= self.deadline:
            self.timed_out = True
            self.waiter.set_result(None)
        else:
            self.timer = loop.call_at(self.deadline, self._check_deadline)

    # ------------------------------------------------------------ session
    @property
    def client_text(self) -> str:
        st = self.st
        return f"{st.client_name}[{st.client_addr}]"

    def reset_transaction(self) -> None:
        job = getattr(self, "job", None)
        if job is not None:
            job.abort()  # a message in progress is thrown away, its file too
        if getattr(self, "milters", None) is not None:
            self.milters.abort()  # SMFIC_ABORT when a message was under way
        proxy_filter.drop(self)  # the proxy filter's connection ends with the transaction
        self.sender: str | None = None
        self.verp: str | None = None  # VERP delimiters asked for with XVERP
        self.recipients: list[tuple[str, int, str]] = []  # (address, notify, orcpt)
        self.rcpt_overshoot = 0  # RCPTs refused for smtpd_recipient_limit
        self.job = None
        self.mail_params: dict[bytes, bytes | None] = {}
        self.body_8bit = False
        self.smtputf8 = False
        self.bdat_seen = False
        self.bdat_left = 0
        self.bdat_last = False
        self.bdat_too_big = False
        self.bdat_size = 0
        self.stream = None
        self.hold = False
        self.discard = False
        self.bcc: list[str] = []
        self.xforward: dict[str, str] | None = None  # XFORWARD values (smtpd/xforward.py)
        if self.st is not None:
            self.st.sender = None
            self.st.recipient = ""
            self.st.recipient_count = 0
            self.st.size = 0
            self.st.sasl_sender = self.st.queue_id = ""
            # actions from the connect stage hold for every message of the session
            self.st.actions = list(self.session_actions)

    async def run(self) -> None:
        try:
            self.st = await self.server.new_state(self.transport)
            log.info("connect from %s", self.client_text)
            if self.server.tls_wrapper and not await wrapper_start(self):
                return
            if not self.server.stand_alone and await self.over_connection_limit():
                return
            if self.server.tls_wrapper and not await counted_wrapper_tls(self):
                return
            # A client rejected at connect still gets the greeting; the
            # rejection then answers its MAIL, as Postfix does.
            self.reject_stage = None
            if not self.server.checks.delay_reject:
                verdict = await self.server.checks.client(self.st)
                if verdict is not None:
                    self.log_reject("CONNECT", verdict)
                    self.reject_stage = verdict
                self.session_actions = list(self.st.actions)
            if self.server.milters is not None and not await start_milters(self):
                return  # smtpd_milters: the connect event said 421
            self.reply(f"220 {self.server.banner}")
            await self.loop()
        except SessionClosed as exc:
            if str(exc) == "lost connection":
                log.info("lost connection after %s from %s", self.last_command, self.client_text)
        except Exception as exc:  # noqa: BLE001 - one bad session must not stop the server
            log.warning("%s: unexpected error: %s: %s", self.client_text, type(exc).__name__, exc)
            self.note(NOTIFY_SOFTWARE)
            self.reply("421 4.3.0 Error: internal error")
        finally:
            self.finish()

    def finish(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.job is not None:
            self.job.abort()
            self.job = None
        if self.milters is not None:
            self.milters.close()
        proxy_filter.drop(self)
        if self.sasl_exchange is not None:
            sasl.abandon(self.sasl_exchange)  # the client left in the middle of AUTH
            self.sasl_exchange = None
        if self.transport is not None and not self.transport.is_closing():
            self.flush()
            self.transport.close()
        if self.anvil is not None:
            self.anvil.disconnect()
        if self.st is not None:
            counts = "".join(f" {k}={v}" for k, v in self.counts.items())
            total = sum(self.counts.values())
            log.info("disconnect from %s%s commands=%d", self.client_text, counts, total)
            if self.trouble & self.server.notify_mask:
                self.server.send_error_notice(self.client_text, self.trouble, self.transcript)
        self.server.session_ended(self)

    async def over_connection_limit(self) -> bool:
        """Count the connection with anvil; past a limit, say 421 (smtpd.limits)."""
        st = self.st
        self.anvil = self.server.limits.session(st.client_addr, st.client_name, self.client_text)
        refusal = await self.anvil.connect() if self.anvil is not None else None
        if refusal is not None:
            self.reply(refusal)
        return refusal is not None

    async def loop(self) -> None:
        while True:
            if self.mode == MODE_DATA:
                await self.read_data()
            elif self.mode == MODE_BDAT:
                await self.read_bdat()
            elif self.mode == MODE_AUTH:
                ok = await sasl.auth_continue(self)
                if self.sasl_exchange is None:
                    self.mode = MODE_COMMAND
                if not ok:
                    return
            elif self.mode == MODE_SKIP:
                nl = self.inbuf.find(b"\n")
                if nl < 0:
                    self.inbuf.clear()
                    await self.wait_input()
                    continue
                del self.inbuf[: nl + 1]
                self.mode = MODE_COMMAND
            else:
                if not await self.read_commands():
                    return

    async def read_commands(self) -> bool:
        """Answer every complete command in the buffer; False when the session ends."""
        try:
            lines, used, bare = split_lines(self.inbuf, self.server.line_limit)
        except LineTooLong as exc:
            start = exc.args[0]
            lines, used, bare = split_lines(self.inbuf[:start], self.server.line_limit)
            too_long = True
        else:
            too_long = False
        if not lines and not too_long:
            await self.wait_input()
            return True
        raw = bytes(self.inbuf[:used])
        del self.inbuf[:used]
        pos = 0  # where the next line starts in raw
        for index, line in enumerate(lines):
            if index == bare and self.server.forbid_bare_newline(self.st):
                log.info("bare <LF> received from %s after %s", self.client_text, self.last_command)
                self.line = line
                if self.transcript is not None:
                    self.transcript.client(line)
                self.note(NOTIFY_PROTOCOL)
                self.reply(f"521 5.5.2 {self.server.hostname} Error: bare <LF> received")
                return False
            pos = raw.index(b"\n", pos) + 1
            more = index + 1 < len(lines) or bool(self.inbuf) or too_long
            if not await self.command(line, more):
                return False
            if self.restarted:
                # lines the client sent after STARTTLS in the clear are never commands
                self.restarted = False
                return True
            if self.mode != MODE_COMMAND:
                # DATA or BDAT took over: the bytes after this line, exactly as
                # they came, are message content
                if pos < len(raw):
                    self.inbuf[:0] = raw[pos:]
                return True
        if too_long:
            self.mode = MODE_SKIP  # the rest of the long line goes, what follows it stays
            self.line = bytes(self.inbuf[:TRANSCRIPT_LINE_BYTES])
            if self.transcript is not None:
                self.transcript.client(self.line)
            return await self.error("500 5.5.0 Error: line too long")
        return True

    async def refuse(self, stage: str, verdict) -> bool:
        """Log and answer a restriction's verdict; False when the session must end."""
        self.log_reject(stage, verdict)
        if verdict.disconnect:
            self.note(verdict.error_class)
            self.reply(verdict.reply)
            return False
        return await self.error(verdict.reply, verdict.error_class)

    async def error(self, text: str, error_class: int = NOTIFY_PROTOCOL) -> bool:
        """Reply with an error, counting toward the error limits; False to end.

        error_class: the notify_classes bit the error belongs to (0: none)."""
        self.errors += 1
        if error_class:
            self.note(error_class)
        if self.errors >= self.server.hard_error_limit:
            log.info("too many errors after %s from %s", self.last_command, self.client_text)
            self.note(NOTIFY_PROTOCOL)
            self.reply(f"421 4.7.0 {self.server.hostname} Error: too many errors")
            return False
        if self.errors > self.server.soft_error_limit and self.server.error_sleep:
            self.flush()
            await asyncio.sleep(self.server.error_sleep)
        self.reply(text)
        return True

    async def command(self, line: bytes, more: bool) -> bool:
        """Handle one command line; False when the session must end."""
        self.line = line
        if self.transcript is not None:
            # Transcript.client() inlined: this runs for every command
            self.transcript.append(line[:TRANSCRIPT_LINE_BYTES])
        verb, arg = parse_command(line)
        name = verb.decode("ascii", "replace")
        handler = COMMANDS.get(verb)
        if handler is None:
            self.counts["unknown"] = self.counts.get("unknown", 0) + 1
            self.last_command = "UNKNOWN"
            if verb and is_non_smtp(line, self.server.forbidden):
                log.warning(
                    "non-SMTP command from %s: %.100s", self.client_text, printable_arg(line)
                )
                self.note(NOTIFY_PROTOCOL)
                self.reply("221 2.7.0 Error: I can break rules, too. Goodbye.")
                return False
            if self.milters is not None:
                verdict = await self.milters.unknown(self, line)
                if verdict is not None:
                    return await milter_refuse(self, verdict)
            if not verb:
                return await self.error("500 5.5.2 Error: bad syntax")
            return await self.error("502 5.5.2 Error: command not recognized")
        self.counts[name.lower()] = self.counts.get(name.lower(), 0) + 1
        self.last_command = name
        if verb in JUNK_COMMANDS:
            self.junk += 1
            if self.junk > self.server.junk_limit:
                # past the limit every junk command counts as an error, as in Postfix
                self.errors += 1
                if self.errors >= self.server.hard_error_limit:
                    log.info("too many errors after %s from %s", name, self.client_text)
                    self.note(NOTIFY_PROTOCOL)
                    self.reply(f"421 4.7.0 {self.server.hostname} Error: too many errors")
                    return False
        if self.server.tls_required and not self.tls and verb in TLS_FIRST_COMMANDS:
            return await self.error("530 5.7.0 Must issue a STARTTLS command first")
        if more and (verb in SYNC_COMMANDS or not self.st.esmtp):
            self.st.pipelining_violation = True
            if self.server.forbid_unauth_pipelining:
                log.info("improper command pipelining after %s from %s", name, self.client_text)
                self.note(NOTIFY_PROTOCOL)
                self.reply("554 5.5.0 Error: SMTP protocol synchronization")
                return False
        return await handler(self, arg)

    # ------------------------------------------------------------ commands
    async def do_helo(self, arg: bytes, esmtp: bool = False) -> bool:
        verb = "EHLO" if esmtp else "HELO"
        # control bytes never reach logs or the Received: header
        name = printable_arg(arg)
        if not name:
            return await self.error(f"501 5.5.4 Syntax: {verb} hostname")
        self.reset_transaction()
        self.st.helo_name = name
        self.st.esmtp = esmtp
        self.st.protocol = "ESMTP" if esmtp else "SMTP"
        if not self.server.checks.delay_reject:
            verdict = await self.server.checks.helo(self.st)
            if verdict is not None:
                return await self.refuse("HELO", verdict)
        if self.milters is not None:
            verdict = await self.milters.helo(self)
            if verdict is not None:
                return await milter_refuse(self, verdict)
        if esmtp:
            ehlo = await self.server.ehlo_bytes(self)
            self.replies.append(ehlo)
            if self.transcript is not None:
                self.transcript.server(ehlo)
        else:
            self.reply(f"250 {self.server.hostname}")
        return True

    async def do_ehlo(self, arg: bytes) -> bool:
        return await self.do_helo(arg, esmtp=True)

    async def do_mail(self, arg: bytes) -> bool:
        if self.server.helo_required and not self.st.helo_name:
            return await self.error("503 5.5.1 Error: send HELO/EHLO first")
        if self.sender is not None:
            return await self.error("503 5.5.1 Error: nested MAIL command")
        if self.reject_stage is not None:
            return await self.error(self.reject_stage.reply, self.reject_stage.error_class)
        refusal = await self.anvil.message() if self.anvil is not None else None
        if refusal is not None:
            return await self.error(refusal, NOTIFY_POLICY)
        if arg[:5].upper() != b"FROM:":
            return await self.error("501 5.5.4 Syntax: MAIL FROM:<address>")
        try:
            sender, end = parse_path(arg[5:], self.server.strict_envelopes)
        except AddressError:
            return await self.error("501 5.1.7 Bad sender address syntax")
        params: dict[bytes, bytes | None] = {}
        verp = None
        for key, value in parse_esmtp_params(arg[5 + end :]):
            if key == b"XVERP" and self.server.verp_allowed(self.st):
                verp = self.server.verp_delims if value is None else value.decode("latin-1")
                problem = self.check_verp(verp)
            else:
                problem = self.check_mail_param(key, value)
            if not problem and key == b"AUTH" and key in params:
                problem = "503 5.5.4 Error: multiple AUTH= options"
            if problem:
                return await self.error(problem)
            params[key] = value
        size = params.get(b"SIZE")
        if size is not None and self.server.size_limit and int(size) > self.server.size_limit:
            return await self.error("552 5.3.4 Message size exceeds fixed limit", NOTIFY_POLICY)
        if not self.server.room_for(int(size or 0)):
            return await self.error("452 4.3.1 Insufficient system storage", NOTIFY_RESOURCE)
        if verp is not None and not sender:
            return await self.error("503 5.5.4 Error: XVERP requires non-null sender", 0)
        self.st.sender = sender
        self.note_mail(params)
        if not self.server.checks.delay_reject:
            verdict = await self.server.checks.sender(self.st)
            if verdict is not None:
                self.st.sender = None
                return await self.refuse("MAIL", verdict)
        if self.milters is not None:
            verdict = await self.milters.mail(self, sender, params)
            if verdict is not None:
                self.st.sender = None
                return await milter_refuse(self, verdict)
        ok_reply = "250 2.1.0 Ok"
        if self.server.proxy is not None:  # the proxy filter answers (smtpd/proxy_filter.py)
            ok_reply = await proxy_filter.mail(self)
            if ok_reply is None:
                self.st.sender = None
                return True
        self.sender = sender
        self.verp = verp
        self.mail_params = params
        self.body_8bit = (params.get(b"BODY") or b"").upper() == b"8BITMIME"
        self.smtputf8 = b"SMTPUTF8" in params
        self.reply(ok_reply)
        return True

    def note_mail(self, params: dict[bytes, bytes | None]) -> None:
        """What check_policy_service also sends of a MAIL FROM: size, sasl_sender, instance."""
        st = self.st
        st.size = int(params.get(b"SIZE") or 0)
        st.sasl_sender = sasl.mail_auth_sender(self, params)
        now = time.time()
        self.mail_count += 1
        st.instance = f"{os.getpid():x}.{int(now):x}.{int(now % 1 * 1e6):x}.{self.mail_count:x}"

    def check_verp(self, delims: str) -> str | None:
        """XVERP=xy from an authorized client: two characters of verp_delimiter_filter."""
        if delimiters_problem(delims, self.server.verp_filter):
            return f"501 5.5.4 Error: XVERP needs two characters from {self.server.verp_filter}"
        return None

    def check_mail_param(self, key: bytes, value: bytes | None) -> str | None:
        if key == b"SIZE":
            if value is None or not value.isdigit():
                return "501 5.5.4 Bad message size syntax"
        elif key == b"BODY":
            if value is None or value.upper() not in (b"7BIT", b"8BITMIME"):
                return "501 5.5.4 Unsupported BODY parameter value"
        elif key == b"SMTPUTF8":
            if value is not None:
                return "501 5.5.4 Bad SMTPUTF8 syntax"
        elif key == b"RET":
            if value is None or value.upper() not in (b"FULL", b"HDRS"):
                return "501 5.5.4 Bad RET parameter syntax"
        elif key == b"ENVID":
            if not value or decode_xtext(value) is None:
                return "501 5.5.4 Bad ENVID parameter syntax"
        elif key == b"AUTH":
            # RFC 4954: kept as the message's sasl_sender (smtpd/sasl.py), once
            if value is None:
                return "501 5.5.4 Bad AUTH parameter syntax"
        else:
            return f"555 5.5.4 Unsupported option: {key.decode('ascii', 'replace')}"
        return None

    async def do_rcpt(self, arg: bytes) -> bool:
        if self.sender is None:
            return await self.error("503 5.5.1 Error: need MAIL command")
        if self.bdat_seen:
            return await self.error("503 5.5.1 Error: RCPT command after BDAT")
        refusal = await self.anvil.recipient() if self.anvil is not None else None
        if refusal is not None:
            return await self.error(refusal, NOTIFY_POLICY)
        if arg[:3].upper() != b"TO:":
            return await self.error("501 5.5.4 Syntax: RCPT TO:<address>")
        try:
            rcpt, end = parse_path(arg[3:], self.server.strict_envelopes)
        except AddressError:
            return await self.error("501 5.1.3 Bad recipient address syntax")
        if not rcpt:
            return await self.error("501 5.1.3 Bad recipient address syntax")
        notify, orcpt = 0, ""
        for key, value in parse_esmtp_params(arg[3 + end :]):
            if key == b"NOTIFY" and value:
                mask = notify_mask(value)
                if mask is None:
                    return await self.error("501 5.5.4 Error: Bad NOTIFY parameter syntax")
                notify |= mask
            elif key == b"ORCPT" and value:
                found = orcpt_value(value)
                if found is None:
                    return await self.error("501 5.5.4 Error: Bad ORCPT parameter syntax")
                orcpt = found
            else:
                name = key.decode("ascii", "replace")
                return await self.error(f"555 5.5.4 Unsupported option: {name}")
        if self.server.recipient_limit and len(self.recipients) >= self.server.recipient_limit:
            # Postfix: up to smtpd_recipient_overshoot_limit of these are no
            # error; past it each counts, so a flood ends at the hard limit
            self.rcpt_overshoot += 1
            if self.rcpt_overshoot <= self.server.recipient_overshoot_limit:
                self.reply("452 4.5.3 Error: too many recipients")
                return True
            return await self.error("452 4.5.3 Error: too many recipients", NOTIFY_POLICY)
        self.st.recipient = rcpt
        verdict = await self.server.checks.recipient(self.st)
        if verdict is None:
            verdict = self.server.suppression.verdict(rcpt, self.sender)
        if verdict is None and self.milters is not None:
            args = [a.decode("utf-8", "replace") for a in arg[3 + end :].split()]
            verdict = await self.milters.rcpt(self, rcpt, args)
        if verdict is not None:
            if self.milters is not None and not getattr(verdict, "logged", False):
                await self.milters.rcpt_rejected(self, rcpt, arg[3 + end :], verdict.reply)
            ok = await self.refuse("RCPT", verdict)
            self.st.recipient = ""
            return ok
        ok_reply = "250 2.1.5 Ok"
        if self.server.proxy is not None:  # the proxy filter answers (smtpd/proxy_filter.py)
            ok_reply = await proxy_filter.rcpt(self)
            if ok_reply is None:
                self.st.recipient = ""
                return True
        self.recipients.append((rcpt, notify, orcpt))
        self.st.recipient_count = len(self.recipients)
        self.reply(ok_reply)
        return True

    async def start_message(self):
        """Run the data restrictions and open the cleanup job; a refusal Verdict or None."""
        # the one recipient of a single-recipient message is known to the message
        # stages (a policy server's "recipient"); with more, none is (Postfix)
        self.st.recipient = self.recipients[0][0] if len(self.recipients) == 1 else ""
        verdict = await self.server.checks.data(self.st)
        if verdict is not None:
            return verdict
        if self.server.in_flow_delay > 0:
            # delivery falling behind: pace intake (in_flow_delay)
            await self.server.flow.take(self.server.in_flow_delay)
        attrs = {
            "client_name": self.st.client_name,
            "reverse_client_name": self.st.reverse_name,
            "client_address": self.st.client_addr,
            "client_port": str(self.st.client_port),
            "helo_name": self.st.helo_name,
            "protocol": self.protocol_name(),
            **sasl.message_attrs(self),
            "tls_trace": received_comment(self),  # Received: lines, not an attribute
        }
        xforward.message_attrs(self, attrs)  # a client forwarded with XFORWARD
        params = self.mail_params
        if params.get(b"RET"):
            attrs["ret"] = params[b"RET"].decode("ascii").upper()
        if params.get(b"ENVID"):
            attrs["envid"] = decode_xtext(params[b"ENVID"]) or ""
        if self.verp:
            attrs[VERP_ATTR] = self.verp
        prepend = []
        self.apply_flags()
        for kind, value in self.st.actions:
            if kind in ("redirect", "filter"):
                attrs[kind] = value
            elif kind == "prepend":
                prepend.append(value)
            elif kind == "bcc":
                self.bcc.append(value)
        flags = (R.QF_8BIT if self.body_8bit else 0) | (R.QF_SMTPUTF8 if self.smtputf8 else 0)
        if self.server.proxy is not None:  # the proxy filter takes the message, not cleanup
            self.job, verdict = await proxy_filter.open_job(self, prepend)
            return verdict
        # Created on the loop: handing the open to a worker thread cost more
        # in latency than the open itself (BENCHMARKS.md, tuning log).
        job = self.server.cleanup.open(self.sender, attrs, flags=flags)
        if self.milters is not None:  # the content waits for the milters (milter/job.py)
            job = self.milters.wrap(job, self.sender)
        self.job = job  # from here on reset_transaction() throws it away on any failure
        if getattr(job, "queue_id", "NOQUEUE") != "NOQUEUE":
            self.st.queue_id = job.queue_id
            log.info(
                "%s: client=%s%s%s",
                job.queue_id,
                self.client_text,
                sasl.log_fields(self),
                xforward.log_fields(self),
            )
        for rcpt, notify, orcpt in self.recipients:
            job.add_recipient(rcpt, orig=rcpt, notify=notify, dsn_orcpt=orcpt)
        for rcpt in self.bcc:
            job.add_recipient(rcpt)
        for header in prepend:
            job.write(header.encode("utf-8", "replace") + b"\r\n")
        if self.milters is not None:
            return await self.milters.data(self)  # refusals come logged as milter-reject
        return None

    def apply_flags(self) -> None:
        """Take HOLD and DISCARD from the actions the restrictions noted so far."""
        for kind, _ in self.st.actions:
            if kind == "hold":
                self.hold = True
            elif kind == "discard":
                self.discard = True

    def protocol_name(self) -> str:
        """The with-clause of Received: (RFC 3848: ESMTPS, ESMTPA, ESMTPSA, UTF8SMTPSA)."""
        name = self.st.protocol
        esmtp = name.startswith("E")
        if self.smtputf8:
            name = "UTF8" + name.replace("ESMTP", "SMTP") if esmtp else name
        if self.tls:
            name += "S"
        return name + "A" if esmtp and self.st.sasl_username else name

    async def do_data(self, arg: bytes) -> bool:
        if arg:
            return await self.error("501 5.5.4 Syntax: DATA")
        if self.sender is None:
            return await self.error("503 5.5.1 Error: need MAIL command")
        if not self.recipients:
            return await self.error("503 5.5.1 Error: need RCPT command")
        if self.bdat_seen:
            return await self.error("503 5.5.1 Error: DATA after BDAT")
        verdict = await self.start_message()
        if verdict is not None:
            return await self.refuse("DATA", verdict)
        self.stream = DataStream(self.server.size_limit)
        self.mode = MODE_DATA
        self.reply("354 End data with <CR><LF>.<CR><LF>")
        return True

    async def read_data(self) -> None:
        while True:
            if self.inbuf:
                content, used, done = self.stream.feed(self.inbuf)
                del self.inbuf[:used]
                if content and not self.stream.too_big:
                    self.job.write(content)
                if self.stream.bare_lf and self.server.forbid_bare_newline(self.st):
                    log.info("bare <LF> received from %s after DATA", self.client_text)
                    if self.transcript is not None:
                        self.transcript.note(NOTE_CONTENT)
                    self.note(NOTIFY_PROTOCOL)
                    self.reply(f"521 5.5.2 {self.server.hostname} Error: bare <LF> received")
                    raise SessionClosed("bare lf")
                if done:
                    break
            await self.wait_input()
        self.mode = MODE_COMMAND
        self.last_command = "END-OF-MESSAGE"
        self.line = LINE_END_OF_DATA
        if self.transcript is not None:
            self.transcript.note(NOTE_CONTENT)
            self.transcript.client(LINE_END_OF_DATA)
        if self.stream.too_big:
            self.reset_transaction()
            await self.error("552 5.3.4 Message size exceeds fixed limit", NOTIFY_BOUNCE)
            return
        await self.end_message()

    async def end_message(self) -> None:
        self.st.size = self.bdat_size if self.bdat_seen else self.stream.size
        verdict = await self.server.checks.end_of_data(self.st)
        if verdict is not None:
            self.reset_transaction()
            if not await self.refuse("END-OF-MESSAGE", verdict):
                raise SessionClosed("refused")
            return
        self.apply_flags()
        if self.server.proxy is not None:  # the filter's reply is the client's
            job, self.job = self.job, None
            return await proxy_filter.end_message(self, job)
        if self.milters is not None and not self.discard:
            # the content phase: "done" when the milters answered, "close" on 421
            outcome = await self.milters.end_of_message(self)
            if outcome == "close":
                raise SessionClosed("refused")
            if outcome:
                return
        job, self.job = self.job, None
        if self.discard:
            job.abort()
            log.info("NOQUEUE: discard: END-OF-MESSAGE from %s", self.client_text)
            self.reset_transaction()
            self.reply("250 2.0.0 Ok: queued as NOQUEUE")
            return
        queue = "hold" if self.hold else "incoming"
        self.flush()
        try:
            result = job.finish(queue)
            if result is None:  # only the fsync is left: a thread waits for it
                result = await self.server.executor.run(job.commit)
        except OSError as exc:
            log.warning("queue file write error: %s", exc)
            job.abort()
            self.reset_transaction()
            await self.error("451 4.3.0 Error: queue file write error", NOTIFY_RESOURCE)
            return
        except BaseException:
            job.abort()
            raise
        self.reset_transaction()
        if result.action in ("queued", "discarded"):
            # as in Postfix, a delivered message wipes the slate of errors
            self.errors = self.junk = 0
            self.reply(f"250 2.0.0 Ok: queued as {result.queue_id or 'NOQUEUE'}")
        else:
            reply = result.reply
            if not reply[:3].isdigit():
                reply = ("451 " if result.action == "deferred" else "550 ") + reply
            await self.error(reply, CLEANUP_CLASSES.get(result.reply, NOTIFY_POLICY))

    async def do_bdat(self, arg: bytes) -> bool:
        words = arg.split()
        if (
            not words
            or not words[0].isdigit()
            or len(words) > 2
            or (len(words) == 2 and words[1].upper() != b"LAST")
        ):
            return await self.error("501 5.5.4 Syntax: BDAT count [LAST]")
        size = int(words[0])
        last = len(words) == 2
        if self.sender is None or not self.recipients:
            # the chunk must still be read and thrown away
            self.bdat_left, self.bdat_last, self.job = size, last, None
            self.bdat_class = NOTIFY_PROTOCOL
            self.bdat_reply = (
                "503 5.5.1 Error: need MAIL command"
                if self.sender is None
                else "503 5.5.1 Error: need RCPT command"
            )
            self.mode = MODE_BDAT
            return True
        if not self.bdat_seen:
            verdict = await self.start_message()
            if verdict is not None and verdict.disconnect:
                return await self.refuse("DATA", verdict)
            if verdict is not None:
                self.log_reject("DATA", verdict)
                self.bdat_left, self.bdat_last, self.bdat_reply = size, last, verdict.reply
                self.bdat_class = verdict.error_class
                self.mode = MODE_BDAT
                return True
            self.bdat_seen = True
        self.bdat_reply = None
        self.bdat_left, self.bdat_last = size, last
        self.mode = MODE_BDAT
        return True

    async def read_bdat(self) -> None:
        while self.bdat_left:
            if not self.inbuf:
                await self.wait_input()
                continue
            take = min(self.bdat_left, len(self.inbuf))
            chunk = bytes(self.inbuf[:take])
            del self.inbuf[:take]
            self.bdat_left -= take
            self.bdat_size += take
            if self.job is not None and self.bdat_reply is None:
                if self.server.size_limit and self.bdat_size > self.server.size_limit:
                    self.bdat_too_big = True
                if not self.bdat_too_big:
                    self.job.write(chunk)
        self.mode = MODE_COMMAND
        self.last_command = "BDAT"
        if self.bdat_reply is not None:
            if self.job is not None:
                self.reset_transaction()
            await self.error(self.bdat_reply, self.bdat_class)
            return
        if not self.bdat_last:
            self.reply(f"250 2.0.0 Ok: {self.bdat_size} bytes")
            return
        if self.bdat_too_big:
            self.reset_transaction()
            await self.error("552 5.3.4 Message size exceeds fixed limit", NOTIFY_BOUNCE)
            return
        await self.end_message()

    async def do_rset(self, arg: bytes) -> bool:
        if arg:
            return await self.error("501 5.5.4 Syntax: RSET")
        self.reset_transaction()
        self.reply("250 2.0.0 Ok")
        return True

    async def do_noop(self, arg: bytes) -> bool:
        self.reply("250 2.0.0 Ok")
        return True

    async def do_quit(self, arg: bytes) -> bool:
        self.reply("221 2.0.0 Bye")
        return False

    async def do_vrfy(self, arg: bytes) -> bool:
        if self.server.disable_vrfy:
            return await self.error("502 5.5.1 VRFY command is disabled", NOTIFY_POLICY)
        words = arg.split()
        if self.server.smtputf8 and len(words) > 1 and words[-1].upper() == b"SMTPUTF8":
            words.pop()  # RFC 6531 section 3.7.4.1
        if not words:
            hint = " [SMTPUTF8]" if self.server.smtputf8 else ""
            return await self.error(f"501 5.5.4 Syntax: VRFY address{hint}")
        arg = b" ".join(words)
        try:
            addr, _ = parse_path(arg if arg.startswith(b"<") else b"<" + arg + b">")
        except AddressError:
            addr = ""
        if not addr:
            return await self.error("501 5.1.3 Bad recipient address syntax")
        if not self.server.stand_alone:
            # the recipient restrictions answer, as they would at RCPT TO:
            # an unknown local user gets 550 5.1.1 instead of 252
            saved = self.st.recipient
            self.st.recipient = addr
            try:
                verdict = await self.server.checks.recipient(self.st)
                if verdict is not None:
                    return await self.refuse("VRFY", verdict)
            finally:
                self.st.recipient = saved
        self.reply(f"252 2.0.0 {arg.decode('utf-8', 'replace')}")
        return True

    async def do_etrn(self, arg: bytes) -> bool:
        if not arg:
            return await self.error("500 5.5.2 Syntax: ETRN domain")
        if self.server.helo_required and not self.st.helo_name:
            return await self.error("503 5.5.1 Error: send HELO/EHLO first")
        if self.sender is not None:
            return await self.error("503 5.5.1 Error: MAIL transaction in progress")
        domain = arg.decode("utf-8", "replace").lstrip("@#")
        verdict = await self.server.checks.etrn(self.st, domain)
        if verdict is not None:
            return await self.refuse("ETRN", verdict)
        if self.server.flush_domains.match(domain.strip("[]")):
            from mta.flush import flush_site

            # the site's flush log and the envelopes it lists are read on
            # a worker thread; the client hears at once that the run has
            # started, as RFC 1985 has it
            task = asyncio.ensure_future(
                self.server.executor.run(flush_site, self.server.cfg, domain)
            )
            task.add_done_callback(_log_flush_error)
            self.reply("250 Queuing started")
            return True
        return await self.error(f"459 4.3.0 <{domain}>: service unavailable", 0)

    async def do_starttls(self, arg: bytes) -> bool:
        return await starttls(self, arg)

    async def do_auth(self, arg: bytes) -> bool:
        ok = await sasl.auth_command(self, arg)
        if self.sasl_exchange is not None:
            self.mode = MODE_AUTH  # the lines after this one are the client's response
        return ok

    async def do_help(self, arg: bytes) -> bool:
        self.reply("214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY ETRN")
        return True

    # ------------------------------------------------------------ logging
    def log_reject(self, stage: str, verdict) -> None:
        if getattr(verdict, "logged", False):
            return  # a milter's refusal, logged as milter-reject (smtpd/milters.py)
        st = self.st
        parts = [f"reject: {stage} from {self.client_text}: {verdict.reply}"]
        extra = []
        if st.sender is not None:
            extra.append(f"from=<{st.sender}>")
        if stage in ("RCPT", "VRFY") and st.recipient:
            extra.append(f"to=<{st.recipient}>")
        extra.append(f"proto={st.protocol}")
        if st.helo_name:
            extra.append(f"helo=<{st.helo_name}>")
        log.info("NOQUEUE: %s; %s", parts[0], " ".join(extra))


COMMANDS = {
    b"EHLO": SmtpdSession.do_ehlo,
    b"HELO": SmtpdSession.do_helo,
    b"MAIL": SmtpdSession.do_mail,
    b"RCPT": SmtpdSession.do_rcpt,
    b"DATA": SmtpdSession.do_data,
    b"BDAT": SmtpdSession.do_bdat,
    b"RSET": SmtpdSession.do_rset,
    b"NOOP": SmtpdSession.do_noop,
    b"QUIT": SmtpdSession.do_quit,
    b"VRFY": SmtpdSession.do_vrfy,
    b"ETRN": SmtpdSession.do_etrn,
    b"HELP": SmtpdSession.do_help,
    b"STARTTLS": SmtpdSession.do_starttls,
    b"AUTH": SmtpdSession.do_auth,
    b"XCLIENT": xclient.do_xclient,
    b"XFORWARD": xforward.do_xforward,
}
