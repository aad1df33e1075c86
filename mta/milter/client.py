"""milter.client - one milter connection of one SMTP session (or one local message)

SYNOPSIS
    from mta.milter.client import MilterClient
    m = MilterClient(spec, settings)
    await m.open()                                # connect + OPTNEG; failure: default action
    outcome = await m.event(P.SMFIC_HELO, data, "helo", macros, no_reply=P.SMFIP_NR_HELO,
                            skip_flag=P.SMFIP_NOHELO)
    outcome.reply, outcome.edits                   # Reply or None (continue); edits at EOM

DESCRIPTION
    Connects to the milter (milter_connect_timeout), negotiates the
    protocol version, actions and protocol flags, and remembers the
    events the milter does not want (SMFIP_NO*), the ones it will not
    answer (SMFIP_NR_*) and the macros it asked for (SETSYMLIST). Each
    event sends the stage's macros (SMFIC_MACRO) and then the command,
    and reads replies until a final one (accept, continue, reject,
    tempfail, discard, replycode, skip, shutdown). SMFIR_PROGRESS
    restarts the timeout; modification replies (headers, body,
    recipients, sender, quarantine) are only legal at end of message
    and are collected for the caller, each checked against the
    actions the milter announced.

    The connection is an asyncio.Protocol (MilterStream): replies are
    decoded as they arrive and wake the one waiting event, a timer per
    wait enforces the timeout, and a write waits only while the
    transport's buffer is above its high-water mark. Commands the
    milter does not answer (SMFIP_NR_*, and the macros of an event it
    does not want) are held back and go out, in order, with the next
    command it answers, or at abort, quit or close.

    A milter that cannot be reached, does not answer within its
    timeout (milter_command_timeout, or milter_content_timeout for
    message content), closes the connection or sends what is not the
    protocol is closed, logged once ("warning: milter NAME: ..."), and
    from then on answers every event with its default_action: accept
    (the milter is ignored), tempfail (451 4.7.1 Service unavailable -
    try again later), reject (550 5.5.0 Service unavailable) or
    quarantine (the message goes on hold).

SECURITY
    Talks to a milter the configuration names; every reply is parsed
    with bounds (milter.protocol.MAX_REPLY_DATA per packet, a body
    replacement no larger than message_size_limit). Runs inside smtpd
    or pickup, unprivileged.

SEE ALSO
    mta/milter/protocol.py, mta/milter/chain.py
"""

from __future__ import annotations

import asyncio
import collections
import socket

from mta import log
from mta.common.deadline import bounded
from mta.milter import protocol as P

REPLY_TEMPFAIL = "451 4.7.1 Service unavailable - try again later"
REPLY_REJECT = "550 5.7.1 Command rejected"
REPLY_DEFAULT_REJECT = "550 5.5.0 Service unavailable"
REPLY_SHUTDOWN = "421 4.7.0 Server closing connection"
HOLD = "H"  # the default reply of quarantine: hold the message
READ_AHEAD_MAX = 65536  # reply bytes decoded ahead of the client before reading pauses
HELD_MAX = 65536  # unanswered commands held back for the next write, at most
TIMER_SLACK = 0.002  # a timer may come due this early (uvloop counts milliseconds)
# milter_default_action -> what every later event of a failed milter answers
DEFAULT_REPLIES = {
    "accept": "",  # nothing: the milter is passed over
    "reject": REPLY_DEFAULT_REJECT,
    "tempfail": REPLY_TEMPFAIL,
    "quarantine": HOLD,
}

# modification replies -> the SMFIF_* action the milter must have announced
EDIT_ACTIONS = {
    P.SMFIR_ADDHEADER: P.SMFIF_ADDHDRS,
    P.SMFIR_INSHEADER: P.SMFIF_ADDHDRS,
    P.SMFIR_CHGHEADER: P.SMFIF_CHGHDRS,
    P.SMFIR_REPLBODY: P.SMFIF_CHGBODY,
    P.SMFIR_ADDRCPT: P.SMFIF_ADDRCPT,
    P.SMFIR_ADDRCPT_PAR: P.SMFIF_ADDRCPT_PAR,
    P.SMFIR_DELRCPT: P.SMFIF_DELRCPT,
    P.SMFIR_CHGFROM: P.SMFIF_CHGFROM,
    P.SMFIR_QUARANTINE: P.SMFIF_QUARANTINE,
}
FINAL_REPLIES = frozenset(
    {
        P.SMFIR_ACCEPT,
        P.SMFIR_CONTINUE,
        P.SMFIR_REJECT,
        P.SMFIR_TEMPFAIL,
        P.SMFIR_DISCARD,
        P.SMFIR_REPLYCODE,
        P.SMFIR_SKIP,
        P.SMFIR_SHUTDOWN,
        P.SMFIR_CONN_FAIL,
    }
)
VERSION_ACTIONS = {2: P.SMFIF_ALL_V2, 3: P.SMFIF_ALL_V2, 4: P.SMFIF_ALL_V2, 6: P.SMFIF_ALL_V6}
VERSION_PROTOCOL = {2: P.SMFIP_ALL_V2, 3: 0x17F, 4: P.SMFIP_ALL_V4, 6: P.SMFIP_ALL_V6}
# the stage names of SETSYMLIST, by our stage names
SYMLIST_STAGES = {
    "connect": P.SMFIM_CONNECT,
    "helo": P.SMFIM_HELO,
    "mail": P.SMFIM_ENVFROM,
    "rcpt": P.SMFIM_ENVRCPT,
    "data": P.SMFIM_DATA,
    "eod": P.SMFIM_EOM,
    "eoh": P.SMFIM_EOH,
}


class MilterFailure(Exception):
    """The conversation with a milter broke; the text is the log line's reason."""


class Outcome:
    """What one event brought: the final reply (None: continue) and any edits."""

    __slots__ = ("reply", "edits", "default")

    def __init__(self, reply: P.Reply | None = None, edits=(), default: str | None = None):
        self.reply = reply
        self.edits: list[P.Reply] | tuple = edits  # modification replies, at end of message
        self.default = default  # set when the milter failed: its default-action reply


NO_EVENT = Outcome()  # the event was not sent (or needs no answer): go on
# an answer without edits, shared: outcomes are never changed once made
PLAIN_OUTCOMES = {cmd: Outcome(P.Reply(cmd)) for cmd in FINAL_REPLIES - {P.SMFIR_REPLYCODE}}
CONTINUED = PLAIN_OUTCOMES[P.SMFIR_CONTINUE]


class MilterStream(asyncio.Protocol):
    """The connection to one milter: replies are decoded as they arrive and wake the
    one waiter (a reply, or room to write); nothing here blocks or allocates a task."""

    def __init__(self, loop, decoder: P.PacketDecoder, pending: collections.deque) -> None:
        self.loop = loop
        self.decoder = decoder
        self.pending = pending  # decoded packets not yet read
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None  # set to True on news, False on timeout
        self.error: str | None = None  # what the decoder refused; nothing is read after
        self.eof = False  # the milter closed its side
        self.lost = False  # the connection is gone
        self.lost_exc: BaseException | None = None
        self.queued = 0  # bytes read ahead since the client last waited
        self.read_paused = False
        self.write_paused = False
        self.deadline = 0.0  # when the present wait ends without news
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            packets = self.decoder.feed(data)  # a bad length raises at once
        except P.MilterProtocolError as exc:
            self.error = str(exc)
            self.pause_reading()
        else:
            self.queued += len(data)
            if self.queued > READ_AHEAD_MAX:
                self.pause_reading()  # bounded: resumed when the client wants more
            if not packets:
                return
            self.pending.extend(packets)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def eof_received(self) -> bool:
        self.eof = True
        self.wake()
        return True  # half-closed: commands may still be written, as with a StreamReader

    def connection_lost(self, exc) -> None:
        self.stop_timer()
        self.lost = True
        self.lost_exc = exc
        self.write_paused = False
        self.wake()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.wake()

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def wait(self, deadline: float) -> bool:
        """Until news (True) or the deadline (False): one future per wait, and a
        timer only when none is armed at or before the deadline (deadlines move
        forward, so one timer usually covers many waits)."""
        loop = self.loop
        self.deadline = deadline
        if self.timer is None or self.timer_at > deadline:
            self._arm(deadline)
        waiter = self.waiter = loop.create_future()
        try:
            return await waiter
        finally:
            self.waiter = None

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = when
        self.timer = self.loop.call_at(when, self._expire)

    def _expire(self) -> None:
        """The timer is due: end the wait if its deadline has come, else wait on."""
        self.timer = None
        waiter = self.waiter
        if waiter is None or waiter.done():
            return  # no one waits; the next wait arms a timer again
        if self.loop.time() >= self.deadline - TIMER_SLACK:
            waiter.set_result(False)
        else:
            self._arm(self.deadline)

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class MilterClient:
    """See the module docstring."""

    def __init__(self, spec, settings, size_limit: int = 0) -> None:
        self.spec = spec
        self.settings = settings
        self.size_limit = size_limit
        self.stream: MilterStream | None = None
        self.failed: str | None = None  # the default reply once the milter failed ("" = accept)
        self.version = 0
        self.actions = 0
        self.protocol = 0  # what the milter asked for: SMFIP_NO*, NR_*, ...
        self.symlists: dict[int, list[str]] = {}
        self.skip_event: bytes | None = None  # after SMFIR_SKIP: no more of this event
        self.decoder = P.PacketDecoder()
        self.pending: collections.deque = collections.deque()  # packets read ahead
        self.held: list[bytes] = []  # unanswered commands, for the next write
        self.held_size = 0
        self.stage_names: dict[str, list[tuple[str, str, str | None]]] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    def _stage_names(self, stage: str) -> list[tuple[str, str, str | None]]:
        """(name, key in the values, default) of the macros sent at stage:
        SETSYMLIST's names, else main.cf's; worked out once per connection."""
        found = self.stage_names.get(stage)
        if found is not None:
            return found
        index = SYMLIST_STAGES.get(stage)
        names = self.symlists.get(index) if index is not None else None
        if names is None:
            names = self.settings.macros.get(stage, [])
        defaults = self.settings.macro_defaults
        found = []
        for name in names:
            key = name[1:-1] if name.startswith("{") and name.endswith("}") else name
            found.append((name, key, defaults.get(name, defaults.get(key))))
        self.stage_names[stage] = found
        return found

    # ------------------------------------------------------------ failure
    def fail(self, reason: str) -> str:
        """Log once, close, and return the default-action reply ("" for accept)."""
        if self.failed is None:
            log.warning("milter %s: %s", self.name, reason)
            self.close()
            self.failed = DEFAULT_REPLIES[self.spec.default_action]
        return self.failed

    def close(self) -> None:
        """Send what is held back, then close."""
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                self._flush(stream)
                stream.transport.close()
            except (OSError, RuntimeError):
                pass
        self.held.clear()
        self.held_size = 0

    # ------------------------------------------------------------ connection
    async def open(self) -> str | None:
        """Connect and negotiate; None when ready, else the default-action reply."""
        spec = self.spec
        loop = asyncio.get_running_loop()

        def factory():
            return MilterStream(loop, self.decoder, self.pending)

        try:
            if spec.transport == "inet":
                host, port = spec.address
                conn = loop.create_connection(factory, host, int(port) if port.isdigit() else port)
            else:
                conn = loop.create_unix_connection(factory, spec.address)
            _, self.stream = await bounded(conn, spec.connect_timeout)
        except (OSError, asyncio.TimeoutError, socket.gaierror) as exc:
            reason = "Connection timed out" if isinstance(exc, asyncio.TimeoutError) else _err(exc)
            log.warning("connect to Milter service %s: %s", self.name, reason)
            self.stream = None
            return self._fail_quiet()
        offer_actions = VERSION_ACTIONS[spec.protocol]
        offer_protocol = VERSION_PROTOCOL[spec.protocol]
        try:
            self.stream.transport.write(
                P.encode_optneg(spec.protocol, offer_actions, offer_protocol)
            )
            cmd, data = await self._read(P.SMFIC_OPTNEG, spec.command_timeout)
            if cmd != P.SMFIR_OPTNEG:
                raise MilterFailure(f"unexpected reply {cmd!r} to SMFIC_OPTNEG")
            neg = P.parse_optneg(data)
        except P.MilterProtocolError as exc:
            return self.fail(str(exc))
        except MilterFailure as exc:
            return self.fail(str(exc))
        if neg.version < 2 or neg.version > 6:
            return self.fail(f"unsupported protocol version {neg.version}")
        if neg.protocol & ~offer_protocol:
            return self.fail(
                f"requested protocol flags 0x{neg.protocol:x} not offered (0x{offer_protocol:x})"
            )
        if neg.actions & ~offer_actions:
            return self.fail(f"requested actions 0x{neg.actions:x} not offered")
        self.version, self.actions, self.protocol = neg.version, neg.actions, neg.protocol
        self.symlists = neg.symlists if neg.actions & P.SMFIF_SETSYMLIST else {}
        self.stage_names.clear()
        return None

    def _fail_quiet(self) -> str:
        """fail() without a second log line (the connect warning was the line)."""
        self.failed = DEFAULT_REPLIES[self.spec.default_action]
        return self.failed

    async def _read(self, event: bytes, timeout: float) -> tuple[bytes, bytes]:
        """One reply packet; MilterFailure on timeout, EOF or garbage."""
        pending = self.pending
        if pending:
            return pending.popleft()
        stream = self.stream
        deadline = stream.loop.time() + timeout
        while not pending:
            if stream.error is not None:
                raise MilterFailure(stream.error)
            if stream.eof or stream.lost:
                name = P.SMFIC_NAMES.get(event, "(unknown MTA event)")
                if stream.lost_exc is not None:
                    reason = _err(stream.lost_exc)
                    raise MilterFailure(f"can't read {name} reply packet header: {reason}")
                what = "packet header" if len(self.decoder.buf) < 4 else "packet data"
                raise MilterFailure(f"can't read {name} reply {what}: Connection closed by peer")
            stream.queued = len(self.decoder.buf)
            if stream.read_paused:
                stream.read_paused = False
                stream.transport.resume_reading()
            if not await stream.wait(deadline) and not pending:
                name = P.SMFIC_NAMES.get(event, "(unknown MTA event)")
                raise MilterFailure(f"can't read {name} reply packet header: Connection timed out")
        return pending.popleft()

    def _hold(self, data: bytes) -> None:
        """Keep a command that gets no reply for the next write; a large one goes now."""
        self.held.append(data)
        self.held_size += len(data)
        if self.held_size > HELD_MAX:
            self._flush(self.stream)

    def _flush(self, stream: MilterStream) -> None:
        held = self.held
        if held:
            data = held[0] if len(held) == 1 else b"".join(held)
            held.clear()
            self.held_size = 0
            stream.transport.write(data)

    async def _drain(self, timeout: float) -> str | None:
        """After a write: None when the connection takes more, else why not (as
        StreamWriter.drain() said it); waits only while the write buffer is full."""
        stream = self.stream
        if stream.transport.is_closing() and not stream.lost:
            await asyncio.sleep(0)  # a failed send: connection_lost() brings the error
        if stream.lost_exc is not None:
            return _err(stream.lost_exc)
        deadline = stream.loop.time() + timeout
        while stream.write_paused:
            if not await stream.wait(deadline) and stream.write_paused:
                return "TimeoutError"
        if stream.lost or stream.transport.is_closing():
            return "Connection lost"
        return None

    # ------------------------------------------------------------ events
    def wants(self, skip_flag: int) -> bool:
        return not (self.protocol & skip_flag)

    def stage_macros(self, stage: str, values: dict[str, str]) -> list[tuple[str, str]]:
        """(name, value) of the macros sent at stage: SETSYMLIST's, else main.cf's."""
        out = []
        for name, key, default in self._stage_names(stage):
            value = values.get(key)
            if value is None:
                value = default
            if value is not None:
                out.append((name, value))
        return out

    async def event(
        self,
        cmd: bytes,
        data: bytes,
        stage: str | None,
        macros: dict[str, str],
        *,
        skip_flag: int = 0,
        no_reply: int = 0,
        timeout: float | None = None,
    ) -> Outcome:
        """Send one event; the milter's final reply and, at end of message, its edits."""
        if self.failed is not None:
            return Outcome(default=self.failed)
        if self.skip_event is not None:
            if cmd == self.skip_event:
                return NO_EVENT
            self.skip_event = None
        packet = P.encode_packet(cmd, data)
        if stage is not None:
            pairs = self.stage_macros(stage, macros)
            if pairs:
                out = P.encode_macros(cmd, pairs)
                if skip_flag and self.protocol & skip_flag:
                    self._hold(out)  # the macros still go, with the next command
                    return NO_EVENT
                packet = out + packet
        if skip_flag and self.protocol & skip_flag:
            return NO_EVENT
        if timeout is None:
            timeout = self.spec.command_timeout
        if no_reply and self.protocol & no_reply:
            self._hold(packet)
            if self.stream.write_paused:  # a large command went out: flow control
                reason = await self._drain(timeout)
                if reason is not None:
                    return Outcome(default=self.fail(f"error writing command: {reason}"))
            return NO_EVENT
        held = self.held
        if held:
            held.append(packet)
            packet = b"".join(held)
            held.clear()
            self.held_size = 0
        stream = self.stream
        transport = stream.transport
        transport.write(packet)
        if stream.write_paused or stream.lost_exc is not None or transport.is_closing():
            reason = await self._drain(timeout)
            if reason is not None:
                return Outcome(default=self.fail(f"error writing command: {reason}"))
        try:
            rcmd, rdata = await self._read(cmd, timeout)
            if rcmd == P.SMFIR_CONTINUE:
                return CONTINUED  # the usual answer, first
            return await self._answer(cmd, rcmd, rdata, timeout)
        except P.MilterProtocolError as exc:
            return Outcome(default=self.fail(str(exc)))
        except MilterFailure as exc:
            return Outcome(default=self.fail(str(exc)))

    async def _answer(self, cmd: bytes, rcmd: bytes, rdata: bytes, timeout: float) -> Outcome:
        """The rest of an answer: progress, edits (end of message only) and the final reply."""
        edits: list[P.Reply] = []
        body_size = 0
        while True:
            reply = P.parse_reply(rcmd, rdata)
            if rcmd in FINAL_REPLIES:
                if rcmd == P.SMFIR_SKIP:
                    if cmd != P.SMFIC_BODY or not self.protocol & P.SMFIP_SKIP:
                        raise MilterFailure(
                            f"unexpected filter response SMFIR_SKIP after event "
                            f"{P.SMFIC_NAMES.get(cmd, '?')}"
                        )
                    self.skip_event = P.SMFIC_BODY
                    return Outcome(edits=edits)
                if rcmd == P.SMFIR_REPLYCODE:
                    check_replycode(reply.strings[0])
                elif not edits:
                    return PLAIN_OUTCOMES[rcmd]
                return Outcome(reply, edits)
            if rcmd != P.SMFIR_PROGRESS:  # progress: the timeout starts again
                need = EDIT_ACTIONS.get(rcmd)
                if need is None:
                    raise MilterFailure(f"unexpected filter response {rcmd!r}")
                if cmd != P.SMFIC_BODYEOB:
                    raise MilterFailure(
                        f"unexpected filter response {rcmd!r} after event "
                        f"{P.SMFIC_NAMES.get(cmd, '?')}"
                    )
                if not self.actions & need:
                    raise MilterFailure(f"filter response {rcmd!r} without the action announced")
                if rcmd == P.SMFIR_REPLBODY:
                    body_size += len(reply.raw)
                    if self.size_limit and body_size > self.size_limit:
                        raise MilterFailure("body replacement exceeds message_size_limit")
                edits.append(reply)
            rcmd, rdata = await self._read(cmd, timeout)

    def abort_nowait(self) -> None:
        """SMFIC_ABORT: the message is gone (RSET, a new MAIL); no reply is read."""
        self.skip_event = None
        if self.failed is None and self.stream is not None:
            self.held.append(P.encode_packet(P.SMFIC_ABORT))
            try:
                self._flush(self.stream)
            except (OSError, RuntimeError):
                pass

    def quit_nowait(self) -> None:
        """SMFIC_QUIT and close: the session is over."""
        if self.failed is None and self.stream is not None:
            self.held.append(P.encode_packet(P.SMFIC_QUIT))
        self.close()


def check_replycode(text: bytes) -> None:
    """SMFIR_REPLYCODE must be a 4xx or 5xx reply, every line with the same code."""
    lines = text.split(b"\r\n")
    code = text[:3]
    if not (code[:1] in (b"4", b"5") and code.isdigit() and len(code) == 3):
        raise MilterFailure(f"malformed reply: {text[:100]!r}")
    for i, line in enumerate(lines):
        sep = b" " if i == len(lines) - 1 else b"-"
        if line[:3] != code or line[3:4] not in (sep, b""):
            raise MilterFailure(f"malformed multi-line reply: {text[:100]!r}")


def _err(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
