"""smtp.conn_pace - a shaped site's connections per minute, shared by every smtp process

SYNOPSIS
    from mta.smtp.conn_pace import connection_turn
    why = await connection_turn(job)     # None: connect now; else a reason to defer

DESCRIPTION
    shaping_table's connections_per_minute=N (mta/qmgr/shaping.py)
    reaches the smtp client with each request of the site, as the
    delivery attributes "connection_pace_key" (the site, and the
    source for mail from an egress pool: "gmail/ip1") and
    "connections_per_minute". Before it opens a new connection (a
    cached session is not a new connection) the client takes the next
    turn of that key: turns are 60/N seconds apart, whichever smtp
    process asks. The next free turn of each key is kept in an LMDB file
    that every smtp process opens, $data_directory/smtp_connection_pace
    (written without fsync: it is a schedule, not mail, and a crash
    only makes the next turn come sooner); one short write transaction
    takes a turn, and the caller sleeps until it comes.

    A turn further away than PACE_WAIT_LIMIT seconds is not taken: the
    request's recipients are deferred ("4.7.0 site gmail/ip1: 20
    connections per minute reached") and qmgr tries them again later
    (the site's concurrency should be set so that this is rare). A pace
    file that cannot be opened or written lets the connection go ahead
    and is logged once: pacing is politeness, never a reason to hold mail.

SECURITY
    Keys are site names built by qmgr; nothing from the network.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time

from mta import log

PACE_FILE = "smtp_connection_pace.lmdb"
PACE_WAIT_LIMIT = 60.0  # seconds a connection may wait for its turn
PACE_MAP_SIZE = 1 << 24

_env = {"env": None, "path": None, "failed": False}


def _open(cfg):
    path = os.path.join(cfg.get("data_directory"), PACE_FILE)
    if _env["env"] is not None and _env["path"] == path:
        return _env["env"]
    import lmdb

    try:
        env = lmdb.open(
            path, subdir=False, map_size=PACE_MAP_SIZE, max_dbs=0, sync=False, metasync=False
        )
    except (OSError, lmdb.Error) as exc:
        if not _env["failed"]:
            log.warning("connection pacing off: %s: %s", path, exc)
        _env["failed"] = True
        return None
    _env.update(env=env, path=path)
    return env


def take_turn(env, key: str, interval: float, now: float) -> float:
    """Reserve key's next turn; the seconds to wait for it (not reserved past the limit)."""
    k = key.encode("utf-8", "surrogateescape")
    with env.begin(write=True) as txn:
        raw = txn.get(k)
        nxt = struct.unpack("<d", raw)[0] if raw is not None and len(raw) == 8 else 0.0
        start = max(now, nxt)
        wait = start - now
        if wait <= PACE_WAIT_LIMIT:
            txn.put(k, struct.pack("<d", start + interval))
    return wait


async def connection_turn(job) -> str | None:
    """Wait for this request's turn to connect; a deferral reason when it is too far."""
    attrs = job.req.attrs
    rate = attrs.get("connections_per_minute", "")
    key = attrs.get("connection_pace_key", "")
    if not key or not rate.isdigit() or int(rate) <= 0:
        return None
    env = _open(job.cfg)
    if env is None:
        return None
    try:
        wait = take_turn(env, key, 60.0 / int(rate), time.time())
    except Exception as exc:  # noqa: BLE001 - lmdb.Error, a full map: go ahead, say so
        log.warning("connection pacing skipped: %s", exc)
        return None
    if wait > PACE_WAIT_LIMIT:
        return f"site {key}: {rate} connections per minute reached"
    if wait > 0:
        await asyncio.sleep(wait)
    return None
