"""maps.maps - open "type:name" lookup tables; lists of tables searched in order

SYNOPSIS
    from mta.maps import open_map, Maps, MapError, MapRetry
    table = open_map("lmdb:/etc/mta/virtual", cfg)
    table.lookup("user@example.com")          # -> "value" or None
    aliases = Maps.from_param(cfg, "virtual_alias_maps")
    aliases.lookup("user@example.com")        # first table with an answer wins

DESCRIPTION
    A table is named "type:name" as in Postfix; without a type the
    default_database_type (lmdb) applies. Each type lives in its own
    module, dict_<type>.py, and registers a constructor here.

    Dict is the interface every type implements: lookup(key) returns the
    value or None, items() lists the contents where the type can, .spec
    is the name the table was opened with, .kind its type, and .fixed
    tells whether keys are fixed strings (lmdb, texthash, inline, static)
    rather than patterns (regexp, pcre, cidr): callers try partial keys
    (user, @domain, parent domains) on fixed tables only, as Postfix does.

    Fixed-string tables fold keys to lower case (ASCII) when they are
    built and when they are searched, unless opened with fold=False
    ("mta map -f"). Pattern tables see the key as given.

    Problems that do not stop a table (a skipped source line) go through
    warn(): to the mail log, or wherever set_warning_handler() says.
    note_once() logs a remark once per process (hash: and btree: tables
    say which file serves them), or wherever set_note_handler() says.

    MapError is a broken table or a bad name: its text is one line,
    "FILE, line N: reason" or "type:name: reason". MapRetry is a
    temporary failure (proxymap unreachable) after which the caller
    should defer, not reject.

    open_map() returns the same object for the same (spec, fold, config)
    within a process, also to threads that ask at the same moment (a
    table is opened under a lock); clear_cache() forgets them (tests,
    reload).

SECURITY
    Opens files the administrator named in main.cf. Lookup keys may be
    untrusted (addresses, host names): they are only compared, never
    interpreted, except by the administrator's own regular expressions.

SEE ALSO
    postconf(5) default_database_type, DATABASE_README
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator

OPEN_FLAG_FOLD = "fold"  # keyword: fold fixed-string keys to lower case


class MapError(Exception):
    """A table that cannot be used: bad name, unreadable or malformed source."""


class MapRetry(Exception):
    """A temporary lookup failure; the caller should try again later."""


class Dict:
    """One lookup table. Subclasses set kind and fixed and implement lookup()."""

    kind = ""
    fixed = True  # fixed-string keys: partial lookups and case folding apply

    def __init__(self, spec: str, name: str, fold: bool = True) -> None:
        self.spec = spec
        self.name = name
        self.fold = fold

    def lookup(self, key: str) -> str | None:
        raise NotImplementedError

    def items(self) -> Iterator[tuple[str, str]]:
        """Every (key, value) in table order; not every type can."""
        raise MapError(f"{self.spec}: table does not support sequential access")

    def close(self) -> None:
        """Release files or sockets; the object must not be used afterwards."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"


def _log_warning(text: str) -> None:
    from mta import log

    log.warning("%s", text)


_warn_handler: list[Callable[[str], None]] = [_log_warning]


def warn(text: str) -> None:
    """Report a table problem that is not fatal (a skipped source line)."""
    _warn_handler[0](text)


def set_warning_handler(fn: Callable[[str], None] | None) -> None:
    """Send table warnings to fn (the CLI prints them); None restores the log."""
    _warn_handler[0] = fn or _log_warning


def _log_note(text: str) -> None:
    from mta import log

    log.info("%s", text)


_note_handler: list[Callable[[str], None]] = [_log_note]
_noted: set[str] = set()


def note_once(text: str) -> None:
    """Log an informational note about tables, once per process for each text."""
    with _CACHE_LOCK:
        if text in _noted:
            return
        _noted.add(text)
    _note_handler[0](text)


def set_note_handler(fn: Callable[[str], None] | None) -> None:
    """Send notes to fn (the CLI keeps them quiet); None restores the log."""
    _note_handler[0] = fn or _log_note


# type name -> constructor(spec, name, cfg, fold) -> Dict
_TYPES: dict[str, Callable[..., Dict]] = {}
_CACHE: dict[tuple, Dict] = {}
# Held while a table is opened: threads asking for one table at once get
# one object (py-lmdb refuses to open a file twice in a process).
_CACHE_LOCK = threading.RLock()


def register(kind: str, factory: Callable[..., Dict]) -> None:
    """Make "kind:name" open through factory(spec, name, cfg, fold)."""
    _TYPES[kind] = factory


def table_types() -> list[str]:
    """The table types open_map() understands (mta conf -m)."""
    _load_types()
    return sorted(_TYPES)


_loaded: list[bool] = []


def _load_types() -> None:
    if _loaded:
        return
    _loaded.append(True)
    # Imported for their register() calls.
    from mta.maps import (  # noqa: F401
        dict_cidr,
        dict_compose,
        dict_inline,
        dict_lmdb,
        dict_memcache,
        dict_pgsql,
        dict_proxy,
        dict_regexp,
        dict_socketmap,
        dict_sqlite,
        dict_texthash,
        dict_unix,
    )


def split_spec(spec: str, cfg=None) -> tuple[str, str]:
    """Return (type, name) of "type:name"; no type means default_database_type."""
    spec = spec.strip()
    kind, sep, name = spec.partition(":")
    if not sep or kind.startswith(("/", ".", "{")):
        default = cfg.get("default_database_type") if cfg is not None else ""
        return default or "lmdb", spec
    return kind, name


def open_map(spec: str, cfg=None, *, fold: bool = True) -> Dict:
    """Open (or return the already open) table named by spec."""
    kind, name = split_spec(spec, cfg)
    full = f"{kind}:{name}"
    where = getattr(cfg, "config_dir", None)
    cache_key = (full, fold, where)
    table = _CACHE.get(cache_key)
    if table is not None:
        return table
    with _CACHE_LOCK:
        # Another thread may have opened it while this one waited.
        table = _CACHE.get(cache_key)
        if table is not None:
            return table
        _load_types()
        factory = _TYPES.get(kind)
        if factory is None:
            raise MapError(f"{full}: unsupported dictionary type: {kind}")
        if not name:
            raise MapError(f"{full}: missing table name")
        table = factory(full, name, cfg, fold)
        _CACHE[cache_key] = table
        return table


def clear_cache() -> None:
    """Close and forget every table open_map() returned."""
    with _CACHE_LOCK:
        tables = list(_CACHE.values())
        _CACHE.clear()
    for table in tables:
        try:
            table.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def lookup_first(tables: Iterable[Dict], key: str, fixed_only: bool = False) -> str | None:
    """Return the first answer of tables for key; fixed_only skips pattern tables."""
    for table in tables:
        if fixed_only and not table.fixed:
            continue
        value = table.lookup(key)
        if value is not None:
            return value
    return None


class Maps:
    """An ordered list of tables, as a "*_maps" parameter names them."""

    def __init__(self, specs: Iterable[str], cfg=None, *, fold: bool = True) -> None:
        self.specs = [s for s in specs if s]
        self.tables: list[Dict] = [open_map(s, cfg, fold=fold) for s in self.specs]

    @classmethod
    def from_param(cls, cfg, name: str) -> Maps:
        return cls(cfg.get_list(name), cfg)

    def lookup(self, key: str, *, fixed_only: bool = False) -> str | None:
        """Return the first table's answer; fixed_only skips pattern tables."""
        return lookup_first(self.tables, key, fixed_only)

    def __iter__(self) -> Iterator[Dict]:
        return iter(self.tables)

    def __len__(self) -> int:
        return len(self.tables)

    def __bool__(self) -> bool:
        return bool(self.tables)

    def __repr__(self) -> str:
        return f"<Maps {' '.join(self.specs)}>"
