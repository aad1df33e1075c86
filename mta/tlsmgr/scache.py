"""tlsmgr.scache - the TLS session caches of smtp, lmtp and smtpd, shared by their processes

SYNOPSIS
    from mta.tlsmgr.scache import open_session_caches
    caches = open_session_caches(cfg)          # {"smtp": SessionCache, "lmtp": ..., "smtpd": ...}
    der = caches["smtp"].lookup(cache_id, now)  # b"" when nothing (or expired)
    caches["smtp"].update(cache_id, der, now)
    caches["smtp"].cleanup(now)                # drop expired entries

DESCRIPTION
    smtp_tls_session_cache_database (lmtp_tls_session_cache_database)
    names an lmdb: table (hash: and btree: name the same FILE.lmdb, as
    elsewhere in mta) that tlsmgr alone opens and writes; the smtp and
    lmtp processes ask tlsmgr for a session before a handshake and hand
    it the session of each new one (common/tlsmgr_clnt.py,
    common/tls_session.py). smtpd_tls_session_cache_database does the
    same for smtpd's sessions, keyed by session id (smtpd/tls_scache.py).
    An empty parameter keeps no shared cache: each process then keeps
    its own sessions only.

    An entry is "EXPIRES:HEX", the session in OpenSSL's DER form
    (common/tls_serial.py) and the time it is no longer offered:
    *_tls_session_cache_timeout after it was stored. cleanup() runs on
    the master's wakeup of tlsmgr (every 1000 seconds when used).

SECURITY
    The entries hold session secrets: the file belongs to mail_owner
    and is written by tlsmgr only. A damaged entry reads as none; a
    session is at most SESSION_DER_MAX bytes; an id at most
    CACHE_ID_MAX characters.
"""

from __future__ import annotations

from mta.common.tls_serial import SESSION_DER_MAX
from mta.common.tls_ticket import cache_timeout
from mta.verify.cache import LMDB_KINDS, LMDB_SUFFIX, LmdbStore, StoreError

# cache_type of the requests -> (its table parameter, its timeout parameter)
CACHE_TYPES: dict[str, tuple[str, str]] = {
    "smtp": ("smtp_tls_session_cache_database", "smtp_tls_session_cache_timeout"),
    "lmtp": ("lmtp_tls_session_cache_database", "lmtp_tls_session_cache_timeout"),
    "smtpd": ("smtpd_tls_session_cache_database", "smtpd_tls_session_cache_timeout"),
}


class SessionCache:
    """One session cache in an LMDB store; see the module docstring."""

    def __init__(self, store, timeout: float) -> None:
        self.store = store
        self.timeout = float(timeout)

    def lookup(self, cache_id: str, now: float) -> bytes:
        value = self.store.get(cache_id)
        if value is None:
            return b""
        expires, _, blob = value.partition(":")
        try:
            if float(expires) <= now:
                return b""
            der = bytes.fromhex(blob)
        except ValueError:
            return b""
        return der if len(der) <= SESSION_DER_MAX else b""

    def update(self, cache_id: str, der: bytes, now: float) -> None:
        self.store.put(cache_id, f"{int(now + self.timeout)}:{der.hex()}")

    def delete(self, cache_id: str) -> None:
        self.store.delete(cache_id)

    def cleanup(self, now: float) -> int:
        """Delete the expired and damaged entries; how many went."""
        gone = []
        for key, value in self.store.items():
            expires = value.partition(":")[0]
            try:
                if float(expires) > now:
                    continue
            except ValueError:
                pass
            gone.append(key)
        self.store.delete_many(gone)
        return len(gone)


def open_session_caches(cfg) -> dict[str, SessionCache]:
    """The caches main.cf names, by cache type; StoreError names what is wrong."""
    caches = {}
    for kind, (param, timeout_param) in CACHE_TYPES.items():
        spec = cfg.get(param).strip()
        timeout = cache_timeout(cfg, timeout_param)
        if not spec or timeout <= 0:
            continue
        table, _, name = spec.partition(":")
        if table not in LMDB_KINDS or not name:
            raise StoreError(f'{param}: unsupported table "{spec}": use lmdb:PATH')
        caches[kind] = SessionCache(
            LmdbStore(name + LMDB_SUFFIX, cfg.get_size("lmdb_map_size")), timeout
        )
    return caches
