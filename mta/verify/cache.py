"""verify.cache - the address verification cache and when to probe

SYNOPSIS
    from mta.verify.cache import VerifyCache, Policy, open_store
    cache = VerifyCache(open_store(cfg), Policy.of(cfg))
    status, text, probe = cache.query("user@example.com", now)
    if probe:
        send_probe("user@example.com")        # the caller's job
    cache.update("user@example.com", STATUS_OK, "250 2.1.5 Ok", now)

DESCRIPTION
    One entry per address (folded to lower case), stored as Postfix
    stores it: "STATUS:PROBED:UPDATED:TEXT", where STATUS is one of
    STATUS_OK (0, deliverable), STATUS_DEFER (1, a temporary failure),
    STATUS_BOUNCE (4, undeliverable) or STATUS_TODO (3, nothing known
    yet), PROBED the time a probe went out and has not come back (0:
    none pending) and UPDATED the time of the last result.

    query() says what is known and whether a probe should go out now:

      - no entry, or an expired one (a deliverable result older than
        address_verify_positive_expire_time, any other older than
        address_verify_negative_expire_time): STATUS_TODO, "Address
        verification in progress", and a probe;
      - a result older than its refresh time
        (address_verify_positive_refresh_time or ..._negative_...):
        that result, and a probe in the background;
      - otherwise the result, and no probe.

    A probe is never sent while another for the address is pending and
    younger than PROBE_TTL seconds, so a flood of RCPT commands for one
    address sends one probe.

    update() records a probe result. A temporary failure does not
    replace a deliverable result that has not expired, and with
    address_verify_negative_cache = no, failures are not kept at all.

    open_store() opens the table address_verify_map names: lmdb:PATH
    (the file PATH.lmdb, read and written in place by this one process)
    or, when the parameter is empty, a dict in memory that lives as
    long as the verify service. An administrator may read the file
    with "mta map -q/-s lmdb:PATH" and delete an entry with "mta map -d
    KEY lmdb:PATH" (the address is then probed again): that writes a
    new file, which the store notices by its inode within LMDB_RECHECK
    seconds and opens instead. cleanup() deletes expired entries;
    the service runs it every address_verify_cache_cleanup_interval.

SECURITY
    Addresses come from SMTP clients; they are only ever keys. A
    damaged entry reads as no entry.

SEE ALSO
    verify(8), ADDRESS_VERIFICATION_README
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mta.common.kv_store import (  # noqa: F401 - the stores are part of this module's interface
    LMDB_KINDS,
    LMDB_SUFFIX,
    LmdbStore,
    MemoryStore,
    StoreError,
)
from mta.common.kv_store import open_store as open_kv_store

STATUS_OK = 0  # deliverable
STATUS_DEFER = 1  # a temporary failure: status unknown
STATUS_TODO = 3  # nothing known yet: a probe is on its way
STATUS_BOUNCE = 4  # undeliverable
STATUSES = (STATUS_OK, STATUS_DEFER, STATUS_TODO, STATUS_BOUNCE)

PROBE_TTL = 1000  # seconds: a pending probe older than this is sent again
TEXT_IN_PROGRESS = "Address verification in progress"
TEXT_MAX = 1000  # characters of a result text that are kept


@dataclass
class Policy:
    positive_expire: float
    positive_refresh: float
    negative_expire: float
    negative_refresh: float
    negative_cache: bool = True

    @classmethod
    def of(cls, cfg) -> Policy:
        return cls(
            positive_expire=cfg.get_time("address_verify_positive_expire_time"),
            positive_refresh=cfg.get_time("address_verify_positive_refresh_time"),
            negative_expire=cfg.get_time("address_verify_negative_expire_time"),
            negative_refresh=cfg.get_time("address_verify_negative_refresh_time"),
            negative_cache=cfg.get_bool("address_verify_negative_cache"),
        )


@dataclass
class Entry:
    status: int
    probed: int
    updated: int
    text: str

    def encode(self) -> str:
        return f"{self.status}:{self.probed}:{self.updated}:{self.text}"

    @classmethod
    def decode(cls, value: str) -> Entry | None:
        """The entry, or None when value is not one."""
        parts = value.split(":", 3)
        if len(parts) != 4:
            return None
        try:
            status, probed, updated = int(parts[0]), int(parts[1]), int(parts[2])
        except ValueError:
            return None
        if status not in STATUSES or probed < 0 or updated < 0:
            return None
        return cls(status, probed, updated, parts[3])


def open_store(cfg) -> MemoryStore | LmdbStore:
    """The table address_verify_map names; StoreError names what is wrong."""
    return open_kv_store(cfg, "address_verify_map")


def fold(address: str) -> str:
    return address.lower()


class VerifyCache:
    """Address verification results and the probe decisions; see the module docstring."""

    def __init__(self, store, policy: Policy) -> None:
        self.store = store
        self.policy = policy

    def get(self, address: str) -> Entry | None:
        raw = self.store.get(fold(address))
        return None if raw is None else Entry.decode(raw)

    def _expired(self, entry: Entry, now: float) -> bool:
        if entry.status == STATUS_TODO or entry.updated == 0:
            return True
        p = self.policy
        limit = p.positive_expire if entry.status == STATUS_OK else p.negative_expire
        return now - entry.updated > limit

    def _stale(self, entry: Entry, now: float) -> bool:
        p = self.policy
        limit = p.positive_refresh if entry.status == STATUS_OK else p.negative_refresh
        return now - entry.updated > limit

    def query(
        self, address: str, now: float, may_probe: Callable[[], bool] | None = None
    ) -> tuple[int, str, bool]:
        """(status, text, whether to send a probe now); a probe sent is noted.

        may_probe: asked only when a probe is due; False holds it back (too
        many are out)."""
        entry = self.get(address)
        unknown = entry is None or self._expired(entry, now)
        if unknown:
            status, text, want = STATUS_TODO, TEXT_IN_PROGRESS, True
        else:
            status, text, want = entry.status, entry.text, self._stale(entry, now)
        pending = entry is not None and entry.probed and now - entry.probed < PROBE_TTL
        if not want or pending or (may_probe is not None and not may_probe()):
            return status, text, False
        if unknown:
            entry = Entry(STATUS_TODO, int(now), 0, TEXT_IN_PROGRESS)
        else:
            entry.probed = int(now)
        self.store.put(fold(address), entry.encode())
        return status, text, True

    def update(self, address: str, status: int, text: str, now: float) -> bool:
        """Record a probe result; False when it was not kept (see the module docstring)."""
        if status not in (STATUS_OK, STATUS_DEFER, STATUS_BOUNCE):
            raise ValueError(f"bad address status {status}")
        old = self.get(address)
        if status != STATUS_OK:
            if not self.policy.negative_cache:
                if old is not None and old.status == STATUS_TODO:
                    self.store.delete(fold(address))
                return False
            keep_ok = old is not None and old.status == STATUS_OK and not self._expired(old, now)
            if status == STATUS_DEFER and keep_ok:
                old.probed = 0
                self.store.put(fold(address), old.encode())
                return False
        text = " ".join(text.split())[:TEXT_MAX]
        self.store.put(fold(address), Entry(status, 0, int(now), text).encode())
        return True

    def cleanup(self, now: float) -> int:
        """Delete expired and damaged entries; how many went."""
        gone = []
        for key, raw in self.store.items():
            entry = Entry.decode(raw)
            if entry is None or (
                self._expired(entry, now) and not (entry.probed and now - entry.probed < PROBE_TTL)
            ):
                gone.append(key)
        self.store.delete_many(gone)
        return len(gone)
