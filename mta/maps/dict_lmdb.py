"""maps.dict_lmdb - lmdb: tables, FILE.lmdb built by "mta map", read by every process

SYNOPSIS
    table = open_map("lmdb:/etc/mta/virtual", cfg)   # reads /etc/mta/virtual.lmdb
    table = open_map("hash:/etc/postfix/virtual")    # reads /etc/postfix/virtual.lmdb
    table.lookup("user@example.com")
    build_lmdb("/etc/mta/virtual.lmdb", pairs, spec="lmdb:/etc/mta/virtual")
    update_lmdb("/etc/mta/virtual.lmdb", puts=[(k, v)], deletes=[k])

DESCRIPTION
    Readers open the file read-only, without LMDB's lock table, once per
    process; the memory map is shared between processes by the kernel.
    Writers never change a published file: build_lmdb() and update_lmdb()
    write FILE.lmdb.tmp.PID, fsync it, rename it over FILE.lmdb and fsync
    the directory, so a reader sees the old table or the new one, never a
    half-written one. A reader notices the rename by the file's inode and
    mtime, checked at most once a second, and reopens: one thread reopens
    while the others go on reading the old file, which closes when its
    last reader is done. py-lmdb refuses a second open of one file in a
    process, so open_map() hands every thread the same table.

    Keys are stored lower-cased (unless built with fold=False) and, like
    Postfix on Linux, with a terminating null byte by default, so tables
    built by postmap and by "mta map" read the same with either. A reader
    finds out from the first key whether the table uses null bytes.

    hash: and btree: (Berkeley DB files in Postfix) name the same file:
    "mta map hash:FILE" builds FILE.lmdb and hash:FILE in main.cf reads
    it, so a Postfix main.cf works unchanged once its tables are rebuilt.
    The first open of each such table in a process logs which file
    serves it.

    The map size starts at lmdb_map_size or twice the data, whichever is
    larger, and doubles whenever LMDB reports the map full.

SECURITY
    Reads and writes files the administrator named; the data is trusted.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import lmdb

from mta.maps.maps import Dict, MapError, note_once, register

LMDB_SUFFIX = ".lmdb"  # file name suffix of a built table
LMDB_ALIASES = ("hash", "btree")  # Postfix's Berkeley DB types, served from FILE.lmdb
LMDB_KINDS = ("lmdb", *LMDB_ALIASES)  # every type built and read as FILE.lmdb
LMDB_DEFAULT_MAP_SIZE = 16 * 1024 * 1024  # Postfix's lmdb_map_size default
LMDB_RECHECK = 1.0  # seconds between checks for a rebuilt file
_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")


def fold_key(key: str) -> str:
    """Lower-case ASCII letters only, as table building does."""
    return (
        key.encode("utf-8", "surrogateescape").translate(_LOWER).decode("utf-8", "surrogateescape")
    )


def _decode(raw: bytes) -> str:
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return raw.decode("utf-8", "surrogateescape")


class _OpenFailed(Exception):
    """An LMDB file could not be opened; the table names itself in the MapError."""


class LmdbFile:
    """One LMDB file open in this process, shared by every table that reads it.

    py-lmdb refuses to open a file that is already open in the process, so
    lmdb:F, hash:F, btree:F, a folded and an unfolded F, and "mta map -i"
    all read through this one object. current() reopens the file when it
    was rebuilt (renamed over), checked at most once per LMDB_RECHECK
    seconds, by one thread while the others go on reading the old file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.users = 0  # tables attached (see attach_file/detach_file)
        # The open file and whether its keys end in a null byte, swapped as one.
        self._current: tuple[lmdb.Environment, bool] | None = None
        self._ident: tuple[int, int] | None = None
        self._checked = 0.0
        self._reopen = threading.Lock()
        with self._reopen:
            self._open()

    def _open(self) -> None:
        """Open the file at path now (the caller holds _reopen)."""
        try:
            st = os.stat(self.path)
            env = lmdb.open(
                self.path, readonly=True, lock=False, subdir=False, max_dbs=0, readahead=False
            )
        except (OSError, lmdb.Error) as exc:
            raise _OpenFailed(getattr(exc, "strerror", None) or str(exc)) from None
        with env.begin() as txn:
            cur = txn.cursor()
            nul = not cur.first() or cur.key().endswith(b"\0")
        # The old file is not closed here: a thread may be reading it; it
        # closes when the last reader lets go of it.
        self._current = (env, nul)
        self._ident = (st.st_ino, st.st_mtime_ns)
        self._checked = time.monotonic()

    def current(self, *, recheck: bool = False) -> tuple[lmdb.Environment, bool]:
        """(environment, null-byte keys) to read now; recheck looks for a rebuild at once."""
        if recheck or time.monotonic() - self._checked >= LMDB_RECHECK:
            with self._reopen:
                if recheck or time.monotonic() - self._checked >= LMDB_RECHECK:
                    self._checked = time.monotonic()
                    try:
                        st = os.stat(self.path)
                    except OSError:
                        st = None  # keep serving the table we have
                    if st is not None and (st.st_ino, st.st_mtime_ns) != self._ident:
                        try:
                            self._open()
                        except _OpenFailed:
                            if self._current is None:
                                raise
                            # the new file cannot be opened yet (a rebuild in flight,
                            # or LMDB's "already open" guard racing a closing reader):
                            # keep serving the table we have and look again next time
                            self._checked = 0.0
        if self._current is None:
            raise _OpenFailed("table is closed")
        return self._current

    def close(self) -> None:
        with self._reopen:
            if self._current is not None:
                self._current[0].close()
                self._current = None


_FILES: dict[str, LmdbFile] = {}  # real path -> the file open in this process
_FILES_LOCK = threading.Lock()


def attach_file(path: str) -> LmdbFile:
    """The shared LmdbFile for path, opened on first use; pair with detach_file()."""
    key = os.path.realpath(path)
    with _FILES_LOCK:
        f = _FILES.get(key)
        if f is None:
            f = _FILES[key] = LmdbFile(path)
        f.users += 1
        return f


def detach_file(f: LmdbFile) -> None:
    """A table lets go of f; the last one closes it."""
    with _FILES_LOCK:
        f.users -= 1
        if f.users > 0:
            return
        key = os.path.realpath(f.path)
        if _FILES.get(key) is f:
            del _FILES[key]
    f.close()


class LmdbDict(Dict):
    kind = "lmdb"
    fixed = True

    def __init__(self, spec: str, name: str, cfg=None, fold: bool = True) -> None:
        super().__init__(spec, name, fold)
        self.path = name + LMDB_SUFFIX
        self._file: LmdbFile | None = None
        try:
            self._file = attach_file(self.path)
        except _OpenFailed as exc:
            raise MapError(self._open_error(exc)) from None

    def _open_error(self, exc: Exception) -> str:
        return f"{self.spec}: open database {self.path}: {exc}"

    def _table(self) -> tuple[lmdb.Environment, bool]:
        if self._file is None:
            raise MapError(f"{self.spec}: table is closed")
        try:
            return self._file.current()
        except _OpenFailed as exc:
            raise MapError(self._open_error(exc)) from None

    def lookup(self, key: str) -> str | None:
        env, nul = self._table()
        if self.fold:
            key = fold_key(key)
        raw = key.encode("utf-8", "surrogateescape")
        if nul:
            raw += b"\0"
        with env.begin(buffers=False) as txn:
            value = txn.get(raw)
        return None if value is None else _decode(value)

    def items(self) -> Iterator[tuple[str, str]]:
        env, _ = self._table()
        with env.begin() as txn:
            for k, v in txn.cursor():
                yield _decode(k), _decode(v)

    def close(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            detach_file(f)


class LmdbAliasDict(LmdbDict):
    """hash: and btree: names (Berkeley DB in Postfix), served from the same FILE.lmdb."""

    def __init__(self, spec: str, name: str, cfg=None, fold: bool = True) -> None:
        self.kind = spec.partition(":")[0]
        super().__init__(spec, name, cfg, fold)
        note_once(f"{spec} is served from the LMDB file {self.path}")

    def _open_error(self, exc: Exception) -> str:
        return (
            f"{super()._open_error(exc)} ({self.kind}: tables are read from the LMDB file "
            f'that "mta map {self.spec}" builds)'
        )


register("lmdb", LmdbDict)
for _kind in LMDB_ALIASES:
    register(_kind, LmdbAliasDict)


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_name(path: str) -> str:
    return f"{path}.tmp.{os.getpid()}"


def _open_writer(tmp: str, map_size: int) -> lmdb.Environment:
    return lmdb.open(
        tmp, subdir=False, lock=False, map_size=map_size, max_dbs=0, sync=True, metasync=True
    )


def _publish(env: lmdb.Environment, tmp: str, path: str, mode: int | None) -> None:
    env.sync(True)
    env.close()
    if mode is not None:
        os.chmod(tmp, mode)
    os.rename(tmp, path)
    _fsync_dir(path)


def _encode_key(key: bytes | str, nul: bool) -> bytes:
    raw = key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape")
    return raw + b"\0" if nul else raw


def _encode_value(value: bytes | str, nul: bool) -> bytes:
    return _encode_key(value, nul)


def _put(txn, k, v, nul: bool, duplicates: str, warn, where: str) -> int:
    """Store one entry; a duplicate key follows duplicates. Return 1 when new."""
    key, val = _encode_key(k, nul), _encode_value(v, nul)
    if txn.put(key, val, overwrite=False):
        return 1
    if duplicates == "replace":
        txn.put(key, val)
    elif duplicates == "warn" and warn is not None:
        shown = k if isinstance(k, str) else k.decode("utf-8", "replace")
        warn(f'{where}: duplicate entry: "{shown}"')
    return 0


def build_lmdb(
    path: str,
    pairs: list[tuple[bytes, bytes]],
    *,
    spec: str = "",
    duplicates: str = "warn",
    warn: Callable[[str], None] | None = None,
    map_size: int = LMDB_DEFAULT_MAP_SIZE,
    nul: bool = True,
    mode: int | None = None,
    progress: Callable[[int], None] | None = None,
    exact_size: bool = False,
) -> int:
    """Write pairs (already folded as wanted) into a new table at path; return entries.

    duplicates: "warn" (keep the first, warn), "ignore" (keep the first),
    "replace" (keep the last), as postmap does by default, with -w, with -r.
    exact_size starts at map_size without the estimate from the data.
    """
    data = sum(len(k) + len(v) + 16 for k, v in pairs)
    size = map_size if exact_size else max(map_size, 2 * data + (1 << 20))
    tmp = _tmp_name(path)
    while True:
        _remove(tmp)
        env = _open_writer(tmp, size)
        try:
            count = 0
            with env.begin(write=True) as txn:
                for i, (k, v) in enumerate(pairs):
                    count += _put(txn, k, v, nul, duplicates, warn, spec or path)
                    if progress is not None and i % 4096 == 4095:
                        progress(4096)
            _publish(env, tmp, path, mode)
            return count
        except lmdb.MapFullError:
            env.close()
            size *= 2
        except (lmdb.Error, OSError) as exc:
            env.close()
            _remove(tmp)
            raise MapError(f"{spec or path}: write {tmp}: {exc}") from None
        except BaseException:
            env.close()
            _remove(tmp)
            raise


def update_lmdb(
    path: str,
    *,
    puts: Iterable[tuple[bytes, bytes]] = (),
    deletes: Iterable[bytes] = (),
    spec: str = "",
    duplicates: str = "warn",
    warn: Callable[[str], None] | None = None,
    map_size: int = LMDB_DEFAULT_MAP_SIZE,
    nul: bool | None = None,
    mode: int | None = None,
) -> list[bytes]:
    """Copy the table, apply puts then deletes, rename the copy in; return keys deleted.

    A missing table is created when there is something to put. nul=None
    keeps the null-byte convention of the existing table.
    """
    puts = list(puts)
    deletes = list(deletes)
    tmp = _tmp_name(path)
    _remove(tmp)
    exists = os.path.exists(path)
    try:
        if exists:
            # Through the shared file: this process may have the table open.
            src = attach_file(path)
            try:
                env, has_nul = src.current(recheck=True)
                if nul is None:
                    nul = has_nul
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    env.copyfd(fd, compact=True)
                finally:
                    os.close(fd)
                size = max(map_size, env.info()["map_size"])
            finally:
                detach_file(src)
            if mode is None:
                mode = os.stat(path).st_mode & 0o7777
        else:
            size = map_size
            if nul is None:
                nul = True
    except (lmdb.Error, OSError, _OpenFailed) as exc:
        _remove(tmp)
        raise MapError(f"{spec or path}: open database {path}: {exc}") from None
    extra = sum(len(k) + len(v) + 16 for k, v in puts)
    size = max(size, 2 * extra + (1 << 20) + (os.path.getsize(tmp) if exists else 0))
    removed: list[bytes] = []
    while True:
        env = _open_writer(tmp, size)
        try:
            removed = []
            with env.begin(write=True) as txn:
                for k, v in puts:
                    _put(txn, k, v, nul, duplicates, warn, spec or path)
                for k in deletes:
                    if txn.delete(_encode_key(k, nul)):
                        removed.append(k)
            _publish(env, tmp, path, mode)
            return removed
        except lmdb.MapFullError:
            env.close()
            size *= 2
        except BaseException:
            env.close()
            _remove(tmp)
            raise


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
