"""texthash: tables read the source at open, with postmap's rules."""

from mta.maps import open_map


def test_lookup_after_continuation_and_comments(tmp_path):
    src = tmp_path / "t"
    src.write_text("a b\n  c\n# comment\n\nB two\n")
    table = open_map(f"texthash:{src}")
    assert table.lookup("A") == "b  c"
    assert table.lookup("b") == "two"


def test_bad_lines_warn_with_file_and_line(tmp_path, warnings):
    src = tmp_path / "t"
    src.write_text("ok 1\nnovalue\nok 2\n")
    table = open_map(f"texthash:{src}")
    assert table.lookup("ok") == "1"
    assert warnings == [
        f"{src}, line 2: expected format: key whitespace value -- ignoring this line",
        f'{src}: duplicate entry: "ok"',
    ]


def test_no_fold_keeps_case(tmp_path):
    src = tmp_path / "t"
    src.write_text("Key v\n")
    table = open_map(f"texthash:{src}", fold=False)
    assert table.lookup("Key") == "v" and table.lookup("key") is None


def test_items_in_source_order(tmp_path):
    src = tmp_path / "t"
    src.write_text("z 1\na 2\n")
    assert list(open_map(f"texthash:{src}").items()) == [("z", "1"), ("a", "2")]
