"""master.mail_server - what every service process does before it serves

SYNOPSIS
    from mta.master.mail_server import start_service
    ctx, listeners = start_service("proxymap", sys.argv[1:])
    ctx.cfg, ctx.service_name, ctx.service_type, ctx.args
    ctx.report_taken(); ctx.report_available()
    ctx.report_used()             # once: this process did its work

DESCRIPTION
    parse_service_argv() reads the command line the master gives a
    child: -n NAME, -t TYPE, -c CONFIG_DIR, -o name=value (repeatable),
    -s NSOCK, -u (unprivileged), -v (repeatable), then the arguments
    from master.cf. start_service() loads the configuration with the
    overrides, initializes logging under the service's name, finds the
    listeners at descriptor 3 (and 5, 6 ... for "-s N") and returns a
    ServiceContext.

    service_config() takes the live main.cf and master.cf when they
    validate (config_problems without opening tables, then what the
    service builds, service_check.py); otherwise the master's snapshot
    (snapshot.py), with one warning naming the file, line and problem.
    With neither, the service logs one fatal line and exits. A
    ConfigError or MapError that escapes the service later is also one
    fatal line (sys.excepthook), never a traceback.

    drop_privileges_if_asked() becomes mail_owner when "-u" was given
    and the process runs as root; the servers call it once their event
    loop exists. Before the drop it imports what the loaded mta modules
    import inside functions (master/preload.py), so a service keeps
    working when the installation is readable by root only.

    The context reports to the master on the status pipe at descriptor
    4; when the master is gone (the write fails) it calls the
    on_master_gone hook the server installed. report_used() tells the
    master, the first time only, that the process did the work it is
    there for, so that its death later is not taken for a bad start
    (the servers call it on the first trigger, connection or request).

    new_event_loop() returns a uvloop loop when uvloop is installed,
    else asyncio's, and shortens the interpreter's GIL switch interval to
    SWITCH_INTERVAL (MTA_SWITCH_INTERVAL overrides it, for benchmarks).

SECURITY
    Runs at the start of every service, often as root until
    drop_privileges_if_asked(). The command line comes from the master.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from mta import log
from mta.config import Config, ConfigError, load_config, resolve_config_dir
from mta.config.validate import config_errors
from mta.maps import MapError
from mta.master import master_proto as mp
from mta.master.preload import preload_deferred_imports
from mta.master.privs import PrivsError, drop_privileges, lookup_user, running_as_root
from mta.master.service_check import check_service
from mta.master.snapshot import SNAPSHOT_ENV, load_snapshot

SWITCH_INTERVAL = 0.0005  # seconds between forced GIL switches (Python's default: 0.005)


class ServiceUsage(Exception):
    """A bad command line: the process was not started by the master."""


@dataclass
class ServiceArgs:
    name: str = ""
    type: str = "unix"
    config_dir: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    nsock: int = 1
    unpriv: bool = False
    verbose: int = 0
    args: list[str] = field(default_factory=list)


def parse_service_argv(argv: list[str]) -> ServiceArgs:
    """Parse -n -t -c -o -s -u -v, stopping at the first other argument."""
    out = ServiceArgs()
    i = 0
    with_value = {"-n", "-t", "-c", "-o", "-s"}
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg in with_value:
            if i + 1 >= len(argv):
                raise ServiceUsage(f"option {arg} needs a value")
            value = argv[i + 1]
            i += 2
            if arg == "-n":
                out.name = value
            elif arg == "-t":
                out.type = value
            elif arg == "-c":
                out.config_dir = value
            elif arg == "-s":
                if not value.isdigit() or int(value) < 1:
                    raise ServiceUsage(f"bad socket count: {value}")
                out.nsock = int(value)
            else:
                name, eq, val = value.partition("=")
                if not eq or not name.strip():
                    raise ServiceUsage(f"bad -o setting: {value} (expected name=value)")
                out.overrides[name.strip()] = val.strip()
            continue
        if arg == "-u":
            out.unpriv = True
        elif arg == "-v":
            out.verbose += 1
        elif arg.startswith("-") and len(arg) > 1:
            raise ServiceUsage(f"unknown option {arg}")
        else:
            break
        i += 1
    out.args = list(argv[i:])
    return out


@dataclass
class ServiceContext:
    """What a handler sees: configuration and who it is."""

    cfg: object
    service_name: str
    service_type: str
    service: str
    args: list[str]
    verbose: int = 0
    unpriv: bool = False
    on_master_gone: Callable[[], None] | None = None
    status_ok: bool = True
    used: bool = False  # report_used() was sent

    def _report(self, kind: bytes) -> None:
        if not self.status_ok:
            return
        try:
            os.write(mp.MASTER_STATUS_FD, mp.encode_status(kind, os.getpid()))
        except OSError:
            self.status_ok = False
            if self.on_master_gone is not None:
                self.on_master_gone()

    def report_taken(self) -> None:
        self._report(mp.STATUS_TAKEN)

    def report_available(self) -> None:
        self._report(mp.STATUS_AVAIL)

    def report_used(self) -> None:
        """Tell the master once that this process is past its start-up."""
        if not self.used:
            self.used = True
            self._report(mp.STATUS_USED)


def _listeners(nsock: int) -> list[socket.socket | int]:
    out: list[socket.socket | int] = []
    for fd in mp.listen_fds(nsock):
        try:
            st = os.fstat(fd)
        except OSError:
            raise ServiceUsage(
                f"no listener at descriptor {fd}; this program is started by the master"
            ) from None
        os.set_inheritable(fd, False)
        if stat.S_ISSOCK(st.st_mode):
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            out.append(sock)
        elif stat.S_ISFIFO(st.st_mode):
            os.set_blocking(fd, False)
            out.append(fd)
        else:
            raise ServiceUsage(f"descriptor {fd} is neither a socket nor a fifo")
    return out


def _checked(cfg: Config, args: ServiceArgs, program: str) -> Config:
    """cfg under the service's overrides, once it passed the checks; ConfigError if not."""
    errors = config_errors(cfg)
    if errors:
        raise ConfigError(str(errors[0]))
    if args.overrides:
        cfg = cfg.with_overrides(args.overrides)
    cfg.validate()
    check_service(program, cfg)
    return cfg


def service_config(args: ServiceArgs, program: str) -> tuple[Config, str | None]:
    """The live configuration when it validates, else the master's snapshot.

    Returns (cfg, None), or (snapshot cfg, the problem of the live files);
    raises ConfigError when neither can be used.
    """
    try:
        return _checked(load_config(args.config_dir), args, program), None
    except ConfigError as exc:
        problem = exc
    snapshot = os.environ.get(SNAPSHOT_ENV)
    if not snapshot:
        raise problem
    try:
        cfg = load_snapshot(snapshot, resolve_config_dir(args.config_dir))
        return _checked(cfg, args, program), str(problem)
    except ConfigError:
        raise problem from None


def _fatal_config_errors(hook):
    """sys.excepthook: a configuration error is one fatal log line, not a traceback."""

    def excepthook(kind, value, tb) -> None:
        if not isinstance(value, (ConfigError, MapError)):
            hook(kind, value, tb)
            return
        try:
            log.fatal("%s", value)
        except SystemExit:
            pass

    return excepthook


def start_service(
    service: str, argv: list[str] | None = None
) -> tuple[ServiceContext, list[socket.socket | int]]:
    """Parse argv, load the configuration, start logging, find the listeners."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_service_argv(argv)
        cfg, problem = service_config(args, os.environ.get("MTA_PROGRAM") or service)
    except (ServiceUsage, ConfigError) as exc:
        log.init(service, None)
        log.fatal("%s", exc)
    log.init(service, cfg, verbose=args.verbose)
    if problem is not None:
        log.warning(
            "%s; running on the configuration the master validated last (%s)",
            problem,
            os.environ.get(SNAPSHOT_ENV),
        )
    sys.excepthook = _fatal_config_errors(sys.excepthook)
    try:
        listeners = _listeners(args.nsock)
    except ServiceUsage as exc:
        log.fatal("%s", exc)
    try:
        os.set_inheritable(mp.MASTER_STATUS_FD, False)
    except OSError:
        pass
    ctx = ServiceContext(
        cfg=cfg,
        service_name=args.name or service,
        service_type=args.type,
        service=service,
        args=args.args,
        verbose=args.verbose,
        unpriv=args.unpriv,
    )
    return ctx, listeners


def drop_privileges_if_asked(ctx: ServiceContext) -> None:
    """Become mail_owner when master.cf says unprivileged and we are root."""
    if not ctx.unpriv or not running_as_root():
        return
    preload_deferred_imports()
    try:
        drop_privileges(lookup_user(ctx.cfg.get("mail_owner")))
    except (PrivsError, OSError) as exc:
        log.fatal("mail_owner %s: %s", ctx.cfg.get("mail_owner"), exc)


def new_event_loop() -> asyncio.AbstractEventLoop:
    # worker threads (fsync, blocking file work) that finish hand their
    # result back sooner when the busy loop thread gives up the GIL more often
    try:
        interval = float(os.environ.get("MTA_SWITCH_INTERVAL", SWITCH_INTERVAL))
        sys.setswitchinterval(interval)
    except ValueError:
        sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def watch_master(loop: asyncio.AbstractEventLoop, ctx: ServiceContext) -> None:
    """Call ctx.on_master_gone when the read end of the status pipe closes."""

    def gone() -> None:
        try:
            loop.remove_reader(mp.MASTER_STATUS_FD)
        except (OSError, ValueError):
            pass
        ctx.status_ok = False
        if ctx.on_master_gone is not None:
            ctx.on_master_gone()

    try:
        os.fstat(mp.MASTER_STATUS_FD)
        loop.add_reader(mp.MASTER_STATUS_FD, gone)
    except (OSError, ValueError):
        ctx.status_ok = False
