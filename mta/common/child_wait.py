"""common.child_wait - wait for a command's pipes and exit on the event loop, kill its group

SYNOPSIS
    from mta.common.child_wait import kill_group, wait_exit, wait_fd
    await wait_fd(fd, writing=False)         # until fd is readable (or writable)
    status = await wait_exit(proc)           # subprocess.Popen's exit status
    kill_group(proc)                         # SIGKILL its session, else the process

DESCRIPTION
    What the pipe delivery agent and the spawn service both need around
    a command they started with start_new_session: waiting for a
    non-blocking descriptor without a thread, waiting for the exit
    through a pidfd (polling every 20 ms where the kernel has none), and
    killing the command together with everything it started.

SECURITY
    Acts only on the process and descriptors it is given.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

EXIT_POLL = 0.02  # seconds between exit checks without a pidfd


async def wait_fd(fd: int, writing: bool = False) -> None:
    """Until fd is readable (writing: writable)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    if writing:
        loop.add_writer(fd, ready)
    else:
        loop.add_reader(fd, ready)
    try:
        await fut
    finally:
        if writing:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def wait_exit(proc: subprocess.Popen) -> int:
    """The exit status of proc, waited for without blocking the loop."""
    pidfd = -1
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pass
    try:
        if pidfd >= 0:
            await wait_fd(pidfd)
        else:
            while proc.poll() is None:
                await asyncio.sleep(EXIT_POLL)
    finally:
        if pidfd >= 0:
            os.close(pidfd)
    return proc.wait()


def kill_group(proc: subprocess.Popen) -> None:
    """Kill the command and everything it started in its session."""
    for target in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
        try:
            target()
            return
        except (ProcessLookupError, PermissionError):
            continue
