"""postscreen.cache - which tests a client passed, and until when

SYNOPSIS
    from mta.postscreen.cache import PscCache, TEST_NAMES, decode_stamps, encode_stamps
    cache = PscCache(store, retention=7 * 86400)      # store: common/kv_store.py
    stamps = cache.get("192.0.2.1")                   # [expiry per test], 0 = never passed
    cache.put("192.0.2.1", stamps)
    removed = cache.cleanup(now)

DESCRIPTION
    postscreen_cache_map (btree:$data_directory/postscreen_cache, kept
    in FILE.lmdb as every hash:/btree: name in mta) holds one entry per
    client address: the time (seconds since the epoch) until which each
    test counts as passed, in TEST_NAMES order, separated by ";". A
    value that does not parse counts as a client never seen (and is
    replaced at its next pass). cleanup() removes the entries of which
    every time lies more than the retention time in the past.

    due_tests() gives the tests that must run again: those enabled whose
    time has come.

SECURITY
    Keys are client addresses from the kernel; values are written only
    by postscreen. A corrupt value is never trusted for more than
    "not passed".
"""

from __future__ import annotations

from mta import log
from mta.common.kv_store import StoreError

TEST_NAMES = ("pregreet", "dnsbl", "pipelining", "non_smtp", "bare_newline")
PSC_PREGREET, PSC_DNSBL, PSC_PIPEL, PSC_NSMTP, PSC_BARLF = range(len(TEST_NAMES))
DEEP_TESTS = (PSC_PIPEL, PSC_NSMTP, PSC_BARLF)  # the tests after the 220 greeting
STAMP_MAX = 1 << 40  # seconds; a larger time is corrupt


def encode_stamps(stamps: list[int]) -> str:
    return ";".join(str(int(s)) for s in stamps)


def decode_stamps(text: str | None) -> list[int]:
    """The expiry times in text; all zero when text is missing or malformed."""
    fresh = [0] * len(TEST_NAMES)
    if not text:
        return fresh
    parts = text.split(";")
    if len(parts) != len(TEST_NAMES) or not all(p.isdigit() and len(p) < 14 for p in parts):
        return fresh
    stamps = [int(p) for p in parts]
    return stamps if all(s < STAMP_MAX for s in stamps) else fresh


def due_tests(stamps: list[int], enabled: tuple[bool, ...], now: float) -> set[int]:
    """The enabled tests whose pass has expired (or never happened)."""
    return {i for i, on in enumerate(enabled) if on and stamps[i] <= now}


class PscCache:
    def __init__(self, store, retention: float) -> None:
        self.store = store
        self.retention = retention

    def get(self, addr: str) -> list[int]:
        try:
            return decode_stamps(self.store.get(addr))
        except StoreError as exc:
            log.warning("postscreen_cache_map lookup for %s: %s", addr, exc)
            return [0] * len(TEST_NAMES)

    def put(self, addr: str, stamps: list[int]) -> None:
        try:
            self.store.put(addr, encode_stamps(stamps))
        except StoreError as exc:
            log.warning("postscreen_cache_map update for %s: %s", addr, exc)

    def cleanup(self, now: float) -> int:
        """Remove entries expired longer than the retention time; return how many."""
        limit = now - self.retention
        try:
            old = [k for k, v in self.store.items() if max(decode_stamps(v)) < limit]
            self.store.delete_many(old)
        except StoreError as exc:
            log.warning("postscreen_cache_map cleanup: %s", exc)
            return 0
        return len(old)
