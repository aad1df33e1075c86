"""maps.dict_pgsql - pgsql: tables, Postfix's pgsql_table(5) through psycopg

SYNOPSIS
    open_map("pgsql:/etc/mta/pgsql-virtual.cf", cfg)

DESCRIPTION
    The name is a configuration file (maps/sql_query.py has the query,
    result_format, domain and expansion_limit templates) with hosts,
    user, password and dbname: hosts lists servers as
    "inet:host[:port]", "host[:port]", "unix:/socket/dir" (the
    directory of the server's socket, as libpq takes it) or a
    postgresql:// URI; they are tried in random order and the first
    that answers is kept. A connection idle for IDLE_CLOSE seconds is
    closed and made again when needed. Queries run with autocommit in a
    read-only session.

    A server that cannot be reached, or a query that fails, is a
    MapRetry (the mail waits); a configuration that cannot be used (no
    query, no hosts, psycopg not installed) a MapError naming the file.

    The driver is psycopg 3 (pip install "psycopg[binary]"), imported
    only when a pgsql: table is opened.

SECURITY
    Keys are untrusted: they reach the SQL only through quoting (single
    quotes doubled; the session sets standard_conforming_strings so a
    backslash is an ordinary character); a NUL byte, which PostgreSQL
    text cannot hold, makes the key not found. The password comes from
    the configuration file, which should be readable by mail_owner only.
"""

from __future__ import annotations

import random
import threading
import time

from mta.maps.maps import Dict, MapError, MapRetry, open_map, register
from mta.maps.sql_query import SqlSettings, expand_query, format_results

IDLE_CLOSE = 60.0  # seconds an unused connection is kept
CONNECT_TIMEOUT = 10  # seconds for a connection attempt


def pg_quote(text: str) -> str:
    if "\x00" in text:
        raise ValueError("NUL in key")
    return text.replace("'", "''")


def conninfo(host: str) -> dict[str, str]:
    """libpq keywords for one hosts entry."""
    if host.startswith(("postgresql://", "postgres://")):
        return {"conninfo": host}
    if host.startswith("unix:"):
        return {"host": host[5:]}
    if host.startswith("inet:"):
        host = host[5:]
    name, colon, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    if colon and port.isdigit():
        return {"host": name, "port": port}
    return {"host": host}


class PgsqlDict(Dict):
    kind = "pgsql"
    fixed = True

    def __init__(self, spec: str, name: str, cfg=None, fold: bool = True) -> None:
        super().__init__(spec, name, fold)
        try:
            import psycopg
        except ImportError:
            raise MapError(
                f'{name}: pgsql: tables need psycopg (pip install "psycopg[binary]")'
            ) from None
        self.psycopg = psycopg
        self.settings = SqlSettings.read(name)
        v = self.settings.values
        self.hosts = v.get("hosts", "").replace(",", " ").split()
        if not self.hosts:
            raise MapError(f"{name}: no hosts")
        self.login = {k: v[k] for k in ("user", "password", "dbname") if v.get(k)}
        self.domain_tables = [
            open_map(d, cfg) for d in self.settings.domains if ":" in d and not d.startswith("/")
        ]
        self.conn = None
        self.used = 0.0
        self.lock = threading.Lock()

    def _connect(self):
        errors = []
        for host in random.sample(self.hosts, len(self.hosts)):
            info = conninfo(host)
            try:
                conn = self.psycopg.connect(
                    info.pop("conninfo", ""),
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT,
                    **info,
                    **self.login,
                )
                conn.execute("SET standard_conforming_strings = on")
                conn.execute("SET default_transaction_read_only = on")
                return conn
            except self.psycopg.Error as exc:
                errors.append(f"{host}: {str(exc).strip().splitlines()[0] if str(exc) else exc}")
        raise MapRetry(f"{self.name}: no server answered: {'; '.join(errors)}")

    def lookup(self, key: str) -> str | None:
        if not self.settings.eligible(key, self._domain_listed):
            return None
        try:
            sql = expand_query(self.settings.query, key, pg_quote)
        except ValueError:
            return None  # a NUL byte: no such key can be stored
        if sql is None:
            return None
        with self.lock:
            if self.conn is not None and time.monotonic() - self.used > IDLE_CLOSE:
                self.close()
            if self.conn is None:
                self.conn = self._connect()
            try:
                rows = [r[0] for r in self.conn.execute(sql).fetchall() if r]
            except self.psycopg.Error as exc:
                self.close()  # a broken connection is made again next time
                raise MapRetry(f"{self.name}: {str(exc).strip()}") from None
            self.used = time.monotonic()
        return format_results(self.settings, key, ["" if r is None else str(r) for r in rows])

    def _domain_listed(self, domain: str) -> bool:
        return any(t.lookup(domain) is not None for t in self.domain_tables)

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
            self.conn = None


register("pgsql", PgsqlDict)
