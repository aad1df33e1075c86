"""spawn.command - run one command on a client connection

SYNOPSIS
    from mta.spawn.command import run_on_connection
    result = await run_on_connection(["/usr/bin/policyd-spf"], conn_fd,
                                     uid=65534, gid=65534, env={"PATH": "/bin:/usr/bin"},
                                     time_limit=1000)
    result.status, result.signal, result.timed_out, result.exec_error

DESCRIPTION
    Starts the command directly (no shell) in a session of its own,
    from "/", with the connection's descriptor as its standard input
    and standard output and a pipe as its standard error. The
    descriptor is made blocking first: the command is an ordinary
    program that expects ordinary reads and writes.

    Each line the command writes to standard error is logged as a
    warning "command NAME: TEXT", at most STDERR_LINE_LIMIT bytes of it
    and STDERR_LINES lines per command; the rest is read and dropped so
    the command never blocks on it.

    The exit is seen through a pidfd (polling where there is none),
    without blocking the event loop. When time_limit seconds pass first,
    the command's process group is killed (SIGKILL) and result.timed_out
    is set. An exec failure is result.exec_error, the system's text.

SECURITY
    The caller decides uid and gid and refuses root; the child switches
    to them (and drops supplementary groups) before exec, when this
    process is root. Only descriptors 0, 1 and 2 reach the command. The
    command's stderr is untrusted text: control characters are replaced
    by the logger and its length is bounded here.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass

from mta import log
from mta.common.child_wait import kill_group, wait_exit, wait_fd

STDERR_LINE_LIMIT = 1000  # bytes of one stderr line that are logged
STDERR_LINES = 100  # stderr lines logged per command; the rest is dropped
STDERR_READ_SIZE = 65536  # bytes read from the stderr pipe at once


@dataclass
class SpawnResult:
    status: int | None = None  # exit status, when it exited
    signal: int | None = None  # the signal that ended it
    timed_out: bool = False
    exec_error: str = ""  # the command could not be started
    pid: int = 0  # the command's process id, once started


async def _log_stderr(fd: int, name: str) -> None:
    """Log the command's stderr line by line, bounded; read it to its end."""
    pending = b""
    logged = 0

    def emit(line: bytes) -> None:
        nonlocal logged
        if logged < STDERR_LINES and line.strip():
            logged += 1
            text = line[:STDERR_LINE_LIMIT].rstrip(b"\r").decode("utf-8", "replace")
            log.warning("command %s: %s", name, text)

    try:
        while True:
            try:
                data = os.read(fd, STDERR_READ_SIZE)
            except BlockingIOError:
                await wait_fd(fd)
                continue
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                emit(line)
            if len(pending) > STDERR_LINE_LIMIT:
                emit(pending)
                pending = b""
        if pending:
            emit(pending)
    finally:
        os.close(fd)


async def run_on_connection(
    argv: list[str],
    conn_fd: int,
    *,
    uid: int | None,
    gid: int | None,
    env: dict[str, str],
    time_limit: float,
) -> SpawnResult:
    """Run argv with conn_fd as stdin and stdout; see the module docstring."""
    result = SpawnResult()
    name = argv[0]
    err_r, err_w = os.pipe()
    kw: dict = {}
    if uid is not None and os.geteuid() == 0:
        kw = {"user": uid, "group": gid, "extra_groups": []}
    os.set_blocking(conn_fd, True)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=conn_fd,
            stdout=conn_fd,
            stderr=err_w,
            cwd="/",
            env=env,
            close_fds=True,
            start_new_session=True,
            **kw,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        os.close(err_r)
        os.close(err_w)
        result.exec_error = getattr(exc, "strerror", None) or str(exc)
        return result
    result.pid = proc.pid
    os.close(err_w)
    os.set_blocking(err_r, False)
    reader = asyncio.ensure_future(_log_stderr(err_r, name))
    exited = asyncio.ensure_future(wait_exit(proc))
    try:
        await asyncio.wait_for(asyncio.shield(exited), time_limit)
    except asyncio.TimeoutError:
        result.timed_out = True
        kill_group(proc)
    except BaseException:
        kill_group(proc)
        raise
    finally:
        code = await exited
        # grandchildren may hold stderr open after the command is gone
        try:
            await asyncio.wait_for(asyncio.shield(reader), 1.0)
        except asyncio.TimeoutError:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    if code < 0:
        result.signal = -code
    else:
        result.status = code
    return result


def report_result(result: SpawnResult, name: str) -> None:
    """Log an abnormal end of the command, as spawn(8) does."""
    if result.exec_error:
        log.warning("command %s: cannot execute: %s", name, result.exec_error)
        return
    if result.timed_out:
        log.warning("%s: process id %d: command time limit exceeded", name, result.pid)
    if result.signal is not None:
        log.warning("command %s killed by signal %d", name, result.signal)
    elif result.status:
        log.warning("command %s exit status %d", name, result.status)
