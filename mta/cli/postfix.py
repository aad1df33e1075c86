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
    check validates main.cf and master.cf and creates the queue tree
    under queue_directory (maildrop incoming active deferred hold
    corrupt bounce defer trace flush saved private public pid) and
    data_directory with Postfix's modes, owned by mail_owner when run
    as root (pid stays root's); a directory with the wrong mode or owner
    is reported as a warning and fixed.

    start runs check, refuses when a master already holds master.pid,
    then starts the master as a daemon (double fork, new session, stdio
    on /dev/null) and returns once it is ready. start-fg runs the master
    in this process, logging to stdout, until SIGINT or SIGTERM.

    stop asks the master to stop (SIGTERM) and waits until it is gone:
    services finish their current clients first. abort stops at once
    (SIGQUIT: the master kills its children). reload makes the master
    re-read its configuration (SIGHUP). status says whether the mail
    system runs and exits 0 when it does, 1 when not.

    Messages go to stderr and, when maillog_file is set, to the log,
    tagged SYSLOG_NAME/mta-script as Postfix's postfix-script does.

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
from mta.cli.common import load, make_parser
from mta.common.trigger import TRIGGER_FLUSH, trigger_qmgr
from mta.config import Config, ConfigError
from mta.config.master_cf import read_master_cf
from mta.master.master import MASTER_KILL_WAIT, MASTER_STOP_GRACE, Master, plan_service
from mta.master.pidfile import running_pid
from mta.master.privs import (
    PrivsError,
    User,
    lookup_user,
    python_unreadable,
    running_as_root,
)
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

    def __init__(self, cfg: Config) -> None:
        self.tag = f"{cfg.get('syslog_name')}/mta-script"
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


def check(cfg: Config, script: Script) -> None:
    """Validate the configuration and create or repair the queue tree."""
    cfg.validate()
    entries = read_master_cf(cfg.master_cf, cfg.get_int("default_process_limit"))
    for entry in entries:
        plan_service(entry, cfg)  # a bad inet address or port stops here
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
    check(cfg, script)
    pid_path = paths.master_pid_path(cfg)
    if running_pid(pid_path) is not None:
        return script.fatal("the mail system is already running")
    script.info("starting the mail system")
    fd = _daemonize(cfg, verbose)
    if not _wait_ready(fd, START_TIMEOUT):
        return script.fatal(f"mail system startup failed; see {_log_hint(cfg)}")
    return 0


def start_fg(cfg: Config, script: Script, verbose: int) -> int:
    check(cfg, script)
    if running_pid(paths.master_pid_path(cfg)) is not None:
        return script.fatal("the mail system is already running")
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
    if not flush_queue(cfg):
        return script.fatal("cannot flush the mail queue: the mail system is down")
    return 0


def main(argv: list[str], command: str) -> int:
    parser = make_parser(command, DESCRIPTIONS.get(command, "control the mail system"))
    args = parser.parse_args(argv)
    cfg = load(args)
    script = Script(cfg)
    try:
        if command == "check":
            check(cfg, script)
            return 0
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
