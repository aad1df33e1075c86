"""master.master - the resident supervisor: listeners, children, signals

SYNOPSIS
    from mta.master.master import Master
    status = Master(config_dir, foreground=True).run()

    python -m mta.master -c CONFIG_DIR [-f] [-r READY_FD] [-v]

DESCRIPTION
    The master reads main.cf and master.cf, takes the lock on
    queue_directory/pid/master.pid (a second master on the same queue
    fails at once), removes the temporary files a crash left in the
    queue (queue/purge.py, as "mta super -p" and Postfix's start do),
    opens every listener, starts the services that run
    from the beginning (a wakeup time, or qmgr and pickup), and then
    waits: for a client on a listener of a service with no idle process,
    for status records from the children, for a child's exit, for a
    wakeup time, and for signals.

    A master.cf command that mta does not provide yet is skipped with a
    warning; the rest of master.cf runs.

    SIGHUP re-reads both files. A service that keeps its name and type
    keeps its open listeners, so no client is refused; the processes of
    a service that changed (or of every service, when main.cf changed)
    get SIGTERM, finish their current clients and exit, and new
    processes start with the new configuration. A removed service loses
    its listeners and its processes finish the same way. When the new
    files do not validate (mta.config.validate, fatal problems), the
    old configuration stays and the errors are logged.

    The texts of main.cf and master.cf the master took, at start and at
    each reload, are kept in $queue_directory/pid/config (snapshot.py);
    children find the directory in MTA_CONFIG_SNAPSHOT and run on it
    when the live files do not validate.

    SIGTERM (and SIGINT in the foreground) stops the mail system: the
    listeners close, every child gets SIGTERM and may finish its
    clients for MASTER_STOP_GRACE seconds, then SIGKILL; the pid file
    goes last. SIGQUIT ("mta abort") kills the children at once.

    Children log to maillog_file through a descriptor the master opens
    for them (an unprivileged child could not open the file itself), to
    the master's stdout in the foreground, or to syslog.

SECURITY
    May run as root; it parses only the administrator's files and the
    status records of its own children. Every service process is a
    fresh interpreter with only its listeners, its status pipe and its
    log descriptor.

SEE ALSO
    Postfix's master(8); mta/master/supervise.py, spawn.py, listen.py
"""

from __future__ import annotations

import errno
import fcntl
import os
import selectors
import signal
import time

import mta
from mta import log
from mta.common.trigger import send_trigger
from mta.config import ConfigError, load_config
from mta.config.master_cf import ServiceEntry, parse_master_cf
from mta.config.validate import config_errors
from mta.master import listen, registry
from mta.master import master_proto as mp
from mta.master.pidfile import AlreadyRunning, PidLock
from mta.master.privs import PrivsError, User, lookup_user
from mta.master.snapshot import SNAPSHOT_ENV, read_config, write_snapshot
from mta.master.spawn import build_child_argv, child_env, spawn_child
from mta.master.supervise import (
    Child,
    Service,
    describe_exit,
    service_signature,
    signal_children,
)
from mta.queue import paths
from mta.queue.purge import purge_temporary

FIRST_WAKEUP_DELAY = 1.0  # seconds after start before the first periodic wakeup
MASTER_STOP_GRACE = 10.0  # seconds children may finish their clients on stop
MASTER_KILL_WAIT = 5.0  # seconds to wait for killed children before giving up
MASTER_READ_CHUNK = mp.STATUS_RECORD.size * 800  # status pipe read size


def plan_service(entry: ServiceEntry, cfg) -> tuple[ServiceEntry, str | None, object]:
    """Return (entry, module, listen key), or (entry, None, why it is skipped)."""
    if entry.type not in listen.LISTEN_TYPES:
        return entry, None, f"service type {entry.type} is not supported yet"
    module, why = registry.resolve_command(entry.command)
    if module is None:
        return entry, None, why
    return entry, module, listen.listen_key(entry, cfg)


class Master:
    def __init__(self, config_dir: str | None, foreground: bool = False, verbose: int = 0):
        self.config_dir = config_dir
        self.foreground = foreground
        self.verbose = verbose
        self.services: dict[str, Service] = {}
        self.retired: dict[int, Child] = {}
        self.selector = selectors.DefaultSelector()
        self.watched: set[int] = set()
        self.signals: list[int] = []
        self.stopping = False
        self.stop_deadline = 0.0
        self.killed = False
        self.pidlock: PidLock | None = None
        self.log_fd = 1
        self.log_to_fd = True
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.owner: User | None = None
        self.cfg = None
        self.main_cf_values: dict[str, str] = {}
        self.snapshot: str | None = None  # directory of the validated configuration

    # ---------------------------------------------------------------- setup
    def _load(self, config_dir: str):
        """Read and validate both files: (cfg, owner, plan, texts); ConfigError when bad."""
        cfg, main_text, master_text = read_config(config_dir)
        cfg.validate()
        entries = parse_master_cf(master_text, cfg.master_cf, cfg.get_int("default_process_limit"))
        errors = config_errors(cfg, entries)
        if errors:
            for problem in errors[1:]:
                log.error("%s", problem)
            raise ConfigError(str(errors[0]))
        try:
            owner = lookup_user(cfg.get("mail_owner"))
        except PrivsError as exc:
            path, line = cfg.source("mail_owner")
            raise ConfigError(str(exc), path=path, line=line, param="mail_owner") from None
        plan = [plan_service(entry, cfg) for entry in entries]
        return cfg, owner, plan, (main_text, master_text)

    def _keep_snapshot(self, cfg, texts: tuple[str, str]) -> None:
        """Write the configuration just taken where children fall back to it."""
        try:
            self.snapshot = write_snapshot(cfg, *texts)
        except OSError as exc:
            self.snapshot = None
            log.warning("cannot keep a copy of the configuration: %s", exc)

    def _open_log_fd(self, cfg) -> None:
        old = self.log_fd
        if self.foreground:
            self.log_fd, self.log_to_fd = 1, True
        elif cfg.get("maillog_file"):
            self.log_fd = os.open(
                cfg.get("maillog_file"),
                os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                0o640,
            )
            self.log_to_fd = True
        else:
            self.log_fd, self.log_to_fd = self.devnull, False
        if old not in (1, self.devnull, self.log_fd):
            os.close(old)

    def _new_service(self, entry: ServiceEntry, module: str, key: tuple, listeners) -> Service:
        r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        # the children's end blocks: a 5-byte record never waits for long
        fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        svc = Service(entry, module, key, listeners, r, w)
        self.selector.register(r, selectors.EVENT_READ, ("status", svc))
        self._arm_wakeup(svc, time.monotonic())
        return svc

    def _arm_wakeup(self, svc: Service, now: float) -> None:
        # The first wakeup comes soon after start, so that work left while the
        # mail system was down (maildrop files, say) is found at once.
        wakeup = svc.entry.wakeup
        svc.next_wakeup = now + min(wakeup, FIRST_WAKEUP_DELAY) if wakeup > 0 else 0.0

    def _backlog(self, entry: ServiceEntry) -> int:
        return max(entry.maxproc, self.cfg.get_int("default_process_limit"))

    def _apply(self, plan, reload: bool) -> None:
        """Bring self.services in line with a plan from _load()."""
        now = time.monotonic()
        main_changed = reload and self._main_values(self.cfg) != self.main_cf_values
        new: dict[str, Service] = {}
        for entry, module, key in plan:
            if module is None:
                log.warning("service %s: %s; skipped", entry.key, key)
                continue
            if entry.wakeup and entry.type == "inet":
                log.warning("service %s: wakeup is not supported for inet services", entry.key)
            old = self.services.pop(entry.key, None)
            if old is not None and old.key == key:
                listeners = old.listeners
            else:
                try:
                    try:
                        listeners = listen.open_listeners(key, self._backlog(entry), self.owner)
                    except OSError:
                        if old is None or not reload:
                            raise
                        self._drop_listeners(old)  # the old address may overlap the new
                        listeners = listen.open_listeners(key, self._backlog(entry), self.owner)
                except OSError as exc:
                    if not reload:
                        raise
                    log.error("service %s: %s; skipped", entry.key, exc.strerror or exc)
                    if old is not None:
                        self.services[entry.key] = old  # dropped below with the rest
                    continue
                if old is not None:
                    self._drop_listeners(old)
            if old is not None:
                changed = main_changed or service_signature(old.entry) != service_signature(entry)
                old.entry, old.module, old.key, old.listeners = entry, module, key, listeners
                if changed:
                    self._retire(old)
                    old.throttled_until = 0.0
                    self._arm_wakeup(old, now)
                new[entry.key] = old
            else:
                new[entry.key] = self._new_service(entry, module, key, listeners)
        for gone in self.services.values():
            self._retire(gone)
            self._drop_listeners(gone)
            self.selector.unregister(gone.status_r)
            os.close(gone.status_r)
            os.close(gone.status_w)
        self.services = new
        self.main_cf_values = self._main_values(self.cfg)
        self._prespawn(now)

    def _prespawn(self, now: float) -> None:
        """Keep one process of each wakeup (or qmgr-like) service running."""
        for svc in self.services.values():
            if (
                not svc.children
                and not svc.throttled(now)
                and registry.is_prespawned(svc.entry.command, svc.entry.wakeup)
            ):
                self._spawn(svc, now)

    @staticmethod
    def _main_values(cfg) -> dict[str, str]:
        return {name: e.value for name, e in cfg.entries.items()}

    def _drop_listeners(self, svc: Service) -> None:
        for item in svc.listeners:
            fd = listen.listener_fd(item)
            if fd in self.watched:
                self.selector.unregister(fd)
                self.watched.discard(fd)
        listen.close_listeners(svc.listeners)
        svc.listeners = []

    def _retire(self, svc: Service) -> None:
        children = svc.retire()
        for child in children:
            self.retired[child.pid] = child
        signal_children(children, signal.SIGTERM)

    # ---------------------------------------------------------------- children
    def _spawn(self, svc: Service, now: float) -> None:
        fds = [listen.listener_fd(item) for item in svc.listeners]
        argv = build_child_argv(svc.entry, svc.module, self.cfg.config_dir, self.verbose, len(fds))
        env = child_env(svc.entry, self.log_to_fd)
        if self.snapshot:
            env[SNAPSHOT_ENV] = self.snapshot
        try:
            pid = spawn_child(argv, env, fds, svc.status_w, self.log_fd, self.devnull)
        except OSError as exc:
            log.warning("%s: fork: %s -- throttling", svc.module, exc.strerror)
            svc.throttle(now + self.cfg.get_time("service_throttle_time"))
            return
        svc.add_child(pid, now)
        log.verbose("spawn service %s pid %d", svc.name, pid)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._child_exited(pid, status)

    def _child_exited(self, pid: int, status: int) -> None:
        now = time.monotonic()
        why = describe_exit(status)
        child = self.retired.pop(pid, None)
        svc = None
        if child is None:
            for candidate in self.services.values():
                child = candidate.remove_child(pid)
                if child is not None:
                    svc = candidate
                    break
        if child is None:
            return
        if why and not (self.stopping and self.killed):
            log.warning("process %s pid %d %s", child.module, pid, why)
        if svc is None or not why or self.stopping:
            return
        if child.use_count == 0 and not svc.throttled(now):
            log.warning("%s: bad command startup -- throttling", child.module)
            svc.throttle(now + self.cfg.get_time("service_throttle_time"))

    # ---------------------------------------------------------------- events
    def _update_watches(self, now: float) -> None:
        want: dict[int, Service] = {}
        if not self.stopping:
            for svc in self.services.values():
                if svc.wants_process(now):
                    for item in svc.listeners:
                        want[listen.listener_fd(item)] = svc
                if svc.at_limit() and svc.avail == 0:
                    if not svc.limit_warned:
                        svc.limit_warned = True
                        log.warning(
                            'service "%s" has reached its process limit "%d": '
                            "new clients may experience noticeable delays",
                            svc.name,
                            svc.entry.maxproc,
                        )
                else:
                    svc.limit_warned = False
        for fd in self.watched - want.keys():
            self.selector.unregister(fd)
        for fd in want.keys() - self.watched:
            self.selector.register(fd, selectors.EVENT_READ, ("listen", want[fd]))
        for fd in want.keys() & self.watched:
            self.selector.modify(fd, selectors.EVENT_READ, ("listen", want[fd]))
        self.watched = set(want)

    def _next_timeout(self, now: float) -> float | None:
        times = []
        if self.stopping:
            times.append(self.stop_deadline)
        else:
            for svc in self.services.values():
                if svc.next_wakeup:
                    times.append(svc.next_wakeup)
                if svc.throttled(now):
                    times.append(svc.throttled_until)
        if not times:
            return None
        return max(0.0, min(times) - now)

    def _wakeups(self, now: float) -> None:
        for svc in self.services.values():
            if not svc.next_wakeup or now < svc.next_wakeup:
                continue
            svc.next_wakeup = now + svc.entry.wakeup
            if svc.entry.wakeup_used_only and not svc.used:
                continue
            svc.used = False
            self._trigger(svc)

    def _trigger(self, svc: Service) -> None:
        kind = svc.key[0]
        if kind in ("unix", "fifo") and not send_trigger(svc.key[1]):
            log.verbose("wakeup %s: nobody listens", svc.name)

    def _read_status(self, svc: Service) -> None:
        while True:
            try:
                data = os.read(svc.status_r, MASTER_READ_CHUNK)
            except BlockingIOError:
                return
            if not data:
                return
            svc.feed_status(data)

    def _on_signal(self, signum: int, frame) -> None:
        self.signals.append(signum)

    def _install_signals(self) -> tuple[int, int]:
        r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(sig, self._on_signal)
        self.selector.register(r, selectors.EVENT_READ, ("signal", None))
        return r, w

    def _handle_signals(self) -> None:
        pending, self.signals = self.signals, []
        for sig in pending:
            if sig == signal.SIGCHLD:
                continue  # reaped every turn of the loop
            if sig == signal.SIGHUP and not self.stopping:
                self._reload()
            elif sig == signal.SIGQUIT or (self.stopping and sig == signal.SIGINT):
                self._begin_stop(sig, abort=True)
            elif sig in (signal.SIGTERM, signal.SIGINT):
                self._begin_stop(sig, abort=False)

    def _reload(self) -> None:
        try:
            cfg, owner, plan, texts = self._load(self.cfg.config_dir)
        except ConfigError as exc:
            log.error("reload failed, keeping the old configuration: %s", exc)
            return
        self.cfg, self.owner = cfg, owner
        self._keep_snapshot(cfg, texts)
        log.init("master", cfg, stdout=self.foreground, verbose=self.verbose)
        try:
            self._open_log_fd(cfg)
        except OSError as exc:
            log.error("open %s: %s", cfg.get("maillog_file"), exc.strerror)
        log.info("reload -- version %s, configuration %s", mta.__version__, cfg.config_dir)
        self._apply(plan, reload=True)

    def _begin_stop(self, sig: int, abort: bool) -> None:
        now = time.monotonic()
        if not self.stopping:
            log.info("terminating on signal %d", sig)
            self.stopping = True
            for svc in self.services.values():
                self._drop_listeners(svc)
                self._retire(svc)
            self.stop_deadline = now + MASTER_STOP_GRACE
        if abort and not self.killed:
            self._kill_all(now)

    def _kill_all(self, now: float) -> None:
        self.killed = True
        signal_children(self.retired.values(), signal.SIGKILL)
        self.stop_deadline = now + MASTER_KILL_WAIT

    # ---------------------------------------------------------------- main
    def run(self, ready_fd: int | None = None) -> int:
        """Start, serve until stopped, and return the exit status."""
        cfg = None
        try:
            cfg = load_config(self.config_dir)
            log.init("master", cfg, stdout=self.foreground, verbose=self.verbose)
            cfg, owner, plan, texts = self._load(cfg.config_dir)
        except (ConfigError, OSError) as exc:
            if cfg is None or isinstance(exc, OSError):
                log.init("master", None, stdout=self.foreground)
            log.error("%s", exc)
            return 1
        self.cfg, self.owner = cfg, owner
        pid_path = paths.master_pid_path(cfg)
        self.pidlock = PidLock(pid_path)
        try:
            self.pidlock.acquire()
        except AlreadyRunning as exc:
            log.error(
                "the mail system is already running (master pid %s, %s)", exc.args[0], pid_path
            )
            return 1
        except OSError as exc:
            log.error("open lock file %s: %s", pid_path, exc.strerror)
            return 1
        self._keep_snapshot(cfg, texts)
        try:
            purge_temporary(cfg.get("queue_directory"))
        except OSError as exc:
            log.warning("cannot purge temporary files: %s", exc)
        try:
            self._open_log_fd(cfg)
            self._install_signals()
            self._apply(plan, reload=False)
        except OSError as exc:
            log.error("%s", exc.strerror or exc)
            self._shutdown_now()
            return 1
        log.info("daemon started -- version %s, configuration %s", mta.__version__, cfg.config_dir)
        if ready_fd is not None:
            try:
                os.write(ready_fd, b"ok\n")
                os.close(ready_fd)
            except OSError:
                pass
        self._loop()
        self.pidlock.release()
        return 0

    def _shutdown_now(self) -> None:
        for svc in self.services.values():
            self._drop_listeners(svc)
            self._retire(svc)
        signal_children(self.retired.values(), signal.SIGKILL)
        if self.pidlock is not None:
            self.pidlock.release()

    def _loop(self) -> None:
        while True:
            now = time.monotonic()
            self._reap()
            self._handle_signals()
            if self.stopping:
                if not self.retired:
                    return
                if now >= self.stop_deadline:
                    if self.killed:
                        log.warning("%d processes did not exit; giving up", len(self.retired))
                        return
                    self._kill_all(now)
            else:
                self._wakeups(now)
                self._prespawn(now)
            self._update_watches(now)
            try:
                events = self.selector.select(self._next_timeout(now))
            except OSError as exc:
                if exc.errno != errno.EINTR:
                    raise
                continue
            now = time.monotonic()
            for key, _ in events:
                kind, svc = key.data
                if kind == "signal":
                    try:
                        while os.read(key.fd, 512):
                            pass
                    except BlockingIOError:
                        pass
                elif kind == "status":
                    self._read_status(svc)
            # status first, so a child that just became free takes the client
            for key, _ in events:
                kind, svc = key.data
                if kind == "listen" and not self.stopping and svc.wants_process(now):
                    self._spawn(svc, now)
