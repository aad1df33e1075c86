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
    who runs the program reads every reply. Either descriptor may be a
    pipe, a socket, a terminal, /dev/null or a regular file (see
    StdioTransport for how).

SECURITY
    Runs as the invoking user; the input is untrusted like any client's.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import sys
import threading

from mta import log

STDIO_READ_SIZE = 1 << 16  # bytes read from standard input at a time


class StdioTransport(asyncio.Transport):
    """The client on file descriptors 0 (input) and 1 (output), whatever they are.

    Standard output may be a pipe, a socket, a terminal, /dev/null or a
    regular file, which asyncio's pipe transports refuse (and epoll
    cannot watch). Replies are therefore written with plain blocking
    writes: this process serves one session, so waiting for its one
    reader costs nobody else anything. Standard input is read by a
    thread, for the same reason, and handed to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.loop = loop
        self.protocol = protocol
        self.closing = False
        self.reading = threading.Event()
        self.reading.set()
        self.reader = threading.Thread(target=self._read, name="stdin", daemon=True)

    def start(self) -> None:
        self.protocol.connection_made(self)
        self.reader.start()

    def _read(self) -> None:
        while True:
            self.reading.wait()
            try:
                data = os.read(0, STDIO_READ_SIZE)
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                data = b""
            try:
                self.loop.call_soon_threadsafe(self._deliver, data)
            except RuntimeError:
                return  # the loop is gone: the session is over
            if not data:
                return

    def _deliver(self, data: bytes) -> None:
        if self.closing:
            return
        if data:
            self.protocol.data_received(data)
        else:
            self.protocol.eof_received()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.closing:
            try:
                done = os.write(1, view)
            except BlockingIOError:
                select.select([], [1], [])  # a non-blocking descriptor we inherited
                continue
            except InterruptedError:
                continue
            except OSError:
                # the reader went away (EPIPE) or the disk is full: the
                # session cannot go on
                self.close()
                return
            view = view[done:]

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.reading.set()
        self.loop.call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        self.reading.clear()

    def resume_reading(self) -> None:
        self.reading.set()

    def get_extra_info(self, name, default=None):
        return default


async def _serve(cfg) -> int:
    from mta.postdrop import MaildropSubmitter
    from mta.smtpd.server import SmtpdServer
    from mta.smtpd.session import SmtpdSession

    server = SmtpdServer(cfg, cleanup=MaildropSubmitter(cfg), tls=False)  # no TLS on a pipe
    server.peername_lookup = False
    server.stand_alone = True
    server.proxy = None  # stand-alone mode queues itself, as Postfix's: no smtpd_proxy_filter
    # A program on a pipe writes its whole conversation at once; that is no
    # smuggling attempt, so pipelining rules do not apply here.
    server.forbid_unauth_pipelining = False
    # The user sees every reply on the pipe: no error notices to the postmaster.
    server.notify_mask = 0
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    session = SmtpdSession(server)
    server.on_session_end = lambda: done.done() or done.set_result(0)
    StdioTransport(loop, session).start()
    await done
    await asyncio.sleep(0)
    server.executor.shutdown()
    return 0


def serve_stdio(cfg) -> int:
    log.init("sendmail", cfg)
    sys.stdout.flush()
    return asyncio.run(_serve(cfg))
