"""master.multi_server - a service process that serves many clients at once

SYNOPSIS
    from mta.master.multi_server import run_multi_server

    async def handle_client(reader, writer, ctx):
        writer.write(await reader.readline())

    if __name__ == "__main__":
        run_multi_server("echo", handle_client)

DESCRIPTION
    The skeleton of a service started by the master (Postfix's
    multi_server): it reads the child command line, the configuration
    and the master.cf overrides, starts logging as SERVICE, and runs one
    asyncio event loop (uvloop when installed) that accepts clients on
    the listeners the master passed and runs await handler(reader,
    writer, ctx) for each, with ctx.cfg, ctx.service_name and
    ctx.service_type.

    It tells the master "taken" when its client count goes from 0 to 1
    and "available" when it drops back to 0, and "used" once, on its
    first client, so that a later death restarts it without throttling. It exits when it has been
    idle for max_idle seconds, after max_use clients once they are done,
    when the master goes away, and on SIGTERM: it stops accepting, lets
    the current clients finish and exits 0. max_clients > 0 caps the
    clients one process serves at a time; at the cap it stops accepting,
    so the master starts another process (Postfix's single_server with
    max_clients=1). busy_at > 1 tells the master "taken" only when that
    many clients are being served, so one process takes many clients
    before the master starts another (the delivery agents).
    exit_when_idle=False ignores max_idle (tlsmgr, whose state is only
    in memory).

    An exception in a handler is logged as one warning line and closes
    that client only.

SECURITY
    Handlers see untrusted clients. The process becomes mail_owner
    before it accepts anything when master.cf marks it unprivileged.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn

from mta import log
from mta.master.accept import accept_client
from mta.master.mail_server import (
    ServiceContext,
    drop_privileges_if_asked,
    new_event_loop,
    start_service,
    watch_master,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, ServiceContext], Awaitable[None]]


class MultiServer:
    def __init__(
        self,
        ctx: ServiceContext,
        handler: Handler,
        listeners: list,
        max_clients: int = 0,
        busy_at: int = 1,
        exit_when_idle: bool = True,
    ) -> None:
        self.ctx = ctx
        self.handler = handler
        self.listeners = [s for s in listeners if isinstance(s, socket.socket)]
        self.max_clients = max_clients
        self.busy_at = max(1, busy_at)
        self.max_idle = ctx.cfg.get_time("max_idle") if exit_when_idle else 0
        self.max_use = ctx.cfg.get_int("max_use")
        self.clients = 0
        self.use_count = 0
        self.stopping = False
        self.done: asyncio.Event | None = None
        self.room: asyncio.Event | None = None
        self.accept_tasks: list[asyncio.Task] = []
        self.client_tasks: set[asyncio.Task] = set()
        self.idle_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ state
    def stop_accepting(self) -> None:
        for task in self.accept_tasks:
            task.cancel()
        self.accept_tasks = []
        for sock in self.listeners:
            sock.close()
        self.listeners = []

    def stop(self) -> None:
        """SIGTERM, or the master went away: finish the clients, then exit."""
        if self.stopping:
            return
        self.stopping = True
        self.stop_accepting()
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        if self.clients == 0:
            self.done.set()

    def _idle(self) -> None:
        if self.clients == 0:
            log.verbose("idle timeout -- exiting")
            self.stop()

    def _arm_idle(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        if self.max_idle > 0 and not self.stopping:
            self.idle_timer = asyncio.get_running_loop().call_later(self.max_idle, self._idle)

    # ------------------------------------------------------------ clients
    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping:
            if self.max_clients and self.clients >= self.max_clients:
                self.room.clear()
                await self.room.wait()
                continue
            if self.use_count >= self.max_use:
                return
            conn = await accept_client(loop, sock)
            if conn is None:
                return
            self.use_count += 1
            self._client_started()
            task = asyncio.create_task(self._serve(conn))
            self.client_tasks.add(task)
            task.add_done_callback(self.client_tasks.discard)
            if self.use_count >= self.max_use:
                log.verbose("use limit reached -- no more clients")
                self.stop_accepting()
                return

    def _client_started(self) -> None:
        self.ctx.report_used()
        self.clients += 1
        if self.clients == 1 and self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        if self.clients == self.busy_at:
            self.ctx.report_taken()

    def _client_done(self) -> None:
        self.clients -= 1
        self.room.set()
        ending = self.stopping or (self.use_count >= self.max_use and not self.accept_tasks)
        if self.clients == self.busy_at - 1 and not ending:
            self.ctx.report_available()
        if self.clients:
            return
        if ending:
            self.done.set()
            return
        self._arm_idle()

    async def _serve(self, conn: socket.socket) -> None:
        writer = None
        try:
            conn.setblocking(False)
            if conn.family == socket.AF_UNIX:
                reader, writer = await asyncio.open_unix_connection(sock=conn)
            else:
                reader, writer = await asyncio.open_connection(sock=conn)
            await self.handler(reader, writer, self.ctx)
        except Exception as exc:  # noqa: BLE001 - one client's failure is logged, not fatal
            log.warning("%s: %s: %s", self.ctx.service_name, type(exc).__name__, exc)
        finally:
            if writer is not None:
                writer.close()
                try:
                    await writer.wait_closed()
                except Exception:  # noqa: BLE001 - the peer may be gone already
                    pass
            else:
                conn.close()
            self._client_done()

    # ------------------------------------------------------------ main
    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        log.start_background()
        self.done = asyncio.Event()
        self.room = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        self.ctx.on_master_gone = self.stop
        watch_master(loop, self.ctx)
        self.accept_tasks = [asyncio.create_task(self._accept_loop(s)) for s in self.listeners]
        self._arm_idle()
        await self.done.wait()
        self.stop_accepting()
        return 0


def run_multi_server(
    service: str,
    handler: Handler,
    argv: list[str] | None = None,
    *,
    max_clients: int = 0,
    busy_at: int = 1,
    exit_when_idle: bool = True,
) -> NoReturn:
    """Serve clients on the master's listeners until told to stop; then exit."""
    ctx, listeners = start_service(service, argv)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    server = MultiServer(ctx, handler, listeners, max_clients, busy_at, exit_when_idle)
    drop_privileges_if_asked(ctx)
    try:
        status = loop.run_until_complete(server.serve())
    finally:
        loop.close()
    sys.exit(status)
