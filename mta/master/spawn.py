"""master.spawn - start one service process

SYNOPSIS
    from mta.master.spawn import build_child_argv, spawn_child
    argv = build_child_argv(entry, "mta.proxymap", "/etc/mta", verbose=0, nsock=1)
    pid = spawn_child(argv, env, listen_fds=[7], status_fd=9, log_fd=1, stdin_fd=0)

DESCRIPTION
    A child runs as [python, "-m", MODULE, "-n", NAME, "-t", TYPE, "-c",
    CONFIG_DIR, ("-o", "name=value")..., ["-s", N], ["-u"], ["-v"...],
    ARGS...]: the service name and type, the configuration directory,
    the master.cf overrides, the listener count when there is more than
    one, "-u" when master.cf marks the service unprivileged (the child
    then becomes mail_owner once it has read its configuration, as
    Postfix's daemons do), then the arguments from master.cf.

    spawn_child() forks and, in the child, puts the listeners at 3 (and
    5, 6 ...), the status pipe at 4, the log descriptor at 1 and 2, and
    stdin at 0; closes every other descriptor, ignores SIGINT (the
    master decides when its children stop), moves to "/" and executes
    the interpreter. A failure before exec exits with status 127.

    child_env() adds MTA_SERVICE (name/type), MTA_PROGRAM (the master.cf
    command, for programs that several commands share), PYTHONSAFEPATH (the
    working directory never joins sys.path) and MTA_LOG_STDOUT when the
    log descriptor is a log file or the terminal.

SECURITY
    Runs in the master, possibly as root; the child inherits only the
    descriptors listed here. The interpreter and module path come from
    the master's own installation and from master.cf.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys

from mta.config.master_cf import ServiceEntry
from mta.master import master_proto as mp

SPAWN_HIGH_FD = 64  # scratch descriptors above this while arranging 0..N
SPAWN_EXEC_FAILED = 127  # exit status of a child that could not exec


def build_child_argv(
    entry: ServiceEntry,
    module: str,
    config_dir: str,
    verbose: int = 0,
    nsock: int = 1,
    python: str | None = None,
) -> list[str]:
    """Return the command line of a child of this service."""
    argv = [python or sys.executable, "-m", module]
    argv += ["-n", entry.name, "-t", entry.type, "-c", config_dir]
    for name, value in entry.overrides.items():
        argv += ["-o", f"{name}={value}"]
    if nsock > 1:
        argv += ["-s", str(nsock)]
    if entry.unpriv:
        argv.append("-u")
    argv += ["-v"] * verbose
    return argv + list(entry.args)


def child_env(entry: ServiceEntry, log_to_fd: bool, base: dict | None = None) -> dict[str, str]:
    """Return the environment of a child of this service."""
    env = dict(os.environ if base is None else base)
    env["MTA_SERVICE"] = entry.key
    env["MTA_PROGRAM"] = entry.command  # the master.cf command: lmtp runs mta.smtp
    env["PYTHONSAFEPATH"] = "1"
    if log_to_fd:
        env["MTA_LOG_STDOUT"] = "1"
    else:
        env.pop("MTA_LOG_STDOUT", None)
    return env


def spawn_child(
    argv: list[str],
    env: dict[str, str],
    listen_fds: list[int],
    status_fd: int,
    log_fd: int,
    stdin_fd: int,
) -> int:
    """Fork and exec a child with its descriptors in place; return its pid."""
    pid = os.fork()
    if pid:
        return pid
    try:  # the child, until exec
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        high = [
            fcntl.fcntl(fd, fcntl.F_DUPFD, SPAWN_HIGH_FD)
            for fd in [stdin_fd, log_fd, status_fd, *listen_fds]
        ]
        h_stdin, h_log, h_status, *h_listen = high
        os.dup2(h_stdin, 0)
        os.dup2(h_log, 1)
        os.dup2(h_log, 2)
        os.dup2(h_status, mp.MASTER_STATUS_FD)
        for fd, target in zip(h_listen, mp.listen_fds(len(h_listen)), strict=True):
            os.dup2(fd, target)
        last = mp.MASTER_EXTRA_LISTEN_FD + max(len(h_listen) - 1, 0)
        os.closerange(last, os.sysconf("SC_OPEN_MAX"))
        os.chdir("/")
        os.execve(argv[0], argv, env)
    except BaseException as exc:  # noqa: BLE001 - report and leave without cleanup
        try:
            os.write(2, f"exec {argv[0]} -m {argv[2]}: {exc}\n".encode(errors="replace"))
        finally:
            os._exit(SPAWN_EXEC_FAILED)
    raise AssertionError("not reached")
