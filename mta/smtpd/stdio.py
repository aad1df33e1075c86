"""smtpd.stdio - an smtpd session on standard input and output (sendmail -bs)

SYNOPSIS
    from mta.smtpd.stdio import serve_stdio
    status = serve_stdio(cfg)

DESCRIPTION
    Runs the ordinary SmtpdSession with the client on file descriptors
    0 and 1, as "sendmail -bs" does for programs that speak SMTP to a
    local pipe. The client counts as 127.0.0.1 for the access checks,
    and messages go to maildrop/ through mta.postdrop instead of
    straight to cleanup, so this works while the mail system is stopped.
    No notify_classes notices are sent about these sessions: the user
    who runs the program reads every reply.

SECURITY
    Runs as the invoking user; the input is untrusted like any client's.
"""

from __future__ import annotations

import asyncio
import os
import sys

from mta import log


class StdioTransport(asyncio.Transport):
    """One transport over a read pipe and a write pipe."""

    def __init__(self, reader: asyncio.ReadTransport, writer: asyncio.WriteTransport) -> None:
        super().__init__()
        self.reader = reader
        self.writer = writer

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def is_closing(self) -> bool:
        return self.writer.is_closing()

    def close(self) -> None:
        self.reader.close()
        self.writer.close()

    def abort(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        self.reader.pause_reading()

    def resume_reading(self) -> None:
        self.reader.resume_reading()

    def get_extra_info(self, name, default=None):
        return default


async def _serve(cfg) -> int:
    from mta.postdrop import MaildropSubmitter
    from mta.smtpd.server import SmtpdServer
    from mta.smtpd.session import SmtpdSession

    server = SmtpdServer(cfg, cleanup=MaildropSubmitter(cfg))
    server.peername_lookup = False
    # A program on a pipe writes its whole conversation at once; that is no
    # smuggling attempt, so pipelining rules do not apply here.
    server.forbid_unauth_pipelining = False
    # The user sees every reply on the pipe: no error notices to the postmaster.
    server.notify_mask = 0
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    session = SmtpdSession(server)

    class Reader(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            session.data_received(data)

        def eof_received(self) -> bool:
            session.eof_received()
            return True

        def connection_lost(self, exc) -> None:
            session.connection_lost(exc)

    class Writer(asyncio.BaseProtocol):
        pass

    read_t, _ = await loop.connect_read_pipe(Reader, os.fdopen(0, "rb", buffering=0))
    write_t, _ = await loop.connect_write_pipe(Writer, os.fdopen(1, "wb", buffering=0))
    server.on_session_end = lambda: done.done() or done.set_result(0)
    session.connection_made(StdioTransport(read_t, write_t))
    await done
    await asyncio.sleep(0)
    server.executor.shutdown()
    return 0


def serve_stdio(cfg) -> int:
    log.init("sendmail", cfg)
    sys.stdout.flush()
    return asyncio.run(_serve(cfg))
