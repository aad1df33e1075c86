"""postscreen.server - the postscreen process: settings, accept loop, cache upkeep

SYNOPSIS
    master.cf:  smtp  inet  n  -  n  -  1  postscreen
                smtpd pass  -  -  n  -  -  smtpd
                dnsblog unix - -  n  -  0  dnsblog
    server = PscServer(cfg)          # ConfigError names a bad parameter

DESCRIPTION
    One process (maxproc 1) takes every connection to the SMTP port on
    one asyncio event loop, screens each (postscreen/session.py) and
    hands the good ones to smtpd through the pass service named by
    smtpd_service_name (private/, else public/ under queue_directory).

    PscServer reads the postscreen_* parameters once. The actions must
    be ignore, enforce or drop; a bad value, a malformed
    postscreen_dnsbl_sites entry or a table that does not open is a
    ConfigError. postscreen_upstream_proxy_protocol is refused by the
    configuration check (mta/config/unimplemented.py).

    Every postscreen_cache_cleanup_interval the cache loses the entries
    expired longer than postscreen_cache_retention_time; the process
    logs "cache NAME full cleanup: dropped=N entries in T".

    A watchdog (SIGALRM, re-armed by the event loop) ends the process
    when the loop stalls for postscreen_watchdog_timeout; the master
    starts a new one.

    The process never exits for max_idle or max_use: its state (the
    connection counts) lives only here. SIGTERM stops accepting, lets
    the sessions under test finish, and exits.

SECURITY
    Accepts connections from anyone; runs as mail_owner once master.cf's
    unprivileged column asks for it. Talks to smtpd and dnsblog over
    the queue's private sockets.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time

from mta import log
from mta.common.forbidden_commands import ForbiddenCommands
from mta.common.kv_store import StoreError, open_store
from mta.common.match_list import AddrList
from mta.config import ConfigError
from mta.maps import MapError, MapRetry, Maps
from mta.master.accept import accept_client
from mta.postscreen.access import AccessList
from mta.postscreen.cache import PSC_BARLF, PSC_NSMTP, PSC_PIPEL, PscCache
from mta.postscreen.dnsbl import parse_dnsbl_sites
from mta.postscreen.footer import PscFooter
from mta.queue import paths

PSC_ACTIONS = ("ignore", "enforce", "drop")


def _action(cfg, name: str) -> str:
    value = cfg.get(name).strip().lower()
    if value not in PSC_ACTIONS:
        raise ConfigError(f"{name}: unknown action {value!r} (expected ignore, enforce or drop)")
    return value


class PscServer:
    """State shared by the connections of the one postscreen process."""

    def __init__(self, cfg, store=None) -> None:
        self.cfg = cfg
        self.hostname = cfg.get("myhostname")
        self.smtpd_banner = cfg.get("smtpd_banner")
        self.greet_banner = cfg.get("postscreen_greet_banner")
        self.greet_wait = float(cfg.get_time("postscreen_greet_wait"))
        self.greet_action = _action(cfg, "postscreen_greet_action")
        self.denylist_action = _action(cfg, "postscreen_denylist_action")
        self.dnsbl_action = _action(cfg, "postscreen_dnsbl_action")
        self.deep_actions = {
            PSC_PIPEL: _action(cfg, "postscreen_pipelining_action"),
            PSC_NSMTP: _action(cfg, "postscreen_non_smtp_command_action"),
            PSC_BARLF: _action(cfg, "postscreen_bare_newline_action"),
        }
        try:
            self.sites = parse_dnsbl_sites(cfg.get_list("postscreen_dnsbl_sites"))
        except ValueError as exc:
            raise ConfigError(f"postscreen_dnsbl_sites: {exc}") from None
        self.dnsbl_threshold = cfg.get_int("postscreen_dnsbl_threshold")
        self.allowlist_threshold = cfg.get_int("postscreen_dnsbl_allowlist_threshold")
        self.dnsbl_timeout = float(cfg.get_time("postscreen_dnsbl_timeout"))
        self.dnsbl_min_ttl = cfg.get_time("postscreen_dnsbl_min_ttl")
        self.dnsbl_max_ttl = cfg.get_time("postscreen_dnsbl_max_ttl")
        self.ttls = [
            cfg.get_time("postscreen_greet_ttl"),
            self.dnsbl_max_ttl,
            cfg.get_time("postscreen_pipelining_ttl"),
            cfg.get_time("postscreen_non_smtp_command_ttl"),
            cfg.get_time("postscreen_bare_newline_ttl"),
        ]
        self.enabled = (
            self.greet_wait > 0,
            bool(self.sites),
            cfg.get_bool("postscreen_pipelining_enable"),
            cfg.get_bool("postscreen_non_smtp_command_enable"),
            cfg.get_bool("postscreen_bare_newline_enable"),
        )
        self.command_count_limit = cfg.get_int("postscreen_command_count_limit")
        self.command_time_limit = float(cfg.get_time("postscreen_command_time_limit"))
        self.line_limit = max(cfg.get_int("line_length_limit"), 512)
        self.size_limit = cfg.get_size("message_size_limit")
        self.helo_required = cfg.get_bool("postscreen_helo_required")
        self.disable_vrfy = cfg.get_bool("postscreen_disable_vrfy_command")
        self.discard_ehlo = {k.upper() for k in cfg.get_list("postscreen_discard_ehlo_keywords")}
        self.forbidden = ForbiddenCommands(cfg.get_list("postscreen_forbidden_commands"), cfg)
        try:
            self.command_filter = Maps.from_param(cfg, "postscreen_command_filter")
            self.discard_maps = Maps.from_param(cfg, "postscreen_discard_ehlo_keyword_address_maps")
        except MapError as exc:
            raise ConfigError(str(exc)) from None
        self.client_limit = cfg.get_int("postscreen_client_connection_count_limit")
        self.pre_queue_limit = cfg.get_int("postscreen_pre_queue_limit")
        self.post_queue_limit = cfg.get_int("postscreen_post_queue_limit")
        try:
            self.access = AccessList(cfg)
            self.allowlist_interfaces = AddrList.from_param(cfg, "postscreen_allowlist_interfaces")
            self.reply_map = Maps.from_param(cfg, "postscreen_dnsbl_reply_map")
            self.footer = PscFooter(cfg)
        except MapError as exc:
            raise ConfigError(str(exc)) from None
        if store is None:
            try:
                store = open_store(cfg, "postscreen_cache_map")
            except StoreError as exc:
                raise ConfigError(f"postscreen_cache_map: {exc}") from None
        self.cache = PscCache(store, cfg.get_time("postscreen_cache_retention_time"))
        self.cache_name = cfg.get("postscreen_cache_map")
        self.cleanup_interval = cfg.get_time("postscreen_cache_cleanup_interval")
        self.queue_dir = cfg.get("queue_directory")
        self.pass_name = cfg.get("smtpd_service_name")
        self.dnsblog_name = cfg.get("dnsblog_service_name")
        self.per_client: dict[str, int] = {}
        self.under_test = 0
        self.handing = 0

    def _service_path(self, name: str) -> str:
        private = paths.service_socket_path(self.queue_dir, name, True)
        if os.path.exists(private):
            return private
        return paths.service_socket_path(self.queue_dir, name, False)

    def pass_path(self) -> str:
        return self._service_path(self.pass_name)

    def dnsblog_path(self) -> str:
        return self._service_path(self.dnsblog_name)

    def dnsbl_ttl(self, ttl: int | None) -> int:
        """The time a DNSBL result counts: the answer's TTL within the min and max."""
        if ttl is None:
            return self.dnsbl_max_ttl
        return max(self.dnsbl_min_ttl, min(ttl, self.dnsbl_max_ttl))

    def dnsbl_reply_name(self, site: str) -> str:
        """The DNSBL name the reply shows: postscreen_dnsbl_reply_map, else the site."""
        if self.reply_map:
            try:
                found = self.reply_map.lookup(site)
            except (MapError, MapRetry) as exc:
                log.warning("postscreen_dnsbl_reply_map: %s", exc)
                found = None
            if found:
                return found
        return site

    def filter_command(self, line: bytes) -> bytes:
        """postscreen_command_filter: the table's replacement for a command line."""
        if not self.command_filter:
            return line
        try:
            found = self.command_filter.lookup(line.decode("utf-8", "replace"))
        except (MapError, MapRetry) as exc:
            log.warning("postscreen_command_filter: %s", exc)
            return line
        if found is None:
            return line
        return found.encode("utf-8", "replace")[: self.line_limit]

    def discard_ehlo_for(self, addr: str) -> frozenset[str]:
        """Extra EHLO keywords not to announce to this client address."""
        if not self.discard_maps:
            return frozenset()
        try:
            found = self.discard_maps.lookup(addr)
        except (MapError, MapRetry) as exc:
            log.warning("postscreen_discard_ehlo_keyword_address_maps: %s", exc)
            return frozenset()
        return frozenset(w.upper() for w in (found or "").replace(",", " ").split())

    def allowlist_interface(self, laddr: str) -> bool:
        try:
            return self.allowlist_interfaces.match(laddr)
        except (MapError, MapRetry) as exc:
            log.warning("postscreen_allowlist_interfaces: %s", exc)
            return False

    def cleanup_cache(self) -> None:
        before = time.monotonic()
        dropped = self.cache.cleanup(time.time())
        log.info(
            "cache %s full cleanup: dropped=%d entries in %.2fs",
            self.cache_name,
            dropped,
            time.monotonic() - before,
        )


async def serve(ctx, listeners) -> int:
    from mta.master.mail_server import drop_privileges_if_asked, watch_master
    from mta.postscreen.session import screen_client

    drop_privileges_if_asked(ctx)
    log.start_background()
    server = PscServer(ctx.cfg)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    tasks: set[asyncio.Task] = set()
    accepters: list[asyncio.Task] = []
    stopping = False
    socks = [s for s in listeners if isinstance(s, socket.socket)]

    def stop() -> None:
        nonlocal stopping
        stopping = True
        for task in accepters:
            task.cancel()
        for s in socks:
            s.close()
        if not tasks:
            done.set()

    def finished(task: asyncio.Task) -> None:
        tasks.discard(task)
        if stopping and not tasks:
            done.set()

    async def accept_loop(sock: socket.socket) -> None:
        while not stopping:
            conn = await accept_client(loop, sock)
            if conn is None:
                return
            ctx.report_used()
            conn.setblocking(False)
            task = loop.create_task(_serve_one(conn))
            tasks.add(task)
            task.add_done_callback(finished)

    async def _serve_one(conn: socket.socket) -> None:
        try:
            await screen_client(server, conn)
        except Exception as exc:  # noqa: BLE001 - one client's failure is logged, not fatal
            log.warning("postscreen: %s: %s", type(exc).__name__, exc)
        finally:
            conn.close()

    watchdog = float(ctx.cfg.get_time("postscreen_watchdog_timeout"))

    def watchdog_fired(signum, frame) -> None:
        log.fatal("watchdog timeout")

    def pet() -> None:
        if watchdog > 0:
            signal.setitimer(signal.ITIMER_REAL, watchdog)
            loop.call_later(max(watchdog / 3, 0.1), pet)

    def cleanup() -> None:
        server.cleanup_cache()
        if server.cleanup_interval > 0:
            loop.call_later(server.cleanup_interval, cleanup)

    if watchdog > 0:
        signal.signal(signal.SIGALRM, watchdog_fired)
        pet()
    if server.cleanup_interval > 0:
        loop.call_later(server.cleanup_interval, cleanup)
    loop.add_signal_handler(signal.SIGTERM, stop)
    ctx.on_master_gone = stop
    watch_master(loop, ctx)
    accepters.extend(loop.create_task(accept_loop(s)) for s in socks)
    await done.wait()
    signal.setitimer(signal.ITIMER_REAL, 0)
    return 0


def main(argv: list[str] | None = None) -> None:
    from mta.master.mail_server import new_event_loop, start_service

    ctx, listeners = start_service("postscreen", sys.argv[1:] if argv is None else argv)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        status = loop.run_until_complete(serve(ctx, listeners))
    finally:
        loop.close()
    log.info("exiting")
    log.flush()
    os._exit(status)
