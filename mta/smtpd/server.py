"""smtpd.server - the SMTP server process: shared state and the accept loop

SYNOPSIS
    python -m mta.smtpd -n smtp -t inet -c /etc/mta      # as the master starts it
    server = SmtpdServer(cfg)                             # in tests
    await loop.create_server(lambda: SmtpdSession(server), sock=listener)

DESCRIPTION
    One process serves many sessions on one event loop (uvloop when
    installed). SmtpdServer holds what sessions share: the parameters
    read once, the EHLO reply built once, the access checks, the cleanup
    library, a cache of client host names, and the thread pool in which
    queue files are fsynced so that a slow disk delays only the session
    that waits for it.

    send_error_notice() queues the notice a session asks for at its end
    when it ran into trouble of a kind in notify_classes (see
    smtpd/transcript.py), to error_notice_recipient through the same
    cleanup library, and logs "QUEUEID: notice to RCPT: CLASSES errors
    from HOST[ADDR]".

    The client name is the reverse lookup of its address confirmed by a
    forward lookup (through the system resolver, so /etc/hosts counts),
    or "unknown"; results are cached for a minute.

    XVERP is in the EHLO reply only for clients on
    smtpd_authorized_verp_clients (verp_allowed(); a table that fails
    leaves it out), as Postfix offers it; XCLIENT and XFORWARD likewise
    only for smtpd_authorized_xclient_hosts and _xforward_hosts
    (smtpd/xclient.py, smtpd/xforward.py).

SECURITY
    Accepts connections from anyone the listener lets in; runs as
    mail_owner once the master's framework has dropped privileges.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time

from mta import log
from mta.cleanup import Cleanup
from mta.common import tls_libssl
from mta.common.forbidden_commands import ForbiddenCommands
from mta.common.mail_flow import FlowGate
from mta.common.match_list import AddrList, DomainList
from mta.common.receive_override import milters_disabled
from mta.common.worker import BlockingPool
from mta.maps import MapRetry
from mta.smtpd import proxy_filter, xclient, xforward
from mta.smtpd.checks import SessionState, SmtpdChecks
from mta.smtpd.footer import ReplyFooter
from mta.smtpd.limits import ClientLimits
from mta.smtpd.milters import SmtpdMilters
from mta.smtpd.pass_accept import PassListener
from mta.smtpd.sasl import SmtpdSasl
from mta.smtpd.suppressed import RcptSuppression
from mta.smtpd.tls import LEVELS, TlsSetupError, load_server_context, security_level
from mta.smtpd.tls_params import asks_for_certificate, requires_certificate
from mta.smtpd.tls_scache import setup_server_cache
from mta.smtpd.tls_tickets import TicketKeeper
from mta.smtpd.transcript import class_names, make_error_notice, notice_recipient, notify_mask

NAME_CACHE_TTL = 60.0  # seconds a client host name stays cached
NAME_CACHE_MAX = 10000  # entries before the cache is emptied
FSYNC_THREADS = 16  # queue files fsynced at once
# Sessions one process takes before it tells the master it is busy, so that
# the master starts another smtpd only when the running ones are loaded.
# Measured at 50 sessions (BENCHMARKS.md): 25 beat 10 in three A/B pairs
# (fewer processes, less CPU per message); 25 against 50 was a draw.
SESSIONS_PER_PROCESS = 25

EHLO_KEYWORDS = (
    "PIPELINING",
    "SIZE",
    "VRFY",
    "ETRN",
    "ENHANCEDSTATUSCODES",
    "8BITMIME",
    "DSN",
    "SMTPUTF8",
    "CHUNKING",
)


def xclient_xforward_keywords(session) -> tuple[str, ...]:
    """The XCLIENT and XFORWARD EHLO keywords this session's client may see."""
    out = (xclient.EHLO_XCLIENT,) if xclient.allowed(session) else ()
    return out + ((xforward.EHLO_XFORWARD,) if xforward.allowed(session) else ())


class SmtpdServer:
    """State shared by the sessions of one smtpd process."""

    def __init__(self, cfg, cleanup=None, tls: bool = True, tls_loaded=None) -> None:
        self.cfg = cfg
        self.hostname = cfg.get("myhostname")
        self.banner = cfg.get("smtpd_banner")
        self.timeout = cfg.get_time("smtpd_timeout")
        self.line_limit = max(cfg.get_int("line_length_limit"), 512)
        self.size_limit = cfg.get_size("message_size_limit")
        self.queue_dir = cfg.get("queue_directory")
        self.minfree = cfg.get_size("queue_minfree")
        self.in_flow_delay = float(cfg.get_time("in_flow_delay"))
        self.flow = FlowGate(self.queue_dir)
        self.recipient_limit = cfg.get_int("smtpd_recipient_limit")
        self.strict_envelopes = cfg.get_bool("strict_rfc821_envelopes")  # addresses in <> only
        self.recipient_overshoot_limit = cfg.get_int("smtpd_recipient_overshoot_limit")
        self.soft_error_limit = cfg.get_int("smtpd_soft_error_limit")
        self.hard_error_limit = cfg.get_int("smtpd_hard_error_limit")
        self.error_sleep = cfg.get_time("smtpd_error_sleep_time")
        self.junk_limit = cfg.get_int("smtpd_junk_command_limit")
        self.helo_required = cfg.get_bool("smtpd_helo_required")
        self.disable_vrfy = cfg.get_bool("disable_vrfy_command")
        self.smtputf8 = cfg.get_bool("smtputf8_enable")
        # sendmail -bs: no recipient lookups for VRFY, as Postfix's stand-alone mode
        self.stand_alone = False
        self.forbid_unauth_pipelining = cfg.get_bool("smtpd_forbid_unauth_pipelining")
        self._forbid_bare = cfg.get_bool("smtpd_forbid_bare_newline")
        self.bare_exclusions = AddrList(cfg.get_list("smtpd_forbid_bare_newline_exclusions"), cfg)
        self.verp_clients = AddrList.from_param(cfg, "smtpd_authorized_verp_clients")
        self.verp_delims = cfg.get("default_verp_delimiters")
        self.verp_filter = cfg.get("verp_delimiter_filter")
        self.peername_lookup = cfg.get_bool("smtpd_peername_lookup")
        self.flush_domains = DomainList.from_param(cfg, "fast_flush_domains")
        self.notify_mask = notify_mask(cfg)
        self.notice_tasks: set[asyncio.Task] = set()
        self.checks = SmtpdChecks(cfg)
        # a web proxy request or a message without SMTP: 221 and hang up (session.py)
        self.forbidden = ForbiddenCommands(
            cfg.get_list("smtpd_forbidden_commands"), cfg, "smtpd_forbidden_commands"
        )
        self.suppression = RcptSuppression(cfg)  # suppression_action = reject
        # smtpd_milters (smtpd/milters.py); none with receive_override_options no_milters
        self.milters = None if milters_disabled(cfg) else SmtpdMilters.from_config(cfg)
        self.limits = ClientLimits(cfg)
        self.footer = ReplyFooter(cfg)
        self.cleanup = cleanup if cleanup is not None else Cleanup(cfg)
        self.proxy = proxy_filter.settings(cfg)  # smtpd_proxy_filter (None: cleanup queues)
        self.executor = BlockingPool(FSYNC_THREADS, "fsync")
        self.setup_tls(tls, tls_loaded)
        self.ehlo_reply = self.build_ehlo_reply()
        self.ehlo_reply_tls = self.build_ehlo_reply(starttls=False)
        enabled = cfg.get_bool("smtpd_sasl_auth_enable")
        self.sasl = SmtpdSasl(cfg, self.tls_required) if enabled else None
        self.ehlo_auth: dict[tuple[bool, tuple[str, ...]], bytes] = {}
        self.names: dict[str, tuple[float, str, str]] = {}
        self.sessions: set = set()
        self.on_session_end = None  # called after each session ends

    def room_for(self, size: int) -> bool:
        """Is there room in the queue file system for size bytes plus queue_minfree?"""
        try:
            fs = os.statvfs(self.queue_dir)
        except OSError:
            return True  # the queue file write will report the problem
        return fs.f_bavail * fs.f_frsize >= self.minfree + size

    def setup_tls(self, enabled: bool, loaded=None) -> None:
        """Read the STARTTLS settings; a context that cannot be built is logged, not fatal.

        enabled False (sendmail -bs, on a pipe): no STARTTLS, as Postfix's stand-alone mode.
        loaded: what tls.load_server_context() gave while still root (None: load it now)."""
        self.tls_level = security_level(self.cfg) if enabled else "none"
        if self.tls_level not in LEVELS:
            log.warning("unknown smtpd_tls_security_level: %s, using none", self.tls_level)
            self.tls_level = "none"
        self.tls_required = self.tls_level == "encrypt"
        self.tls_loglevel = self.cfg.get_int("smtpd_tls_loglevel")
        self.tls_timeout = float(self.cfg.get_time("smtpd_starttls_timeout"))
        self.tls_wrapper = enabled and self.cfg.get_bool("smtpd_tls_wrappermode")
        self.tls_received_header = self.cfg.get_bool("smtpd_tls_received_header")
        self.tls_digest = self.cfg.get("smtpd_tls_fingerprint_digest").strip() or "sha256"
        self.tls_ask_ccert = asks_for_certificate(self.cfg)
        self.tls_req_ccert = requires_certificate(self.cfg)
        self.tls_cipher_list = ""
        self.tls_context = None
        if self.tls_level != "none" or self.tls_wrapper:
            if loaded is None:
                loaded = load_server_context(self.cfg)
            if isinstance(loaded, TlsSetupError):
                log.warning("TLS library problem: %s", loaded)
            else:
                self.tls_context = loaded
                self.tls_cipher_list = ":".join(c["name"] for c in loaded.get_ciphers())

    async def ehlo_bytes(self, session) -> bytes:
        """The EHLO reply for session: with or without STARTTLS, AUTH when offered,
        XVERP for smtpd_authorized_verp_clients."""
        auth = tuple(await self.sasl.ehlo_keywords(session)) if self.sasl is not None else ()
        auth += xclient_xforward_keywords(session)  # smtpd/xclient.py, smtpd/xforward.py
        xverp = self.verp_allowed(session.st)
        if not auth and not xverp:
            return self.ehlo_reply_tls if session.tls else self.ehlo_reply
        key = (session.tls, auth, xverp)
        reply = self.ehlo_auth.get(key)
        if reply is None:
            if len(self.ehlo_auth) > 16:
                self.ehlo_auth.clear()  # a backend whose mechanisms keep changing
            reply = self.ehlo_auth[key] = self.build_ehlo_reply(not session.tls, auth, xverp)
        return reply

    def verp_allowed(self, st: SessionState) -> bool:
        """May this client ask for VERP (XVERP)? A table that fails says no, as in Postfix."""
        try:
            return self.verp_clients.match(st.client_addr, st.client_name)
        except MapRetry as exc:
            log.warning("smtpd_authorized_verp_clients: %s; XVERP not offered", exc)
            return False

    def build_ehlo_reply(
        self, starttls: bool = True, auth: tuple[str, ...] = (), xverp: bool = False
    ) -> bytes:
        discard = {k.upper() for k in self.cfg.get_list("smtpd_discard_ehlo_keywords")}
        lines = [self.hostname]
        keywords = list(EHLO_KEYWORDS)
        if starttls and self.tls_level != "none":
            keywords.insert(keywords.index("ENHANCEDSTATUSCODES"), "STARTTLS")
        where = keywords.index("ENHANCEDSTATUSCODES")
        # after STARTTLS, as Postfix orders them: AUTH, then XVERP
        keywords[where:where] = auth + (("XVERP",) if xverp else ())
        for keyword in keywords:
            name = keyword.split("=")[0].split()[0]  # "AUTH=PLAIN LOGIN" is AUTH
            if name in discard or (keyword == "VRFY" and self.disable_vrfy):
                continue
            if keyword == "SIZE":
                keyword = f"SIZE {self.size_limit}" if self.size_limit else "SIZE"
            elif keyword == "SMTPUTF8" and not self.smtputf8:
                continue
            lines.append(keyword)
        out = [f"250-{x}" for x in lines[:-1]] + [f"250 {lines[-1]}"]
        return ("\r\n".join(out) + "\r\n").encode()

    def forbid_bare_newline(self, st: SessionState) -> bool:
        if not self._forbid_bare:
            return False
        return not self.bare_exclusions.match(st.client_addr, st.client_name)

    async def client_names(self, addr: str) -> tuple[str, str]:
        """Return (verified name or "unknown", reverse name or "unknown")."""
        if not self.peername_lookup or not addr:
            return "unknown", "unknown"
        now = time.monotonic()
        hit = self.names.get(addr)
        if hit and hit[0] > now:
            return hit[1], hit[2]
        loop = asyncio.get_running_loop()
        name = reverse = "unknown"
        try:
            host, _ = await loop.getnameinfo((addr, 0), socket.NI_NAMEREQD)
            reverse = host
            infos = await loop.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
            if any(info[4][0] == addr for info in infos):
                name = host
        except (OSError, UnicodeError):
            pass
        if len(self.names) > NAME_CACHE_MAX:
            self.names.clear()
        self.names[addr] = (now + NAME_CACHE_TTL, name, reverse)
        return name, reverse

    async def new_state(self, transport) -> SessionState:
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            addr, port = peer[0], peer[1]
            if addr.startswith("::ffff:"):
                addr = addr[7:]
        else:
            addr, port = "127.0.0.1", 0  # UNIX-domain socket: a local client
        name, reverse = await self.client_names(addr)
        st = SessionState(
            client_addr=addr, client_name=name, client_port=port, reverse_name=reverse
        )
        local = transport.get_extra_info("sockname")
        if isinstance(local, tuple):  # for check_policy_service
            st.server_addr = local[0][7:] if local[0].startswith("::ffff:") else local[0]
            st.server_port = local[1]
        return st

    def send_error_notice(self, client: str, mask: int, transcript) -> None:
        """Queue the postmaster's notice about a session with client; see smtpd.transcript.

        The queue file is written here, on the loop, and fsynced on a
        worker thread; the queue id is logged when it is safe."""
        from mta.bounce.notice import open_notice

        what = ", ".join(class_names(mask))
        try:
            data = make_error_notice(self.cfg, client, mask, transcript)
            rcpt = notice_recipient(self.cfg, mask)
            job = open_notice(self.cleanup, [rcpt], data, postmaster=True)
            result = job.finish("incoming")
        except Exception as exc:  # noqa: BLE001 - a notice must not break the session's end
            log.warning("cannot queue error notice about %s: %s", client, exc)
            return
        if result is not None:
            self._log_error_notice(client, what, result, rcpt)
            return
        task = asyncio.ensure_future(self.executor.run(job.commit))
        self.notice_tasks.add(task)  # a task nobody holds may be collected before it ends
        task.add_done_callback(self.notice_tasks.discard)
        task.add_done_callback(
            lambda done: self._log_error_notice(
                client, what, done.exception() or done.result(), rcpt
            )
        )

    def _log_error_notice(self, client: str, what: str, result, rcpt: str) -> None:
        if isinstance(result, BaseException):
            log.warning("cannot queue error notice about %s: %s", client, result)
        elif result.action != "queued":
            log.warning(
                "cannot queue error notice about %s: %s", client, result.reply or result.action
            )
        else:
            log.info(
                "%s: notice to %s: %s errors from %s",
                result.queue_id,
                rcpt,
                what,
                client,
            )

    def session_started(self, session) -> None:
        self.sessions.add(session)

    def session_ended(self, session) -> None:
        self.sessions.discard(session)
        if self.on_session_end is not None:
            self.on_session_end()


async def serve(ctx, listeners) -> int:
    """Run smtpd on the master's listeners until told to stop."""
    from mta.master.mail_server import drop_privileges_if_asked, watch_master
    from mta.smtpd.session import SmtpdSession

    tls_loaded = load_server_context(ctx.cfg)  # keys are read as root, as Postfix does
    tls_libssl.bind()  # libssl (ticket keys, client certificates), found while still root
    drop_privileges_if_asked(ctx)
    log.start_background()
    loop = asyncio.get_running_loop()
    server = SmtpdServer(ctx.cfg, tls_loaded=tls_loaded)
    server.limits.service = ctx.service_name
    done = asyncio.Event()
    servers = []
    max_idle = ctx.cfg.get_time("max_idle")
    idle_timer = None
    stopping = False

    def arm_idle() -> None:
        nonlocal idle_timer
        if idle_timer is not None:
            idle_timer.cancel()
        if max_idle > 0 and not stopping:
            idle_timer = loop.call_later(max_idle, stop)

    def stop() -> None:
        nonlocal stopping
        stopping = True
        for srv in servers:
            srv.close()
        if not server.sessions:
            done.set()

    busy = False
    served = False

    def factory() -> SmtpdSession:
        nonlocal busy, served
        if idle_timer is not None:
            idle_timer.cancel()
        if not busy and len(server.sessions) + 1 >= SESSIONS_PER_PROCESS:
            busy = True
            ctx.report_taken()
        elif not served:
            # tell the master once that this process started fine and serves
            ctx.report_taken()
            ctx.report_available()
        served = True
        return SmtpdSession(server)

    def ended() -> None:
        nonlocal busy
        if busy and len(server.sessions) < SESSIONS_PER_PROCESS:
            busy = False
            ctx.report_available()
        if not server.sessions:
            if stopping:
                done.set()
            else:
                arm_idle()

    server.on_session_end = ended
    tickets = TicketKeeper(ctx.cfg, server.tls_context)  # shared through tlsmgr
    await tickets.start()
    # the session-id cache in tlsmgr, for clients that resume without tickets
    scache = setup_server_cache(ctx.cfg, server.tls_context)
    for sock in listeners:
        if not isinstance(sock, socket.socket):
            continue
        if ctx.service_type == "pass":  # clients handed over by postscreen
            passed = PassListener(sock, factory)
            passed.start()
            servers.append(passed)
        else:
            servers.append(await loop.create_server(factory, sock=sock, backlog=1024))
    loop.add_signal_handler(signal.SIGTERM, stop)
    ctx.on_master_gone = stop
    watch_master(loop, ctx)
    arm_idle()
    await done.wait()
    tickets.stop()
    if scache is not None:
        scache.close()
    server.executor.shutdown()
    return 0


def main(argv: list[str] | None = None) -> None:
    from mta.master.mail_server import new_event_loop, start_service

    ctx, listeners = start_service("smtpd", sys.argv[1:] if argv is None else argv)
    loop = new_event_loop()
    try:
        status = loop.run_until_complete(serve(ctx, listeners))
    finally:
        loop.close()
    log.info("exiting")
    log.flush()
    os._exit(status)
