"""mta.qmqpd - the QMQP server: one message per connection, into cleanup

SYNOPSIS
    python -m mta.qmqpd ...            # started by the master (master.cf: 628 inet ... qmqpd)
    await handle_client(reader, writer, ctx)

DESCRIPTION
    QMQP sends one netstring that holds three or more netstrings: the
    message (LF line ends), the envelope sender, and each recipient. The
    server answers one netstring: "K" and text when the message is
    queued, "Z" and text for a temporary failure, "D" and text for a
    permanent one, and closes. Only clients in qmqpd_authorized_clients
    (a match list of hosts and networks; empty means nobody) are served;
    others get "D" after qmqpd_error_delay. The whole exchange must finish
    within qmqpd_timeout; a message larger than message_size_limit is
    refused. The message goes to cleanup with protocol QMQP, which adds
    the Received: header and queues it durably before the "K".

    VERP, as qmail's ezmlm asks for it: a sender of the form
    prefix@origin-@[] becomes prefix@origin, with the last character
    of prefix as the first VERP delimiter and "=" as the second
    (list-@example.org-@[] gives list@example.org with "-=", and its
    recipients see list-user=domain@example.org; common/verp.py). A
    first delimiter outside verp_delimiter_filter gets "D".

    With non_smtpd_milters set, the message goes through the milters
    first (mta/milter/local.py): a 5xx refusal answers "D", a 4xx "Z",
    a discard "K", a quarantine queues it into hold/.

SECURITY
    Parses untrusted network input; lengths are checked before anything
    is read, and nothing larger than message_size_limit is kept.

STANDARDS
    QMQP: http://cr.yp.to/proto/qmqp.html; netstrings:
    http://cr.yp.to/proto/netstrings.txt
"""

from __future__ import annotations

import asyncio

from mta import log
from mta.common.mail_flow import FlowGate
from mta.common.match_list import AddrList
from mta.common.verp import VERP_ATTR, delimiters_problem
from mta.milter.local import LocalMilters

NETSTRING_DIGITS = 10  # longest length prefix accepted


class QmqpError(Exception):
    """A protocol violation; the text is for the log."""


async def read_netstring(reader: asyncio.StreamReader, limit: int) -> bytes:
    """Read one "len:data," from the stream."""
    digits = await reader.readuntil(b":")
    digits = digits[:-1]
    if not digits.isdigit() or len(digits) > NETSTRING_DIGITS:
        raise QmqpError("bad netstring length")
    length = int(digits)
    if length > limit:
        raise QmqpError("message too large")
    data = await reader.readexactly(length + 1)
    if data[-1:] != b",":
        raise QmqpError("netstring without trailing comma")
    return data[:-1]


def split_netstrings(data: bytes) -> list[bytes]:
    """Split a buffer that is a sequence of netstrings."""
    out = []
    pos = 0
    while pos < len(data):
        colon = data.find(b":", pos, pos + NETSTRING_DIGITS + 1)
        if colon <= pos or not data[pos:colon].isdigit():
            raise QmqpError("bad netstring length")
        length = int(data[pos:colon])
        end = colon + 1 + length
        if end >= len(data) or data[end : end + 1] != b",":
            raise QmqpError("bad netstring")
        out.append(data[colon + 1 : end])
        pos = end + 1
    return out


def split_verp_sender(sender: str) -> tuple[str, str | None]:
    """prefix@origin-@[] -> (prefix without its last character @origin, "X="); else (sender, None).

    X is the last character of prefix; prefix and origin must not be empty."""
    if not sender.endswith("-@[]"):
        return sender, None
    at = sender.find("@")
    end = len(sender) - 4  # where "-@[]" starts
    if at < 2 or at >= end - 1:  # no prefix before the delimiter, or no origin
        return sender, None
    return sender[: at - 1] + sender[at:end], sender[at - 1] + "="


def netstring(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


class QmqpServer:
    """What the sessions of one qmqpd process share."""

    def __init__(self, cfg, cleanup=None) -> None:
        from mta.cleanup import Cleanup

        self.cfg = cfg
        self.cleanup = cleanup if cleanup is not None else Cleanup(cfg)
        self.authorized = AddrList(cfg.get_list("qmqpd_authorized_clients"), cfg)
        self.verp_filter = cfg.get("verp_delimiter_filter")
        self.timeout = cfg.get_time("qmqpd_timeout")
        self.error_delay = cfg.get_time("qmqpd_error_delay")
        size = cfg.get_size("message_size_limit")
        self.limit = size + (1 << 16) if size else 1 << 40  # room for the envelope
        self.in_flow_delay = float(cfg.get_time("in_flow_delay"))
        self.flow = FlowGate(cfg.get("queue_directory"))
        self.milters = LocalMilters.from_config(cfg)  # non_smtpd_milters (milter/local.py)

    async def reply(self, writer, code: bytes, text: str, error: bool = False) -> None:
        if error and self.error_delay:
            await asyncio.sleep(self.error_delay)
        writer.write(netstring(code + text.encode()))
        await writer.drain()

    async def handle(self, reader, writer) -> None:
        peer = writer.get_extra_info("peername")
        addr = peer[0] if isinstance(peer, tuple) else "127.0.0.1"
        if addr.startswith("::ffff:"):
            addr = addr[7:]  # an IPv4 client on a dual-stack listener
        client = f"unknown[{addr}]"
        log.info("connect from %s", client)
        if not self.authorized.match(addr):
            log.warning("%s: unauthorized QMQP client", client)
            await self.reply(writer, b"D", "This QMQP server does not accept mail from you", True)
            return
        try:
            packet = await asyncio.wait_for(read_netstring(reader, self.limit), self.timeout)
            parts = split_netstrings(packet)
        except asyncio.TimeoutError:
            log.info("timeout from %s", client)
            return
        except (QmqpError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            log.info("%s: %s", client, exc)
            await self.reply(writer, b"D", "5.5.2 protocol error", True)
            return
        if len(parts) < 3:
            await self.reply(writer, b"D", "5.5.2 no recipients", True)
            return
        message, sender, recipients = parts[0], parts[1], parts[2:]
        if self.in_flow_delay > 0:
            await self.flow.take(self.in_flow_delay)  # delivery falling behind: pace intake
        attrs = {
            "client_name": "unknown",
            "client_address": addr,
            "protocol": "QMQP",
            "reverse_client_name": "unknown",
            "helo_name": "",
        }
        envelope_sender, verp = split_verp_sender(sender.decode("utf-8", "replace"))
        if verp is not None:
            if delimiters_problem(verp, self.verp_filter):
                text = (
                    f'Error: bad VERP delimiters "{verp}": two of "{self.verp_filter}" are needed'
                )
                log.warning("%s: %s", client, text)
                await self.reply(writer, b"D", text, True)
                return
            attrs[VERP_ATTR] = verp
        job = self.cleanup.open(envelope_sender, attrs)
        if self.milters is not None:
            job = self.milters.wrap(job, envelope_sender)
        log.info("%s: client=%s", job.queue_id, client)
        loop = asyncio.get_running_loop()
        try:
            for rcpt in recipients:
                job.add_recipient(rcpt.decode("utf-8", "replace"))
            job.write(message)
            queue = "incoming"
            if self.milters is not None:
                outcome = await self.milters.run_async(job, envelope_sender)
                if outcome.action != "continue":
                    job.abort()
                    await self.milter_reply(writer, outcome)
                    return
                queue = "hold" if outcome.hold else queue
            result = await loop.run_in_executor(None, job.close, queue)
        except OSError as exc:
            job.abort()
            log.warning("%s: queue file write error: %s", client, exc)
            await self.reply(writer, b"Z", "4.3.0 queue file write error", True)
            return
        except BaseException:
            job.abort()  # never leave a half-written queue file behind
            raise
        if result.action in ("queued", "discarded"):
            await self.reply(writer, b"K", f"Ok: queued as {result.queue_id}")
        elif result.action == "deferred":
            await self.reply(writer, b"Z", result.reply, True)
        else:
            await self.reply(writer, b"D", result.reply, True)
        log.info("disconnect from %s", client)

    async def milter_reply(self, writer, outcome) -> None:
        """A non_smtpd_milters refusal as a QMQP answer (a discard is a success)."""
        if outcome.action == "discard":
            await self.reply(writer, b"K", "Ok: discarded")
            return
        text = outcome.reply[4:] if outcome.reply[:3].isdigit() else outcome.reply
        code = b"Z" if outcome.reply[:1] == "4" else b"D"
        await self.reply(writer, code, text.replace("\r\n", " "), True)


_servers: dict = {}


async def handle_client(reader, writer, ctx) -> None:
    """The multi_server handler: one QMQP exchange."""
    server = _servers.get("qmqpd")
    if server is None:
        server = _servers["qmqpd"] = QmqpServer(ctx.cfg)
    await server.handle(reader, writer)
