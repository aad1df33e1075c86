"""local.lock - mailbox locking: fcntl, flock and dot-lock, as Postfix does them

SYNOPSIS
    from mta.local.lock import LockError, LockSettings, mailbox_locked
    settings = LockSettings.from_config(cfg, "mailbox_delivery_lock")
    with mailbox_locked(path, fd, settings):
        ...append to the mailbox...

DESCRIPTION
    Mail readers and delivery agents agree on a mailbox by locking it.
    The styles, named as in mailbox_delivery_lock and
    virtual_mailbox_lock, are applied in the order given:

    fcntl   an exclusive POSIX record lock on the whole open file
            (fcntl(F_SETLK)), what most readers use on Linux;
    flock   an exclusive BSD flock() lock on the open file;
    dotlock the file PATH.lock created exclusively next to the
            mailbox; one older than stale_lock_time is taken to be left
            by a dead process and removed.

    Each try that finds the lock taken waits deliver_lock_delay and
    tries again, up to deliver_lock_attempts times; then LockError
    (a temporary failure: the caller defers). Locks are released in the
    reverse order when the block ends, the dot-lock by removing it.
    "mta lock" (postlock) uses the same code.

SECURITY
    Creates PATH.lock in the mailbox directory with the caller's
    privileges; never follows a lock file that is a symbolic link (it
    is created with O_EXCL).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

LOCK_FCNTL = "fcntl"  # POSIX record lock on the open file
LOCK_FLOCK = "flock"  # BSD flock() on the open file
LOCK_DOTLOCK = "dotlock"  # PATH.lock created exclusively
LOCK_STYLES = (LOCK_FCNTL, LOCK_FLOCK, LOCK_DOTLOCK)
DOTLOCK_SUFFIX = ".lock"


class LockError(Exception):
    """The mailbox could not be locked (temporary; defer)."""


@dataclass
class LockSettings:
    styles: tuple[str, ...] = (LOCK_FCNTL, LOCK_DOTLOCK)
    attempts: int = 20
    delay: float = 1.0
    stale: float = 500.0

    @classmethod
    def from_config(cls, cfg, param: str = "mailbox_delivery_lock") -> LockSettings:
        return cls(
            styles=parse_styles(cfg.get_list(param), param),
            attempts=max(1, cfg.get_int("deliver_lock_attempts")),
            delay=float(cfg.get_time("deliver_lock_delay")),
            stale=float(cfg.get_time("stale_lock_time")),
        )


def parse_styles(names: list[str], what: str = "lock style") -> tuple[str, ...]:
    """Validate lock style names; ValueError names the bad one."""
    out = []
    for name in names:
        name = name.strip().lower()
        if name not in LOCK_STYLES:
            raise ValueError(f'{what}: unknown lock style "{name}" (use fcntl, flock, dotlock)')
        if name not in out:
            out.append(name)
    return tuple(out)


def _try_fd(fd: int, style: str) -> bool:
    try:
        if style == LOCK_FCNTL:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise LockError(f"cannot lock {style}: {exc.strerror or exc}") from None


def _unlock_fd(fd: int, style: str) -> None:
    try:
        if style == LOCK_FCNTL:
            fcntl.lockf(fd, fcntl.LOCK_UN)
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        pass


def _try_dotlock(lock_path: str, stale: float) -> bool:
    try:
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0)
    except FileExistsError:
        try:
            st = os.lstat(lock_path)
            if stale > 0 and time.time() - st.st_mtime > stale:
                os.unlink(lock_path)  # left by a dead process
        except OSError:
            pass
        return False
    except OSError as exc:
        raise LockError(f"cannot create file exclusively: {lock_path}: {exc.strerror}") from None
    os.close(fd)
    return True


def _acquire(style: str, path: str, fd: int, settings: LockSettings) -> None:
    for attempt in range(settings.attempts):
        if style == LOCK_DOTLOCK:
            got = _try_dotlock(path + DOTLOCK_SUFFIX, settings.stale)
        else:
            got = _try_fd(fd, style)
        if got:
            return
        if attempt + 1 < settings.attempts:
            time.sleep(settings.delay)
    what = f"{path}{DOTLOCK_SUFFIX}" if style == LOCK_DOTLOCK else path
    raise LockError(
        f"unable to lock for exclusive access: {what}: resource temporarily unavailable"
    )


def _release(style: str, path: str, fd: int) -> None:
    if style == LOCK_DOTLOCK:
        with contextlib.suppress(OSError):
            os.unlink(path + DOTLOCK_SUFFIX)
    else:
        _unlock_fd(fd, style)


@contextlib.contextmanager
def mailbox_locked(path: str, fd: int, settings: LockSettings) -> Iterator[None]:
    """Hold every lock style of settings on path (open as fd) for the block."""
    held: list[str] = []
    try:
        for style in settings.styles:
            _acquire(style, path, fd, settings)
            held.append(style)
        yield
    finally:
        for style in reversed(held):
            _release(style, path, fd)
