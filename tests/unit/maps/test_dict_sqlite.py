"""sqlite: with a real SQLite database: Postfix's sqlite_table(5) query and result
templates, the domain restriction, quoting that no key can escape (hypothesis),
expansion_limit, and a broken configuration named at open."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.maps import MapError, MapRetry, open_map
from mta.maps.maps import clear_cache


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "mail.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE aliases (mailbox TEXT, dest TEXT)")
    con.executemany(
        "INSERT INTO aliases VALUES (?, ?)",
        [
            ("a@example.com", "b@example.net"),
            ("list@example.com", "x@example.net"),
            ("list@example.com", "y@example.net"),
            ("o'brien@example.com", "ob@example.net"),
        ],
    )
    con.execute("CREATE TABLE domains (name TEXT, transport TEXT)")
    con.execute("INSERT INTO domains VALUES ('example', 'relay')")
    con.commit()
    con.close()
    return path


def table(tmp_path, db, cfg, **params):
    lines = [f"dbpath = {db}"] + [f"{k} = {v}" for k, v in params.items()]
    cf = tmp_path / f"t{len(list(tmp_path.iterdir()))}.cf"
    cf.write_text("\n".join(lines) + "\n")
    clear_cache()
    return open_map(f"sqlite:{cf}", cfg)


Q = "SELECT dest FROM aliases WHERE mailbox = '%s'"


def test_found_not_found_and_several_rows(tmp_path, db, cfg):
    t = table(tmp_path, db, cfg, query=Q)
    assert t.lookup("a@example.com") == "b@example.net"
    assert t.lookup("nobody@example.com") is None
    assert sorted(t.lookup("list@example.com").split(",")) == ["x@example.net", "y@example.net"]
    assert t.lookup("o'brien@example.com") == "ob@example.net"  # quoted, not broken


def test_expansions_and_result_format(tmp_path, db, cfg):
    t = table(
        tmp_path,
        db,
        cfg,
        query="SELECT transport FROM domains WHERE name = '%2'",
        result_format="%s:[mx.%d.%1]",
    )
    # %2 of user@mail.example.com is "example"; %d of the result "relay" is missing: skipped
    assert t.lookup("user@mail.example.com") is None
    t = table(
        tmp_path,
        db,
        cfg,
        query="SELECT transport FROM domains WHERE name = '%2'",
        result_format="%s:[mx.%D]",
    )
    assert t.lookup("user@mail.example.com") == "relay:[mx.mail.example.com]"
    assert t.lookup("unqualified") is None  # %2 needs a domain: no query
    t = table(tmp_path, db, cfg, query="SELECT dest FROM aliases WHERE mailbox = '%u@%d'")
    assert t.lookup("a@example.com") == "b@example.net"
    assert t.lookup("@example.com") is None  # an empty local part suppresses %u


def test_domain_restriction_and_expansion_limit(tmp_path, db, cfg):
    t = table(tmp_path, db, cfg, query=Q, domain="example.org, example.com")
    assert t.lookup("a@example.com") == "b@example.net"
    assert t.lookup("example.com") is None
    t = table(tmp_path, db, cfg, query=Q, domain="example.org")
    assert t.lookup("a@example.com") is None
    t = table(tmp_path, db, cfg, query=Q, expansion_limit="1")
    with pytest.raises(MapRetry, match="too many results"):
        t.lookup("list@example.com")


def test_legacy_fields_make_the_query(tmp_path, db, cfg):
    t = table(tmp_path, db, cfg, select_field="dest", table="aliases", where_field="mailbox")
    assert t.lookup("a@example.com") == "b@example.net"


def test_broken_configuration_is_named(tmp_path, db, cfg):
    with pytest.raises(MapError, match="unknown parameter 'qurey'"):
        table(tmp_path, db, cfg, qurey=Q)
    with pytest.raises(MapError, match="query: "):
        table(tmp_path, db, cfg, query="SELEKT dest FROM aliases WHERE mailbox = '%s'")
    with pytest.raises(MapError, match="unknown expansion %q"):
        table(tmp_path, db, cfg, query="SELECT dest FROM aliases WHERE mailbox = '%q'")
    with pytest.raises(MapError):
        table(tmp_path, tmp_path / "missing.sqlite", cfg, query=Q)


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s))
def test_no_key_escapes_its_quotes(tmp_path_factory, key):
    """Whatever the key, the query finds exactly the rows whose mailbox is the key."""
    d = tmp_path_factory.mktemp("q")
    path = d / "db.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE aliases (mailbox TEXT, dest TEXT)")
    con.execute("INSERT INTO aliases VALUES (?, 'hit')", (key,))
    con.execute("INSERT INTO aliases VALUES ('other', 'miss')")
    con.commit()
    con.close()
    (d / "t.cf").write_text(f"dbpath = {path}\nquery = {Q}\n")
    clear_cache()
    t = open_map(f"sqlite:{d / 't.cf'}")
    assert t.lookup(key) == "hit"
    assert t.lookup(key + "' OR '1'='1") is None
