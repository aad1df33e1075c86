"""mta.showq - list the mail queue for users who cannot read it (showq)

SYNOPSIS
    master.cf:  showq  unix  n  -  n  -  -  showq
    from mta.showq import handle_client          # under mta.master.multi_server

DESCRIPTION
    The service behind "mta queue" and mailq for a user who may not
    read the queue directories, as Postfix's showq serves postqueue -p.
    It listens on public/showq ($showq_service_name). A client sends one
    attr_proto request:

        {"request": "list", "format": "text"}     # or "json"

    and the service sends back, as plain bytes, exactly what "mta queue
    -p" (text) or "mta queue -j" (json) prints when it reads the queue
    itself (mta.queue.showq.iter_listing), then closes the connection.
    Each piece of the listing (whole messages, about LISTING_BATCH
    characters) is written and drained before the next messages are
    read, so memory stays bounded whatever the size of the queue and a
    slow reader only slows the walk. Times in the text listing are in
    the service's time zone.

    A request that is not well formed, or that does not arrive within
    ipc_timeout, is logged and the connection closed without a listing;
    a client that stops reading for ipc_timeout is dropped the same way.

SECURITY
    Any local user may connect (public/). Runs as mail_owner, reads the
    queue files and defer logs and writes nothing; the only thing a
    client chooses is one of two formats. The listing shows senders and
    recipients of all queued mail, as Postfix's mailq does.

SEE ALSO
    showq(8), postqueue(1), mta/common/showq_clnt.py (the client),
    mta/queue/showq.py (the listing)
"""

from __future__ import annotations

import asyncio

from mta import log
from mta.common.attr_proto import read_attrs
from mta.queue.showq import iter_entries, iter_listing

SHOWQ_REQUEST_LIMIT = 1024  # bytes a request may take
SHOWQ_FORMATS = ("text", "json")  # what a client may ask for


async def handle_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx) -> None:
    """Serve one client: read its request, stream the listing, return (the caller closes)."""
    cfg = ctx.cfg
    timeout = float(cfg.get_time("ipc_timeout"))
    try:
        request = await asyncio.wait_for(read_attrs(reader, SHOWQ_REQUEST_LIMIT), timeout)
    except asyncio.TimeoutError:
        log.warning("timeout waiting for a request")
        return
    except ValueError as exc:
        log.warning("malformed request: %s", exc)
        return
    if request is None:
        return  # the client went away
    form = request.get("format", "text")
    if request.get("request") != "list" or form not in SHOWQ_FORMATS:
        log.warning("unknown request: %s", sorted(request.items())[:4])
        return
    for text in iter_listing(iter_entries(cfg), form == "json"):
        writer.write(text.encode("utf-8", "surrogateescape"))
        try:
            await asyncio.wait_for(writer.drain(), timeout)
        except asyncio.TimeoutError:
            log.warning("timeout sending the listing; client dropped")
            return
