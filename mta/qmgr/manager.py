"""qmgr.manager - the queue manager: active window, scheduling, retries

SYNOPSIS
    from mta.qmgr.manager import QueueManager
    qm = QueueManager(cfg)
    qm.trigger(b"I")              # from the trigger listener: scan incoming
    await qm.run()                # until qm.stop()

DESCRIPTION
    At start the active queue is moved back to incoming (what was in
    flight when the previous qmgr stopped is tried again; recipients
    already done stay done). Then:

    Intake. A scan of incoming/ (on a trigger from cleanup, "I", on the
    master's wakeup "W", and whenever room frees up) moves each file
    into active/ while the active window has room
    (qmgr_message_active_limit messages, qmgr_message_recipient_limit
    recipients), reads its envelope, logs "from=<...>, size=N, nrcpt=M
    (queue active)", applies a REDIRECT action (mta/qmgr/redirect.py:
    the redirect address replaces all recipients), resolves each
    recipient not yet done (with the
    envelope sender, for the sender_dependent_* maps) through
    trivial-rewrite (in process, cached), or, for a message with a
    content filter (content_filter, FILTER), sends every recipient to
    the filter's transport and next hop instead (mta/qmgr/content_filter.py),
    and files the recipients under
    their transport and next hop in batches of the transport's
    recipient limit. A damaged file goes to corrupt/. A scan of
    deferred/ runs every queue_run_delay (and on "D", "A", and "F" for
    flush, which ignores each message's back-off) and takes the
    messages whose retry time (the file's mtime) has come. A scan takes
    SCAN_CHUNK messages per pass of the main loop and hands out
    deliveries between passes, so a large queue starts moving at once
    instead of after it has all been read. A scan that fills the active
    window (qmgr_message_active_limit) pauses where it is and goes on
    from there when room frees; it is not started over, which in a
    backlog of a million messages would list the directories again for
    every few deliveries.

    Delivery. The scheduler (mta/_speedups/scheduler) picks the next
    batch round-robin under the per-transport and per-destination
    limits; each batch is one request to private/TRANSPORT
    (common/deliver_request.py). The answer gives per-recipient results
    and whether the next hop itself failed, which is the feedback for
    the destination's concurrency window. A destination that fails a
    whole pseudo-cohort is dead for minimal_backoff_time: its waiting
    batches are deferred at once with "delivery temporarily suspended:
    REASON". An agent that cannot be reached or breaks off defers the
    recipients it did not answer for.

    VERP. A message with the envelope attribute verp_delimiters
    (XVERP, sendmail -XV; ignored for the null sender and for delimiters
    verp_delimiter_filter refuses) goes out one recipient per request,
    each with the sender that names that recipient (its original
    address): owner-list@example.com with "+=" for user@domain.tld is
    owner-list+user=domain.tld@example.com (common/verp.py). Unless
    disable_verp_bounces is set, each failed recipient gets the sender a
    notice of its own, sent to that same VERP address.

    Completion. When the last batch of a message is back: a message
    with every recipient done is removed, after a non-delivery notice
    to the sender when recipients bounced (mta/bounce/notice.py);
    otherwise it moves to deferred/ with its next retry time as mtime:
    the time since the last attempt doubles it, between
    minimal_backoff_time and maximal_backoff_time. A message older than
    maximal_queue_lifetime (bounce_queue_lifetime for a notice, whose
    sender is empty) is not deferred again: its remaining recipients
    bounce with their last deferral reason ("status=expired").

    Notices (mta/bounce/notice.py, queued through cleanup): recipients
    delivered with NOTIFY=SUCCESS get the sender a success notice, unless
    the next hop took the DSN request itself, and sendmail -v gets the
    sender a report of the first attempt; both are built from the
    message's trace log, which the agents write before they mark a
    recipient done, so a qmgr that stops in between sends them when the
    message comes back, and a notice that cannot be queued keeps the
    message (and its log) for the next attempt. A message deferred after
    the delay-warning time in its file (cleanup sets it from
    delay_warning_time) gets the sender one delay warning for the
    recipients whose NOTIFY allows it, and the time is cleared in place.

    Probes. A message from the verify service (QF_VERIFY_MTA) is
    resolved with the address_verify_* routing parameters (transport
    maps, relayhost, the *_transport defaults, the sender-dependent
    maps), handed to the agents in
    verify mode, and removed after its one attempt without any notice;
    each result goes back to the verify service. A sendmail -bv message
    (QF_VERIFY_USER) gets the same single attempt, with normal routing,
    and its report goes to the sender.

    Fast flush. A message moved to deferred/ has its queue id appended
    to the log of each fast_flush_domains site among its delayed
    recipients (mta/flush), which ETRN, sendmail -qR and mta queue -s
    read instead of the whole deferred queue. Every FLUSH_REFRESH_EVERY
    seconds a worker thread refreshes stale logs and purges old empty
    ones; when that made mail due, deferred/ is scanned.

SECURITY
    Runs as mail_owner. Reads queue files written by cleanup (untrusted
    addresses inside, parsed by the record kernel); never reads message
    content.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from mta import log
from mta.bounce import logfile
from mta.common.deadline import bounded
from mta.common.deliver_request import (
    REQ_FLAG_BOUNCE,
    REQ_FLAG_RECORD,
    REQ_FLAG_VERIFY,
    DeliveryRequest,
    DeliveryResult,
    RequestRecipient,
    close_spares,
    deliver,
)
from mta.common.dsn import (
    ACTION_DELAYED,
    ACTION_FAILED,
    RecipientStatus,
    status_line,
    wants_success_notice,
)
from mta.common.egress import Source, open_egress
from mta.common.mail_flow import FLOW_RESERVE, FlowTokens
from mta.common.verp import message_delimiters, verp_sender
from mta.common.worker import Worker
from mta.flush import FlushLogs, refresh_logs
from mta.maps import MapRetry
from mta.qmgr.content_filter import ContentFilter
from mta.qmgr.outcomes import Outcomes
from mta.qmgr.redirect import Routing
from mta.qmgr.scan import iter_queue
from mta.qmgr.settings import TransportSettings, load_transports
from mta.qmgr.shaping import Shaper, site_of
from mta.qmgr.sites import SiteResolver, literal_site
from mta.queue import paths
from mta.queue.queue_file import (
    QueueFileError,
    QueueMessage,
    make_queue_dirs,
    mark_done,
    move_to_corrupt,
    queue_dir_for,
    read_queue_file,
    set_flags,
    set_warn_time,
)
from mta.queue.rec_type import (
    DSN_NOTIFY_DELAY,
    QF_TRACE,
    QF_VERIFY,
    QF_VERIFY_MTA,
)
from mta.trivial_rewrite.resolve import Resolver

from .kernel import Scheduler

TRIGGER_INCOMING = ord("I")  # cleanup queued new mail
TRIGGER_DEFERRED = ord("D")  # scan the deferred queue now
TRIGGER_ALL = ord("A")  # scan both
TRIGGER_FLUSH = ord("F")  # deferred mail is due now, whatever its back-off
TRIGGER_WAKEUP = ord("W")  # the master's periodic wakeup

IDLE_RESCAN = 1.0  # seconds between incoming scans when nothing pokes qmgr
# messages taken in per pass of the main loop: between passes the scheduler
# hands out what is already in, so delivery starts while a big queue is
# still being read (a restart with 100,000 queued does not wait for all of them)
SCAN_CHUNK = 100
FORGET_EVERY = 60.0  # seconds between clean-ups of idle destinations
FLUSH_REFRESH_EVERY = 1000.0  # seconds between fast flush log refreshes (Postfix's wakeup)
SUSPENDED = "delivery temporarily suspended"
# parameters that address probes take from address_verify_NAME instead
PROBE_ROUTING = (
    "transport_maps",
    "relayhost",
    "default_transport",
    "local_transport",
    "virtual_transport",
    "relay_transport",
    "sender_dependent_relayhost_maps",
    "sender_dependent_default_transport_maps",
)


@dataclass
class ActiveMessage:
    msg: QueueMessage
    path: str
    active_time: float
    batches_out: int = 0  # batches queued or in flight
    delayed: dict[int, RecipientStatus] = field(default_factory=dict)  # offset -> status
    bounced: int = 0
    nrcpt: int = 0  # recipients not done when it became active
    had_logs: bool = True  # bounce/defer logs may exist from earlier attempts
    traced: bool = False  # the trace log has entries to report (success, sendmail -v)
    probed: list[RecipientStatus] = field(default_factory=list)  # probe results, for verify


@dataclass
class Batch:
    message: ActiveMessage
    transport: str
    nexthop: str
    recipients: list[RequestRecipient]
    source: Source | None = None  # the egress source it leaves from (common/egress)


class QueueManager:
    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.queue_dir = cfg.get("queue_directory")
        self.hash_depth = cfg.get_int("hash_queue_depth")
        self.hashed = tuple(cfg.get_list("hash_queue_names"))
        self.active_limit = max(1, cfg.get_int("qmgr_message_active_limit"))
        self.rcpt_limit = max(1, cfg.get_int("qmgr_message_recipient_limit"))
        self.min_backoff = float(cfg.get_time("minimal_backoff_time"))
        self.max_backoff = max(self.min_backoff, float(cfg.get_time("maximal_backoff_time")))
        self.max_lifetime = float(cfg.get_time("maximal_queue_lifetime"))
        self.bounce_lifetime = float(cfg.get_time("bounce_queue_lifetime"))
        self.run_delay = max(1.0, float(cfg.get_time("queue_run_delay")))
        self.ipc_timeout = float(cfg.get_time("qmgr_daemon_timeout"))
        self.resolver = Resolver(cfg)
        self.routing = Routing(cfg)
        self.content_filter = ContentFilter(cfg)
        self.verp_filter = cfg.get("verp_delimiter_filter")
        self.verp_bounces_off = cfg.get_bool("disable_verp_bounces")
        self.outcomes = Outcomes(cfg)  # event log, suppression list
        self.sites = SiteResolver(cfg)  # domain -> mailbox provider, by MX hosts
        self.shaper = Shaper(cfg)  # per-site limits and reply rules
        self.egress = open_egress(cfg)  # egress pools and warm-up; None without pools
        self.transports = load_transports(cfg)
        self.sched = Scheduler()
        self.active: dict[str, ActiveMessage] = {}
        self.active_rcpts = 0
        self.wake = asyncio.Event()
        self.want_incoming = True
        self.want_deferred = True
        self.flush_deferred = False
        self.stopping = False
        self.tasks: set[asyncio.Task] = set()
        self.last_deferred_scan = 0.0
        self.last_forget = time.monotonic()
        self.incoming_scan: Iterator[tuple[str, str]] | None = None  # a scan under way
        self.incoming_full = False  # ... paused at the window limit until room frees
        self.deferred_scan: Iterator[tuple[str, str]] | None = None
        self.deferred_due: Callable[[str], bool] | None = None  # ... and its test of retry time
        self.deferred_full = False  # ... paused at the window limit until room frees
        self.dead_reason: dict[tuple[str, str], str] = {}
        self.cleanup = None  # built on the first notice: it opens every cleanup table
        self.verify_client = None  # built on the first probe result
        self._probe_resolver: Resolver | None = None  # built for the first probe
        self.flow = FlowTokens(self.queue_dir)  # in_flow_delay tokens for the intake
        self.notify_classes = {c.lower() for c in cfg.get_list("notify_classes")}
        self.flush_logs = FlushLogs(cfg)  # per-site logs of deferred mail (ETRN)
        self.flush_refresh_every = FLUSH_REFRESH_EVERY
        self.last_flush_refresh = time.monotonic()
        self.flush_refreshing = False  # a refresh runs on a worker thread
        # unlink() waits on the file system's journal (a fraction of a
        # millisecond under load); done on its own thread it never holds up
        # the loop. A file not yet removed when qmgr dies has every
        # recipient done, and is removed on the next start.
        self.remover = Worker(lambda job: self.remove(*job), "qmgr-remove")
        # a file waiting for removal still holds its place in the active
        # window: active/ never has more than qmgr_message_active_limit files
        self.removals_queued = 0  # written by the loop only
        self.removals_done = 0  # written by the remover only
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_use: Callable[[], None] | None = None  # called at the first delivery request

    # ------------------------------------------------------------ control
    def trigger(self, data: bytes) -> None:
        """React to trigger bytes from the fifo/socket (several may come at once)."""
        for byte in set(data):
            if byte in (TRIGGER_INCOMING, TRIGGER_WAKEUP, TRIGGER_ALL):
                self.want_incoming = True
            if byte in (TRIGGER_DEFERRED, TRIGGER_ALL):
                self.want_deferred = True
            if byte == TRIGGER_FLUSH:
                self.want_deferred = True
                self.flush_deferred = True
                for d in self.sched.dests.values():
                    if d.is_dead():
                        d.dead_until = time.time()  # flush revives dead destinations too
        self.wake.set()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    def agent_path(self, transport: str) -> str:
        return paths.service_socket_path(self.queue_dir, transport, private=True)

    # ------------------------------------------------------------ main loop
    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.recover_active()
        self.flow.put(FLOW_RESERVE)
        while not self.stopping:
            now = time.time()
            if now - self.last_deferred_scan >= self.run_delay:
                self.want_deferred = True
            if self.deferred_scan is None and self.want_deferred:
                self.want_deferred = False
                flush, self.flush_deferred = self.flush_deferred, False
                self.last_deferred_scan = now
                self.start_deferred_scan(flush)
            if self.deferred_scan is not None and not self.deferred_full:
                self.scan_deferred()
            # a trigger during a scan leaves want_incoming set: the files it
            # announces may sit in a directory the scan has already listed
            if self.incoming_scan is None and self.want_incoming:
                self.want_incoming = False
                self.incoming_scan = self._iter("incoming")
            if self.incoming_scan is not None and not self.incoming_full:
                self.scan_incoming()
            for d in self.sched.revive(time.time()):
                log.info("%s: %s: delivery resumes", d.transport.name, d.key)
            if self.shaper.rate_cuts:
                self.shaper.restore(self.sched, time.time())
            self.dispatch()
            if time.monotonic() - self.last_forget > FORGET_EVERY:
                self.last_forget = time.monotonic()
                self.sched.forget_idle()
            if time.monotonic() - self.last_flush_refresh > self.flush_refresh_every:
                self.last_flush_refresh = time.monotonic()
                self.start_flush_refresh()
            timeout = self.run_delay - (time.time() - self.last_deferred_scan)
            nxt = self.sched.next_event(time.time())
            if nxt is not None:
                timeout = min(timeout, nxt - time.time())
            if self.incoming_full or self.deferred_full:
                timeout = min(timeout, IDLE_RESCAN)
            if self._scanning():
                # more to read: let the deliveries just handed out start first
                await asyncio.sleep(0)
            else:
                try:
                    await bounded(self.wake.wait(), max(0.01, timeout))
                except asyncio.TimeoutError:
                    pass
            self.wake.clear()
            if (self.incoming_full or self.deferred_full) and self._room():
                # a scan paused at the window limit goes on where it stopped
                self.incoming_full = self.deferred_full = False
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5)
        if self.egress is not None:
            self.egress.close()  # the last warm-up counts to the state file
        close_spares()
        await self.loop.run_in_executor(None, self.remover.close)

    # ------------------------------------------------------------ intake
    def recover_active(self) -> None:
        """Move what the last qmgr had in flight back to incoming."""
        for queue_id, path in iter_queue(self.queue_dir, "active", self.hash_depth, self.hashed):
            self._move(path, "incoming", queue_id)

    def _dir(self, queue: str, queue_id: str) -> str:
        return queue_dir_for(self.queue_dir, queue, queue_id, self.hash_depth, self.hashed)

    def _move(self, path: str, queue: str, queue_id: str) -> str | None:
        directory = self._dir(queue, queue_id)
        target = os.path.join(directory, queue_id)
        try:
            os.rename(path, target)
        except FileNotFoundError as exc:
            if exc.filename2 is None and not os.path.exists(path):
                return None
            make_queue_dirs(directory)
            try:
                os.rename(path, target)
            except FileNotFoundError:
                return None
        return target

    def _room(self) -> bool:
        removing = self.removals_queued - self.removals_done
        return (
            len(self.active) + removing < self.active_limit and self.active_rcpts < self.rcpt_limit
        )

    def _scanning(self) -> bool:
        """A scan has files to read now, or one asked for can start.

        A scan paused at the window limit waits for room like the rest of
        the loop; a scan asked for meanwhile (a trigger) starts after it."""
        if self.incoming_scan is None:
            incoming = self.want_incoming
        else:
            incoming = not self.incoming_full
        if self.deferred_scan is None:
            deferred = self.want_deferred
        else:
            deferred = not self.deferred_full
        return incoming or deferred

    def _iter(self, queue: str) -> Iterator[tuple[str, str]]:
        return iter_queue(self.queue_dir, queue, self.hash_depth, self.hashed)

    def scan_incoming(self) -> None:
        """The next chunk of the incoming scan under way."""
        taken, state = self._take_in(self.incoming_scan, "incoming")
        self.flow.put(taken)  # one intake token per message taken in
        if state == "done":
            self.incoming_scan = None
        self.incoming_full = state == "full"

    def start_deferred_scan(self, flush: bool) -> None:
        now = time.time()

        def due(path: str) -> bool:
            try:
                return flush or os.stat(path).st_mtime <= now
            except OSError:
                return False

        self.deferred_scan = self._iter("deferred")
        self.deferred_due = due

    def scan_deferred(self) -> None:
        """The next chunk of the deferred scan under way."""
        _, state = self._take_in(self.deferred_scan, "deferred", self.deferred_due)
        if state == "done":
            self.deferred_scan = None
        self.deferred_full = state == "full"

    def _take_in(self, files: Iterator[tuple[str, str]], queue: str, due=None) -> tuple[int, str]:
        """Move up to SCAN_CHUNK of a scan's files into active while the window has room.

        How many moved, and how the scan stands: "done" at its end, "full"
        when the window filled first (the caller comes back for the rest
        when room frees), "more" when the chunk was used up."""
        taken = 0
        while True:
            # room first: a file taken from the scan must not be dropped
            # when the window is full, as the scan resumes after it
            if not self._room():
                return taken, "full"
            entry = next(files, None)
            if entry is None:
                return taken, "done"
            queue_id, path = entry
            if queue_id in self.active or (due is not None and not due(path)):
                continue
            target = self._move(path, "active", queue_id)
            if target is not None:
                taken += 1
                self.activate(queue_id, target, fresh=queue == "incoming")
                if taken >= SCAN_CHUNK:
                    return taken, "more"

    def activate(self, queue_id: str, path: str, fresh: bool = False) -> None:
        """A message entered the active queue: read it and file its recipients.

        fresh: it came from incoming/ with no recipient done, so no earlier
        attempt can have left bounce or defer logs."""
        try:
            msg = read_queue_file(path)
        except FileNotFoundError:
            return
        except (OSError, QueueFileError) as exc:
            if isinstance(exc, OSError) or isinstance(exc.__cause__, OSError):
                # unreadable is not damaged (a permission, an I/O error): try again later
                log.warning("%s: %s; message deferred", queue_id, exc)
                now = time.time()
                try:
                    os.utime(path, (now, now + self.min_backoff))
                except OSError:
                    pass  # not ours either: due again at the next deferred scan
                try:
                    self._move(path, "deferred", queue_id)
                except OSError as err:
                    log.warning("%s: cannot defer: %s", queue_id, err)
                return
            log.warning("%s: %s; moving to corrupt", queue_id, exc)
            try:
                move_to_corrupt(self.queue_dir, path)
            except OSError as err:
                log.warning("%s: cannot move to corrupt: %s", queue_id, err)
            return
        now = time.time()
        pending = [r for r in msg.recipients if not r.done]
        am = ActiveMessage(msg=msg, path=path, active_time=now, nrcpt=len(pending))
        am.had_logs = not (fresh and len(pending) == len(msg.recipients))
        self.active[queue_id] = am
        self.active_rcpts += am.nrcpt
        log.info(
            "%s: from=<%s>, size=%d, nrcpt=%d (queue active)",
            queue_id,
            msg.sender,
            msg.content_size,
            len(msg.recipients),
        )
        try:
            routed = self.routing.recipients(msg, pending)  # REDIRECT: qmgr/redirect.py
        except Exception as exc:  # noqa: BLE001 - a message is deferred, never dropped
            self.active_rcpts -= am.nrcpt
            self._defer_after_error(am, "cannot redirect the recipients", exc)
            return
        if not routed:
            self._complete_safely(am)
            return
        if msg.forced_expire or self._expired(msg, now):
            try:
                self.expire(am, routed)
            except Exception as exc:  # noqa: BLE001 - a message is deferred, never dropped
                self._defer_after_error(am, "cannot expire", exc)
            return
        routed = self.outcomes.suppress(msg, path, routed, now)
        if not routed:
            self._complete_safely(am)
            return
        verp = self._verp(msg)
        groups: dict[tuple[str, str], list[RequestRecipient]] = {}
        try:
            resolver = self.probe_resolver() if msg.flags & QF_VERIFY_MTA else self.resolver
            # qmgr/content_filter.py; a probe (sendmail -bv, verify) never goes to a filter
            filt = None if msg.flags & QF_VERIFY else self.content_filter.route(msg)
            for r in routed:
                if filt is not None:
                    where = self.content_filter.destination(filt, r.address)
                    groups.setdefault(where, []).append(r)
                    continue
                res = resolver.resolve(r.address, msg.sender)
                groups.setdefault((res.transport, res.nexthop), []).append(r)
        except Exception as exc:  # noqa: BLE001 - a table that fails defers, never drops
            self.active_rcpts -= am.nrcpt
            self._defer_after_error(am, "cannot route the recipients", exc)
            return
        for (transport, nexthop), rcpts in groups.items():
            ts = self.transports.get(transport)
            self.sched.set_transport(transport, ts.process_limit)
            limit = ts.recipient_limit
            step = 1 if verp else limit  # VERP: each recipient gets a sender of its own
            for i in range(0, len(rcpts), step):
                chunk = rcpts[i : i + step]
                am.batches_out += 1
                batch = Batch(am, transport, nexthop, chunk)
                if limit == 1:
                    self._queue(ts, chunk[0].address.lower(), batch)
                else:
                    self._queue_by_site(ts, batch)

    def _queue_by_site(self, ts: TransportSettings, batch: Batch) -> None:
        """Queue a batch under its site (qmgr/sites.py) when its transport is
        shaped; a domain whose site is not known yet waits for its MX look-up."""
        nexthop = batch.nexthop
        if not self.shaper.applies(ts.name):
            self._queue(ts, nexthop.lower(), batch)
            return
        literal = literal_site(nexthop)
        if literal is not None:
            self._queue_from_pool(ts, literal, batch, False)  # a relayhost, [host]: not shaped
            return
        site = self.sites.cached(nexthop)
        if site is not None:
            self._queue_from_pool(ts, site, batch, True)
            return

        def resolved(site: str) -> None:
            try:
                self._queue_from_pool(ts, site, batch, True)
            except Exception as exc:  # noqa: BLE001 - the batch is deferred, never lost
                self._defer_batch(batch, f"cannot queue for site {site}: {exc}")
            self.wake.set()

        self.sites.resolve(nexthop, resolved)

    def _queue_from_pool(self, ts: TransportSettings, site: str, batch: Batch, shaped: bool):
        """Queue a batch for a site, from a source of its message's egress pool if it has
        one (queued as "SITE/SOURCE"); every source capped for today defers it."""
        if self.egress is None:
            self._queue(ts, site, batch, shaped)
            return
        msg = batch.message.msg
        try:
            pool = self.egress.pool_for(msg.sender, msg.attrs.get("pool", ""))
        except MapRetry as exc:
            self._defer_batch(batch, f"egress_pool_maps: {exc}", "4.3.0")
            return
        if not pool:
            self._queue(ts, site, batch, shaped)
            return
        now = time.time()
        try:
            source = self.egress.choose(pool, site, now)
        except KeyError:
            log.warning("%s: egress pool %s is not configured", msg.queue_id, pool)
            self._defer_batch(batch, f"egress pool {pool} is not configured", "4.3.5")
            return
        if source is None:
            why = f"every source of egress pool {pool} reached today's warm-up cap for {site}"
            self._defer_batch(batch, why, "4.7.0")
            return
        # counted when chosen: batches still queued count against the cap too
        self.egress.count(source.name, site, len(batch.recipients), now)
        batch.source = source
        self._queue(ts, f"{site}/{source.name}", batch, shaped)

    def _queue(self, ts: TransportSettings, key: str, batch: Batch, shaped: bool = False) -> None:
        dest = self._destination(ts, key)
        if shaped:
            self.shaper.configure(dest, time.time())
        if dest.is_dead():
            self._defer_batch(batch, f"{SUSPENDED}: {self._dead_reason(dest)}")
        else:
            self.sched.push(dest, batch)

    def probe_resolver(self) -> Resolver:
        """The resolver for address probes: address_verify_* routing in place of the usual."""
        if self._probe_resolver is None:
            cfg = self.cfg
            self._probe_resolver = Resolver(
                cfg.with_overrides(
                    {name: cfg.get(f"address_verify_{name}") for name in PROBE_ROUTING}
                )
            )
        return self._probe_resolver

    def _destination(self, ts: TransportSettings, key: str):
        return self.sched.destination(
            ts.name,
            key,
            ts.initial_concurrency,
            ts.concurrency_limit,
            ts.positive[0],
            ts.positive[1],
            ts.negative[0],
            ts.negative[1],
            ts.cohort_limit,
            ts.rate_delay,
        )

    # ------------------------------------------------------------ delivery
    def dispatch(self) -> None:
        if self.egress is not None:
            self.egress.save()  # counted warm-up batches are on disk before any leaves
        now = time.time()
        while True:
            picked = self.sched.pick(now)
            if picked is None:
                return
            dest, batch = picked
            if self.on_use is not None:
                self.on_use, on_use = None, self.on_use
                on_use()
            task = asyncio.create_task(self._deliver(dest, batch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _verp(self, msg: QueueMessage) -> str | None:
        """The message's VERP delimiters (common/verp.py), or None."""
        return message_delimiters(msg.attrs, msg.sender, self.verp_filter)

    async def _deliver(self, dest, batch: Batch) -> None:
        am = batch.message
        msg = am.msg
        sender = msg.sender
        verp = self._verp(msg)
        if verp:  # one recipient per batch: the sender names it
            rcpt = batch.recipients[0]
            sender = verp_sender(verp, msg.sender, rcpt.orig or rcpt.address)
        req = DeliveryRequest(
            queue_name="active",
            queue_id=msg.queue_id,
            sender=sender,
            nexthop=batch.nexthop,
            transport=batch.transport,
            recipients=batch.recipients,
            arrival=msg.arrival,
            active_time=am.active_time,
            flags=(REQ_FLAG_BOUNCE if not msg.sender else 0)
            | (REQ_FLAG_VERIFY if msg.flags & QF_VERIFY else 0)
            | (REQ_FLAG_RECORD if msg.flags & QF_TRACE else 0),
            attrs=self._request_attrs(dest, batch),
            content_offset=msg.content_offset,
            content_size=msg.content_size,
        )
        try:
            result = await deliver(self.agent_path(batch.transport), req, self.ipc_timeout)
        except Exception as exc:  # noqa: BLE001 - never lose track of a batch
            result = DeliveryResult(error=f"{type(exc).__name__}: {exc}")
        try:
            self._take_result(dest, batch, req, result)
        except Exception as exc:  # noqa: BLE001 - never lose track of a message
            # the batch is over whatever went wrong: its recipients count as
            # delayed, so the message comes back for them
            log.warning(
                "%s: error handling the delivery result: %s: %s",
                msg.queue_id,
                type(exc).__name__,
                exc,
            )
            for r in batch.recipients:
                if r.offset not in am.delayed:
                    self._note(am, RecipientStatus.of(r, ACTION_DELAYED, "4.3.0", "qmgr error"))
            self._batch_done(am)
        self.dispatch()

    def _request_attrs(self, dest, batch: Batch) -> dict[str, str]:
        """The envelope attributes, a shaped site's per-connection limit, the source."""
        attrs = batch.message.msg.attrs
        if self.shaper.is_shaped(dest):
            attrs = {**attrs, **self.shaper.request_attrs(dest)}
        if batch.source is not None:
            attrs = {
                **attrs,
                "source_address": batch.source.address,
                "helo_name": batch.source.helo,
            }
        return attrs

    def _shape(self, dest, result, now: float) -> None:
        """A shaped site's reply rules: the first reply that matches one acts."""
        replies = [(result.hop_dsn, result.hop_reason)] if result.hop_dsn else []
        replies += [
            (st.dsn, st.diag_text or st.reason)
            for st in result.statuses
            if st.action in (ACTION_DELAYED, ACTION_FAILED)
        ]
        for dsn, reply in replies:
            found = self.shaper.on_reply(dest, dsn, reply, now, self.sched)
            if found is None:
                continue
            actions, targets = found
            if actions.suspend:
                for d in targets:
                    why = f"site {d.key}: {' '.join(reply.split())[:300]}"
                    self.dead_reason[(d.transport.name, d.key)] = why
                    for waiting in self.sched.drain(d):
                        self._defer_batch(waiting, f"{SUSPENDED}: {why}")
            return

    def _take_result(self, dest, batch: Batch, req: DeliveryRequest, result) -> None:
        """Feed an agent's answer to the scheduler and the message's bookkeeping."""
        am = batch.message
        msg = am.msg
        ok = not result.error and not result.hop_dsn
        if result.error:
            log.warning("%s: transport %s: %s", msg.queue_id, batch.transport, result.error)
        now = time.time()
        if self.sched.done(dest, ok, now, self.min_backoff):
            reason = result.hop_reason or result.error or "destination failed"
            self.dead_reason[(dest.transport.name, dest.key)] = reason
            log.info("%s: %s: too many failures; %s", batch.transport, dest.key, SUSPENDED)
            for waiting in self.sched.drain(dest):
                self._defer_batch(waiting, f"{SUSPENDED}: {reason}")
        elif self.shaper.is_shaped(dest):
            self._shape(dest, result, now)
        site = site_of(dest.key) if self.shaper.is_shaped(dest) else ""
        self.outcomes.record(msg, result.statuses, site, batch.transport)
        for st in result.statuses:
            self._note(am, st)
        missing = result.missing(req)
        if missing:
            why = "mail transport unavailable" if result.error else "no status from agent"
            self._defer_recipients(am, missing, why, "4.3.0")
        self._batch_done(am)

    def _dead_reason(self, dest) -> str:
        return self.dead_reason.get((dest.transport.name, dest.key), "destination failed")

    def _note(self, am: ActiveMessage, st: RecipientStatus) -> None:
        """Remember one recipient's status until the message is complete."""
        if am.msg.flags & QF_TRACE or wants_success_notice(st):
            am.traced = True  # the agent put it in the trace log
        if am.msg.flags & QF_VERIFY_MTA:
            am.probed.append(st)
        if st.action == ACTION_DELAYED:
            am.delayed[st.offset] = st
        elif st.action == ACTION_FAILED:
            am.bounced += 1

    def _defer_batch(self, batch: Batch, reason: str, dsn: str = "4.4.1") -> None:
        self._defer_recipients(batch.message, batch.recipients, reason, dsn)
        self._batch_done(batch.message)

    def _defer_recipients(
        self, am: ActiveMessage, rcpts: list[RequestRecipient], reason: str, dsn: str
    ) -> None:
        """Defer recipients on qmgr's own account: log, defer log, remember."""
        statuses = [RecipientStatus.of(r, ACTION_DELAYED, dsn, reason) for r in rcpts]
        kinds = ("defer", "trace") if am.msg.flags & QF_TRACE else ("defer",)
        for kind in kinds:
            try:
                logfile.append(
                    self.queue_dir, kind, am.msg.queue_id, statuses, self.hash_depth, self.hashed
                )
            except OSError as exc:
                log.warning("%s: cannot update %s log: %s", am.msg.queue_id, kind, exc)
        now = time.time()
        msg = am.msg
        delays = (max(0.0, am.active_time - msg.arrival), max(0.0, now - am.active_time), 0, 0)
        for st in statuses:
            st.klass = self.outcomes.classes.of_status(st)
            st.delays = delays
            log.info("%s", status_line(msg.queue_id, st, delays))
            self._note(am, st)  # as if an agent had deferred it
        self.outcomes.record(msg, statuses, "", "")

    def _batch_done(self, am: ActiveMessage) -> None:
        am.batches_out -= 1
        if am.batches_out == 0:
            self._complete_safely(am)

    def _complete_safely(self, am: ActiveMessage) -> None:
        """complete(), and a deferral instead when it fails half way."""
        try:
            self.complete(am)
        except Exception as exc:  # noqa: BLE001 - a message is deferred, never dropped
            self._defer_after_error(am, "cannot finish the delivery attempt", exc)

    def _defer_after_error(self, am: ActiveMessage, what: str, exc: BaseException) -> None:
        """An error took the message out of the active window: defer it for a retry.

        Its logs stay as they are; the next attempt reads them again."""
        queue_id = am.msg.queue_id
        self.active.pop(queue_id, None)  # complete() may have got that far
        log.warning("%s: %s: %s: %s; message deferred", queue_id, what, type(exc).__name__, exc)
        try:
            self.defer_message(am, time.time())
        except Exception as err:  # noqa: BLE001 - the next qmgr start finds it in active/
            log.warning(
                "%s: cannot defer: %s: %s; left in the active queue until qmgr restarts",
                queue_id,
                type(err).__name__,
                err,
            )

    # ------------------------------------------------------------ completion
    def _expired(self, msg: QueueMessage, now: float) -> bool:
        lifetime = self.bounce_lifetime if not msg.sender else self.max_lifetime
        return msg.arrival > 0 and now - msg.arrival > lifetime

    def complete(self, am: ActiveMessage) -> None:
        """Every batch of the message is back: remove it, or defer it."""
        queue_id = am.msg.queue_id
        self.active.pop(queue_id, None)
        self.active_rcpts -= am.nrcpt
        if self.incoming_full or self.deferred_full:
            self.wake.set()  # room for a paused scan, unless removals still hold it
        reported = True
        if am.traced or am.had_logs:
            reported = self.send_traced(am)
        if am.msg.flags & QF_VERIFY:
            # probes and sendmail -bv: one attempt, then the message goes
            if am.probed:
                self.report_probe(am)
            self.finish(am)
            return
        now = time.time()
        if am.delayed:
            if self._expired(am.msg, now):
                self.expire(am, None)
                return
            self.defer_message(am, now)
            return
        if not reported:
            self.defer_message(am, now)  # the trace log stays: the notices go next time
            return
        self.finish(am)

    def finish(self, am: ActiveMessage) -> None:
        """All recipients done: notify the sender of bounces, then remove."""
        queue_id = am.msg.queue_id
        logs = am.had_logs or am.bounced or am.delayed
        failed = (
            logfile.read(self.queue_dir, "bounce", queue_id, self.hash_depth, self.hashed)
            if logs and not am.msg.flags & QF_VERIFY
            else []
        )
        if failed and not self.send_notice(am, failed):
            self.defer_message(am, time.time())  # the bounce log stays; try again later
            return
        self.removals_queued += 1
        self.remover.put((queue_id, am.path, logs))

    def remove(self, queue_id: str, path: str, logs: bool) -> None:
        """Delete a finished queue file and its logs (on the remover's thread)."""
        try:
            self._remove(queue_id, path, logs)
        finally:
            self.removals_done += 1
            waiting = self.incoming_full or self.deferred_full
            if waiting and self.loop is not None and not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self.wake.set)  # room in the window again

    def _remove(self, queue_id: str, path: str, logs: bool) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("%s: cannot remove: %s", queue_id, exc)
            return
        if logs:
            logfile.remove(self.queue_dir, queue_id, hash_depth=self.hash_depth, hashed=self.hashed)
        log.info("%s: removed", queue_id)

    def _notice(
        self,
        am: ActiveMessage,
        statuses: list[RecipientStatus],
        kind: str,
        label: str,
        to: str | None = None,
        headers_only: bool = False,
    ) -> bool:
        """Queue one notice about statuses and log "QUEUEID: LABEL: NEWID".

        False when it could not be queued (logged as a warning): the caller
        decides whether that is worth trying again."""
        from mta.bounce.notice import send_notice

        msg = am.msg
        try:
            new_id = send_notice(
                self.cfg,
                msg,
                am.path,
                statuses,
                kind=kind,
                cleanup=self._cleanup(),
                to=to,
                headers_only=headers_only,
            )
        except Exception as exc:  # noqa: BLE001 - one notice must not stop the queue
            log.warning("%s: cannot queue %s: %s", msg.queue_id, label, exc)
            return False
        if new_id:
            log.info("%s: %s: %s", msg.queue_id, label, new_id)
        return True

    def send_notice(self, am: ActiveMessage, failed: list[RecipientStatus]) -> bool:
        """Queue the non-delivery notice; False when that failed and must be retried.

        A notice that bounces in turn (a double bounce) goes to
        2bounce_notice_recipient, whole, when notify_classes has 2bounce;
        a postmaster notice that bounces is dropped. With bounce in
        notify_classes, bounce_notice_recipient gets the headers of every
        non-delivery notice."""
        from mta.bounce.notice import NOTICE_ATTR

        msg = am.msg
        if not msg.sender:
            if msg.attrs.get(NOTICE_ATTR) or "2bounce" not in self.notify_classes:
                log.info("%s: undeliverable postmaster notification discarded", msg.queue_id)
                return True
            to, who = self.cfg.get("2bounce_notice_recipient"), "postmaster"
        else:
            to, who = None, "sender"
        verp = self._verp(msg) if not self.verp_bounces_off else None
        if verp:
            if not self._verp_notices(am, failed, verp):
                return False
        elif not self._notice(am, failed, "failure", f"{who} non-delivery notification", to):
            return False
        if msg.sender and "bounce" in self.notify_classes:
            self._notice(
                am,
                failed,
                "failure",
                "postmaster non-delivery notification",
                self.cfg.get("bounce_notice_recipient"),
                headers_only=True,
            )
        return True

    def _verp_notices(self, am: ActiveMessage, failed: list[RecipientStatus], verp: str) -> bool:
        """disable_verp_bounces = no: a notice for each failed recipient, sent to
        the VERP sender that names it (owner-list+user=domain@origin), as Postfix does."""
        msg = am.msg
        for st in failed:
            to = verp_sender(verp, msg.sender, st.orig or st.address)
            one = replace(am, msg=replace(msg, sender=to))
            if not self._notice(one, [st], "failure", "sender non-delivery notification"):
                return False  # the bounce log stays: all of them go again next time
        return True

    def send_traced(self, am: ActiveMessage) -> bool:
        """Notices from the trace log: success notices, and the sendmail -v report.

        The log is removed once they are queued; False when one could not
        be, and the log stays for the next attempt (a notice may then go
        twice, never not at all). The -v report covers the first attempt
        only: its request flag is cleared in the queue file after it."""
        msg = am.msg
        entries = logfile.read(self.queue_dir, "trace", msg.queue_id, self.hash_depth, self.hashed)
        am.traced = False
        if not entries:
            return True
        label = "sender delivery status notification"
        success = [st for st in entries if wants_success_notice(st)]
        ok = not success or self._notice(am, success, "success", label)
        if msg.flags & QF_TRACE:
            ok = self._notice(am, entries, "verify", label) and ok
        if not ok:
            return False
        try:
            logfile.remove(self.queue_dir, msg.queue_id, ("trace",), self.hash_depth, self.hashed)
        except OSError as exc:
            log.warning("%s: cannot remove the trace log: %s", msg.queue_id, exc)
        if msg.flags & QF_TRACE:
            msg.flags &= ~QF_TRACE
            if am.delayed:
                try:
                    set_flags(am.path, msg.flags)
                except (OSError, QueueFileError) as exc:
                    log.warning("%s: cannot clear the report request: %s", msg.queue_id, exc)
        return True

    def report_probe(self, am: ActiveMessage) -> None:
        """Send each result of an address probe to the verify service (in the background)."""
        statuses, am.probed = am.probed, []
        task = asyncio.create_task(self._report_probe(am.msg.queue_id, statuses))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _report_probe(self, queue_id: str, statuses: list[RecipientStatus]) -> None:
        from mta.common.verify_clnt import VerifyClient, VerifyError
        from mta.verify.cache import STATUS_BOUNCE, STATUS_DEFER, STATUS_OK

        if self.verify_client is None:
            self.verify_client = VerifyClient(self.cfg)
        for st in statuses:
            if st.action == ACTION_FAILED:
                status = STATUS_BOUNCE
            elif st.action == ACTION_DELAYED:
                status = STATUS_DEFER
            else:
                status = STATUS_OK
            try:
                await self.verify_client.update(st.orig or st.address, status, st.reason)
            except VerifyError as exc:
                log.warning("%s: cannot report the probe result: %s", queue_id, exc)
                return

    def _cleanup(self):
        if self.cleanup is None:
            from mta.cleanup import Cleanup

            self.cleanup = Cleanup(self.cfg)
        return self.cleanup

    def send_delay_warning(self, am: ActiveMessage) -> None:
        """The message has waited delay_warning_time: tell the sender, once."""
        msg = am.msg
        wanted = [st for st in am.delayed.values() if not st.notify or st.notify & DSN_NOTIFY_DELAY]
        if wanted and msg.sender:
            if not self._notice(am, wanted, "delay", "sender delay notification"):
                return  # try again at the next deferral
            if "delay" in self.notify_classes:
                self._notice(
                    am,
                    wanted,
                    "delay",
                    "postmaster delay notification",
                    self.cfg.get("delay_notice_recipient"),
                    headers_only=True,
                )
        try:
            set_warn_time(am.path, msg.warn_offset, 0)
        except (OSError, QueueFileError) as exc:
            log.warning("%s: cannot clear the delay warning time: %s", msg.queue_id, exc)
        msg.warn_time = 0

    def defer_message(self, am: ActiveMessage, now: float) -> None:
        """Some recipients wait: move the message to deferred/ with its retry time."""
        if am.msg.warn_time and now >= am.msg.warn_time and am.delayed:
            self.send_delay_warning(am)
        try:
            base = os.stat(am.path).st_mtime
        except OSError:
            return
        delay = min(self.max_backoff, max(self.min_backoff, now - base))
        try:
            os.utime(am.path, (now, now + delay))
        except OSError as exc:
            log.warning("%s: cannot set retry time: %s", am.msg.queue_id, exc)
        if self._move(am.path, "deferred", am.msg.queue_id) is None:
            log.warning("%s: vanished from the active queue", am.msg.queue_id)
            return
        if am.delayed:
            self.flush_logs.add(am.msg.queue_id, (st.address for st in am.delayed.values()))

    # ------------------------------------------------------------ fast flush logs
    def start_flush_refresh(self) -> None:
        """Refresh and purge the fast flush logs on a worker thread (it reads
        envelopes); when that made mail due, scan deferred/."""
        if self.flush_refreshing or self.loop is None:
            return
        self.flush_refreshing = True
        fut = self.loop.run_in_executor(None, refresh_logs, self.cfg)
        fut.add_done_callback(self._flush_refreshed)

    def _flush_refreshed(self, fut: asyncio.Future) -> None:
        self.flush_refreshing = False
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            log.warning("fast flush log refresh: %s: %s", type(exc).__name__, exc)
            return
        stats = fut.result()
        if stats.refreshed or stats.purged:
            log.info(
                "fast flush logs: %d refreshed, %d purged, %d messages due",
                stats.refreshed,
                stats.purged,
                stats.due,
            )
        if stats.due:
            self.want_deferred = True
            self.wake.set()

    def expire(self, am: ActiveMessage, pending: list | None) -> None:
        """Past its lifetime: bounce what is left with the last deferral reasons."""
        msg = am.msg
        self.active.pop(msg.queue_id, None)
        if pending is not None:
            self.active_rcpts -= am.nrcpt
        last = logfile.latest_by_recipient(
            logfile.read(self.queue_dir, "defer", msg.queue_id, self.hash_depth, self.hashed)
        )
        if pending is None:
            pending_offsets = list(am.delayed)
            rcpts = {r.offset: r for r in msg.recipients}
            todo = [rcpts[o] for o in pending_offsets if o in rcpts]
        else:
            todo = pending
        statuses = []
        for r in todo:
            prev = am.delayed.get(r.offset) or last.get(r.offset)
            reason = prev.reason if prev else "message expired before it could be delivered"
            dsn = prev.dsn if prev else "4.4.7"
            st = RecipientStatus.of(r, ACTION_FAILED, dsn, reason, prev.relay if prev else "none")
            statuses.append(st.diagnostic_of(prev) if prev else st)
        try:
            logfile.append(
                self.queue_dir, "bounce", msg.queue_id, statuses, self.hash_depth, self.hashed
            )
            mark_done(am.path, [st.offset for st in statuses])
        except (OSError, QueueFileError) as exc:
            log.warning("%s: cannot expire: %s", msg.queue_id, exc)
            self.defer_message(am, time.time())
            return
        self.outcomes.expired(msg, statuses)
        word = "force-expired" if msg.forced_expire else "expired"
        log.info("%s: from=<%s>, status=%s, returned to sender", msg.queue_id, msg.sender, word)
        am.bounced += len(statuses)
        self.finish(am)
