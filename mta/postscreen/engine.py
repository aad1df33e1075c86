"""postscreen.engine - the dummy SMTP server that runs the deep protocol tests

SYNOPSIS
    from mta.postscreen.engine import run_engine
    await run_engine(server, st)     # after the tests before the greeting

DESCRIPTION
    Sends the final "220" greeting and answers like an SMTP server that
    never accepts mail: EHLO (without PIPELINING and STARTTLS, less
    postscreen_discard_ehlo_keywords and the keywords
    postscreen_discard_ehlo_keyword_address_maps gives for the client
    address), HELO, MAIL, RSET, NOOP and QUIT
    as usual; RCPT with the 550 of a test that failed with enforce, or
    "450 4.3.2 Service currently unavailable" (both logged as
    "NOQUEUE: reject: RCPT from [addr]:port: REPLY; from=<...>,
    to=<...>, proto=ESMTP, helo=<...>"); DATA and BDAT with 554;
    VRFY with 502 when postscreen_disable_vrfy_command, else as RCPT;
    other commands 502.

    A line found in postscreen_command_filter is replaced by the table's
    result before anything else looks at it. While it talks, the due
    deep tests watch the input:
    "COMMAND PIPELINING from [addr]:port after CMD: text" (more input
    came before the reply), "NON-SMTP COMMAND from ... after CMD: text"
    and "BARE NEWLINE from ... after CMD". Their actions: drop (521 and
    close), enforce (550 at RCPT), ignore (logged; the test counts as
    passed). A client that reaches RCPT with no failure passes every
    due test: "PASS NEW", and its next connection goes to smtpd.

    Every 4xx and 5xx reply gets postscreen_reject_footer (postscreen/
    footer.py); the log shows the reply without it.

    Limits: postscreen_command_count_limit commands ("COMMAND COUNT
    LIMIT", 421), postscreen_command_time_limit per command ("COMMAND
    TIME LIMIT", 421), line_length_limit per line ("COMMAND LENGTH
    LIMIT", 521).

SECURITY
    Sees untrusted client input; keeps at most one line of it.
"""

from __future__ import annotations

import asyncio
import time

from mta import log
from mta.common.forbidden_commands import is_non_smtp
from mta.postscreen.cache import PSC_BARLF, PSC_NSMTP, PSC_PIPEL
from mta.postscreen.smtp_engine import LineReader, LineTooLong, printable

ENGINE_READ = 4096  # bytes asked of the socket per read
DEEP_LOG = {
    PSC_PIPEL: "COMMAND PIPELINING",
    PSC_NSMTP: "NON-SMTP COMMAND",
    PSC_BARLF: "BARE NEWLINE",
}
EHLO_KEYWORDS = ("SIZE", "VRFY", "ETRN", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8")


class EngineState:
    def __init__(self) -> None:
        self.helo = ""
        self.proto = "SMTP"
        self.sender: str | None = None
        self.last = "CONNECT"
        self.count = 0


def ehlo_reply(server, extra_discard: frozenset[str] = frozenset()) -> str:
    lines = [server.hostname]
    discard = server.discard_ehlo | extra_discard
    for keyword in EHLO_KEYWORDS:
        if keyword in discard or (keyword == "VRFY" and server.disable_vrfy):
            continue
        if keyword == "SIZE" and server.size_limit:
            keyword = f"SIZE {server.size_limit}"
        lines.append(keyword)
    return "\r\n".join([f"250-{x}" for x in lines[:-1]] + [f"250 {lines[-1]}"])


def _address(arg: str) -> str:
    _, _, rest = arg.partition(":")
    rest = rest.strip()
    if rest.startswith("<"):
        rest = rest[1 : rest.find(">") if ">" in rest else len(rest)]
    else:
        rest = rest.split(" ", 1)[0]
    return rest


async def run_engine(server, st) -> None:
    from mta.postscreen.session import drop, send

    loop = asyncio.get_running_loop()
    es = EngineState()
    reader = LineReader(server.line_limit)
    await send(st, f"220 {server.smtpd_banner}\r\n")
    started = time.monotonic()

    async def fail(test: int, detail: str, after: str = "") -> bool:
        """Log a deep test failure and apply its action; True: the session is over."""
        log.info("%s from %s after %s%s", DEEP_LOG[test], st.where, after or es.last, detail)
        st.due.discard(test)
        action = server.deep_actions[test]
        if action == "drop":
            await drop(st, "521 5.5.1 Protocol error")
            return True
        if action == "enforce":
            st.failed = True
            st.enforce_reply = st.enforce_reply or "550 5.5.1 Protocol error"
        else:
            st.stamps[test] = int(time.time()) + server.ttls[test]
        return False

    while True:
        try:
            data = await asyncio.wait_for(
                loop.sock_recv(st.sock, ENGINE_READ), server.command_time_limit
            )
        except (TimeoutError, asyncio.TimeoutError):
            log.info("COMMAND TIME LIMIT from %s after %s", st.where, es.last)
            await drop(st, f"421 4.4.2 {server.hostname} Error: timeout exceeded")
            return
        except OSError:
            data = b""
        if not data:
            log.info(
                "HANGUP after %.1f from %s in tests after SMTP handshake",
                time.monotonic() - started,
                st.where,
            )
            log.info("DISCONNECT %s", st.where)
            return
        try:
            lines = reader.feed(data)
        except LineTooLong:
            log.info("COMMAND LENGTH LIMIT from %s after %s", st.where, es.last)
            await drop(st, "521 5.5.1 Error: command line too long")
            return
        for i, (line, bare, more) in enumerate(lines):
            line = server.filter_command(line)
            es.count += 1
            if es.count > server.command_count_limit:
                log.info("COMMAND COUNT LIMIT from %s after %s", st.where, es.last)
                await drop(st, f"421 4.7.0 {server.hostname} Error: too many commands")
                return
            if bare and PSC_BARLF in st.due and await fail(PSC_BARLF, ""):
                return
            if PSC_NSMTP in st.due and is_non_smtp(line, server.forbidden):
                if await fail(PSC_NSMTP, ": " + printable(line)):
                    return
                await send(st, "502 5.5.2 Error: command not recognized\r\n")
                es.last = "UNKNOWN"
                continue
            verb = line.split(b" ", 1)[0].decode("ascii", "replace").upper()
            es.last = verb if verb.isalpha() and len(verb) <= 16 else "UNKNOWN"
            if more and PSC_PIPEL in st.due:
                rest = b"".join(x[0] + b"\r\n" for x in lines[i + 1 :]) + bytes(reader.buf)
                if await fail(PSC_PIPEL, ": " + printable(rest)):
                    return
            reply = await _command(server, st, es, verb, line.decode("utf-8", "replace"))
            if reply is None:
                return
            await send(st, st.with_footer(reply) + "\r\n")


async def _command(server, st, es: EngineState, verb: str, line: str) -> str | None:
    """The reply to one command; None when the session ended."""
    from mta.postscreen.session import drop

    arg = line[len(verb) :].strip()
    if verb == "EHLO" or verb == "HELO":
        if not arg:
            return f"501 Syntax: {verb} hostname"
        es.helo, es.proto = arg.split(" ", 1)[0], "ESMTP" if verb == "EHLO" else "SMTP"
        st.helo = es.helo
        es.sender = None
        if verb == "HELO":
            return f"250 {server.hostname}"
        return ehlo_reply(server, server.discard_ehlo_for(st.addr))
    if verb == "QUIT":
        await drop(st, "221 2.0.0 Bye")
        return None
    if verb in ("RSET", "NOOP"):
        if verb == "RSET":
            es.sender = None
        return "250 2.0.0 Ok"
    if verb == "MAIL":
        if server.helo_required and not es.helo:
            return "503 5.5.1 Error: send HELO/EHLO first"
        if es.sender is not None:
            return "503 5.5.1 Error: nested MAIL command"
        es.sender = _address(arg)
        return "250 2.1.0 Ok"
    if verb == "RCPT":
        if es.sender is None:
            return "503 5.5.1 Error: need MAIL command"
        return _rcpt_reply(server, st, es, _address(arg), log_it=True)
    if verb == "VRFY":
        if server.disable_vrfy:
            return "502 5.5.1 VRFY command is disabled"
        return _rcpt_reply(server, st, es, arg, log_it=False)
    if verb in ("DATA", "BDAT"):
        return "554 5.5.1 Error: no valid recipients"
    if verb in ("STARTTLS", "AUTH", "ETRN", "XCLIENT", "XFORWARD"):
        return "502 5.5.1 Error: command not implemented"
    return "502 5.5.2 Error: command not recognized"


def _rcpt_reply(server, st, es: EngineState, rcpt: str, log_it: bool) -> str:
    from mta.postscreen.session import passed

    if st.enforce_reply:
        reply = st.enforce_reply
    else:
        if st.due and not st.failed:
            passed(server, st)
        reply = "450 4.3.2 Service currently unavailable"
    if log_it:
        log.info(
            "NOQUEUE: reject: RCPT from %s: %s; from=<%s>, to=<%s>, proto=%s, helo=<%s>",
            st.where,
            reply,
            es.sender or "",
            rcpt,
            es.proto,
            es.helo,
        )
    return reply
