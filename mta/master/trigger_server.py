"""master.trigger_server - a service process woken by short triggers

SYNOPSIS
    from mta.master.trigger_server import run_trigger_server

    def handle_trigger(data: bytes, ctx):     # or async def
        scan_the_queue()

    if __name__ == "__main__":
        run_trigger_server("pickup", handle_trigger)

DESCRIPTION
    The skeleton of a service that does its work when poked (Postfix's
    trigger_server): the master's periodic wakeup (b"W"), or a program
    that wants the service to look now. On a unix listener each client
    connection is one trigger: up to TRIGGER_BUF_SIZE bytes read until
    the client closes or TRIGGER_READ_TIMEOUT passes. On a fifo every
    read is one trigger. handler(data, ctx) runs for each, one at a
    time, in arrival order; it may be a plain function or a coroutine.

    A trigger that is only the master's wakeup does not mark the
    service used, so that "wakeup N?" in master.cf stays quiet while
    nothing else happens; other triggers report taken and available to
    the master around the handler. The first trigger of any kind also
    reports the process used (ctx.report_used()), as Postfix counts a
    trigger server: if it dies later, the master starts another at once
    instead of throttling the service. With initial (for example the
    wakeup b"W"), the handler runs once at start as if that trigger had
    come, so that a process that replaces a dead one looks at the work
    left behind without waiting for the next trigger; it is not a use.
    The process exits after max_idle seconds without a trigger, after
    max_use triggers, when the master goes away, and on SIGTERM once
    the current handler returns.

SECURITY
    Trigger data comes from any process that may reach the socket or
    fifo (see the private/public directory modes); it is at most
    TRIGGER_BUF_SIZE bytes and handlers must treat it as a hint only.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import NoReturn

from mta import log
from mta.master import master_proto as mp
from mta.master.accept import accept_client
from mta.master.mail_server import (
    ServiceContext,
    drop_privileges_if_asked,
    new_event_loop,
    start_service,
    watch_master,
)

TRIGGER_BUF_SIZE = 1024  # most bytes one trigger carries
TRIGGER_READ_TIMEOUT = 10.0  # seconds a trigger client may take to send and close

TriggerHandler = Callable[[bytes, ServiceContext], object]


def is_wakeup_only(data: bytes) -> bool:
    """True when data is nothing but the master's wakeup requests."""
    return bool(data) and not data.strip(mp.TRIGGER_WAKEUP)


class TriggerServer:
    def __init__(
        self,
        ctx: ServiceContext,
        handler: TriggerHandler,
        listeners: list,
        initial: bytes | None = None,
    ) -> None:
        self.ctx = ctx
        self.initial = initial
        self.handler = handler
        self.listeners = listeners
        self.max_idle = ctx.cfg.get_time("max_idle")
        self.max_use = ctx.cfg.get_int("max_use")
        self.use_count = 0
        self.report_use = True  # tell the master taken/available around each trigger
        self.queue: asyncio.Queue[bytes | None] | None = None
        self.tasks: list[asyncio.Task] = []
        self.fifo_fds: list[int] = []

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks = []
        loop = asyncio.get_running_loop()
        for fd in self.fifo_fds:
            loop.remove_reader(fd)
        self.fifo_fds = []
        self.queue.put_nowait(None)

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn = await accept_client(loop, sock)
            if conn is None:
                return
            try:
                data = await asyncio.wait_for(self._read_all(loop, conn), TRIGGER_READ_TIMEOUT)
            except (asyncio.TimeoutError, OSError):
                data = b""
            finally:
                conn.close()
            if data:
                self.queue.put_nowait(data)

    @staticmethod
    async def _read_all(loop, conn: socket.socket) -> bytes:
        conn.setblocking(False)
        data = b""
        while len(data) < TRIGGER_BUF_SIZE:
            chunk = await loop.sock_recv(conn, TRIGGER_BUF_SIZE - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def _fifo_readable(self, fd: int) -> None:
        try:
            data = os.read(fd, TRIGGER_BUF_SIZE)
        except BlockingIOError:
            return
        if data:
            self.queue.put_nowait(data)

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        self.queue = asyncio.Queue()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        self.ctx.on_master_gone = self.stop
        watch_master(loop, self.ctx)
        for item in self.listeners:
            if isinstance(item, int):
                loop.add_reader(item, self._fifo_readable, item)
                self.fifo_fds.append(item)
            else:
                self.tasks.append(asyncio.create_task(self._accept_loop(item)))
        if self.initial:
            await self._run_handler(self.initial, counted=False)
        while True:
            try:
                if self.max_idle > 0:
                    data = await asyncio.wait_for(self.queue.get(), self.max_idle)
                else:
                    data = await self.queue.get()
            except asyncio.TimeoutError:
                log.verbose("idle timeout -- exiting")
                break
            if data is None:
                break
            await self._run_handler(data)
            self.use_count += 1
            if self.use_count >= self.max_use:
                break
        self.stop()
        return 0

    async def _run_handler(self, data: bytes, counted: bool = True) -> None:
        if counted:
            self.ctx.report_used()
        report = self.report_use and counted and not is_wakeup_only(data)
        if report:
            self.ctx.report_taken()
        try:
            result = self.handler(data, self.ctx)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # noqa: BLE001 - a failed trigger is logged, not fatal
            log.warning("%s: %s: %s", self.ctx.service_name, type(exc).__name__, exc)
        finally:
            if report:
                self.ctx.report_available()


def run_trigger_server(
    service: str,
    handler: TriggerHandler,
    argv: list[str] | None = None,
    initial: bytes | None = None,
) -> NoReturn:
    """Run handler for each trigger on the master's listeners until told to stop.

    initial: a trigger the handler sees once at start (not counted as a use)."""
    ctx, listeners = start_service(service, argv)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    server = TriggerServer(ctx, handler, listeners, initial)
    drop_privileges_if_asked(ctx)
    try:
        status = loop.run_until_complete(server.serve())
    finally:
        loop.close()
    sys.exit(status)
