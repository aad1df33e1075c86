"""regexp: and pcre: tables: order, negation, if/endif, flags, substitution, errors."""

import pytest

from mta.maps import MapError, open_map
from mta.maps.dict_regexp import translate_posix_classes


def table(tmp_path, text, kind="regexp"):
    src = tmp_path / "rules"
    src.write_text(text)
    return open_map(f"{kind}:{src}")


def test_first_matching_rule_wins(tmp_path):
    t = table(tmp_path, "/^a/ first\n/b/ second\n")
    assert t.lookup("ab") == "first" and t.lookup("xb") == "second" and t.lookup("x") is None


def test_case_insensitive_by_default_and_i_toggles(tmp_path):
    t = table(tmp_path, "/^ABC$/i exact\n/^abc$/ any\n")
    assert t.lookup("ABC") == "exact"
    assert t.lookup("aBc") == "any"


def test_substitution_forms_and_dollar_dollar(tmp_path):
    t = table(tmp_path, "/^(.*)@(.*)$/ $2 ${1} $(1)$$\n")
    assert t.lookup("User@Host") == "Host User User$"


def test_unset_group_substitutes_empty(tmp_path):
    t = table(tmp_path, "/(a)|(z)/ [$2]\n")
    assert t.lookup("a") == "[]"


def test_negated_rule(tmp_path):
    t = table(tmp_path, "!/^ok/ notok\n")
    assert t.lookup("bad") == "notok" and t.lookup("okay") is None


def test_if_endif_nesting(tmp_path):
    t = table(tmp_path, "if /@example\\.com$/\nif !/^admin/\n/./ user\nendif\n/./ admin\nendif\n")
    assert t.lookup("joe@example.com") == "user"
    assert t.lookup("admin@example.com") == "admin"
    assert t.lookup("joe@other.org") is None


def test_escaped_delimiter_and_other_delimiter(tmp_path):
    t = table(tmp_path, "/a\\/b/ slash\n#c#d#x other\n|x/y| bar\n")
    assert t.lookup("a/b") == "slash"
    assert t.lookup("x/y") == "bar"  # the "#" line is a comment


def test_bad_regex_is_a_map_error_with_file_and_line(tmp_path):
    with pytest.raises(MapError, match=r"rules, line 2: bad regular expression"):
        table(tmp_path, "/ok/ 1\n/a(b/ x\n")


def test_out_of_range_group_skips_rule_with_warning(tmp_path, warnings):
    t = table(tmp_path, "/a(b)/ x$2\n/a/ y\n")
    assert t.lookup("ab") == "y"
    assert warnings == [
        f'{tmp_path}/rules, line 1: out of range replacement index "2": skipping this rule'
    ]


def test_unknown_flag_skips_rule(tmp_path, warnings):
    t = table(tmp_path, "/a/q x\n")
    assert t.lookup("a") is None and "unknown regexp option" in warnings[0]


def test_endif_without_if_warns(tmp_path, warnings):
    table(tmp_path, "endif\n")
    assert warnings == [f"{tmp_path}/rules, line 1: ignoring ENDIF without matching IF"]


def test_continuation_line_joins_result(tmp_path):
    t = table(tmp_path, "/x/ 550 first\n  second\n")
    assert t.lookup("x") == "550 first  second"


def test_posix_class_translation(tmp_path):
    assert translate_posix_classes("[[:digit:]x]+") == "[0-9x]+"
    t = table(tmp_path, "/^[[:digit:]]+$/ num\n")
    assert t.lookup("123") == "num" and t.lookup("12a") is None


def test_pcre_anchored_flag(tmp_path):
    t = table(tmp_path, "/b/A anchored\n", kind="pcre")
    assert t.lookup("bc") == "anchored" and t.lookup("ab") is None


def test_pcre_extended_flag(tmp_path):
    t = table(tmp_path, "/a b/x spaced\n", kind="pcre")
    assert t.lookup("ab") == "spaced"


def test_inline_rules():
    t = open_map("pcre:{ {/^(.*)@old\\.example$/ $1@new.example}, {/x/ OK} }")
    assert t.lookup("u@old.example") == "u@new.example" and t.lookup("x") == "OK"


def test_pattern_tables_are_not_fixed(tmp_path):
    assert table(tmp_path, "/a/ b\n").fixed is False
