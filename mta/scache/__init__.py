"""mta.scache - the shared connection cache: open SMTP sessions passed between processes

SYNOPSIS
    master.cf:  scache  unix  -  -  n  -  1  scache

    from mta.scache import ScacheStore, scache_save, scache_find
    ok = scache_save(path, "smtp:example.com", props, sock.fileno(), ttl=2)
    found = scache_find(path, "smtp:example.com")    # (props, fd) or None

DESCRIPTION
    One scache process holds idle SMTP connections for all smtp
    processes, so that a session opened by one process can carry the
    next delivery of another (Postfix's scache(8)). A client connects
    to private/scache for each request and sends one message:

        save NUL KEY NUL TTL NUL PROPS LF   with one descriptor attached
        find NUL KEY LF

    and gets "ok LF" or "fail LF" for save, and for find either
    "ok NUL PROPS LF" with the descriptor attached or "none LF". PROPS
    is the client's own description of the session (JSON: endpoint,
    EHLO keywords, age, uses); the cache never looks inside it.

    ScacheStore keeps, per key, the most recent connections first; a
    connection is closed when its TTL (the smtp client's
    smtp_connection_cache_time_limit) runs out, when a key holds more
    than SCACHE_MAX_PER_KEY, or when the store holds more than
    SCACHE_MAX_TOTAL. A found connection leaves the cache.

SECURITY
    Serves mta processes on a private socket. Keys and properties are
    bounded in size; descriptors that arrive with anything but a valid
    save request are closed at once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time

SCACHE_MAX_PER_KEY = 32  # idle connections kept per key
SCACHE_MAX_TOTAL = 1000  # idle connections kept in all
SCACHE_MAX_MSG = 8192  # longest request or reply
SCACHE_CLIENT_TIMEOUT = 1.0  # seconds a client waits for the service


class ScacheStore:
    """Idle connections by key, with expiry; closes what it drops."""

    def __init__(self) -> None:
        self.entries: dict[str, list[tuple[float, int, bytes]]] = {}
        self.total = 0

    def save(self, key: str, fd: int, props: bytes, ttl: float) -> None:
        self.expire()
        items = self.entries.setdefault(key, [])
        items.append((time.monotonic() + ttl, fd, props))
        self.total += 1
        while len(items) > SCACHE_MAX_PER_KEY:
            self._close(items.pop(0))
        while self.total > SCACHE_MAX_TOTAL:
            oldest = min(self.entries, key=lambda k: self.entries[k][0][0])
            self._close(self.entries[oldest].pop(0))
            if not self.entries[oldest]:
                del self.entries[oldest]

    def find(self, key: str) -> tuple[int, bytes] | None:
        self.expire()
        items = self.entries.get(key)
        if not items:
            return None
        _, fd, props = items.pop()
        self.total -= 1
        if not items:
            del self.entries[key]
        return fd, props

    def expire(self) -> None:
        now = time.monotonic()
        for key in list(self.entries):
            items = self.entries[key]
            while items and items[0][0] <= now:
                self._close(items.pop(0))
            if not items:
                del self.entries[key]

    def _close(self, item: tuple[float, int, bytes]) -> None:
        self.total -= 1
        try:
            os.close(item[1])
        except OSError:
            pass

    def clear(self) -> None:
        for items in self.entries.values():
            for item in items:
                self._close(item)
        self.entries = {}


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket, timeout: float) -> None:
    fut = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: fut.done() or fut.set_result(None))
    try:
        await asyncio.wait_for(fut, timeout)
    finally:
        loop.remove_reader(sock.fileno())


async def serve_client(conn: socket.socket, store: ScacheStore) -> None:
    """Answer one request on an accepted connection, then close it."""
    loop = asyncio.get_running_loop()
    fds: list[int] = []
    try:
        conn.setblocking(False)
        await _readable(loop, conn, SCACHE_CLIENT_TIMEOUT)
        msg, fds, _, _ = socket.recv_fds(conn, SCACHE_MAX_MSG, 1)
        parts = msg.rstrip(b"\n").split(b"\0")
        if parts[0] == b"save" and len(parts) == 4 and len(fds) == 1:
            key = parts[1].decode("utf-8", "replace")
            ttl = float(parts[2])
            store.save(key, fds.pop(), parts[3], max(0.0, min(ttl, 3600.0)))
            conn.send(b"ok\n")
        elif parts[0] == b"find" and len(parts) == 2:
            found = store.find(parts[1].decode("utf-8", "replace"))
            if found is None:
                conn.send(b"none\n")
            else:
                fd, props = found
                try:
                    socket.send_fds(conn, [b"ok\0" + props + b"\n"], [fd])
                finally:
                    os.close(fd)
        else:
            conn.send(b"fail\n")
    except (OSError, ValueError, asyncio.TimeoutError):
        pass
    finally:
        for fd in fds:
            os.close(fd)
        conn.close()


def _request(path: str, msg: bytes, fd: int | None) -> tuple[bytes, list[int]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(SCACHE_CLIENT_TIMEOUT)
        sock.connect(path)
        if fd is None:
            sock.sendall(msg)
        else:
            socket.send_fds(sock, [msg], [fd])
        reply, fds, _, _ = socket.recv_fds(sock, SCACHE_MAX_MSG, 1)
        return reply, fds


def scache_save(path: str, key: str, props: bytes, fd: int, ttl: float) -> bool:
    """Hand a connection to the cache (the caller still closes its own descriptor)."""
    msg = b"save\0" + key.encode() + b"\0" + f"{ttl:.3f}".encode() + b"\0" + props + b"\n"
    if len(msg) > SCACHE_MAX_MSG:
        return False
    try:
        reply, fds = _request(path, msg, fd)
    except OSError:
        return False
    for extra in fds:
        os.close(extra)
    return reply == b"ok\n"


def scache_find(path: str, key: str) -> tuple[bytes, int] | None:
    """A cached connection for key as (props, descriptor), or None."""
    try:
        reply, fds = _request(path, b"find\0" + key.encode() + b"\n", None)
    except OSError:
        return None
    if reply.startswith(b"ok\0") and len(fds) == 1:
        return reply[3:].rstrip(b"\n"), fds[0]
    for extra in fds:
        os.close(extra)
    return None
