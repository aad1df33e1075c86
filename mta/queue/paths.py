"""queue.paths - names and modes of the queue tree under queue_directory

SYNOPSIS
    from mta.queue import paths
    for name in paths.QUEUE_NAMES: ...
    paths.QUEUE_DIR_MODES["maildrop"]          # 0o730
    paths.service_socket_path(queue_dir, "proxymap", private=True)
    paths.master_pid_path(cfg)

DESCRIPTION
    The directories Postfix keeps under its queue directory, with the
    same names and permission bits: the message queues (maildrop,
    incoming, active, deferred, hold, corrupt), the per-message logs
    (bounce, defer, trace), fast flush logs (flush), saved copies
    (saved), the service sockets (private, public) and the pid files
    (pid). Every directory except pid belongs to mail_owner; pid
    belongs to root, as the master writes it.

SECURITY
    Static data and path arithmetic; nothing here touches the disk.
"""

from __future__ import annotations

import os

QUEUE_MAILDROP = "maildrop"  # locally posted mail, written by postdrop
QUEUE_INCOMING = "incoming"  # new mail, complete, not yet seen by qmgr
QUEUE_ACTIVE = "active"  # mail the queue manager is delivering
QUEUE_DEFERRED = "deferred"  # mail waiting for a retry
QUEUE_HOLD = "hold"  # mail held by the administrator or a policy
QUEUE_CORRUPT = "corrupt"  # damaged queue files, kept for inspection
QUEUE_BOUNCE = "bounce"  # per-message logs of undeliverable recipients
QUEUE_DEFER = "defer"  # per-message logs of delayed recipients
QUEUE_TRACE = "trace"  # per-message delivery logs for notifications
QUEUE_FLUSH = "flush"  # fast flush logs, one per destination
QUEUE_SAVED = "saved"  # copies saved by the postsuper command
QUEUE_PRIVATE = "private"  # sockets of services for mail system programs only
QUEUE_PUBLIC = "public"  # sockets of services for local users (postdrop group)
QUEUE_PID = "pid"  # pid files; master.pid is the master's lock

# the directories that hold messages or per-message logs, in Postfix's order
QUEUE_NAMES: tuple[str, ...] = (
    QUEUE_MAILDROP,
    QUEUE_INCOMING,
    QUEUE_ACTIVE,
    QUEUE_DEFERRED,
    QUEUE_HOLD,
    QUEUE_CORRUPT,
    QUEUE_BOUNCE,
    QUEUE_DEFER,
    QUEUE_TRACE,
    QUEUE_FLUSH,
    QUEUE_SAVED,
)

# every directory "mta check" creates, and its permission bits
QUEUE_DIR_MODES: dict[str, int] = {
    QUEUE_MAILDROP: 0o730,  # group may drop files in, nobody else may list
    **{name: 0o700 for name in QUEUE_NAMES if name != QUEUE_MAILDROP},
    QUEUE_PRIVATE: 0o700,  # mail_owner only
    QUEUE_PUBLIC: 0o710,  # mail_owner, and the group may reach the sockets
    QUEUE_PID: 0o755,  # root's; readable so "mta status" works for anyone
}

QUEUE_ROOT_OWNED: frozenset[str] = frozenset({QUEUE_PID})  # directories root keeps
QUEUE_DIR_TOP_MODE = 0o755  # queue_directory itself, when mta creates it
DATA_DIR_MODE = 0o700  # data_directory, owned by mail_owner

MASTER_PID_FILE = "master.pid"  # name of the master's pid and lock file
SOCKET_MODE_PRIVATE = 0o600  # unix listeners in private/
SOCKET_MODE_PUBLIC = 0o666  # unix listeners in public/
FIFO_MODE_PRIVATE = 0o600  # fifo listeners in private/
FIFO_MODE_PUBLIC = 0o622  # fifo listeners in public/: anyone may write a trigger


def service_socket_path(queue_dir: str, name: str, private: bool) -> str:
    """Return the path of a unix or fifo service: private/NAME or public/NAME."""
    return os.path.join(queue_dir, QUEUE_PRIVATE if private else QUEUE_PUBLIC, name)


def pid_directory(cfg) -> str:
    """Return the pid directory: process_id_directory under queue_directory."""
    return os.path.join(cfg.get("queue_directory"), cfg.get("process_id_directory") or QUEUE_PID)


def master_pid_path(cfg) -> str:
    """Return the path of master.pid for this configuration."""
    return os.path.join(pid_directory(cfg), MASTER_PID_FILE)
