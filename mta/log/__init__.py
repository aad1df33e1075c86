"""mta.log - log lines in Postfix's maillog form

SYNOPSIS
    from mta import log
    log.init("proxymap", cfg)                 # once per process
    log.info("connect from %s", peer)         # mta/proxymap[1234]: connect from ...
    log.warning("table %s: %s", name, why)    # ... warning: table ...

DESCRIPTION
    Each event is one line: "Mon DD HH:MM:SS host SYSLOG_NAME/SERVICE[PID]: text",
    the form tools that read Postfix logs expect. Lines go to
    maillog_file when it is set (appended with O_APPEND, one write per
    line, so processes never interleave within a line), to stdout as
    well when init(..., stdout=True) or MTA_LOG_STDOUT=1 (start-fg and
    the services it runs), so the maillog is whole in the foreground
    too; a process whose stdout already is the maillog (the services of
    a daemon master) writes each line once. With neither, lines go to
    syslog through /dev/log with facility syslog_facility. warning(), error(), fatal()
    and panic() prefix "warning: " and so on, as Postfix does; fatal()
    exits the process with status 1 after logging.

SECURITY
    Text may contain untrusted data (client names, addresses): control
    characters are replaced by "?" so one event is always one line.
"""

from __future__ import annotations

import atexit
import os
import queue
import socket
import sys
import threading
import time
from typing import NoReturn

_state: dict = {
    "tag": "mta",
    "host": "localhost",
    "fd": None,  # maillog_file descriptor
    "stdout": False,
    "syslog": None,  # socket to /dev/log
    "facility": 2,  # mail
    "verbose": 0,
}

FACILITIES = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}
_CTRL = {c: "?" for c in range(32) if c != 9}
_CTRL[127] = "?"


def init(service: str, cfg=None, *, stdout: bool = False, verbose: int = 0) -> None:
    """Set the tag and destination for this process's log lines."""
    name = cfg.get("syslog_name") if cfg is not None else "mta"
    _state["tag"] = f"{name}/{service}" if service else name
    _state["host"] = (cfg.get("myhostname") if cfg is not None else socket.gethostname()).split(
        "."
    )[0]
    _state["verbose"] = verbose
    if _state["fd"] is not None:
        os.close(_state["fd"])
        _state["fd"] = None
    path = cfg.get("maillog_file") if cfg is not None else ""
    _state["stdout"] = stdout or os.environ.get("MTA_LOG_STDOUT") == "1"
    if path and not (_state["stdout"] and _stdout_is(path)):
        try:
            _state["fd"] = os.open(
                path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
            )
        except OSError as exc:
            if not _state["stdout"]:
                raise
            # the foreground keeps its log on stdout rather than not starting
            warning("open %s: %s; logging to stdout only", path, exc.strerror)
    elif not path and not _state["stdout"]:
        fac = cfg.get("syslog_facility") if cfg is not None else "mail"
        _state["facility"] = FACILITIES.get(fac, 2)


def _stdout_is(path: str) -> bool:
    """True when standard output already is the file at path (a daemon master's child)."""
    try:
        out, there = os.fstat(1), os.stat(path)
    except OSError:
        return False
    return (out.st_dev, out.st_ino) == (there.st_dev, there.st_ino)


_stamp = [-1, ""]  # the last second formatted, and its text


def format_line(text: str, when: float | None = None) -> str:
    second = int(time.time() if when is None else when)
    if second != _stamp[0]:
        _stamp[:] = [second, time.strftime("%b %d %H:%M:%S", time.localtime(second))]
    stamp = _stamp[1]
    return f"{stamp} {_state['host']} {_state['tag']}[{os.getpid()}]: {text.translate(_CTRL)}\n"


class _Background:
    """A thread that writes queued log lines, several per write when they pile up."""

    def __init__(self, fds: list[int]) -> None:
        self.fds = fds
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self.run, name="log", daemon=True)
        self.thread.start()

    def run(self) -> None:
        while True:
            item = self.queue.get()
            batch = []
            while item is not None:
                batch.append(item)
                if len(batch) >= BACKGROUND_BATCH:
                    break
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    item = b""
                    break
            _write_all(self.fds, b"".join(batch))
            if item is None:
                return

    def put(self, data: bytes) -> None:
        self.queue.put(data)

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join(5)


BACKGROUND_BATCH = 256  # most lines joined into one write


class _LoopBuffer:
    """Lines logged on an event loop's thread, written once per loop iteration.

    A busy service logs several lines per message; joining them into one
    write per turn of the loop costs far less than a write (or a hand-off
    to a writer thread) per line. Lines from other threads are written at
    once, whole.
    """

    def __init__(self, fds: list[int], loop) -> None:
        self.fds = fds
        self.loop = loop
        self.thread = threading.get_ident()
        self.lines: list[bytes] = []
        self.scheduled = False

    def put(self, data: bytes) -> None:
        if threading.get_ident() != self.thread or self.loop.is_closed():
            _write_all(self.fds, data)
            return
        self.lines.append(data)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        if self.lines:
            data = b"".join(self.lines)
            self.lines.clear()
            _write_all(self.fds, data)

    def stop(self) -> None:
        self.flush()


def _write_all(fds: list[int], data: bytes) -> None:
    for fd in fds:
        rest = data
        while rest:
            try:
                n = os.write(fd, rest)
            except OSError:
                break
            rest = rest[n:]


def start_background() -> None:
    """Keep the log from holding up an event loop.

    Called on a running event loop, lines logged on the loop's thread are
    joined and written once per loop iteration; otherwise a writer thread
    takes them. Each line is still written whole. flush() (also run at
    exit) writes out whatever is pending.
    """
    if _state.get("background") is not None:
        return
    fds = [] if _state["fd"] is None else [_state["fd"]]
    if _state["stdout"]:
        sys.stdout.flush()
        fds.append(sys.stdout.fileno())
    if not fds:
        return  # syslog: datagrams to /dev/log do not wait on a disk
    try:
        import asyncio

        loop = asyncio.get_running_loop()
    except RuntimeError:
        _state["background"] = _Background(fds)
    else:
        _state["background"] = _LoopBuffer(fds, loop)
    atexit.register(flush)


def flush() -> None:
    """Write out every queued log line; background writing stops."""
    writer = _state.get("background")
    if writer is not None:
        _state["background"] = None
        writer.stop()


def _emit(text: str, severity: int) -> None:
    writer = _state.get("background")
    if writer is not None:
        writer.put(format_line(text).encode("utf-8", "replace"))
        return
    line = format_line(text)
    written = False
    if _state["fd"] is not None:
        try:
            os.write(_state["fd"], line.encode("utf-8", "replace"))
            written = True
        except OSError:
            pass
    if _state["stdout"] or (_state["fd"] is not None and not written):
        sys.stdout.write(line)
        sys.stdout.flush()
    elif not written:
        _syslog(text, severity)


def _syslog(text: str, severity: int) -> None:
    sock = _state["syslog"]
    line = f"<{_state['facility'] * 8 + severity}>{time.strftime('%b %d %H:%M:%S')} {_state['tag']}[{os.getpid()}]: {text.translate(_CTRL)}"
    for _ in range(2):
        try:
            if sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.connect("/dev/log")
                _state["syslog"] = sock
            sock.send(line.encode("utf-8", "replace"))
            return
        except OSError:
            _state["syslog"] = sock = None
    sys.stderr.write(line + "\n")


def _fmt(msg: str, args: tuple) -> str:
    return msg % args if args else msg


def info(msg: str, *args) -> None:
    _emit(_fmt(msg, args), 6)


def verbose(msg: str, *args) -> None:
    if _state["verbose"]:
        _emit(_fmt(msg, args), 7)


def warning(msg: str, *args) -> None:
    _emit("warning: " + _fmt(msg, args), 4)


def error(msg: str, *args) -> None:
    _emit("error: " + _fmt(msg, args), 3)


def fatal(msg: str, *args) -> NoReturn:
    _emit("fatal: " + _fmt(msg, args), 2)
    sys.exit(1)


def panic(msg: str, *args) -> NoReturn:
    _emit("panic: " + _fmt(msg, args), 0)
    os._exit(2)
