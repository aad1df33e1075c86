"""Typed parameter values: booleans, integers, times, sizes, lists."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.config import values


@pytest.mark.parametrize("text,expected", [("yes", True), ("no", False), ("YES", True)])
def test_booleans(text, expected):
    assert values.parse_bool(text) is expected


def test_bad_boolean_says_what_is_expected():
    with pytest.raises(ValueError, match="expected yes or no"):
        values.parse_bool("maybe")


@pytest.mark.parametrize(
    "text,unit,seconds",
    [
        ("300", "s", 300),
        ("300s", "s", 300),
        ("5m", "s", 300),
        ("2h", "s", 7200),
        ("1d", "s", 86400),
        ("1w", "s", 604800),
        ("5", "d", 432000),
        ("0", "h", 0),
    ],
)
def test_times(text, unit, seconds):
    assert values.parse_time(text, unit) == seconds


@pytest.mark.parametrize("text", ["", "5x", "-1s", "1.5h", "s"])
def test_bad_times(text):
    with pytest.raises(ValueError, match="bad time value"):
        values.parse_time(text)


def test_integer_bounds():
    assert values.parse_int("7", 1, 10) == 7
    with pytest.raises(ValueError, match="below the minimum 1"):
        values.parse_int("0", 1)
    with pytest.raises(ValueError, match="bad integer"):
        values.parse_int("12k")


def test_sizes_are_bytes():
    assert values.parse_size("10240000") == 10240000
    with pytest.raises(ValueError, match="bad size"):
        values.parse_size("10M")


def test_list_splits_on_commas_and_space_and_keeps_brace_groups():
    assert values.split_list("a, b c,,d") == ["a", "b", "c", "d"]
    assert values.split_list("inline:{ a=1, b=2 }, static:x") == ["inline:{ a=1, b=2 }", "static:x"]


def test_list_with_unclosed_brace_is_an_error():
    with pytest.raises(ValueError, match='missing "}"'):
        values.split_list("inline:{ a=1")


@given(
    st.lists(st.from_regex(r"[a-z0-9.:@]{1,8}", fullmatch=True), max_size=10),
    st.sampled_from([",", " ", ", ", "\t", " ,\n "]),
)
def test_list_round_trip(items, sep):
    assert values.split_list(sep.join(items)) == items
