"""pipe.command - run one external command with the message on its standard input

SYNOPSIS
    from mta.pipe.command import run_command, CommandResult
    result = await run_command(["/usr/bin/script", "-f", "a@x"], chunks,
                               uid=65534, gid=65534, cwd="/", env={"PATH": "/usr/bin:/bin"},
                               time_limit=1000)
    result.status, result.signal, result.timed_out, result.output, result.exec_error

DESCRIPTION
    The command is started directly (no shell) in a session of its own,
    with standard input on a pipe that receives the byte chunks, and
    standard output and standard error together on a second pipe. Up to
    output_limit bytes of that output are kept; the rest is read and
    dropped, so a chatty command never blocks. A command that stops
    reading its input early is fine: the rest of the message is dropped
    and its exit status decides.

    Everything runs on the event loop without blocking it: the pipes
    are non-blocking descriptors watched with add_reader/add_writer and
    the exit is seen through a pidfd (or by polling where pidfd_open
    does not exist). This works the same under asyncio's and uvloop's
    loops; the uid, gid and supplementary groups are switched by
    subprocess.Popen in the child before exec.

    When time_limit seconds pass first, the command's whole process
    group is killed (SIGKILL) and the result says timed_out.

    An exec failure (no such file, permission denied) is not an
    exception: result.exec_error holds the system's text.

SECURITY
    Runs with the privileges of the pipe process (often root) until the
    child switches to uid/gid; the caller refuses uid 0. Arguments are
    passed as a vector and never parsed by a shell. The environment is
    exactly the env given.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from mta.common.child_wait import kill_group, wait_exit, wait_fd

OUTPUT_LIMIT = 2048  # bytes of command output kept for the reason text


@dataclass
class CommandResult:
    status: int | None = None  # exit status, when it exited
    signal: int | None = None  # the signal that ended it
    timed_out: bool = False
    output: bytes = b""  # the first output_limit bytes of stdout + stderr
    exec_error: str = ""  # the command could not be started


async def _feed(fd: int, chunks: Iterable[bytes]) -> None:
    """Write the chunks to fd, then close it; a reader that went away ends it quietly."""
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                try:
                    n = os.write(fd, view)
                except BlockingIOError:
                    await wait_fd(fd, True)
                    continue
                view = view[n:]
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        os.close(fd)


async def _collect(fd: int, limit: int) -> bytes:
    """Read fd to its end; keep the first limit bytes."""
    kept = bytearray()
    try:
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                await wait_fd(fd, False)
                continue
            if not data:
                return bytes(kept)
            if len(kept) < limit:
                kept += data[: limit - len(kept)]
    finally:
        os.close(fd)


async def run_command(
    argv: list[str],
    chunks: Iterable[bytes],
    *,
    uid: int | None = None,
    gid: int | None = None,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    time_limit: float = 1000.0,
    output_limit: int = OUTPUT_LIMIT,
) -> CommandResult:
    """Run argv with the chunks on its stdin; see the module docstring."""
    result = CommandResult()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    kw: dict = {}
    if uid is not None and os.geteuid() == 0:
        kw = {"user": uid, "group": gid, "extra_groups": []}
    try:
        proc = subprocess.Popen(
            argv,
            stdin=in_r,
            stdout=out_w,
            stderr=out_w,
            cwd=cwd,
            env=env,
            close_fds=True,
            start_new_session=True,
            **kw,
        )
    except OSError as exc:
        for fd in (in_r, in_w, out_r, out_w):
            os.close(fd)
        result.exec_error = exc.strerror or str(exc)
        return result
    os.close(in_r)
    os.close(out_w)
    os.set_blocking(in_w, False)
    os.set_blocking(out_r, False)
    feed = asyncio.ensure_future(_feed(in_w, chunks))
    collect = asyncio.ensure_future(_collect(out_r, output_limit))
    exited = asyncio.ensure_future(wait_exit(proc))
    try:
        await asyncio.wait_for(asyncio.gather(feed, collect, exited), time_limit)
    except asyncio.TimeoutError:
        result.timed_out = True
    except BaseException:
        kill_group(proc)
        raise
    finally:
        if not exited.done() or result.timed_out:
            kill_group(proc)
        for task in (feed, collect):
            if not task.done():
                task.cancel()
        await asyncio.gather(feed, collect, return_exceptions=True)
    if result.timed_out:
        result.output = b""
        code = await wait_exit(proc)
    else:
        code = exited.result()
        result.output = collect.result()
    if code < 0:
        result.signal = -code
    else:
        result.status = code
    return result
