"""pgsql_server - a private PostgreSQL server on 127.0.0.1 for tests (Debian's postgresql)

SYNOPSIS
    from tests.support.pgsql_server import PgsqlServer, pgsql_available
    with PgsqlServer() as pg:                 # initdb, start on a free port
        pg.port, pg.socket_dir, pg.user, pg.dbname
        pg.execute("CREATE TABLE ...")        # as the superuser, in dbname

DESCRIPTION
    Runs initdb (trust authentication, superuser "mta") and the server
    from Debian's postgresql package in a new directory under /tmp (one
    the postgres user can reach), listening on 127.0.0.1 and on a UNIX
    socket there. As root it runs them as
    the "postgres" user (the server refuses root). pgsql_available()
    says why not when the binaries, the user or psycopg are missing, for
    a skip reason. The server is stopped (fast mode) on exit.

SECURITY
    Trust authentication, 127.0.0.1 only: for tests.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile

from tests.support.running import free_port


def _bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def pgsql_available() -> str | None:
    """None when a server can be started here, else why not."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed"
    if _bindir() is None:
        return "PostgreSQL server binaries not found (Debian package postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "no postgres user to run the server as"
    return None


class PgsqlServer:
    def __init__(self) -> None:
        # the postgres user must reach it: pytest's own tmp tree is root's only
        self.top = tempfile.mkdtemp(prefix="mta-pg-")
        self.data = os.path.join(self.top, "pgdata")
        self.socket_dir = os.path.join(self.top, "pgsock")
        self.port = free_port()
        self.user = "mta"
        self.dbname = "mail"
        self.bindir = _bindir()

    def _run(self, *argv: str) -> None:
        cmd = list(argv)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def __enter__(self) -> PgsqlServer:
        os.makedirs(self.socket_dir)
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chmod(self.top, 0o755)
            for path in (self.socket_dir,):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            os.makedirs(self.data)
            os.chown(self.data, entry.pw_uid, entry.pw_gid)
        self._run(
            os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", self.user,
            "--auth=trust", "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        opts = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-o", opts, "-w", "-t", "60",
            "-l", os.path.join(self.socket_dir, "pg.log"), "start",
        )  # fmt: skip
        self.execute(f"CREATE DATABASE {self.dbname}", db="postgres")
        return self

    def execute(self, sql: str, params=None, db: str | None = None) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname=db or self.dbname,
            autocommit=True,
        ) as conn:  # fmt: skip
            conn.execute(sql, params)

    def __exit__(self, *exc) -> None:
        try:
            self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "fast", "stop")
        finally:
            shutil.rmtree(self.top, ignore_errors=True)
