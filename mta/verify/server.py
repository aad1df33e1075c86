"""verify.server - answer address verification queries and record probe results

SYNOPSIS
    from mta.verify.server import VerifyService
    service = VerifyService(cfg)
    await service.handle_client(reader, writer, ctx)

DESCRIPTION
    Each request is one attr_proto message and gets one reply:

        {"request": "query",  "address": A}
            -> {"status": "0", "addr_status": S, "text": T}
        {"request": "update", "address": A, "addr_status": S, "text": T}
            -> {"status": "0"}

    S is a cache status (verify/cache.py: 0 deliverable, 1 temporary
    failure, 3 in progress, 4 undeliverable). A reply "status" of "1"
    means a malformed request, "2" that the cache could not be used.

    A query that the cache says needs a probe queues one through
    cleanup, in-process: sender address_verify_sender (qualified with
    $myorigin; empty or "<>" for the null sender; with a nonzero
    address_verify_sender_ttl its local part gets a hexadecimal suffix
    that changes that often, against address harvesting), the address as the
    only recipient, a few header lines and no body, and the queue-file
    flag QF_VERIFY_MTA. qmgr hands such a message to the delivery
    agents as a probe (they find out, they do not deliver), sends each
    result back here with "update", and removes the probe whatever
    happened: probes are never retried, bounced or reported.

    At most address_verify_pending_request_limit probes are out at
    once (sent, no result yet, younger than PROBE_TTL); past that a query
    answers from the cache, or "in progress", and sends nothing.

    The service keeps the cache open for its whole life, and removes
    expired entries every address_verify_cache_cleanup_interval. It must
    run as one process (master.cf process limit 1), since an LMDB file is
    written by it alone.

SECURITY
    Addresses come from SMTP clients through smtpd; they become a
    recipient of a probe only, and a cache key. Requests are bounded by
    attr_proto; an address longer than ADDRESS_MAX is refused.

SEE ALSO
    mta/verify/cache.py, mta/common/verify_clnt.py, verify(8)
"""

from __future__ import annotations

import asyncio
import time

from mta import log
from mta.common.attr_proto import serve_requests
from mta.queue.rec_type import QF_VERIFY_MTA

from .cache import (
    PROBE_TTL,
    STATUS_BOUNCE,
    STATUS_DEFER,
    STATUS_OK,
    StoreError,
    VerifyCache,
    fold,
)

ADDRESS_MAX = 1000  # characters in an address to verify
VERIFY_STAT_OK = "0"  # the request was served
VERIFY_STAT_BAD = "1"  # a malformed request
VERIFY_STAT_FAIL = "2"  # the cache could not be used
PROBE_SUBJECT = "probe"  # the Subject of a probe message, which nobody reads


def probe_sender(cfg, now: float | None = None) -> str:
    """The envelope sender of probes: address_verify_sender, qualified, and with
    address_verify_sender_ttl set, a local part that changes that often."""
    sender = cfg.get("address_verify_sender").strip()
    if sender in ("", "<>"):
        return ""
    local, at, domain = sender.rpartition("@")
    if not at:
        local, domain = sender, cfg.get("myorigin")
    ttl = cfg.get_time("address_verify_sender_ttl")
    if ttl > 0:
        local += format(int((time.time() if now is None else now) // ttl), "x")
    return f"{local}@{domain}"


def send_probe(cfg, cleanup, address: str) -> str:
    """Queue a probe message for address; its queue id (ValueError when refused)."""
    from mta.cleanup import ACTION_QUEUED

    sender = probe_sender(cfg)
    job = cleanup.open(sender, {}, flags=QF_VERIFY_MTA)
    job.add_recipient(address)
    job.write(
        f"From: <{sender}>\nTo: <{address}>\nSubject: {PROBE_SUBJECT}\n\n".encode(
            "utf-8", "surrogateescape"
        )
    )
    result = job.close("incoming")
    if result.action != ACTION_QUEUED:
        raise ValueError(result.reply or result.action)
    return result.queue_id


class VerifyService:
    """The verify service's state: the cache, and the probes it sends."""

    def __init__(self, cfg, cache: VerifyCache | None = None) -> None:
        from mta.verify.cache import Policy, open_store

        self.cfg = cfg
        self.cache = cache or VerifyCache(open_store(cfg), Policy.of(cfg))
        self.cleanup_every = cfg.get_time("address_verify_cache_cleanup_interval")
        self.next_cleanup = time.time() + self.cleanup_every if self.cleanup_every else 0.0
        self._cleanup = None
        self.probes: set[asyncio.Task] = set()
        self.pending: dict[str, float] = {}  # address -> when its probe went out
        self.pending_limit = cfg.get_int("address_verify_pending_request_limit")
        self.probe_lock = asyncio.Lock()  # one cleanup job at a time

    def _cleanup_service(self):
        if self._cleanup is None:
            from mta.cleanup import Cleanup

            self._cleanup = Cleanup(self.cfg)
        return self._cleanup

    async def probe(self, address: str) -> None:
        try:
            async with self.probe_lock:
                queue_id = await asyncio.to_thread(
                    send_probe, self.cfg, self._cleanup_service(), address
                )
        except Exception as exc:  # noqa: BLE001 - a probe that fails is tried again later
            log.warning("cannot queue address verification probe for <%s>: %s", address, exc)
            return
        log.info("%s: probe for <%s>", queue_id, address)

    def maybe_clean(self, now: float) -> None:
        if not self.next_cleanup or now < self.next_cleanup:
            return
        self.next_cleanup = now + self.cleanup_every
        started = time.time()
        try:
            gone = self.cache.cleanup(now)
        except StoreError as exc:
            log.warning("verify cache cleanup: %s", exc)
            return
        log.info(
            "verify cache cleanup: %d expired entries removed in %.3f s",
            gone,
            time.time() - started,
        )

    def room_for_probe(self, address: str, now: float) -> bool:
        """Whether a probe may go out: fewer than address_verify_pending_request_limit
        are out (one that has not come back within PROBE_TTL no longer counts)."""
        pending = self.pending  # oldest first: each probe is (re)inserted at the end
        while pending:
            oldest = next(iter(pending))
            if now - pending[oldest] <= PROBE_TTL:
                break
            del pending[oldest]
        if not self.pending_limit or len(pending) < self.pending_limit:
            return True
        log.warning(
            "address_verify_pending_request_limit %d reached: not probing <%s> now",
            self.pending_limit,
            address,
        )
        return False

    def serve(self, msg: dict[str, str]) -> dict[str, str]:
        """One request, one reply (see the module docstring)."""
        request = msg.get("request", "")
        address = msg.get("address", "")
        if len(address) > ADDRESS_MAX or "\n" in address or "\r" in address:
            return {"status": VERIFY_STAT_BAD}
        now = time.time()
        self.maybe_clean(now)
        try:
            if request == "query":
                status, text, want = self.cache.query(
                    address, now, lambda: self.room_for_probe(address, now)
                )
                if want:
                    key = fold(address)
                    self.pending.pop(key, None)  # keep the dict in sending order
                    self.pending[key] = now
                    task = asyncio.get_running_loop().create_task(self.probe(address))
                    self.probes.add(task)
                    task.add_done_callback(self.probes.discard)
                return {"status": VERIFY_STAT_OK, "addr_status": str(status), "text": text}
            if request == "update":
                try:
                    status = int(msg.get("addr_status", ""))
                except ValueError:
                    return {"status": VERIFY_STAT_BAD}
                if status not in (STATUS_OK, STATUS_DEFER, STATUS_BOUNCE):
                    return {"status": VERIFY_STAT_BAD}
                self.cache.update(address, status, msg.get("text", ""), now)
                self.pending.pop(fold(address), None)
                return {"status": VERIFY_STAT_OK}
        except StoreError as exc:
            log.warning("verify cache: %s", exc)
            return {"status": VERIFY_STAT_FAIL}
        return {"status": VERIFY_STAT_BAD}

    async def handle_client(self, reader, writer, ctx=None) -> None:
        """Serve one client connection until it closes."""
        await serve_requests(reader, writer, self.serve, "verify request")
