"""milter.chain - the configured milters, one after another, for one session

SYNOPSIS
    from mta.milter.chain import MilterChain
    chain = MilterChain(specs, settings, size_limit)
    d = await chain.connect("mail.example", "192.0.2.1", 25, macros)
    d = await chain.helo(name, macros); d = await chain.mail(sender, args, macros)
    d = await chain.rcpt(rcpt, args, macros); d = await chain.data(macros)
    d = await chain.unknown(line, macros)
    d = await chain.message(msg, macros)            # headers, body, end of message
    await chain.abort(); await chain.quit()
    d.action, d.reply                               # "continue", "reject", ...

DESCRIPTION
    Each event goes to the milters in the order configured. The first
    that answers other than continue decides: reject (550 5.7.1
    Command rejected), tempfail (451 4.7.1 Service unavailable - try
    again later), a reply of its own (SMFIR_REPLYCODE, multi-line
    allowed), discard, or shutdown (421); the milters after it do not
    see the event. Accept at connect or HELO turns the milter off for
    the session, later for the rest of the message. A milter that
    failed answers with its default_action (milter.client).

    The content phase, message(), gives each milter in turn the
    headers, the end of headers, the body in chunks (until it says
    skip) and the end of message; its edits are applied before the next
    milter starts, so a later milter sees what an earlier one changed,
    as in Postfix. Quarantine (or a quarantine default_action) marks
    the message for hold/ and the other milters still run.

SECURITY
    Sees what the SMTP client sent and what milters answer; see
    milter.client and milter.message for the bounds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from mta.milter import protocol as P
from mta.milter.client import (
    CONTINUED,
    HOLD,
    NO_EVENT,
    REPLY_REJECT,
    REPLY_SHUTDOWN,
    REPLY_TEMPFAIL,
    MilterClient,
)

CONTINUE = "continue"  # no milter objected
ACTION_ACCEPT = "accept"
ACTION_REJECT = "reject"
ACTION_TEMPFAIL = "tempfail"
ACTION_DISCARD = "discard"
ACTION_SHUTDOWN = "shutdown"


@dataclass
class Decision:
    action: str = CONTINUE
    reply: str = ""  # the SMTP reply for reject, tempfail, shutdown
    hold: str | None = None  # a quarantine reason (content phase)


def reply_decision(text: str) -> Decision:
    """A reply text (a milter's own or a default action's) as a Decision."""
    if text.startswith("421"):
        return Decision(ACTION_SHUTDOWN, text)
    return Decision(ACTION_TEMPFAIL if text[:1] == "4" else ACTION_REJECT, text)


class MilterChain:
    """See the module docstring."""

    def __init__(self, specs, settings, size_limit: int = 0) -> None:
        self.clients = [MilterClient(spec, settings, size_limit) for spec in specs]
        self.off: set[int] = set()  # accepted at connect/helo: off for the session
        self.done: set[int] = set()  # accepted this message
        self.opened = False
        self.hold_always: str | None = None  # a failed milter with default_action quarantine

    def active(self):
        for i, client in enumerate(self.clients):
            if i not in self.off and i not in self.done:
                yield i, client

    async def _open(self) -> None:
        if not self.opened:
            self.opened = True
            await asyncio.gather(*(c.open() for c in self.clients))

    async def _event(
        self,
        cmd: bytes,
        data: bytes,
        stage: str | None,
        macros: dict[str, str],
        skip_flag: int,
        no_reply: int,
        session_level: bool = False,
    ) -> Decision:
        hold = None
        for i, client in list(self.active()):
            outcome = await client.event(
                cmd, data, stage, macros, skip_flag=skip_flag, no_reply=no_reply
            )
            decision = self._decide(i, outcome, session_level)
            if decision.hold is not None:
                hold = decision.hold
                continue
            if decision.action != CONTINUE:
                return decision
        return Decision(hold=hold)

    def _decide(self, i: int, outcome, session_level: bool) -> Decision:
        """One milter's answer as a Decision; accept switches it off."""
        if outcome.default is not None:
            if outcome.default == "":
                self.off.add(i)  # a failed milter with default_action accept is skipped
                return Decision()
            if outcome.default == HOLD:
                self.off.add(i)  # every message of the session goes to hold/, as Postfix
                self.hold_always = f"milter {self.clients[i].name} is unavailable"
                return Decision(hold=self.hold_always)
            return reply_decision(outcome.default)
        reply = outcome.reply
        if reply is None or reply.cmd == P.SMFIR_CONTINUE:
            return Decision()
        cmd = reply.cmd
        if cmd == P.SMFIR_ACCEPT:
            (self.off if session_level else self.done).add(i)
            return Decision()
        if cmd == P.SMFIR_REJECT:
            return Decision(ACTION_REJECT, REPLY_REJECT)
        if cmd == P.SMFIR_TEMPFAIL:
            return Decision(ACTION_TEMPFAIL, REPLY_TEMPFAIL)
        if cmd == P.SMFIR_REPLYCODE:
            return reply_decision(reply.strings[0].decode("utf-8", "replace"))
        if cmd == P.SMFIR_DISCARD:
            return Decision(ACTION_DISCARD)
        if cmd in (P.SMFIR_SHUTDOWN, P.SMFIR_CONN_FAIL):
            return Decision(ACTION_SHUTDOWN, REPLY_SHUTDOWN)
        return Decision()

    # ------------------------------------------------------------ SMTP events
    async def connect(self, hostname: str, addr: str, port: int, macros) -> Decision:
        await self._open()
        if ":" in addr:
            family = "6"
        elif addr:
            family = "4"
        else:
            family = "U"
        data = P.encode_connect(hostname, family, port, addr)[5:]
        return await self._event(
            P.SMFIC_CONNECT, data, "connect", macros, P.SMFIP_NOCONNECT, P.SMFIP_NR_CONN, True
        )

    async def helo(self, name: str, macros) -> Decision:
        return await self._event(
            P.SMFIC_HELO, P.cstrings(name), "helo", macros, P.SMFIP_NOHELO, P.SMFIP_NR_HELO, True
        )

    async def mail(self, sender: str, args: list[str], macros) -> Decision:
        self.done.clear()
        data = P.cstrings(f"<{sender}>", *args)
        return await self._event(
            P.SMFIC_MAIL, data, "mail", macros, P.SMFIP_NOMAIL, P.SMFIP_NR_MAIL
        )

    async def rcpt(self, rcpt: str, args: list[str], macros) -> Decision:
        data = P.cstrings(f"<{rcpt}>", *args)
        return await self._event(
            P.SMFIC_RCPT, data, "rcpt", macros, P.SMFIP_NORCPT, P.SMFIP_NR_RCPT
        )

    async def rcpt_rejected(self, rcpt: str, args: list[str], macros) -> None:
        """A recipient smtpd refused, for the milters that asked (SMFIP_RCPT_REJ);
        their answers change nothing."""
        data = P.cstrings(f"<{rcpt}>", *args)
        for _, client in list(self.active()):
            if client.failed is None and client.protocol & P.SMFIP_RCPT_REJ:
                await client.event(
                    P.SMFIC_RCPT,
                    data,
                    "rcpt",
                    macros,
                    skip_flag=P.SMFIP_NORCPT,
                    no_reply=P.SMFIP_NR_RCPT,
                )

    async def data(self, macros) -> Decision:
        return await self._event(P.SMFIC_DATA, b"", "data", macros, P.SMFIP_NODATA, P.SMFIP_NR_DATA)

    async def unknown(self, line: bytes, macros) -> Decision:
        return await self._event(
            P.SMFIC_UNKNOWN,
            P.cstrings(line),
            "unknown",
            macros,
            P.SMFIP_NOUNKNOWN,
            P.SMFIP_NR_UNKN,
        )

    def abort(self) -> None:
        for _, client in self.active():
            client.abort_nowait()
        self.done.clear()

    def quit(self) -> None:
        for client in self.clients:
            client.quit_nowait()

    # ------------------------------------------------------------ content
    async def message(self, msg, macros, header_check=None) -> Decision:
        """Headers, body and end of message to each milter in turn; msg gets the edits."""
        hold = self.hold_always
        for i, client in list(self.active()):
            decision = await self._message_one(i, client, msg, macros, header_check)
            if decision.hold is not None:
                hold = decision.hold
            if decision.action != CONTINUE:
                decision.hold = decision.hold or hold
                return decision
        return Decision(hold=hold)

    async def _message_one(self, i, client, msg, macros, header_check) -> Decision:
        timeout = client.spec.content_timeout
        leadspc = bool(client.protocol & P.SMFIP_HDR_LEADSPC)
        event = client.event
        gone = (self.done, self.off)  # accepted: no more of this message

        def stop(decision: Decision) -> bool:
            return decision.action != CONTINUE or decision.hold or i in gone[0] or i in gone[1]

        def send(cmd: bytes, data: bytes, stage: str | None, skip_flag: int, no_reply: int):
            # a plain function handing back the coroutine: no extra frame per event
            return event(
                cmd, data, stage, macros, skip_flag=skip_flag, no_reply=no_reply, timeout=timeout
            )

        for name, value in msg.headers:
            data = P.cstrings(name, msg.header_value(value, leadspc))
            outcome = await send(P.SMFIC_HEADER, data, None, P.SMFIP_NOHDRS, P.SMFIP_NR_HDR)
            if outcome is not CONTINUED and outcome is not NO_EVENT:
                decision = self._decide(i, outcome, False)
                if stop(decision):
                    return decision
        outcome = await send(P.SMFIC_EOH, b"", "eoh", P.SMFIP_NOEOH, P.SMFIP_NR_EOH)
        decision = self._decide(i, outcome, False)
        if stop(decision):
            return decision
        for chunk in msg.body_chunks():
            if client.skip_event == P.SMFIC_BODY or client.protocol & P.SMFIP_NOBODY:
                break
            outcome = await send(P.SMFIC_BODY, chunk, None, P.SMFIP_NOBODY, P.SMFIP_NR_BODY)
            decision = self._decide(i, outcome, False)
            if stop(decision):
                return decision
        outcome = await send(P.SMFIC_BODYEOB, b"", "eod", 0, 0)
        decision = self._decide(i, outcome, False)
        if outcome.edits and decision.action in (CONTINUE, ACTION_ACCEPT):
            hold = msg.apply(outcome.edits, leadspc, header_check)
            if hold is not None:
                decision.hold = hold
        elif outcome.edits:
            # a rejected or discarded message is not edited, but a quarantine still
            for edit in outcome.edits:
                if edit.cmd == P.SMFIR_QUARANTINE:
                    decision.hold = edit.strings[0].decode("utf-8", "replace")
        return decision
