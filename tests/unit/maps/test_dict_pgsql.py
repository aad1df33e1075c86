"""pgsql: against a real PostgreSQL server started for the module (Debian's
postgresql, psycopg): pgsql_table(5) queries over TCP and over the UNIX socket,
%s %u %d %[1-9] expansions, the domain list, quoting, a server that goes away."""

from __future__ import annotations

import pytest

from mta.maps import MapError, MapRetry, open_map
from mta.maps.maps import clear_cache
from tests.support.pgsql_server import PgsqlServer, pgsql_available

why = pgsql_available()
pytestmark = pytest.mark.skipif(why is not None, reason=why or "")


@pytest.fixture(scope="module")
def pg():
    with PgsqlServer() as server:
        server.execute("CREATE TABLE aliases (mailbox text, dest text)")
        server.execute(
            "INSERT INTO aliases VALUES ('a@example.com', 'b@example.net'),"
            " ('list@example.com', 'x@example.net'), ('list@example.com', 'y@example.net'),"
            " ('o''brien\\x@example.com', 'ob@example.net')"
        )
        server.execute("CREATE TABLE domains (name text, transport text)")
        server.execute("INSERT INTO domains VALUES ('example', 'relay')")
        yield server


def table(tmp_path, pg, hosts: str | None = None, **params):
    lines = [
        f"hosts = {hosts or f'inet:127.0.0.1:{pg.port}'}",
        f"user = {pg.user}",
        f"dbname = {pg.dbname}",
    ] + [f"{k} = {v}" for k, v in params.items()]
    cf = tmp_path / f"t{len(list(tmp_path.iterdir()))}.cf"
    cf.write_text("\n".join(lines) + "\n")
    clear_cache()
    return open_map(f"pgsql:{cf}")


Q = "SELECT dest FROM aliases WHERE mailbox = '%s'"


def test_queries_over_tcp_and_the_unix_socket(tmp_path, pg, monkeypatch):
    monkeypatch.setenv("PGPORT", str(pg.port))  # unix:/dir names the directory; libpq the port
    uri = f"postgresql://{pg.user}@/{pg.dbname}?host={pg.socket_dir}&port={pg.port}"
    for hosts in (None, f"unix:{pg.socket_dir}", uri):
        t = table(tmp_path, pg, hosts, query=Q)
        assert t.lookup("a@example.com") == "b@example.net"
        assert t.lookup("nobody@example.com") is None
        assert sorted(t.lookup("list@example.com").split(",")) == ["x@example.net", "y@example.net"]
        assert t.lookup("o'brien\\x@example.com") == "ob@example.net"  # quotes and backslash
        assert t.lookup("x' OR '1'='1") is None


def test_expansions_domain_and_limit(tmp_path, pg):
    t = table(
        tmp_path,
        pg,
        query="SELECT transport FROM domains WHERE name = '%2'",
        result_format="%s:[%D]",
    )
    assert t.lookup("u@mail.example.com") == "relay:[mail.example.com]"
    assert t.lookup("unqualified") is None
    t = table(tmp_path, pg, query=Q, domain="example.org")
    assert t.lookup("a@example.com") is None
    t = table(tmp_path, pg, query=Q, expansion_limit="1")
    with pytest.raises(MapRetry, match="too many results"):
        t.lookup("list@example.com")


def test_unreachable_server_and_bad_query(tmp_path, pg):
    from tests.support.running import free_port

    t = table(tmp_path, pg, hosts=f"inet:127.0.0.1:{free_port()}", query=Q)
    with pytest.raises(MapRetry, match="no server answered"):
        t.lookup("a@example.com")
    t = table(tmp_path, pg, query="SELECT dest FROM nosuchtable WHERE mailbox = '%s'")
    with pytest.raises(MapRetry, match="nosuchtable"):
        t.lookup("a@example.com")
    assert table(tmp_path, pg, query=Q).lookup("a@example.com") == "b@example.net"
    with pytest.raises(MapError, match="no hosts"):
        (tmp_path / "nohosts.cf").write_text(f"query = {Q}\n")
        clear_cache()
        open_map(f"pgsql:{tmp_path / 'nohosts.cf'}")
