"""cli.postfix - start, stop, reload and check the mail system (postfix)

SYNOPSIS
    mta check    [-c DIR] [-v]
    mta start    [-c DIR] [-v]
    mta start-fg [-c DIR] [-v]
    mta stop     [-c DIR] [-v]
    mta abort    [-c DIR] [-v]
    mta reload   [-c DIR] [-v]
    mta status   [-c DIR] [-v]

DESCRIPTION
    check validates main.cf and master.cf as every service will use
    them (mta.config.validate: values, address lists, tables opened,
    master.cf fields; mta.master.service_check: smtpd's restriction
    lists, built by smtpd's own parser) and prints one line per problem,
    "mta check: fatal: FILE, line N: ..." (or "warning:" for a probable
    typo or a parameter that is not implemented), also to the log. Any
    fatal problem makes it exit 1 and stop there. Otherwise it creates
    the queue tree under queue_directory (maildrop incoming active
    deferred hold corrupt bounce defer trace flush saved private public
    pid) and data_directory with Postfix's modes, owned by mail_owner
    when run as root (pid stays root's); a directory with the wrong mode
    or owner is reported as a warning and fixed.

    start runs check, refuses when a master already holds master.pid,
    then starts the master as a daemon (double fork, new session, stdio
    on /dev/null) and returns once it is ready, saying where SMTP
    listens and where local mail is delivered; when the master gives up
    instead, the reason it logged (a port already in use ...) is shown.
    start-fg says the same and runs the master in this process, logging
    to stdout and maillog_file, until SIGINT or SIGTERM.

    stop asks the master to stop (SIGTERM) and waits until it is gone:
    services finish their current clients first. abort stops at once
    (SIGQUIT: the master kills its children). reload validates as check
    does and, only when nothing is fatal, makes the master re-read its
    configuration (SIGHUP); a refused reload exits 1 and leaves the
    master on the configuration it has. status says whether the mail
    system runs and exits 0 when it does, 1 when not.

    flush asks qmgr to retry deferred mail now, for users on
    authorized_flush_users (root and mail_owner always may).

    Messages go to stderr as "mta COMMAND: ...", "mta COMMAND: warning:
    ..." and "mta COMMAND: fatal: ...", the style of every mta command,
    and, when maillog_file is set, to the log tagged SYSLOG_NAME/mta-script
    as Postfix's postfix-script does.

SECURITY
    Run by the administrator, as root or as the mail_owner of an
    unprivileged instance. Creates directories only under
    queue_directory and data_directory.

SEE ALSO
    Postfix's postfix(1); mta/master/master.py
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

from mta import log
from mta.cli import startup
from mta.cli.common import load, make_parser
from mta.common.trigger import TRIGGER_FLUSH, trigger_qmgr
from mta.common.user_acl import FLUSH_ACL, AccessDenied, check_user
from mta.config import Config, ConfigError
from mta.config.validate import Problem, config_problems, read_services
from mta.maps import set_note_handler
from mta.master.master import MASTER_KILL_WAIT, MASTER_STOP_GRACE, Master, plan_service
from mta.master.pidfile import running_pid
from mta.master.privs import (
    PrivsError,
    User,
    lookup_user,
    python_unreadable,
    running_as_root,
)
from mta.master.service_check import service_problems
from mta.queue import paths

INTAKE_COMMANDS = frozenset({"smtpd", "pickup", "qmqpd"})  # services that queue mail
START_TIMEOUT = 10.0  # seconds "mta start" waits for the master to be ready
STOP_TIMEOUT = MASTER_STOP_GRACE + MASTER_KILL_WAIT + 5.0  # seconds "mta stop" waits
POLL_INTERVAL = 0.05  # seconds between looks at master.pid

DESCRIPTIONS = {
    "check": "validate the configuration and create the queue directories",
    "start": "start the mail system in the background",
    "start-fg": "run the master in the foreground, logging to stdout",
    "stop": "stop the mail system, letting services finish their clients",
    "abort": "stop the mail system at once",
    "reload": "make the master re-read main.cf and master.cf",
    "status": "tell whether the mail system runs (exit 0) or not (exit 1)",
    "flush": "ask the queue manager to try all deferred mail now (postqueue -f)",
}


class Script:
    """Messages of the mail system script: stderr, and the log when it is a file."""

    def __init__(self, cfg: Config, command: str = "check") -> None:
        self.command = command
        self.tag = f"mta {command}"
        self.to_log = bool(cfg.get("maillog_file"))
        if self.to_log:
            try:
                log.init("mta-script", cfg)
            except OSError:
                self.to_log = False

    def info(self, msg: str) -> None:
        sys.stderr.write(f"{self.tag}: {msg}\n")
        if self.to_log:
            log.info("%s", msg)

    def warning(self, msg: str) -> None:
        sys.stderr.write(f"{self.tag}: warning: {msg}\n")
        if self.to_log:
            log.warning("%s", msg)

    def fatal(self, msg: str) -> int:
        sys.stderr.write(f"{self.tag}: fatal: {msg}\n")
        if self.to_log:
            log.error("%s", msg)
        return 1

    def problem(self, p: Problem) -> None:
        """One configuration problem, "mta COMMAND: fatal: FILE, line N: ..." as postconf does."""
        severity = "fatal" if p.fatal else "warning"
        sys.stderr.write(f"mta {self.command}: {severity}: {p}\n")
        if self.to_log:
            (log.error if p.fatal else log.warning)("%s", p)


# ---------------------------------------------------------------- check
def _ensure_dir(script: Script, path: str, mode: int, owner: User | None) -> None:
    """Create path with mode and owner, or fix what differs and say so."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        os.mkdir(path, mode)
        os.chmod(path, mode)
        if owner is not None:
            os.chown(path, owner.uid, owner.gid)
        return
    if not os.path.isdir(path) or os.path.islink(path):
        raise ConfigError("exists and is not a directory", path=path)
    have = st.st_mode & 0o7777
    if have != mode:
        script.warning(f"bad mode {have:04o} (expected {mode:04o}): {path}; fixed")
        os.chmod(path, mode)
    if owner is not None and (st.st_uid, st.st_gid) != (owner.uid, owner.gid):
        script.warning(f"not owned by {owner.name}: {path}; fixed")
        os.chown(path, owner.uid, owner.gid)


def _plan_problems(entries, cfg: Config) -> list[Problem]:
    """What the master would do with each master.cf service, said before it runs."""
    out = []
    for entry in entries:
        if entry.chroot:
            # a jail the operator asked for is never silently left out
            out.append(
                Problem(
                    f"service {entry.key}: chroot is not supported (a service could not "
                    "load Python inside the jail); set the chroot column to n",
                    entry.path,
                    entry.line,
                )
            )
        try:
            _, module, why = plan_service(entry, cfg)  # a bad inet address or port
        except ConfigError as exc:
            problem = Problem.from_error(exc)
            out.append(problem if exc.path else Problem(problem.message, entry.path, entry.line))
            continue
        if module is None:
            out.append(
                Problem(f"service {entry.key}: {why}; skipped", entry.path, entry.line, False)
            )
    return out


def validate(cfg: Config, script: Script) -> bool:
    """Report every problem of main.cf and master.cf; False when one is fatal.

    Values, tables (opened), address lists, master.cf fields and what
    each service builds at start (smtpd's restriction lists) are checked.
    """
    entries, problems = read_services(cfg)
    if not problems:
        set_note_handler(script.info)  # "hash:FILE is served from ...": said as the command
        try:
            problems = config_problems(cfg, entries, open_tables=True)
        finally:
            set_note_handler(None)
        problems += _plan_problems(entries, cfg)
        known = {str(p) for p in problems}
        problems += [p for p in service_problems(entries, cfg) if str(p) not in known]
    for p in problems:
        script.problem(p)
    return not any(p.fatal for p in problems)


def check(cfg: Config, script: Script) -> int:
    """Validate the configuration and create or repair the queue tree; 1 when invalid."""
    if not validate(cfg, script):
        return 1
    entries, _ = read_services(cfg)
    commands = {e.command for e in entries}
    qmgr = cfg.get("queue_service_name")
    if commands & INTAKE_COMMANDS and not any(e.name == qmgr for e in entries):
        script.warning(
            f"{cfg.master_cf}: no {qmgr} service: accepted mail will stay in incoming/ "
            "and never be delivered"
        )
    try:
        owner = lookup_user(cfg.get("mail_owner"))
    except PrivsError as exc:
        path, line = cfg.source("mail_owner")
        raise ConfigError(str(exc), path=path, line=line, param="mail_owner") from None
    root = running_as_root()
    mail_owner = owner if root else None
    root_user = User("root", 0, 0) if root else None
    qdir = cfg.get("queue_directory")
    if not os.path.isdir(qdir):
        os.makedirs(qdir, paths.QUEUE_DIR_TOP_MODE, exist_ok=True)
    pid_dir = paths.pid_directory(cfg)
    for name, mode in paths.QUEUE_DIR_MODES.items():
        if name == paths.QUEUE_PID:
            _ensure_dir(script, pid_dir, mode, root_user)
            continue
        _ensure_dir(script, os.path.join(qdir, name), mode, mail_owner)
    _ensure_dir(script, cfg.get("data_directory"), paths.DATA_DIR_MODE, mail_owner)
    if root and any(e.unpriv for e in entries):
        for path in python_unreadable(owner):
            script.warning(
                f"mail_owner {owner.name} cannot read {path}: unprivileged services may fail "
                "to load code after they give up root; make the Python installation "
                f"readable by {owner.name} or install mta where it can read it"
            )
    return 0


# ---------------------------------------------------------------- start
def _log_hint(cfg: Config) -> str:
    return cfg.get("maillog_file") or "the system log"


def _daemonize(cfg: Config, verbose: int) -> int | None:
    """Start the master detached; return the read end of its ready pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setsid()
            if os.fork():
                os._exit(0)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.chdir("/")
            os.set_inheritable(w, True)
            argv = [sys.executable, "-m", "mta.master", "-c", cfg.config_dir, "-r", str(w)]
            env = dict(os.environ, PYTHONSAFEPATH="1")
            env.pop("MTA_LOG_STDOUT", None)
            os.execve(sys.executable, argv + ["-v"] * verbose, env)
        finally:
            os._exit(127)
    os.close(w)
    os.waitpid(pid, 0)
    return r


def _wait_ready(fd: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return False
            chunk = os.read(fd, 64)
            if not chunk:
                return False
            data += chunk
        return data.startswith(b"ok")
    finally:
        os.close(fd)


def start(cfg: Config, script: Script, verbose: int) -> int:
    if check(cfg, script):
        return 1
    pid_path = paths.master_pid_path(cfg)
    if running_pid(pid_path) is not None:
        return script.fatal("the mail system is already running")
    script.info("starting the mail system")
    mark = startup.log_size(cfg)
    fd = _daemonize(cfg, verbose)
    if not _wait_ready(fd, START_TIMEOUT):
        why = startup.failure_reason(cfg, mark) or f"see {_log_hint(cfg)}"
        return script.fatal(f"mail system startup failed: {why}")
    for line in startup.where_lines(cfg):
        script.info(line)
    return 0


def start_fg(cfg: Config, script: Script, verbose: int) -> int:
    if check(cfg, script):
        return 1
    if running_pid(paths.master_pid_path(cfg)) is not None:
        return script.fatal("the mail system is already running")
    for line in startup.where_lines(cfg):
        script.info(line)
    return Master(cfg.config_dir, foreground=True, verbose=verbose).run()


# ---------------------------------------------------------------- signals
def _wait_gone(pid_path: str, timeout: float, script: Script) -> bool:
    start = time.monotonic()
    said = False
    while running_pid(pid_path) is not None:
        waited = time.monotonic() - start
        if waited >= timeout:
            return False
        if not said and waited >= 1.0:
            script.info("waiting for the mail system to terminate")
            said = True
        time.sleep(POLL_INTERVAL)
    return True


def _signal_master(cfg: Config, script: Script, sig: int) -> tuple[int, str]:
    pid_path = paths.master_pid_path(cfg)
    pid = running_pid(pid_path)
    if pid is None:
        return 0, pid_path
    if pid == 0:
        script.fatal(f"cannot read the master's pid from {pid_path}")
        return -1, pid_path
    os.kill(pid, sig)
    return pid, pid_path


def stop(cfg: Config, script: Script, abort: bool) -> int:
    pid, pid_path = _signal_master(cfg, script, signal.SIGQUIT if abort else signal.SIGTERM)
    if pid < 0:
        return 1
    if pid == 0:
        return script.fatal("the mail system is not running")
    script.info("aborting the mail system" if abort else "stopping the mail system")
    if not _wait_gone(pid_path, MASTER_KILL_WAIT + 5.0 if abort else STOP_TIMEOUT, script):
        return script.fatal(f"the master (pid {pid}) did not terminate")
    return 0


def reload(cfg: Config, script: Script) -> int:
    if running_pid(paths.master_pid_path(cfg)) is None:
        return script.fatal("the mail system is not running")
    if not validate(cfg, script):
        return 1  # the master keeps running on the configuration it has
    pid, _ = _signal_master(cfg, script, signal.SIGHUP)
    if pid < 0:
        return 1
    if pid == 0:
        return script.fatal("the mail system is not running")
    script.info("refreshing the mail system")
    return 0


def status(cfg: Config, script: Script) -> int:
    pid = running_pid(paths.master_pid_path(cfg))
    if pid is None:
        script.info("the mail system is not running")
        return 1
    script.info(f"the mail system is running: PID: {pid}")
    return 0


# ---------------------------------------------------------------- main
def flush_queue(cfg: Config) -> bool:
    """Tell qmgr that all deferred mail is due now; False when nobody listens."""
    return trigger_qmgr(cfg, TRIGGER_FLUSH)


def flush(cfg: Config, script: Script) -> int:
    try:
        check_user(cfg, FLUSH_ACL)
    except AccessDenied as exc:
        script.fatal(str(exc))
        return exc.status
    if not flush_queue(cfg):
        return script.fatal("cannot flush the mail queue: the mail system is down")
    return 0


def main(argv: list[str], command: str) -> int:
    parser = make_parser(command, DESCRIPTIONS.get(command, "control the mail system"))
    args = parser.parse_args(argv)
    cfg = load(args)
    script = Script(cfg, command)
    try:
        if command == "check":
            return check(cfg, script)
        if command == "start":
            return start(cfg, script, args.verbose)
        if command == "start-fg":
            return start_fg(cfg, script, args.verbose)
        if command in ("stop", "abort"):
            return stop(cfg, script, abort=command == "abort")
        if command == "reload":
            return reload(cfg, script)
        if command == "status":
            return status(cfg, script)
        if command == "flush":
            return flush(cfg, script)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return script.fatal(f"{where}{exc.strerror or exc}")
    parser.error(f"unknown command {command}")
    return 2
