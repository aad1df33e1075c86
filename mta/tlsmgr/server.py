"""tlsmgr.server - hand out the session-ticket key over attr_proto

SYNOPSIS
    from mta.tlsmgr.server import TlsmgrService
    await TlsmgrService(cfg).handle_client(reader, writer, ctx)

DESCRIPTION
    Each request is one attr_proto message and gets one reply:

        {"request": "tktkey"}
            -> {"status": "0", "keybuf": HEX, "expires": EPOCH, "previous": HEX}
        {"request": "tktkey", "keyname": HEX}
            -> the same for the current or previous key of that name,
               or {"status": "1"} when it is not known (any more)

    HEX is the 80-byte key (tlsmgr/keys.py) in hexadecimal, EPOCH the
    time (whole seconds) at which the key will be replaced: the client
    asks again then. "previous" is the key it replaced while tickets
    under it may still be accepted (empty when there is none), so that
    an smtpd process started after a rotation accepts them too. An empty keybuf says tickets are off
    (smtpd_tls_session_cache_timeout 0 or less, or
    tls_session_ticket_cipher empty); a "status" of "1" is a malformed
    request or an unknown key name.

    The session caches of the smtp and lmtp clients and of smtpd
    (tlsmgr/scache.py), for CACHE_TYPE "smtp", "lmtp" or "smtpd" when
    its *_tls_session_cache_database is set:

        {"request": "lookup", "cache_type": T, "cache_id": ID}
            -> {"status": "0", "session": HEX}     (empty: none)
        {"request": "update", "cache_type": T, "cache_id": ID, "session": HEX}
            -> {"status": "0"}
        {"request": "delete", "cache_type": T, "cache_id": ID} -> {"status": "0"}

    A cache type without a cache, or a cache that fails, gets "1".

    A connection whose first bytes are the master's wakeup trigger
    (the "1000?" wakeup of master.cf) is a wakeup: the key is rotated
    when due, expired cache entries are deleted, and the connection
    closed.

SECURITY
    The socket is private (queue_directory/private/tlsmgr, reachable by
    mail_owner); the replies carry the ticket key, which is why the
    service is never public. Requests are bounded by attr_proto.
"""

from __future__ import annotations

import time

from mta import log
from mta.common.attr_proto import AttrReader, close_writer, write_attrs
from mta.common.tls_serial import SESSION_DER_MAX
from mta.common.tls_session import CACHE_ID_MAX
from mta.common.tls_ticket import cache_timeout
from mta.common.trigger import TRIGGER_WAKEUP
from mta.tlsmgr.keys import TicketKeys
from mta.tlsmgr.scache import SessionCache, open_session_caches
from mta.verify.cache import StoreError

TLSMGR_STAT_OK = "0"
TLSMGR_STAT_BAD = "1"
READ_CHUNK = 4096  # bytes read at a time; requests are a few dozen bytes


def tickets_enabled(cfg) -> bool:
    """Session tickets are on: a positive cache timeout and a ticket cipher."""
    return cache_timeout(cfg) > 0 and bool(cfg.get("tls_session_ticket_cipher").strip())


class TlsmgrService:
    """The ticket key, served to smtpd processes; see the module docstring."""

    def __init__(self, cfg) -> None:
        self.enabled = tickets_enabled(cfg)
        self.keys = TicketKeys(cache_timeout(cfg) or 1)
        try:
            self.caches: dict[str, SessionCache] = open_session_caches(cfg)
        except StoreError as exc:
            log.warning("TLS session cache: %s; no shared client sessions", exc)
            self.caches = {}

    def serve_cache(self, msg: dict[str, str]) -> dict[str, str]:
        cache = self.caches.get(msg.get("cache_type", ""))
        cache_id = msg.get("cache_id", "")
        if cache is None or not cache_id or len(cache_id) > CACHE_ID_MAX:
            return {"status": TLSMGR_STAT_BAD}
        request, now = msg["request"], time.time()
        try:
            if request == "lookup":
                return {"status": TLSMGR_STAT_OK, "session": cache.lookup(cache_id, now).hex()}
            if request == "update":
                der = bytes.fromhex(msg.get("session", ""))
                if not der or len(der) > SESSION_DER_MAX:
                    return {"status": TLSMGR_STAT_BAD}
                cache.update(cache_id, der, now)
            else:
                cache.delete(cache_id)
        except ValueError:
            return {"status": TLSMGR_STAT_BAD}
        except StoreError as exc:
            log.warning("TLS session cache: %s", exc)
            return {"status": TLSMGR_STAT_BAD}
        return {"status": TLSMGR_STAT_OK}

    def serve(self, msg: dict[str, str]) -> dict[str, str]:
        if msg.get("request") in ("lookup", "update", "delete"):
            return self.serve_cache(msg)
        if msg.get("request") != "tktkey":
            return {"status": TLSMGR_STAT_BAD}
        if not self.enabled:
            return {"status": TLSMGR_STAT_OK, "keybuf": "", "expires": "0"}
        now = time.time()
        key = self.keys.current(now)
        name = msg.get("keyname", "")
        if name:
            try:
                key = self.keys.lookup(bytes.fromhex(name), now)
            except ValueError:
                key = None
            if key is None:
                return {"status": TLSMGR_STAT_BAD}
        reply = {
            "status": TLSMGR_STAT_OK,
            "keybuf": key.keybuf.hex(),
            "expires": str(int(key.expires)),
        }
        if not name:
            older = self.keys.previous
            fresh = older is not None and now < older.expires + self.keys.timeout
            reply["previous"] = older.keybuf.hex() if fresh else ""
        return reply

    def wakeup(self) -> None:
        now = time.time()
        if self.enabled:
            self.keys.current(now)
        for cache in self.caches.values():
            try:
                cache.cleanup(now)
            except StoreError as exc:
                log.warning("TLS session cache cleanup: %s", exc)

    async def handle_client(self, reader, writer, ctx=None) -> None:
        """Serve one client (an smtpd process, or the master's wakeup) until it closes."""
        decoder = AttrReader()
        first = True
        try:
            while True:
                data = await reader.read(READ_CHUNK)
                if first and data.startswith(TRIGGER_WAKEUP) and b"\0" not in data:
                    self.wakeup()
                    break
                first = False
                if not data:
                    break
                try:
                    messages = decoder.feed(data)
                except ValueError as exc:
                    log.warning("malformed tlsmgr request: %s; closing connection", exc)
                    break
                for msg in messages:
                    await write_attrs(writer, self.serve(msg))
        except (ConnectionError, OSError):
            pass
        finally:
            await close_writer(writer)
