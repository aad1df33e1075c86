"""smtp.scache - sessions kept open in this process for the next delivery

SYNOPSIS
    from mta.smtp.scache import SessionCache
    cache = SessionCache()
    session = cache.take(key)               # None when there is no usable one
    cache.put(key, session, idle=2.0)       # after a successful transaction

DESCRIPTION
    After a transaction, the smtp client may keep its session open so
    that the next delivery to the same next hop skips the connection
    set-up, the greeting and EHLO (Postfix's connection cache, here
    inside one process). An idle session is closed with QUIT after
    smtp_connection_cache_time_limit; take() drops sessions that the
    server closed meanwhile, and hands out the most recently used one.
    A taken session is marked reused: its next transaction starts with
    RSET, and a failure of that RSET means the session was stale.

    The cache belongs to one event loop; when the running loop changes
    (tests run several loops in one process) the old sessions are
    forgotten.

SECURITY
    Holds only open connections of this process.
"""

from __future__ import annotations

import asyncio

SCACHE_MAX_IDLE_PER_KEY = 64  # idle sessions kept per next hop


class SessionCache:
    """Idle sessions by next hop."""

    def __init__(self) -> None:
        self.idle: dict[tuple, list] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self.idle = {}
            self.loop = loop

    def take(self, key: tuple):
        self._check_loop()
        entries = self.idle.get(key)
        while entries:
            session, handle = entries.pop()
            handle.cancel()
            if session.alive():
                session.reused = True
                return session
            session.close()
        return None

    def put(self, key: tuple, session, idle: float) -> None:
        self._check_loop()
        entries = self.idle.setdefault(key, [])
        if len(entries) >= SCACHE_MAX_IDLE_PER_KEY:
            self._close(session)
            return
        handle = self.loop.call_later(idle, self._expire, key, session)
        entries.append((session, handle))

    def _expire(self, key: tuple, session) -> None:
        entries = self.idle.get(key, [])
        for i, (s, _) in enumerate(entries):
            if s is session:
                del entries[i]
                break
        if not entries:
            self.idle.pop(key, None)
        self._close(session)

    @staticmethod
    def _close(session) -> None:
        try:
            session.writer.write(b"QUIT\r\n")
        except (OSError, RuntimeError):
            pass
        session.close()

    def count(self, key: tuple | None = None) -> int:
        if key is not None:
            return len(self.idle.get(key, []))
        return sum(len(v) for v in self.idle.values())

    def clear(self) -> None:
        for entries in self.idle.values():
            for session, handle in entries:
                handle.cancel()
                self._close(session)
        self.idle = {}
