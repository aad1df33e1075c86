"""cleanup.server - the cleanup service: messages from other processes over a socket

SYNOPSIS
    master.cf:  cleanup  unix  n  -  n  -  0  cleanup
    from mta.cleanup.server import handle_client        # under run_multi_server

DESCRIPTION
    For callers that do not run cleanup in-process (Postfix's bounce,
    postsuper -r and the like). Each connection carries messages one
    after another as attr_proto requests; only "open" and "close" (and
    "abort") are answered, so a client may stream the rest without
    waiting:

        {"request": "open", "sender": S, "local_submit": "0"|"1",
         "flags": N, "attr.NAME": VALUE ...}
            -> {"status": "0", "queue_id": Q}
        {"request": "rcpt", "address": A, "orig": O, "notify": N, "orcpt": X}
        {"request": "data", "data": BASE64}         content, cut anywhere
        {"request": "close", "queue": "incoming"|"hold"}
            -> {"status": "0", "action": A, "queue_id": Q, "reply": R,
                "hold": "0"|"1", "size": N, "nrcpt": N}
        {"request": "abort"} -> {"status": "0"}

    Content is base64 because attribute values must be UTF-8 text while
    mail may hold any byte; a data request stays within attr_proto's
    message size. A request out of turn or malformed gets {"status":
    "4", "reply": why} and the connection is closed, its message thrown
    away; so is a message whose client goes away before "close".
    close() runs in a worker thread, since it waits for fsync.

SECURITY
    Clients are mail system processes on private/cleanup; the content
    they pass is untrusted mail, handled as the cleanup library handles
    it. Runs as mail_owner.

SEE ALSO
    mta/cleanup/cleanup.py, mta/cleanup/client.py, cleanup(8)
"""

from __future__ import annotations

import asyncio
import base64
import binascii

from mta import log
from mta.cleanup.cleanup import Cleanup, CleanupJob
from mta.common.attr_proto import close_writer, read_attrs, write_attrs

CLEANUP_STAT_OK = "0"  # request done
CLEANUP_STAT_BAD = "4"  # malformed or out-of-turn request
ATTR_PREFIX = "attr."  # open request: envelope attributes carry this prefix

_CLEANUPS: dict[int, Cleanup] = {}  # one Cleanup per configuration in this process


def cleanup_for(cfg) -> Cleanup:
    """The process's Cleanup for cfg, made on first use."""
    found = _CLEANUPS.get(id(cfg))
    if found is None:
        found = _CLEANUPS[id(cfg)] = Cleanup(cfg)
    return found


class ProtocolError(Exception):
    """A request that does not fit the conversation."""


def _int(req: dict[str, str], name: str) -> int:
    text = req.get(name, "0") or "0"
    if not text.isdigit():
        raise ProtocolError(f"bad {name}: {text!r}")
    return int(text)


def _open(cleanup: Cleanup, req: dict[str, str]) -> CleanupJob:
    attrs = {k[len(ATTR_PREFIX) :]: v for k, v in req.items() if k.startswith(ATTR_PREFIX)}
    return cleanup.open(
        req.get("sender", ""),
        attrs,
        local_submit=req.get("local_submit") == "1",
        flags=_int(req, "flags"),
    )


async def _serve(reader, writer, cleanup: Cleanup) -> None:
    job: CleanupJob | None = None
    try:
        while True:
            req = await read_attrs(reader)
            if req is None:
                return
            request = req.get("request")
            if request == "open":
                if job is not None:
                    raise ProtocolError("open inside a message")
                job = _open(cleanup, req)
                await write_attrs(writer, {"status": CLEANUP_STAT_OK, "queue_id": job.queue_id})
            elif job is None:
                raise ProtocolError(f"{request!r} outside a message")
            elif request == "rcpt":
                if not req.get("address") and "address" not in req:
                    raise ProtocolError("rcpt without address")
                job.add_recipient(
                    req["address"], req.get("orig", ""), _int(req, "notify"), req.get("orcpt", "")
                )
            elif request == "data":
                try:
                    chunk = base64.b64decode(req.get("data", ""), validate=True)
                except (binascii.Error, ValueError):
                    raise ProtocolError("data is not base64") from None
                job.write(chunk)
            elif request == "close":
                queue = req.get("queue", "incoming")
                if queue not in ("incoming", "hold"):
                    raise ProtocolError(f"bad queue {queue!r}")
                current, job = job, None
                result = await asyncio.to_thread(current.close, queue)
                await write_attrs(
                    writer,
                    {
                        "status": CLEANUP_STAT_OK,
                        "action": result.action,
                        "queue_id": result.queue_id,
                        "reply": result.reply,
                        "hold": "1" if result.hold else "0",
                        "size": str(result.size),
                        "nrcpt": str(result.nrcpt),
                    },
                )
            elif request == "abort":
                job.abort()
                job = None
                await write_attrs(writer, {"status": CLEANUP_STAT_OK})
            else:
                raise ProtocolError(f"unknown request {request!r}")
    except (ProtocolError, ValueError) as exc:
        log.warning("cleanup client: %s; closing connection", exc)
        try:
            await write_attrs(writer, {"status": CLEANUP_STAT_BAD, "reply": str(exc)})
        except (ConnectionError, OSError):
            pass
    finally:
        if job is not None:
            job.abort()


async def handle_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx) -> None:
    """Serve one connection (see the module docstring) until it closes or misbehaves."""
    try:
        await _serve(reader, writer, cleanup_for(ctx.cfg))
    except (ConnectionError, OSError):
        pass
    finally:
        await close_writer(writer)
