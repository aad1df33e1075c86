"""common.mail_flow - slow intake down when delivery falls behind (in_flow_delay)

SYNOPSIS
    from mta.common.mail_flow import FlowTokens, FlowGate
    tokens = FlowTokens(queue_dir)       # qmgr
    tokens.put(n)                         # n messages taken into the active queue
    gate = FlowGate(queue_dir)            # smtpd (once per process)
    waited = await gate.take(in_flow_delay)
    gate.take_blocking(in_flow_delay)     # pickup, which has no event loop

DESCRIPTION
    Tokens are bytes in a named pipe, private/flow. qmgr puts one token
    for every message it moves from incoming/ into the active queue
    (and a reserve of FLOW_RESERVE when it starts). Before it accepts
    the content of a message, smtpd takes one token; when none is there
    it waits until one arrives or in_flow_delay has passed, and then
    goes on either way. So while qmgr keeps up nobody waits, and when
    intake outruns delivery each new message pays up to in_flow_delay,
    as with Postfix's in_flow_delay.

    The pipe holds at most its buffer (64 KiB) of tokens; a full pipe
    means plenty, and more are dropped. When the pipe does not exist
    (qmgr has never run) or cannot be opened, nobody waits.

SECURITY
    The pipe is mail_owner's, mode 0600, under private/. Its content is
    counted, never interpreted.
"""

from __future__ import annotations

import asyncio
import os
import select
import stat
import time

from mta.queue.paths import service_socket_path

FLOW_NAME = "flow"  # private/flow
FLOW_RESERVE = 64  # tokens qmgr puts when it starts
FLOW_CHUNK = 4096  # most tokens written at once


def flow_path(queue_dir: str) -> str:
    return service_socket_path(queue_dir, FLOW_NAME, private=True)


class FlowTokens:
    """qmgr's end: make the pipe and put tokens in it."""

    def __init__(self, queue_dir: str) -> None:
        self.path = flow_path(queue_dir)
        self.fd = -1
        try:
            if not stat.S_ISFIFO(os.stat(self.path).st_mode):
                os.unlink(self.path)
                raise FileNotFoundError
        except FileNotFoundError:
            try:
                os.mkfifo(self.path, 0o600)
            except FileExistsError:
                pass
            except OSError:
                return
        except OSError:
            return
        try:
            # read-write, so neither end ever blocks on open and the pipe
            # keeps its tokens while no reader has it open
            self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            self.fd = -1

    def put(self, n: int) -> None:
        while n > 0 and self.fd >= 0:
            chunk = min(n, FLOW_CHUNK)
            try:
                os.write(self.fd, b"t" * chunk)
            except BlockingIOError:
                return  # full: tokens enough
            except OSError:
                return
            n -= chunk

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class FlowGate:
    """smtpd's end: take one token per message, waiting a bounded time for it."""

    def __init__(self, queue_dir: str) -> None:
        self.path = flow_path(queue_dir)
        self.fd = -1
        self.tried = 0.0
        self.waiters: list[asyncio.Future] = []
        self.reading = False

    def _open(self) -> bool:
        if self.fd >= 0:
            return True
        now = time.monotonic()
        if now - self.tried < 1.0:
            return False
        self.tried = now
        try:
            if not stat.S_ISFIFO(os.stat(self.path).st_mode):
                return False
            self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return False
        return True

    def try_take(self) -> bool | None:
        """True: got a token; False: none there; None: no flow control at all."""
        if not self._open():
            return None
        try:
            data = os.read(self.fd, 1)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if data:
            return True
        # end of file: no writer, qmgr is gone; look again later
        self._stop_reading()
        os.close(self.fd)
        self.fd = -1
        return None

    def _wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        self._stop_reading()

    def _stop_reading(self) -> None:
        if self.reading:
            self.reading = False
            try:
                asyncio.get_running_loop().remove_reader(self.fd)
            except (RuntimeError, ValueError, OSError):
                pass

    def take_blocking(self, delay: float) -> float:
        """take() for a process without an event loop (pickup)."""
        if delay <= 0:
            return 0.0
        got = self.try_take()
        if got is None or got:
            return 0.0
        start = time.monotonic()
        deadline = start + delay
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return time.monotonic() - start
            select.select([self.fd], [], [], left)
            got = self.try_take()
            if got is None or got:
                return time.monotonic() - start

    async def take(self, delay: float) -> float:
        """Take a token, waiting up to delay seconds; return the seconds waited."""
        if delay <= 0:
            return 0.0
        got = self.try_take()
        if got is None or got:
            return 0.0
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        deadline = start + delay
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return time.monotonic() - start
            ready = loop.create_future()
            self.waiters.append(ready)
            if not self.reading:
                loop.add_reader(self.fd, self._wake)
                self.reading = True
            try:
                await asyncio.wait_for(ready, left)
            except asyncio.TimeoutError:
                pass
            finally:
                if ready in self.waiters:
                    self.waiters.remove(ready)
                if not self.waiters:
                    self._stop_reading()
            got = self.try_take()
            if got is None or got:
                return time.monotonic() - start
