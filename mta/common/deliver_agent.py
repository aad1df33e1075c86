"""common.deliver_agent - the skeleton every delivery agent runs in

SYNOPSIS
    from mta.common.deliver_agent import DeliveryJob, run_delivery_agent

    async def deliver(job: DeliveryJob) -> None:
        for rcpt in job.pending():
            job.sent(rcpt, "delivered to mailbox", relay="local")

    if __name__ == "__main__":
        run_delivery_agent("discard", deliver)

DESCRIPTION
    run_delivery_agent() serves delivery requests from qmgr on the
    master's listener (private/TRANSPORT). For each request on a
    connection (one after another; a connection idle for REUSE_IDLE
    seconds is closed) it reads one DeliveryRequest
    (common/deliver_request.py), builds a DeliveryJob and awaits
    deliver(job). Recipients the queue file already has done are
    reported done without being delivered or logged again (qmgr asks
    for them only when it repeats a request whose connection broke).
    The agent reads the message
    through the job (job.message() for the envelope, job.content_lines()
    or job.content_bytes() for the content) and ends each recipient with
    exactly one of job.sent(), job.defer() or job.bounce(); job.hop_failed()
    says the next hop itself failed (qmgr then slows down or suspends
    that destination) and defers what is left.

    An agent that has more to do after some recipients are settled (an
    smtp session to end with QUIT, or to hand to the cache) calls
    job.settle() first: the statuses known so far are made durable at
    once, so a crash in what follows does not deliver those recipients
    again. When deliver() returns, job.finish() makes the rest of the
    outcome durable in this order: the statuses a notice will report
    are appended to trace/QUEUEID (every one for sendmail -v,
    REQ_FLAG_RECORD; else the delivered recipients that asked for
    NOTIFY=SUCCESS and whose next hop did not take that request),
    failed recipients to bounce/QUEUEID
    and delayed ones to defer/QUEUEID (all fsynced), then the delivered
    and bounced recipients are marked done in the queue file with one
    fdatasync, then every status is logged in Postfix's form
    ("QUEUEID: to=<...>, relay=..., delay=..., delays=a/b/c/d,
    dsn=..., status=sent (...)"; a failure or delay also gets its bounce
    class, common/bounce_class) and sent back to qmgr with its delays,
    and a "done" message ends the conversation. A recipient deliver() left without a
    status is deferred; an exception in deliver() defers everything
    that is left and is logged as one warning.

    A queue file that cannot be read defers the whole request (4.3.0):
    the message may have been deleted by the administrator, and qmgr
    sorts that out.

    A request with REQ_FLAG_VERIFY (an address probe, or sendmail -bv)
    asks what would happen, not for a delivery: job.verify is set. An
    agent whose deliver() has the attribute verifies = True handles that
    itself (smtp stops after RCPT TO; error and discard have no side
    effects anyway); for any other agent, handle_request() reports each
    recipient "deliverable" through the transport, or calls the
    agent's own verify function given to run_delivery_agent(). In
    verify mode no bounce or defer log is written, and statuses are
    logged as "deliverable" / "undeliverable".

    job.conn_time is the connection set-up part of the delays (c);
    agents that connect somewhere set it. job.ctx is the service's
    context (ctx.service_name, ctx.args: the master.cf arguments after
    the command, as pipe's "flags=... argv=..." need them).

SECURITY
    Requests come from qmgr on a private socket. The queue file is only
    ever opened read-only, except for the one-byte done marks.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import NoReturn

from mta import log
from mta.bounce import logfile
from mta.common.attr_proto import encode, read_attrs, write_attrs
from mta.common.bounce_class import classifier_for
from mta.common.deadline import bounded
from mta.common.deliver_request import (
    MSG_DONE,
    POOL_IDLE,
    REQ_FLAG_RECORD,
    REQ_FLAG_VERIFY,
    DeliveryRequest,
    RequestError,
    RequestRecipient,
    encode_status,
)
from mta.common.dsn import (
    ACTION_DELAYED,
    ACTION_DELIVERED,
    ACTION_FAILED,
    RecipientStatus,
    status_line,
    wants_success_notice,
)
from mta.common.worker import BlockingPool
from mta.queue.queue_file import (
    QueueFileError,
    QueueMessage,
    iter_content,
    mark_done,
    parse_queue_file,
    queue_dir_for,
    queue_layout,
    read_content,
    read_file,
)

Deliver = Callable[["DeliveryJob"], Awaitable[None]]
VERIFY_WORD_OK = "deliverable"  # maillog status of a verified recipient
VERIFY_WORD_BAD = "undeliverable"  # ... and of one that would bounce


REUSE_IDLE = 2 * POOL_IDLE  # seconds an agent waits for the next request on a connection
DURABLE_THREADS = 8  # done marks and logs fsynced at once
_pool: list[BlockingPool] = []


def _durable_pool() -> BlockingPool:
    if not _pool:
        _pool.append(BlockingPool(DURABLE_THREADS, "durable"))
    return _pool[0]


class DeliveryJob:
    """One delivery request being worked on, and the outcome so far."""

    def __init__(self, req: DeliveryRequest, cfg, ctx=None) -> None:
        self.req = req
        self.cfg = cfg
        self.ctx = ctx  # the ServiceContext: service_name, master.cf args (pipe's argv=)
        self.queue_dir, self.hash_depth, self.hashed = queue_layout(cfg)
        directory = queue_dir_for(
            self.queue_dir, req.queue_name, req.queue_id, self.hash_depth, self.hashed
        )
        self.path = os.path.join(directory, req.queue_id)
        self.started = time.time()
        self.conn_time = 0.0  # seconds spent setting up the connection ("c" of delays)
        self.statuses: dict[int, RecipientStatus] = {}
        self.hop_dsn = ""
        self.hop_reason = ""
        self._message: QueueMessage | None = None
        self.quiet: set[int] = set()  # offsets done before this request: not logged again
        self._data: bytes | None = None  # the queue file, read once
        self.verify = bool(req.flags & REQ_FLAG_VERIFY)  # find out, do not deliver
        self.settled: set[int] = set()  # offsets whose status settle() made durable

    # ---- reading the message
    def message(self) -> QueueMessage:
        """The envelope of the queue file (read once); QueueFileError when damaged."""
        if self._message is None:
            self._data = read_file(self.path)
            self._message = parse_queue_file(self._data, self.path)
        return self._message

    def content_lines(self) -> Iterator[bytes]:
        """The content, one line at a time, without line ends."""
        msg = self.message()
        return iter_content(self.path, msg, self._data)

    def content_bytes(self, line_end: bytes = b"\n") -> bytes:
        """The whole content with line_end after every line."""
        return self.content_text(line_end)[0]

    def content_text(self, line_end: bytes = b"\n") -> tuple[bytes, int]:
        """(the whole content with line_end after every line, the longest line's length)."""
        return read_content(self.path, self.message(), self._data, line_end)

    # ---- outcomes
    def skip_done(self, msg: QueueMessage) -> None:
        """Recipients the queue file already has done are not delivered again.

        qmgr never asks for them, except when it sent a request again after
        its connection broke: the first try may have got that far."""
        done = {r.offset for r in msg.recipients if r.done}
        if not done:
            return
        for rcpt in self.req.recipients:
            if rcpt.offset in done:
                self.sent(rcpt, "already done", dsn="2.0.0")
                self.quiet.add(rcpt.offset)

    def pending(self) -> list[RequestRecipient]:
        """Recipients that have no status yet, in request order."""
        return [r for r in self.req.recipients if r.offset not in self.statuses]

    def _set(
        self,
        rcpt: RequestRecipient,
        action: str,
        dsn: str,
        reason: str,
        relay: str,
        word: str,
        reply: str = "",
        mta: str = "",
    ) -> None:
        st = RecipientStatus.of(rcpt, action, dsn, reason, relay, word)
        if reply:  # a remote server's own reply: Diagnostic-Code: smtp; ...
            st.diag_type, st.diag_text, st.remote_mta = "smtp", reply, mta
        if action in (ACTION_FAILED, ACTION_DELAYED):
            st.klass = classifier_for(self.cfg).of_status(st)
        self.statuses[rcpt.offset] = st

    def sent(
        self,
        rcpt: RequestRecipient,
        reason: str,
        relay: str = "none",
        dsn: str = "2.0.0",
        action: str = ACTION_DELIVERED,
        word: str = "",
        dsn_passed: bool = False,
    ) -> None:
        """The recipient is delivered (or relayed, or expanded).

        dsn_passed: the next hop took the recipient's DSN request (NOTIFY,
        ORCPT) and will send any success notice itself."""
        self._set(rcpt, action, dsn, reason, relay, word)
        self.statuses[rcpt.offset].dsn_passed = dsn_passed

    def defer(
        self,
        rcpt: RequestRecipient,
        reason: str,
        dsn: str = "4.0.0",
        relay: str = "none",
        reply: str = "",
        mta: str = "",
    ) -> None:
        """A temporary failure: the recipient stays queued.

        reply, mta: the remote server's reply as it came and the server's
        host name, when the reason quotes one (the notice's Diagnostic-Code:
        smtp and Remote-MTA: fields)."""
        self._set(rcpt, ACTION_DELAYED, dsn, reason, relay, "", reply, mta)

    def bounce(
        self,
        rcpt: RequestRecipient,
        reason: str,
        dsn: str = "5.0.0",
        relay: str = "none",
        reply: str = "",
        mta: str = "",
    ) -> None:
        """A permanent failure: the recipient bounces (reply, mta: as for defer())."""
        self._set(rcpt, ACTION_FAILED, dsn, reason, relay, "", reply, mta)

    def defer_all(
        self, reason: str, dsn: str = "4.0.0", relay: str = "none", reply: str = "", mta: str = ""
    ) -> None:
        for rcpt in self.pending():
            self.defer(rcpt, reason, dsn, relay, reply, mta)

    def bounce_all(
        self, reason: str, dsn: str = "5.0.0", relay: str = "none", reply: str = "", mta: str = ""
    ) -> None:
        for rcpt in self.pending():
            self.bounce(rcpt, reason, dsn, relay, reply, mta)

    def hop_failed(
        self, dsn: str, reason: str, relay: str = "none", reply: str = "", mta: str = ""
    ) -> None:
        """The next hop itself failed: defer what is left and tell qmgr."""
        self.hop_dsn, self.hop_reason = dsn, reason
        if dsn.startswith("5"):
            self.bounce_all(reason, dsn, relay, reply, mta)
        else:
            self.defer_all(reason, dsn, relay, reply, mta)

    # ---- the end
    def _unsettled(self) -> list[RecipientStatus]:
        """Statuses not yet made durable, in request order."""
        return [
            self.statuses[r.offset]
            for r in self.req.recipients
            if r.offset in self.statuses and r.offset not in self.settled
        ]

    async def settle(self) -> None:
        """Make the statuses known so far durable now, before more work.

        A failure is left to finish(), which tries again and reports what
        did not stick as delayed."""
        todo = [] if self.verify else self._unsettled()
        if not todo:
            return
        try:
            await _durable_pool().run(self._make_durable, todo)
        except (OSError, QueueFileError):
            return
        self.settled.update(st.offset for st in todo)

    def _make_durable(self, ordered: list[RecipientStatus]) -> None:
        """Logs first, then done marks: a crash between them repeats, never loses."""
        failed = [st for st in ordered if st.action == ACTION_FAILED]
        delayed = [st for st in ordered if st.action == ACTION_DELAYED]
        if self.verify:
            failed = delayed = []  # qmgr reports probe results; nobody is notified
        if self.req.flags & REQ_FLAG_RECORD:
            traced = [st for st in ordered if st.offset not in self.quiet]
        else:
            traced = [
                st for st in ordered if wants_success_notice(st) and st.offset not in self.quiet
            ]
        for kind, entries in (("trace", traced), ("bounce", failed), ("defer", delayed)):
            if entries:
                logfile.append(
                    self.queue_dir, kind, self.req.queue_id, entries, self.hash_depth, self.hashed
                )
        done = [st.offset for st in ordered if st.done]
        if done:
            mark_done(self.path, done)

    async def finish(self, writer: asyncio.StreamWriter | None) -> None:
        """Make the outcome durable, log it and report it to qmgr."""
        self.defer_all("delivery agent gave no status", "4.3.0")
        if self.verify:
            for st in self.statuses.values():
                if st.action == ACTION_FAILED:
                    st.status_word = VERIFY_WORD_BAD
                elif st.done:
                    st.status_word = VERIFY_WORD_OK
        todo = self._unsettled()
        try:
            await _durable_pool().run(self._make_durable, todo)
        except (OSError, QueueFileError) as exc:
            # the done marks did not stick: report everything as delayed so
            # qmgr keeps the message; a delivered recipient may be repeated
            log.warning("%s: cannot record delivery status: %s", self.req.queue_id, exc)
            for st in todo:
                if st.done:
                    st.action, st.dsn, st.status_word = ACTION_DELAYED, "4.3.0", ""
                    st.reason = f"cannot record delivery status: {exc}"
        now = time.time()
        req = self.req
        conn = max(0.0, min(self.conn_time, now - self.started))
        queued = req.active_time or self.started  # no active time: all of it counts as before
        delays = (
            max(0.0, queued - req.arrival),
            max(0.0, self.started - queued),
            conn,
            max(0.0, now - self.started - conn),
        )
        for rcpt in req.recipients:
            st = self.statuses[rcpt.offset]
            st.delays = delays
            if rcpt.offset not in self.quiet:
                log.info("%s", status_line(req.queue_id, st, delays))
        if writer is None:
            return
        for rcpt in req.recipients:
            writer.write(encode(encode_status(self.statuses[rcpt.offset])))
        done = {"type": MSG_DONE}
        if self.hop_dsn:
            done["hop_dsn"] = self.hop_dsn
            done["hop_reason"] = self.hop_reason
        await write_attrs(writer, done)


async def verify_by_transport(job: DeliveryJob) -> None:
    """The verify mode of an agent that has none of its own: each recipient is deliverable."""
    for rcpt in job.pending():
        job.sent(rcpt, f"delivers via the {job.req.transport or 'default'} transport")


async def handle_request(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    ctx,
    deliver: Deliver,
    idle: float | None = None,
    verify: Deliver | None = None,
) -> bool:
    """Serve one delivery request; True when the connection may carry another.

    idle: seconds to wait for the request (None: as long as it takes);
    False when none came by then."""
    try:
        if idle is None:
            msg = await read_attrs(reader)
        else:
            msg = await bounded(read_attrs(reader), idle)
    except asyncio.TimeoutError:
        return False
    except ValueError as exc:
        log.warning("malformed delivery request: %s", exc)
        return False
    if msg is None:
        return False
    try:
        req = DeliveryRequest.decode(msg)
    except RequestError as exc:
        log.warning("%s", exc)
        return False
    job = DeliveryJob(req, ctx.cfg, ctx)
    try:
        msg = job.message()
    except (OSError, QueueFileError) as exc:
        log.warning("%s: cannot read queue file: %s", req.queue_id, exc)
        job.defer_all("queue file read error", "4.3.0")
    else:
        job.skip_done(msg)
        try:
            if job.verify and not getattr(deliver, "verifies", False):
                await (verify or verify_by_transport)(job)
            else:
                await deliver(job)
        except asyncio.CancelledError:
            job.defer_all("delivery agent was stopped", "4.3.0")
            await job.finish(writer)
            raise
        except Exception as exc:  # noqa: BLE001 - one message's failure must not end the agent
            log.warning("%s: delivery failed: %s: %s", req.queue_id, type(exc).__name__, exc)
            job.defer_all(f"delivery agent error: {type(exc).__name__}", "4.3.0")
    await job.finish(writer)
    return True


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    ctx,
    deliver: Deliver,
    verify: Deliver | None = None,
) -> None:
    """Serve requests on one connection from qmgr until it closes or stays idle.

    qmgr keeps a finished connection for its next request to the same
    agent (deliver_request.POOL_IDLE); this end closes one that has been
    idle for REUSE_IDLE seconds, longer than qmgr would keep it."""
    idle = None
    while await handle_request(reader, writer, ctx, deliver, idle, verify):
        idle = REUSE_IDLE


def run_delivery_agent(
    service: str,
    deliver: Deliver,
    argv: list[str] | None = None,
    *,
    max_clients: int = 0,
    busy_at: int = 1,
    verify: Deliver | None = None,
) -> NoReturn:
    """Serve delivery requests with deliver() until the master says stop.

    verify: what answers a verify-mode request when deliver() does not."""
    from mta.master.multi_server import run_multi_server

    async def handler(reader, writer, ctx) -> None:
        await serve_connection(reader, writer, ctx, deliver, verify)

    run_multi_server(service, handler, argv, max_clients=max_clients, busy_at=busy_at)
