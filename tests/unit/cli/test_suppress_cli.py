"""mta suppress: add, rm, show, list, export, import and prune on a real LMDB list."""

import json

import pytest

from mta.cli.main import run
from mta.common import suppress
from mta.config import load_config
from tests.support.instance import make_instance


@pytest.fixture
def cdir(tmp_path):
    path = make_instance(tmp_path, f"suppression_map = lmdb:{tmp_path}/data/suppression\n")
    yield str(path)
    for store in list(suppress._stores.values()):
        store.close()
    suppress._stores.clear()


def mta(cdir, *args) -> int:
    return run(["-c", cdir, "suppress", *args])


def test_add_show_rm(cdir, capsys):
    assert mta(cdir, "add", "Ann@Example.com", "bob@example.net", "--class", "invalid_mailbox") == 0
    assert mta(cdir, "add", "bob@example.net", "--scope", "shop.example", "--expires", "30d") == 0
    capsys.readouterr()
    assert mta(cdir, "show", "bob@example.net", "--json") == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["scope"] for r in rows] == ["global", "shop.example"]
    assert rows[1]["expires"] > rows[1]["added"] + 29 * 86400
    assert mta(cdir, "show", "ann@example.com", "--sender", "x@y.example") == 0
    assert capsys.readouterr().out.startswith("ann@example.com global invalid_mailbox manual ")
    assert mta(cdir, "rm", "ann@example.com") == 0
    assert mta(cdir, "show", "ann@example.com", "--sender", "x@y.example") == 1
    assert "not suppressed" in capsys.readouterr().out
    assert mta(cdir, "rm", "ann@example.com") == 1
    assert "not listed" in capsys.readouterr().err


def test_export_import_round_trip(cdir, tmp_path, capsys):
    mta(cdir, "add", "a@x.example", "--class", "invalid_mailbox", "--reason", "550 no such user")
    mta(cdir, "add", "b@x.example", "--scope", "shop.example")
    out = tmp_path / "list.jsonl"
    assert mta(cdir, "export", str(out)) == 0
    exported = out.read_text()
    assert mta(cdir, "rm", "a@x.example") == 0
    assert mta(cdir, "rm", "b@x.example", "--scope", "shop.example") == 0
    plain = tmp_path / "plain.txt"
    plain.write_text("# old list\nC@x.example\n\nd@x.example\n")
    assert mta(cdir, "import", str(out)) == 0
    assert mta(cdir, "import", str(plain), "--class", "complaint") == 0
    capsys.readouterr()
    assert mta(cdir, "list", "--json") == 0
    rows = {
        (r["address"], r["scope"]): r for r in map(json.loads, capsys.readouterr().out.splitlines())
    }
    assert set(rows) == {
        ("a@x.example", "global"),
        ("b@x.example", "shop.example"),
        ("c@x.example", "global"),
        ("d@x.example", "global"),
    }
    assert rows[("a@x.example", "global")]["reason"] == "550 no such user"
    assert rows[("c@x.example", "global")]["class"] == "complaint"
    assert rows[("c@x.example", "global")]["source"] == "import"
    assert exported.count("\n") == 2


def test_import_stops_at_a_bad_line_and_stores_nothing(cdir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"address": "ok@x.example"}\n{"address": "z@x.example", "class": "nope"}\n')
    assert mta(cdir, "import", str(bad)) == 1
    assert f"{bad}, line 2: unknown class 'nope'" in capsys.readouterr().err
    mta(cdir, "list")
    assert capsys.readouterr().out == ""


def test_list_expired_and_prune(cdir, capsys):
    suppress.open_suppression(load_config(cdir)).add("old@x.example", expires=1.0)
    mta(cdir, "add", "new@x.example")
    capsys.readouterr()
    mta(cdir, "list", "--expired")
    assert capsys.readouterr().out.startswith("old@x.example global")
    mta(cdir, "list")
    assert capsys.readouterr().out.startswith("new@x.example global")
    assert mta(cdir, "prune") == 0
    assert "1 expired entries removed" in capsys.readouterr().err
    mta(cdir, "list", "--expired")
    assert capsys.readouterr().out == ""


def test_no_list_configured(tmp_path, capsys):
    assert run(["-c", str(make_instance(tmp_path)), "suppress", "list"]) == 1
    assert "suppression_map is empty" in capsys.readouterr().err
