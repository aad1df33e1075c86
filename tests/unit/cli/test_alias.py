"""mta alias (postalias) and newaliases: build, query, list, delete, add, errors."""

import io
import sys

import pytest

from mta.cli import alias as alias_cli
from mta.cli import sendmail
from mta.cli.main import run as mta_run
from mta.maps import clear_cache

ALIASES = (
    "# system aliases\n"
    "Postmaster: root\n"
    "team: alice,\n"
    '  bob, "|/usr/bin/prog a, b"\n'
    '"first last": fl\n'
    "broken line\n"
    "empty:\n"
)


@pytest.fixture(autouse=True)
def _fresh_tables():
    clear_cache()
    yield
    clear_cache()


@pytest.fixture
def cdir(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "main.cf").write_text(f"alias_database = lmdb:{tmp_path / 'aliases'}\n")
    (tmp_path / "aliases").write_text(ALIASES)
    return str(conf)


def run(capsys, cdir, *argv, stdin=None, monkeypatch=None, command="alias"):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
    rc = alias_cli.main(["-c", cdir, *argv], command)
    out, err = capsys.readouterr()
    return rc, out, err


def test_build_warns_with_file_and_line_then_query(capsys, cdir, tmp_path):
    src = str(tmp_path / "aliases")
    rc, out, err = run(capsys, cdir, src)
    assert rc == 0 and out == ""
    assert f"mta alias: warning: {src}, line 6: need name:value pair\n" in err
    assert f"{src}, line 7: " in err
    assert run(capsys, cdir, "-q", "postmaster", src)[:2] == (0, "root\n")
    assert run(capsys, cdir, "-q", "team", src)[1] == 'alice, bob, "|/usr/bin/prog a, b"\n'
    assert run(capsys, cdir, "-q", "first last", src)[1] == "fl\n"
    assert run(capsys, cdir, "-q", "nobody", src)[0] == 1


def test_show_delete_and_incremental(capsys, cdir, tmp_path, monkeypatch):
    src = str(tmp_path / "aliases")
    run(capsys, cdir, src)
    rc, out, _ = run(capsys, cdir, "-s", src)
    assert "postmaster: root\n" in out and rc == 0
    clear_cache()
    assert run(capsys, cdir, "-d", "postmaster", src)[0] == 0
    clear_cache()
    assert run(capsys, cdir, "-q", "postmaster", src)[0] == 1
    clear_cache()
    assert run(capsys, cdir, "-i", src, stdin="Abuse: root\n", monkeypatch=monkeypatch)[0] == 0
    clear_cache()
    assert run(capsys, cdir, "-q", "abuse", src)[1] == "root\n"


def test_no_argument_builds_alias_database(capsys, cdir, tmp_path):
    rc, _, _ = run(capsys, cdir)
    assert rc == 0 and (tmp_path / "aliases.lmdb").exists()


def test_newaliases_through_sendmail_bi(capsys, cdir, tmp_path):
    assert sendmail.main(["-C", cdir, "-bi"], "sendmail") == 0
    assert (tmp_path / "aliases.lmdb").exists()


def test_missing_source_is_one_line_fatal(capsys, cdir, tmp_path):
    rc, _, err = run(capsys, cdir, str(tmp_path / "nope"))
    assert rc == 1
    assert err.count("\n") == 1 and err.startswith("mta alias: fatal: ")
    assert "nope" in err


def test_registered_in_mta_command(capsys, cdir, tmp_path):
    assert mta_run(["-c", cdir, "alias", str(tmp_path / "aliases")]) == 0
    assert mta_run(["alias", "--help"]) == 0
    assert "postalias" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["hash", "btree"])
def test_postfix_hash_and_btree_aliases_build_and_query(capsys, cdir, tmp_path, kind):
    src = str(tmp_path / "aliases")
    assert run(capsys, cdir, f"{kind}:{src}")[0] == 0
    assert (tmp_path / "aliases.lmdb").exists()
    assert run(capsys, cdir, "-q", "Postmaster", f"{kind}:{src}")[:2] == (0, "root\n")
    assert run(capsys, cdir, "-q", "postmaster", f"lmdb:{src}")[:2] == (0, "root\n")


def test_newaliases_builds_a_postfix_hash_alias_database(capsys, tmp_path):
    conf = tmp_path / "conf2"
    conf.mkdir()
    (conf / "main.cf").write_text(f"alias_database = hash:{tmp_path / 'aliases'}\n")
    (tmp_path / "aliases").write_text("postmaster: root\n")
    rc, _, err = run(capsys, str(conf), command="newaliases")
    assert (rc, err) == (0, "")
    assert run(capsys, str(conf), "-q", "postmaster", f"hash:{tmp_path}/aliases")[1] == "root\n"
