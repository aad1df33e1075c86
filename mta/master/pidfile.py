"""master.pidfile - master.pid: the lock that says the mail system runs

SYNOPSIS
    from mta.master.pidfile import PidLock, AlreadyRunning, running_pid
    lock = PidLock(path); lock.acquire()        # raises AlreadyRunning(pid)
    running_pid(path)                           # pid of the running master, or None
    lock.release()                              # removes the file

DESCRIPTION
    The master holds an exclusive flock(2) on queue_directory/pid/
    master.pid for its whole life and writes its pid into it, padded to
    ten columns as Postfix does. Any other process asks whether the
    mail system runs by trying a shared lock on the same file: when that
    fails, the master lives and the file names it. A lock, unlike a
    bare pid, cannot outlive its process, so a stale file never keeps
    the mail system from starting.

SECURITY
    Created by the master (root or the invoking user) with mode 0644
    in the pid directory, which only root may write.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

PID_READ_RETRY = 1.0  # seconds to wait for a new master to write its pid


class AlreadyRunning(Exception):
    """Another master holds the lock; args[0] is its pid (0 when unknown)."""


def _read_pid(fd: int) -> int:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else 0


class PidLock:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write our pid; raise AlreadyRunning when held."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            pid = 0
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                pid = _read_pid(fd)
                os.close(fd)
                raise AlreadyRunning(pid) from None
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, b"%10d\n" % os.getpid())
        self.fd = fd

    def release(self) -> None:
        """Remove the file, then drop the lock."""
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def running_pid(path: str) -> int | None:
    """Return the pid of the master that holds path, or None when none does."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
        else:
            return None
        deadline = time.monotonic() + PID_READ_RETRY
        pid = _read_pid(fd)
        while not pid and time.monotonic() < deadline:
            time.sleep(0.02)
            pid = _read_pid(fd)
        return pid or 0
    finally:
        os.close(fd)
