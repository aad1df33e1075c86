"""mta map (postmap): build, query, list, delete, incremental add, flags and errors."""

import io
import os
import sys

import pytest

from mta.cli import map as map_cli


@pytest.fixture
def cdir(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "main.cf").write_text("")
    return str(conf)


def run(capsys, cdir, *argv, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
    rc = map_cli.main(["-c", cdir, *argv], "map")
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "virtual"
    src.write_text("Alice@Example.com alice\nbob@example.com  bob smith\n  continued\nnovalue\n")
    os.chmod(src, 0o640)
    return str(src)


def test_build_then_query(capsys, cdir, source):
    rc, out, err = run(capsys, cdir, source)
    assert rc == 0 and out == ""
    assert (
        err
        == f"mta map: warning: {source}, line 4: expected format: key whitespace value -- ignoring this line\n"
    )
    assert run(capsys, cdir, "-q", "ALICE@example.com", source)[:2] == (0, "alice\n")
    assert run(capsys, cdir, "-q", "bob@example.com", f"lmdb:{source}")[:2] == (
        0,
        "bob smith  continued\n",
    )


def test_query_not_found_exits_1(capsys, cdir, source):
    run(capsys, cdir, source)
    assert run(capsys, cdir, "-q", "nobody", source)[:2] == (1, "")


def test_build_is_atomic_and_leaves_no_temporary(capsys, cdir, source, tmp_path):
    run(capsys, cdir, source)
    assert sorted(os.listdir(tmp_path)) == ["conf", "virtual", "virtual.lmdb"]


def test_built_file_gets_group_other_read_bits_of_source(capsys, cdir, source):
    run(capsys, cdir, source)
    assert os.stat(source + ".lmdb").st_mode & 0o777 == 0o640


def test_query_keys_from_stdin(capsys, cdir, source, monkeypatch):
    run(capsys, cdir, source)
    rc, out, _ = run(
        capsys,
        cdir,
        "-q",
        "-",
        source,
        stdin="alice@example.com\nnone\nbob@example.com\n",
        monkeypatch=monkeypatch,
    )
    assert rc == 0
    assert out == "alice@example.com\talice\nbob@example.com\tbob smith  continued\n"


def test_show_lists_everything(capsys, cdir, source):
    run(capsys, cdir, source)
    rc, out, _ = run(capsys, cdir, "-s", source)
    assert rc == 0 and out == "alice@example.com\talice\nbob@example.com\tbob smith  continued\n"


def test_show_refuses_pattern_tables(capsys, cdir, tmp_path):
    (tmp_path / "r").write_text("/a/ b\n")
    rc, _, err = run(capsys, cdir, "-s", f"regexp:{tmp_path}/r")
    assert rc == 1 and "sequence operation is not supported" in err


def test_query_works_on_other_types(capsys, cdir, tmp_path):
    (tmp_path / "r").write_text("/^(.*)@old$/ $1@new\n")
    assert run(capsys, cdir, "-q", "u@old", f"regexp:{tmp_path}/r")[:2] == (0, "u@new\n")
    assert run(capsys, cdir, "-q", "K", "inline:{k=v}")[:2] == (0, "v\n")


def test_delete_key_and_status(capsys, cdir, source):
    run(capsys, cdir, source)
    assert run(capsys, cdir, "-d", "Alice@example.com", source)[0] == 0
    assert run(capsys, cdir, "-q", "alice@example.com", source)[0] == 1
    assert run(capsys, cdir, "-d", "alice@example.com", source)[0] == 1


def test_incremental_add_from_stdin(capsys, cdir, source, monkeypatch):
    run(capsys, cdir, source)
    rc, _, err = run(
        capsys,
        cdir,
        "-i",
        source,
        stdin="new@x n\nalice@example.com other\n",
        monkeypatch=monkeypatch,
    )
    assert rc == 0 and 'duplicate entry: "alice@example.com"' in err
    assert run(capsys, cdir, "-q", "new@x", source)[:2] == (0, "n\n")
    assert run(capsys, cdir, "-q", "alice@example.com", source)[:2] == (0, "alice\n")


def test_r_replaces_duplicates_quietly(capsys, cdir, tmp_path):
    src = tmp_path / "t"
    src.write_text("a 1\na 2\n")
    rc, _, err = run(capsys, cdir, "-r", str(src))
    assert rc == 0 and err == ""
    assert run(capsys, cdir, "-q", "a", str(src))[1] == "2\n"


def test_default_duplicate_keeps_first_with_warning(capsys, cdir, tmp_path):
    src = tmp_path / "t"
    src.write_text("a 1\nA 2\n")
    _, _, err = run(capsys, cdir, str(src))
    assert 'duplicate entry: "a"' in err
    assert run(capsys, cdir, "-q", "a", str(src))[1] == "1\n"


def test_f_keeps_case(capsys, cdir, tmp_path):
    src = tmp_path / "t"
    src.write_text("Key v\n")
    run(capsys, cdir, "-f", str(src))
    assert run(capsys, cdir, "-f", "-q", "Key", str(src))[0] == 0
    assert run(capsys, cdir, "-q", "Key", str(src))[0] == 1


def test_texthash_cannot_be_built(capsys, cdir, source):
    rc, _, err = run(capsys, cdir, f"texthash:{source}")
    assert rc == 1 and "texthash does not support bulk-mode creation" in err


def test_missing_source_is_fatal_and_keeps_old_table(capsys, cdir, source):
    run(capsys, cdir, source)
    os.rename(source, source + ".moved")
    rc, _, err = run(capsys, cdir, source)
    assert rc == 1 and err.startswith("mta map: fatal: open ")
    assert run(capsys, cdir, "-q", "alice@example.com", source)[1] == "alice\n"


def test_missing_table_on_query_is_one_line_fatal(capsys, cdir, tmp_path):
    rc, _, err = run(capsys, cdir, "-q", "k", f"lmdb:{tmp_path}/none")
    assert rc == 1 and err.count("\n") == 1 and "open database" in err


def test_progress_is_silent_when_not_a_tty():
    from mta.util.progress import Progress

    buf = io.StringIO()
    bar = Progress(100, "x", stream=buf)
    bar.update(50)
    bar.close()
    assert buf.getvalue() == ""


def test_progress_renders_percentage():
    from mta.util.progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    buf = Tty()
    bar = Progress(4, "build", stream=buf)
    bar.update(4)
    assert "build [" in buf.getvalue() and "100%" in buf.getvalue()
    bar.close()
    assert buf.getvalue().endswith("\r")


USAGE = (
    "mta map: fatal: usage: mta map [-bfFhimnNoprsuUvw] [-c config_dir] [-d key] [-q key] "
    "[map_type:]file...\n"
)


@pytest.mark.parametrize("kind", ["hash", "btree"])
def test_postfix_hash_and_btree_build_the_lmdb_file(capsys, cdir, source, kind):
    rc, _, err = run(capsys, cdir, f"{kind}:{source}")
    assert rc == 0 and "served from" not in err  # the note is for the mail log
    assert os.path.exists(source + ".lmdb")
    assert run(capsys, cdir, "-q", "ALICE@example.com", f"{kind}:{source}")[:2] == (0, "alice\n")
    assert run(capsys, cdir, "-q", "alice@example.com", f"lmdb:{source}")[:2] == (0, "alice\n")
    rc, out, _ = run(capsys, cdir, "-s", f"{kind}:{source}")
    assert rc == 0 and out.startswith("alice@example.com\talice\n")


def test_hash_delete_and_incremental(capsys, cdir, source, monkeypatch):
    run(capsys, cdir, f"hash:{source}")
    assert run(capsys, cdir, "-d", "alice@example.com", f"hash:{source}")[0] == 0
    rc = run(capsys, cdir, "-i", f"hash:{source}", stdin="n@x v\n", monkeypatch=monkeypatch)[0]
    assert rc == 0
    assert run(capsys, cdir, "-q", "alice@example.com", f"hash:{source}")[0] == 1
    assert run(capsys, cdir, "-q", "n@x", f"hash:{source}")[:2] == (0, "v\n")


MESSAGE = "Subject: hi\nX-Fold: a\n b\nTo: x\n\nbody one\nTo: not header\nbody two\n"


@pytest.fixture
def rules(tmp_path):
    (tmp_path / "re").write_text(
        "/^Subject: (.*)/ subj $1\n/^X-Fold: a\\n b/ folded\n/^body/ bodyline\n/^To:/ to\n"
    )
    return f"regexp:{tmp_path}/re"


@pytest.mark.parametrize(
    "flags,expected",
    [
        (["-h"], "Subject: hi\tsubj hi\nX-Fold: a\n b\tfolded\nTo: x\tto\n"),
        (["-b"], "body one\tbodyline\nTo: not header\tto\nbody two\tbodyline\n"),
        (
            ["-b", "-h"],
            "Subject: hi\tsubj hi\nX-Fold: a\n b\tfolded\nTo: x\tto\n"
            "body one\tbodyline\nTo: not header\tto\nbody two\tbodyline\n",
        ),
    ],
)
def test_header_and_body_query_modes(capsys, cdir, rules, monkeypatch, flags, expected):
    rc, out, err = run(
        capsys, cdir, *flags, "-q", "-", rules, stdin=MESSAGE, monkeypatch=monkeypatch
    )
    assert (rc, out, err) == (0, expected, "")


def test_header_mode_without_stdin_query_is_refused(capsys, cdir, rules):
    rc, out, err = run(capsys, cdir, "-h", "-q", "x", rules)
    assert (rc, out) == (1, "")
    assert err == 'mta map: fatal: specify -b -h or -m only with "-q -"\n' + USAGE


def test_mime_parsing_is_refused_with_the_usage_line(capsys, cdir, rules):
    rc, out, err = run(capsys, cdir, "-m", "-h", "-q", "-", rules)
    assert (rc, out) == (1, "")
    assert err.startswith("mta map: fatal: -m (MIME parsing") and err.endswith(USAGE)


def test_unknown_flag_gives_the_usage_line(capsys, cdir, source):
    rc, _, err = run(capsys, cdir, "-Z", source)
    assert rc == 1 and err.endswith(USAGE)


def test_F_stores_files_in_base64_and_decodes_on_query(capsys, cdir, tmp_path):
    (tmp_path / "a.pem").write_text("first\n")
    (tmp_path / "b.pem").write_text("second\n")
    src = tmp_path / "sni"
    src.write_text(f"one {tmp_path}/a.pem\ntwo {tmp_path}/a.pem, {tmp_path}/b.pem\n")
    assert run(capsys, cdir, "-F", f"hash:{src}")[:2] == (0, "")
    # stored as postmap -F stores it: the files joined by a newline, in base64
    assert run(capsys, cdir, "-q", "two", f"hash:{src}")[1] == "Zmlyc3QKCnNlY29uZAo=\n"
    assert run(capsys, cdir, "-F", "-q", "two", f"hash:{src}")[1] == "first\n\nsecond\n\n"
    rc, out, _ = run(capsys, cdir, "-F", "-s", f"hash:{src}")
    assert (rc, out) == (0, "one\tfirst\n\ntwo\tfirst\n\nsecond\n\n")


def test_F_skips_an_entry_whose_file_is_missing(capsys, cdir, tmp_path):
    src = tmp_path / "sni"
    src.write_text(f"k {tmp_path}/nope\n")
    rc, _, err = run(capsys, cdir, "-F", f"lmdb:{src}")
    assert rc == 0
    assert err == (
        f"mta map: warning: {src}: key k: open {tmp_path}/nope: No such file or directory: "
        "skipping this entry\n"
    )
    assert run(capsys, cdir, "-q", "k", str(src))[0] == 1


def test_F_query_of_a_value_that_is_not_base64_is_fatal(capsys, cdir, source):
    run(capsys, cdir, source)
    rc, out, err = run(capsys, cdir, "-F", "-q", "alice@example.com", source)
    assert (rc, out) == (1, "")
    assert "malformed BASE64 value: alice" in err and err.endswith("query error\n")
