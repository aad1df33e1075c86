"""Receiving peers for smtp client tests: aiosmtpd sinks and scripted raw servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP

from mta import log
from mta.common.deliver_agent import handle_request
from mta.common.deliver_request import deliver
from mta.config import load_config
from mta.smtp import deliver_lmtp
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.instance import make_instance
from tests.support.ports import free_port  # noqa: F401 (tests import it from here)
from tests.support.unix_server import HandlerServer


class SinkHandler:
    """Accepts everything except addresses listed in reject (address -> reply)."""

    def __init__(self, reject: dict[str, str] | None = None, data_reply: str = "") -> None:
        self.reject = reject or {}
        self.data_reply = data_reply
        self.messages: list[tuple[str, list[str], bytes, list[str]]] = []
        self.mail_options: list[list[str]] = []

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        self.mail_options.append(list(mail_options))
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.reject:
            return self.reject[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content, [])
        )
        return self.data_reply or "250 2.0.0 Ok: queued as SINK1"


class LmtpHandler(SinkHandler):
    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content, []))
        return "\r\n".join(
            "550 5.2.2 mailbox full" if r.startswith("full") else f"250 2.0.0 <{r}> saved"
            for r in envelope.rcpt_tos
        )


class LmtpController(Controller):
    def factory(self):
        return LMTP(self.handler)


def sink(handler=None, **kw) -> tuple[Controller, SinkHandler]:
    handler = handler or SinkHandler()
    ctl = Controller(handler, hostname="127.0.0.1", port=free_port(), **kw)
    ctl.start()
    return ctl, handler


class ScriptServer:
    """A raw TCP server in a thread; each connection runs script(reader, writer, log)."""

    def __init__(self, script) -> None:
        self.script = script
        self.port = free_port()
        self.received: list[bytes] = []
        self.connections = 0
        self.handlers: set[asyncio.Task] = set()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)

            async def main():
                self.server = await asyncio.start_server(self._conn, "127.0.0.1", self.port)
                ready.set()

            self.loop.run_until_complete(main())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(5)

    async def _conn(self, reader, writer):
        self.connections += 1
        task = asyncio.current_task()
        self.handlers.add(task)
        task.add_done_callback(self.handlers.discard)
        try:
            await self.script(reader, writer, self.received)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until every connection's script has returned (the client may hang up first)."""

        async def idle():
            if self.handlers:
                await asyncio.wait(list(self.handlers), timeout=timeout)

        asyncio.run_coroutine_threadsafe(idle(), self.loop).result(timeout + 1)

    def stop(self) -> None:
        async def shutdown():
            self.server.close()
            for t in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                t.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def read_line(reader, received) -> bytes:
    line = await reader.readline()
    if not line:
        raise asyncio.IncompleteReadError(b"", None)
    received.append(line)
    return line


class AgentServer:
    """One delivery agent kept running across several requests (for the session cache)."""

    def __init__(self, deliver_fn, cfg, tmp_path) -> None:
        self.path = str(tmp_path / f"agent.{time.monotonic_ns()}")
        log.init("agent", cfg)

        async def handler(reader, writer, ctx):
            try:
                await handle_request(reader, writer, ctx, deliver_fn)
            finally:
                writer.close()

        self.server = HandlerServer(self.path, handler, cfg)

    def send(self, req, timeout: float = 30):
        return asyncio.run(deliver(self.path, req, timeout))

    def stop(self) -> None:
        self.server.stop()


def lmtp_sink(unix_path: str | None = None):
    """An aiosmtpd LMTP server on 127.0.0.1 (or a UNIX socket); "full*" mailboxes are refused."""
    from aiosmtpd.controller import UnixSocketController

    handler = LmtpHandler()
    if unix_path:

        class Unix(UnixSocketController):
            def factory(self):
                return LMTP(self.handler)

        ctl = Unix(handler, unix_socket=unix_path)
    else:
        ctl = LmtpController(handler, hostname="127.0.0.1", port=free_port())
    ctl.start()
    return ctl, handler


def deliver_to_lmtp_sink(tmp_path, main_cf: str, recipients: list[str], **message):
    """Queue one message under an instance (main_cf plus lmtp_tcp_port of a fresh lmtp_sink)
    and run the lmtp client at inet:127.0.0.1; returns (LmtpHandler, agent result)."""
    ctl, handler = lmtp_sink()
    try:
        cfg = load_config(str(make_instance(tmp_path, f"lmtp_tcp_port = {ctl.port}\n" + main_cf)))
        msg = queue_message(cfg, recipients, **message)
        result = run_agent(deliver_lmtp, cfg, request_for(msg, "inet:127.0.0.1"), tmp_path)
    finally:
        ctl.stop()
    return handler, result
