"""smtp.sasl_cache - logins a server refused, not tried again (smtp_sasl_auth_cache_name)

SYNOPSIS
    from mta.smtp.sasl_cache import AuthCache
    cache = AuthCache.of(cfg, lmtp=False)         # None when the parameter is empty
    reply = cache.refused(host, user, password, now)   # the saved 535 reply, or None
    cache.remember(host, user, password, reply, now)

DESCRIPTION
    With smtp_sasl_auth_cache_name (lmtp_sasl_auth_cache_name) set to
    an lmdb: table ("btree:" and "hash:" name the same FILE.lmdb, as
    elsewhere in mta), a server that refuses a login with a 535 reply
    is remembered under its host name, with a digest of the user name
    and password and the server's reply. Until the entry is older than
    smtp_sasl_auth_cache_time, or the password table gives other
    credentials for that server, the client does not try that login
    again: the mail is deferred (or bounced, with
    smtp_sasl_auth_soft_bounce = no) with the saved reply, as in
    Postfix. A successful login removes the entry. Several smtp
    processes share the file (LMDB's lock).

    A table that cannot be opened is logged once and the client goes
    on without the cache: it saves servers from repeated failures, it
    protects nothing.

SECURITY
    The password is never stored: the entry holds a SHA-256 digest of
    host, user name and password. Replies come from remote servers and
    are only stored and quoted.
"""

from __future__ import annotations

import hashlib

from mta import log
from mta.common.kv_store import LMDB_KINDS, LMDB_SUFFIX, LmdbStore, StoreError
from mta.config.params import PARAMS

REPLY_MAX = 500  # characters of a saved reply


def _param(lmtp: bool, name: str) -> str:
    alt = f"lmtp_{name}"
    return alt if lmtp and alt in PARAMS else f"smtp_{name}"


def _digest(host: str, user: str, password: str) -> str:
    data = "\0".join((host.lower(), user, password)).encode("utf-8", "surrogateescape")
    return hashlib.sha256(data).hexdigest()


class AuthCache:
    """The refused-login table of one client (smtp or lmtp)."""

    _memo: dict = {}  # (id(cfg), lmtp) -> (cfg, AuthCache | None)

    def __init__(self, store, max_age: float) -> None:
        self.store = store
        self.max_age = max_age

    @classmethod
    def of(cls, cfg, lmtp: bool = False) -> AuthCache | None:
        memo = cls._memo.get((id(cfg), lmtp))
        if memo is not None and memo[0] is cfg:
            return memo[1]
        name = _param(lmtp, "sasl_auth_cache_name")
        spec = cfg.get(name).strip()
        cache = None
        if spec:
            kind, _, path = spec.partition(":")
            try:
                if kind.lower() not in LMDB_KINDS or not path:
                    raise StoreError(f'unsupported table "{spec}": use lmdb:PATH')
                store = LmdbStore(path + LMDB_SUFFIX, cfg.get_size("lmdb_map_size"))
                cache = cls(store, float(cfg.get_time(_param(lmtp, "sasl_auth_cache_time"))))
            except StoreError as exc:
                log.warning("%s: %s; going on without it", name, exc)
        cls._memo[(id(cfg), lmtp)] = (cfg, cache)
        return cache

    def refused(self, host: str, user: str, password: str, now: float) -> str | None:
        """The reply that refused these credentials at host, while the entry is valid."""
        try:
            value = self.store.get(host.lower())
        except StoreError as exc:
            log.warning("SASL authentication cache: %s", exc)
            return None
        if value is None:
            return None
        when, _, rest = value.partition(":")
        digest, _, reply = rest.partition(":")
        try:
            age = now - float(when)
        except ValueError:
            return None
        if digest != _digest(host, user, password) or not 0 <= age < self.max_age:
            return None  # other credentials now, or expired: try again
        return reply

    def remember(self, host: str, user: str, password: str, reply: str, now: float) -> None:
        value = f"{int(now)}:{_digest(host, user, password)}:{reply[:REPLY_MAX]}"
        try:
            self.store.put(host.lower(), value)
        except StoreError as exc:
            log.warning("SASL authentication cache: %s", exc)

    def forget(self, host: str) -> None:
        try:
            if self.store.get(host.lower()) is not None:
                self.store.delete(host.lower())
        except StoreError as exc:
            log.warning("SASL authentication cache: %s", exc)
