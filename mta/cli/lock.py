"""cli.lock - lock a mailbox and run a command (postlock)

SYNOPSIS
    mta lock [-c CONFIG_DIR] [-l LOCK_STYLE] [-v] FILE COMMAND [ARGS...]

DESCRIPTION
    As postlock(1): FILE (a relative name is taken from the current
    directory, as every other command takes it, not from the instance
    directory) is opened for appending (created 0600 when missing) and
    locked the way the local delivery agent locks a
    mailbox (mailbox_delivery_lock, or the styles given with -l, comma
    separated: fcntl, flock, dotlock), with deliver_lock_attempts tries
    deliver_lock_delay apart and stale_lock_time for dot-locks; then
    COMMAND runs directly, without a shell, and the locks are released
    when it ends. The exit status is the command's; 75 (EX_TEMPFAIL)
    when the file cannot be opened or locked or the command cannot be
    started, or when it is killed by a signal; 64 (EX_USAGE) for a
    command-line problem.

SECURITY
    Runs with the invoker's privileges; opens only FILE and FILE.lock.

SEE ALSO
    postlock(1), mta/local/lock.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from mta.cli.common import load, make_parser
from mta.local.lock import LockError, LockSettings, mailbox_locked, parse_styles

EX_USAGE = 64  # command-line problem
EX_TEMPFAIL = 75  # could not do what was asked


def _parser(command: str) -> argparse.ArgumentParser:
    p = make_parser(command, "Lock a mailbox and run a command, as postlock does.")
    p.add_argument("-l", dest="style", metavar="LOCK_STYLE", help="fcntl, flock or dotlock")
    p.add_argument("file", metavar="FILE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    return p


def main(argv: list[str], command: str = "lock") -> int:
    prog = f"mta {command}"
    try:
        args = _parser(command).parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else EX_USAGE
    if not args.command:
        sys.stderr.write(f"{prog}: fatal: usage: {prog} [-c dir] [-l style] [-v] file command...\n")
        return EX_USAGE
    cfg = load(args)
    try:
        settings = LockSettings.from_config(cfg, "mailbox_delivery_lock")
        if args.style:
            settings.styles = parse_styles(args.style.replace(",", " ").split(), "-l")
    except ValueError as exc:
        sys.stderr.write(f"{prog}: fatal: {exc}\n")
        return EX_USAGE
    try:
        fd = os.open(args.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        sys.stderr.write(f"{prog}: fatal: open {args.file}: {exc.strerror}\n")
        return EX_TEMPFAIL
    try:
        with mailbox_locked(args.file, fd, settings):
            try:
                status = subprocess.call(args.command)
            except OSError as exc:
                sys.stderr.write(f"{prog}: fatal: execvp {args.command[0]}: {exc.strerror}\n")
                return EX_TEMPFAIL
    except LockError as exc:
        sys.stderr.write(f"{prog}: fatal: {exc}\n")
        return EX_TEMPFAIL
    finally:
        os.close(fd)
    return status if status >= 0 else EX_TEMPFAIL
