"""common.egress_counts - messages sent per day, source and site, for warm-up caps

SYNOPSIS
    from mta.common.egress_counts import WarmupCounts
    counts = WarmupCounts(store)            # a kv_store LmdbStore (or MemoryStore)
    counts.get("2026-12-01", "src1", "gmail")            # int
    counts.add("2026-12-01", "src1", "gmail", 3)
    counts.flush(); counts.close()

DESCRIPTION
    The warm-up caps of common/egress count messages per UTC day, per
    source and per destination site. The counts live in the table
    egress_state_map names (lmdb:PATH, the file PATH.lmdb) under the key
    "DAY<TAB>SOURCE<TAB>SITE" with the number as text, so that a cap
    still holds after a restart.

    The chooser asks for a count for every batch, so the current day's
    counts are held in memory: they are read from the file once when
    the day starts (or the process does), and get() never touches the
    file. add() changes the memory at once and writes the changed
    counts through in one transaction at most every
    EGRESS_FLUSH_INTERVAL seconds or after EGRESS_FLUSH_COUNTS counted
    messages, whichever comes first; flush() and close() write the rest.
    qmgr counts a batch when it chooses its source, before the batch is
    queued, and calls flush_logged() (through Egress.save()) before it
    hands batches to the delivery agents: one write per dispatch round,
    and a crash never loses the count of mail that left, so a cap holds
    across crashes and restarts. A batch counted and then not delivered
    (deferred, qmgr stopped) still counts: the cap errs on the side of
    sending less.

    A new day flushes the old one, starts from the file's counts for
    the new day, and deletes the counts older than EGRESS_KEEP_DAYS
    days. A count for a day before the current one (a batch that
    finished just after midnight) goes straight to the file.

    One process (qmgr) writes the counts; the in-memory counts are the
    truth while it runs, and a flush stores them as they are, without
    adding to what another writer may have stored meanwhile.

SECURITY
    Site names come from qmgr's shaping configuration; source names
    from main.cf. They are only used as keys. Store errors are
    kv_store.StoreError naming the file; add() logs them and keeps the
    counts in memory, so that mail keeps flowing.

SEE ALSO
    mta/common/egress.py (the chooser), mta/common/kv_store.py
"""

from __future__ import annotations

import datetime
import time

from mta import log
from mta.common.kv_store import StoreError

EGRESS_FLUSH_INTERVAL = 1.0  # seconds between writes of changed counts, at most
EGRESS_FLUSH_COUNTS = 1000  # messages counted before the changes are written anyway
EGRESS_KEEP_DAYS = 7  # days of counts kept in the file (today included)


def count_key(day: str, source: str, site: str) -> str:
    return f"{day}\t{source}\t{site}"


class WarmupCounts:
    """Today's counts in memory, written through to a kv_store table."""

    def __init__(
        self,
        store,
        flush_interval: float = EGRESS_FLUSH_INTERVAL,
        flush_counts: int = EGRESS_FLUSH_COUNTS,
        keep_days: int = EGRESS_KEEP_DAYS,
    ) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.flush_counts = flush_counts
        self.keep_days = keep_days
        self.day = ""  # the day held in memory, "YYYY-MM-DD"
        self.counts: dict[tuple[str, str], int] = {}  # (source, site) -> messages
        self.dirty: set[tuple[str, str]] = set()
        self.unflushed = 0  # messages counted since the last write
        self.flushed_at = time.monotonic()

    def get(self, day: str, source: str, site: str) -> int:
        """Messages source sent to site on day."""
        if day != self.day:
            if day < self.day:
                return _int(self.store.get(count_key(day, source, site)))
            self._start_day(day)
        return self.counts.get((source, site), 0)

    def add(self, day: str, source: str, site: str, n: int = 1) -> None:
        """Count n more messages; writes through as the module docstring says."""
        if day < self.day:
            self._add_past(day, source, site, n)
            return
        if day != self.day:
            self._start_day(day)
        key = (source, site)
        self.counts[key] = self.counts.get(key, 0) + n
        self.dirty.add(key)
        self.unflushed += n
        if (
            self.unflushed >= self.flush_counts
            or time.monotonic() - self.flushed_at >= self.flush_interval
        ):
            self.flush_logged()

    def flush(self) -> None:
        """Write the changed counts now; StoreError when the table fails."""
        self.flushed_at = time.monotonic()
        if not self.dirty:
            return
        pairs = [
            (count_key(self.day, source, site), str(self.counts[(source, site)]))
            for source, site in self.dirty
        ]
        self.store.put_many(pairs)
        self.dirty.clear()
        self.unflushed = 0

    def close(self) -> None:
        self.flush_logged()
        self.store.close()

    def flush_logged(self) -> None:
        try:
            self.flush()
        except StoreError as exc:
            log.warning("egress counts not saved: %s", exc)

    def _start_day(self, day: str) -> None:
        self.flush_logged()
        self.day = day
        self.counts = {}
        self.dirty.clear()
        self.unflushed = 0
        try:
            for key, value in self.store.items_from(day + "\t"):
                _, source, site = key.split("\t", 2)
                self.counts[(source, site)] = _int(value)
            self.prune(day)
        except (StoreError, ValueError) as exc:
            log.warning("egress counts of %s not read: %s", day, exc)

    def _add_past(self, day: str, source: str, site: str, n: int) -> None:
        key = count_key(day, source, site)
        try:
            self.store.put(key, str(_int(self.store.get(key)) + n))
        except StoreError as exc:
            log.warning("egress counts not saved: %s", exc)

    def prune(self, today: str) -> None:
        """Delete the counts of days more than keep_days before today."""
        first = datetime.date.fromisoformat(today) - datetime.timedelta(days=self.keep_days - 1)
        cutoff = first.isoformat()
        old = [key for key, _ in self.store.items() if key < cutoff]
        if old:
            self.store.delete_many(old)


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
