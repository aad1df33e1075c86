"""common.kv_store - a small string table in memory or in an LMDB file

SYNOPSIS
    from mta.common.kv_store import LmdbStore, MemoryStore, StoreError, open_store
    store = open_store(cfg, "address_verify_map")   # lmdb:PATH, or memory when empty
    store = LmdbStore("/var/lib/mta/verify_cache.lmdb", map_size)
    store.put(key, value); store.get(key); store.delete_many(keys)
    for key, value in store.items(): ...
    store.put_many(pairs); store.items_from(prefix)

DESCRIPTION
    The caches services keep between deliveries (address verification,
    MTA-STS policies) store text values under text keys. MemoryStore
    keeps them in a dict for the life of the process; LmdbStore in an
    LMDB file, read and written in place, with LMDB's own lock so that
    several processes may share one file. A file replaced behind the
    store's back ("mta map -d KEY lmdb:PATH" writes a new one and renames
    it into place) is noticed by its inode within LMDB_RECHECK seconds
    and opened instead. A full map is grown and the write retried.

SECURITY
    Keys and values may come from the network (addresses, domains);
    they are only stored. Errors are StoreError naming the file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

LMDB_SUFFIX = ".lmdb"
LMDB_KINDS = ("lmdb", "hash", "btree")  # as mta.maps.dict_lmdb: types kept in FILE.lmdb
LMDB_RECHECK = 1.0  # seconds between checks whether the cache file was replaced


class StoreError(Exception):
    """The table cannot be opened or used."""


class MemoryStore:
    """The cache in memory: an empty address_verify_map."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def put(self, key: str, value: str) -> None:
        self.data[key] = value

    def put_many(self, pairs: list[tuple[str, str]]) -> None:
        self.data.update(pairs)

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def delete_many(self, keys: list[str]) -> None:
        for key in keys:
            self.data.pop(key, None)

    def items(self) -> Iterator[tuple[str, str]]:
        return iter(list(self.data.items()))

    def items_from(self, prefix: str) -> Iterator[tuple[str, str]]:
        """The entries whose key starts with prefix, in key order."""
        return iter(sorted((k, v) for k, v in self.data.items() if k.startswith(prefix)))

    def close(self) -> None:
        pass


class LmdbStore:
    """The cache in an LMDB file, opened read-write by the verify service only."""

    def __init__(self, path: str, map_size: int) -> None:
        import lmdb

        self._lmdb = lmdb
        self.path = path
        self.map_size = map_size
        self.env = None
        self._open()

    def _open(self) -> None:
        lmdb = self._lmdb
        if self.env is not None:
            self.env.close()  # the same path may not be open twice in one process
            self.env = None
        self.checked = time.monotonic()
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self.env = lmdb.open(
                self.path,
                subdir=False,
                map_size=self.map_size,
                max_dbs=0,
                lock=True,
                metasync=False,
            )
            st = os.stat(self.path)
        except (OSError, lmdb.Error) as exc:
            raise StoreError(f"{self.path}: {exc}") from None
        self.identity = (st.st_dev, st.st_ino)

    def _recheck(self) -> None:
        """Reopen the file when someone replaced it ("mta map -d KEY" writes a new
        one and renames it into place); looked at once a second at most."""
        now = time.monotonic()
        if self.env is None:
            self._open()  # a reopen that failed: try again (StoreError if it still fails)
            return
        if now - self.checked < LMDB_RECHECK:
            return
        self.checked = now
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != self.identity:
            self._open()

    def get(self, key: str) -> str | None:
        self._recheck()
        with self.env.begin() as txn:
            raw = txn.get(key.encode("utf-8", "surrogateescape"))
        return None if raw is None else raw.decode("utf-8", "replace")

    def _write(self, fn) -> None:
        self._recheck()
        for _ in range(8):
            try:
                with self.env.begin(write=True) as txn:
                    fn(txn)
                return
            except self._lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
            except self._lmdb.Error as exc:
                raise StoreError(f"{self.path}: {exc}") from None
        raise StoreError(f"{self.path}: map full")

    def put(self, key: str, value: str) -> None:
        k, v = key.encode("utf-8", "surrogateescape"), value.encode("utf-8", "surrogateescape")
        self._write(lambda txn: txn.put(k, v))

    def put_many(self, pairs: list[tuple[str, str]]) -> None:
        """Store pairs in one transaction (one sync, not one per pair)."""
        raw = [
            (k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape"))
            for k, v in pairs
        ]

        def put(txn) -> None:
            for k, v in raw:
                txn.put(k, v)

        if raw:
            self._write(put)

    def delete(self, key: str) -> None:
        self.delete_many([key])

    def delete_many(self, keys: list[str]) -> None:
        """Delete keys in one transaction (one sync, not one per key)."""
        raw = [key.encode("utf-8", "surrogateescape") for key in keys]

        def delete(txn) -> None:
            for k in raw:
                txn.delete(k)

        if raw:
            self._write(delete)

    def items(self) -> Iterator[tuple[str, str]]:
        """Every entry, read in one transaction as the caller iterates."""
        self._recheck()
        with self.env.begin() as txn:
            for k, v in txn.cursor():
                yield k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "replace")

    def items_from(self, prefix: str) -> Iterator[tuple[str, str]]:
        """The entries whose key starts with prefix, in key order."""
        self._recheck()
        start = prefix.encode("utf-8", "surrogateescape")
        with self.env.begin() as txn:
            cursor = txn.cursor()
            if not cursor.set_range(start):
                return
            for k, v in cursor:
                if not k.startswith(start):
                    return
                yield k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "replace")

    def close(self) -> None:
        self.env.close()


def open_store(cfg, param: str) -> MemoryStore | LmdbStore:
    """The table param names: lmdb:PATH (hash: and btree: name the same FILE.lmdb),
    or memory when it is empty; StoreError names what is wrong."""
    spec = cfg.get(param).strip()
    if not spec:
        return MemoryStore()
    kind, _, name = spec.partition(":")
    if kind not in LMDB_KINDS or not name:
        raise StoreError(
            f'{param}: unsupported table "{spec}": use lmdb:PATH, or nothing for memory'
        )
    return LmdbStore(name + LMDB_SUFFIX, cfg.get_size("lmdb_map_size"))
