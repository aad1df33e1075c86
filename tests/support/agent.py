"""Run a delivery agent's deliver() behind a real UNIX socket, and queue test messages.

queue_message() writes a real queue file into a queue of an instance made by
make_instance(); run_agent() serves deliver() with the real request handler
(mta.common.deliver_agent.handle_request) and sends it one request with the
real client (mta.common.deliver_request.deliver)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from mta import log
from mta.common.deliver_agent import handle_request
from mta.common.deliver_request import DeliveryRequest, DeliveryResult, RequestRecipient, deliver
from mta.queue.queue_file import QueueFileWriter, Recipient, queue_dir_for, read_queue_file
from tests.support.unix_server import HandlerServer

DEFAULT_BODY = b"Subject: test\nFrom: <a@example.org>\n\nhello\n"


def queue_message(
    cfg,
    recipients: list[str],
    sender: str = "a@example.org",
    body: bytes = DEFAULT_BODY,
    queue: str = "active",
    attrs: dict[str, str] | None = None,
    notify: int = 0,
):
    """Write a queue file into queue; return its QueueMessage (recipients with offsets)."""
    w = QueueFileWriter(cfg.get("queue_directory"), queue)
    w.write_envelope(sender, [Recipient(address=r, notify=notify) for r in recipients], attrs or {})
    w.write_content(body)
    qid = w.commit()
    directory = queue_dir_for(
        cfg.get("queue_directory"),
        queue,
        qid,
        cfg.get_int("hash_queue_depth"),
        tuple(cfg.get_list("hash_queue_names")),
    )
    return read_queue_file(os.path.join(directory, qid))


def request_for(msg, nexthop: str, transport: str = "test", queue: str = "active", **kw):
    return DeliveryRequest(
        queue_name=queue,
        queue_id=msg.queue_id,
        sender=msg.sender,
        nexthop=nexthop,
        transport=transport,
        recipients=[
            RequestRecipient(r.address, r.offset, r.orig, r.dsn_orcpt, r.notify)
            for r in msg.recipients
            if not r.done
        ],
        arrival=msg.arrival,
        active_time=time.time(),
        attrs=dict(msg.attrs),
        content_offset=msg.content_offset,
        content_size=msg.content_size,
        **kw,
    )


def run_agent(
    deliver_fn, cfg, req: DeliveryRequest, tmp_path: Path, timeout: float = 30, verify=None
):
    """Serve deliver_fn (and verify_fn for verify requests) on a socket in tmp_path,
    send req, return the DeliveryResult."""
    path = str(tmp_path / f"agent.{time.monotonic_ns()}")
    log.init("agent", cfg)  # lines go to the instance's maillog_file

    async def handler(reader, writer, ctx):
        try:
            await handle_request(reader, writer, ctx, deliver_fn, verify=verify)
        finally:
            writer.close()

    server = HandlerServer(path, handler, cfg)
    try:
        result: DeliveryResult = asyncio.run(deliver(path, req, timeout))
    finally:
        server.stop()
    return result
