"""maps.dict_sqlite - sqlite: tables, Postfix's sqlite_table(5) with Python's sqlite3

SYNOPSIS
    open_map("sqlite:/etc/mta/sqlite-virtual.cf", cfg)

DESCRIPTION
    The name is a configuration file (maps/sql_query.py has its
    parameters and templates): dbpath names the SQLite database, query
    the SELECT whose first column of every row is a result. The
    database is opened read-only, once, and a lookup runs the expanded
    query; rows past the first column are ignored. A key the domain
    restriction or a suppressed expansion excludes is not found without
    a query. SQL strings are quoted by doubling single quotes, as
    sqlite's own quoting does.

    A missing database or a query SQLite refuses is a MapError naming
    the configuration file at open (a query that fails later, e.g. a
    locked database, is a MapRetry: the mail waits).

SECURITY
    Keys are untrusted and reach the SQL only quoted; the database is
    opened read-only (mode=ro), so no query can change it.
"""

from __future__ import annotations

import sqlite3

from mta.maps.maps import Dict, MapError, MapRetry, open_map, register
from mta.maps.sql_query import SqlSettings, expand_query, format_results


def sql_quote(text: str) -> str:
    return text.replace("'", "''")


class SqliteDict(Dict):
    kind = "sqlite"
    fixed = True

    def __init__(self, spec: str, name: str, cfg=None, fold: bool = True) -> None:
        super().__init__(spec, name, fold)
        self.settings = SqlSettings.read(name)
        dbpath = self.settings.values.get("dbpath", "")
        if not dbpath:
            raise MapError(f"{name}: no dbpath")
        try:
            self.db = sqlite3.connect(f"file:{dbpath}?mode=ro", uri=True, check_same_thread=False)
            self.db.execute("SELECT 1").fetchall()
        except sqlite3.Error as exc:
            raise MapError(f"{name}: {dbpath}: {exc}") from None
        self.domain_tables = [
            open_map(d, cfg) for d in self.settings.domains if ":" in d and not d.startswith("/")
        ]
        probe = expand_query(self.settings.query, "probe@a.b.c.d.e.f.g.h.i", sql_quote)
        try:
            if probe is not None:
                self.db.execute(f"EXPLAIN {probe}")  # compiled, not run: a typo shows now
        except sqlite3.Error as exc:
            raise MapError(f"{name}: query: {exc}") from None

    def _domain_listed(self, domain: str) -> bool:
        return any(t.lookup(domain) is not None for t in self.domain_tables)

    def lookup(self, key: str) -> str | None:
        if not self.settings.eligible(key, self._domain_listed):
            return None
        sql = expand_query(self.settings.query, key, sql_quote)
        if sql is None:
            return None
        try:
            rows = [row[0] for row in self.db.execute(sql).fetchall() if row]
        except sqlite3.Error as exc:
            raise MapRetry(f"{self.name}: {exc}") from None
        return format_results(self.settings, key, rows)

    def close(self) -> None:
        self.db.close()


register("sqlite", SqliteDict)
