"""spawn.server - the spawn service process: one command per accepted connection

SYNOPSIS
    from mta.spawn.server import run_spawn
    run_spawn()                        # python -m mta.spawn, started by the master

DESCRIPTION
    A MultiServer (mta.master.multi_server) that serves one client at a
    time and hands each accepted socket, untouched, to the command of
    the service (mta.spawn.command): no event-loop transport is built on
    it, so no byte of the client's request is read by this process.

    At start it parses the master.cf attributes (mta.spawn), resolves
    user= and logs one fatal line when they are unusable. Each
    connection runs the command under ${service}_time_limit; abnormal
    ends are logged (command NAME exit status N, command NAME killed by
    signal N, NAME: process id PID: command time limit exceeded).

SECURITY
    See mta.spawn. The process stays root when started so (it needs it
    to switch to user=) and never talks to the client.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from typing import NoReturn

from mta import log
from mta.master.mail_server import ServiceContext, new_event_loop, start_service
from mta.master.multi_server import MultiServer
from mta.master.privs import running_as_root
from mta.spawn import (
    SpawnAttrs,
    SpawnConfigError,
    command_account,
    command_environment,
    command_time_limit,
    parse_spawn_args,
)
from mta.spawn.command import report_result, run_on_connection

SPAWN_CLIENTS = 1  # commands one spawn process runs at a time, as spawn(8)


class SpawnServer(MultiServer):
    """Accept as MultiServer does; give each connection to a command."""

    def __init__(self, ctx: ServiceContext, listeners: list, attrs: SpawnAttrs, account) -> None:
        super().__init__(ctx, _unused_handler, listeners, max_clients=SPAWN_CLIENTS)
        self.attrs = attrs
        self.uid, self.gid = account

    async def _serve(self, conn: socket.socket) -> None:
        try:
            cfg = self.ctx.cfg
            result = await run_on_connection(
                self.attrs.argv,
                conn.fileno(),
                uid=self.uid,
                gid=self.gid,
                env=command_environment(cfg),
                time_limit=command_time_limit(cfg, self.ctx.service_name),
            )
            report_result(result, self.attrs.argv[0])
        except Exception as exc:  # noqa: BLE001 - one client's failure is logged, not fatal
            log.warning("%s: %s: %s", self.ctx.service_name, type(exc).__name__, exc)
        finally:
            conn.close()
            self._client_done()


async def _unused_handler(reader, writer, ctx) -> None:  # SpawnServer serves sockets itself
    raise NotImplementedError


def spawn_account(ctx: ServiceContext, attrs: SpawnAttrs) -> tuple[int | None, int | None]:
    """(uid, gid) the command runs as; (None, None) when not root (runs as ourselves)."""
    uid, gid = command_account(attrs, ctx.cfg.get("mail_owner"))
    if not running_as_root():
        return None, None
    if ctx.unpriv:
        raise SpawnConfigError(
            f"service {ctx.service_name}: spawn must run with unprivileged=n in master.cf "
            f"to run its command as user={attrs.user}"
        )
    return uid, gid


def run_spawn(argv: list[str] | None = None) -> NoReturn:
    """Serve the master's listeners until told to stop; then exit."""
    ctx, listeners = start_service("spawn", argv)
    try:
        attrs = parse_spawn_args(ctx.args)
        account = spawn_account(ctx, attrs)
        command_time_limit(ctx.cfg, ctx.service_name)
    except SpawnConfigError as exc:
        log.fatal("%s", exc)
    if account[0] is None and os.geteuid() != 0:
        log.verbose("not running as root: the command runs as uid %d", os.geteuid())
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    server = SpawnServer(ctx, listeners, attrs, account)
    try:
        status = loop.run_until_complete(server.serve())
    finally:
        loop.close()
    sys.exit(status)
