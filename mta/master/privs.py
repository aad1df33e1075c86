"""master.privs - look up mail_owner and give up root

SYNOPSIS
    from mta.master.privs import lookup_user, drop_privileges
    user = lookup_user(cfg.get("mail_owner"))    # User(name, uid, gid)
    drop_privileges(user)                         # only when running as root
    with effective_ids(uid, gid): ...             # for a while, when root

DESCRIPTION
    lookup_user() resolves an account name (or a numeric uid) to its
    uid and primary gid. drop_privileges() sets the group, the
    supplementary groups of the account and then the user, in that
    order, and verifies that root cannot be regained. effective_ids()
    sets only the effective gid and uid, for the files a block creates,
    and returns to root after it (a root command that writes queue
    files for mail_owner). running_as_root() tells whether the
    effective uid is 0.

    python_unreadable() names the directories of the running Python
    installation (the standard library, site-packages, the mta package
    and the rest of sys.path) that an account cannot read: a service
    that loads code after it became mail_owner fails there. It asks a
    child process that became that account, so permissions, groups and
    ACLs all count as they will for the service.

SECURITY
    Runs as root in the master and at the start of an unprivileged
    service; after drop_privileges() returns, the process has no way
    back to uid 0.
"""

from __future__ import annotations

import os
import pwd
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import mta


class PrivsError(Exception):
    """An account that does not exist, or a drop that did not take."""


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int


def running_as_root() -> bool:
    return os.geteuid() == 0


def lookup_user(name: str) -> User:
    """Return the User for an account name or numeric uid."""
    try:
        pw = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, OverflowError):
        raise PrivsError(f"unknown user: {name}") from None
    return User(pw.pw_name, pw.pw_uid, pw.pw_gid)


def drop_privileges(user: User) -> None:
    """Become user for good: gid, supplementary groups, then uid."""
    if not running_as_root():
        return
    os.setgid(user.gid)
    os.initgroups(user.name, user.gid)
    os.setuid(user.uid)
    if user.uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise PrivsError(f"could regain root after switching to {user.name}")


@contextmanager
def effective_ids(uid: int, gid: int) -> Iterator[None]:
    """Run the block with effective uid and gid set, when root; root again after."""
    if not running_as_root() or uid == 0:
        yield
        return
    old_gid = os.getegid()
    os.setegid(gid)
    try:
        os.seteuid(uid)
        try:
            yield
        finally:
            os.seteuid(0)
    finally:
        os.setegid(old_gid)


def python_paths() -> list[str]:
    """The directories this interpreter imports from, the mta package's first."""
    found = [os.path.dirname(os.path.abspath(mta.__file__)), os.path.dirname(os.__file__)]
    found += [os.path.abspath(p) for p in sys.path if p and os.path.isdir(p)]
    return list(dict.fromkeys(found))


def python_unreadable(user: User, paths: Iterable[str] | None = None) -> list[str]:
    """Which of paths (default python_paths()) user cannot list and enter.

    Only root can ask (it forks a child that becomes user); [] otherwise."""
    paths = list(python_paths() if paths is None else paths)
    if not running_as_root() or user.uid == 0 or not paths:
        return []
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        status = 1
        try:
            os.close(r)
            drop_privileges(user)
            bad = [p for p in paths if not os.access(p, os.R_OK | os.X_OK)]
            os.write(w, "\0".join(bad).encode("utf-8", "surrogateescape"))
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise PrivsError(f"cannot check what {user.name} may read")
    return data.decode("utf-8", "surrogateescape").split("\0") if data else []
