"""main.cf reading and editing."""

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.config.errors import ConfigError
from mta.config.main_cf import edit_lines, edit_main_cf, parse_main_cf, read_main_cf


def test_comments_and_blank_lines_are_ignored():
    entries = parse_main_cf("# a comment\n\n   # indented comment\nmyhostname = mx.example\n")
    assert {n: e.value for n, e in entries.items()} == {"myhostname": "mx.example"}


def test_continuation_lines_join_with_one_space():
    text = "mydestination = a.example,\n    b.example,\n\tc.example\nrelayhost =\n"
    entries = parse_main_cf(text)
    assert entries["mydestination"].value == "a.example, b.example, c.example"
    assert (entries["mydestination"].line, entries["mydestination"].last_line) == (1, 3)


def test_comment_inside_a_continued_value_is_skipped():
    entries = parse_main_cf("a = one\n# note\n  two\n")
    assert entries["a"].value == "one two"


def test_later_setting_wins_and_keeps_its_line():
    entries = parse_main_cf("a = 1\nb = x\na = 2\n")
    assert entries["a"].value == "2" and entries["a"].line == 3


def test_spaces_around_equals_are_optional():
    assert parse_main_cf("a=1\n")["a"].value == "1"
    assert parse_main_cf("a =\n")["a"].value == ""


def test_missing_equals_names_file_and_line():
    with pytest.raises(ConfigError) as info:
        parse_main_cf("a = 1\nnot a setting\n", "/etc/mta/main.cf")
    assert str(info.value).startswith("/etc/mta/main.cf, line 2: ")


def test_continuation_before_any_setting_is_an_error():
    with pytest.raises(ConfigError) as info:
        parse_main_cf("  stray\n", "m.cf")
    assert "m.cf, line 1" in str(info.value)


def test_bad_parameter_name_is_an_error():
    with pytest.raises(ConfigError, match="bad parameter name"):
        parse_main_cf("my$host = x\n")


def test_service_name_with_a_dash_makes_a_parameter_name():
    # SMTPD_POLICY_README: policyd-spf_time_limit for the master.cf service policyd-spf
    entries = parse_main_cf("policyd-spf_time_limit = 3600\n")
    assert entries["policyd-spf_time_limit"].value == "3600"


def test_missing_file_is_an_empty_configuration(tmp_path):
    assert read_main_cf(str(tmp_path / "main.cf")) == {}


def test_edit_replaces_in_place_and_keeps_comments():
    lines = ["# top\n", "a = 1\n", "# middle\n", "b = 2\n"]
    out = edit_lines(lines, "main.cf", assign={"a": "9"})
    assert out == ["# top\n", "a = 9\n", "# middle\n", "b = 2\n"]


def test_edit_appends_new_names_at_the_end():
    out = edit_lines(["a = 1"], "main.cf", assign={"z": "new value"})
    assert out == ["a = 1\n", "z = new value\n"]


def test_edit_replaces_a_continued_setting_whole():
    out = edit_lines(["a = 1,\n", "  2\n", "b = 3\n"], "main.cf", assign={"a": "x"})
    assert out == ["a = x\n", "b = 3\n"]


def test_edit_drops_earlier_duplicates():
    out = edit_lines(["a = 1\n", "b = 2\n", "a = 3\n"], "main.cf", assign={"a": "4"})
    assert out == ["b = 2\n", "a = 4\n"]


def test_remove_and_comment_out():
    lines = ["a = 1\n", "  more\n", "b = 2\n"]
    assert edit_lines(lines, "main.cf", remove=["a"]) == ["b = 2\n"]
    assert edit_lines(lines, "main.cf", comment=["a"]) == ["#a = 1\n", "#  more\n", "b = 2\n"]


def test_edit_main_cf_is_atomic_and_keeps_mode(tmp_path):
    path = tmp_path / "main.cf"
    path.write_text("# keep me\na = 1\n")
    os.chmod(path, 0o640)
    edit_main_cf(str(path), assign={"a": "2"})
    assert path.read_text() == "# keep me\na = 2\n"
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["main.cf"]


names = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
values = st.from_regex(r"[A-Za-z0-9.,:$/ -]{0,30}", fullmatch=True).map(str.strip)


@given(st.dictionaries(names, values, max_size=8), st.dictionaries(names, values, max_size=4))
def test_edit_then_parse_gives_the_assigned_values(initial, assign):
    text = "".join(f"# c\n{k} = {v}\n" for k, v in initial.items())
    out = "".join(edit_lines(text.splitlines(True), "main.cf", assign=assign))
    parsed = {n: e.value for n, e in parse_main_cf(out).items()}
    assert parsed == {**initial, **assign}
    assert out.count("# c\n") == len(initial)


def test_comment_inside_a_replaced_value_stays():
    lines = ["a = 1,\n", "# why\n", "  2\n", "b = 3\n"]
    assert edit_lines(lines, "main.cf", assign={"a": "x"}) == ["a = x\n", "# why\n", "b = 3\n"]
    assert edit_lines(lines, "main.cf", comment=["a"]) == [
        "#a = 1,\n",
        "# why\n",
        "#  2\n",
        "b = 3\n",
    ]
