"""$name expansion in parameter values."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.config.errors import ConfigError
from mta.config.expand import expand, expand_param


def lookup_from(table):
    return table.get


def test_plain_and_braced_and_parenthesised_names():
    look = lookup_from({"a": "x", "b": "y"})
    assert expand("$a-${b}-$(a)", look) == "x-y-x"


def test_nested_expansion():
    look = lookup_from({"myorigin": "$myhostname", "myhostname": "mx.$mydomain", "mydomain": "d"})
    assert expand_param("myorigin", look) == "mx.d"


def test_unknown_name_expands_to_nothing():
    assert expand("<$nosuch>", lookup_from({})) == "<>"


def test_dollar_dollar_is_a_literal_dollar():
    assert expand("cost $$5", lookup_from({})) == "cost $5"


def test_conditional_when_set_and_unset():
    look = lookup_from({"set": "1", "empty": ""})
    assert expand("${set?yes}${empty?no}", look) == "yes"
    assert expand("${set:no}${empty:yes}", look) == "yes"


def test_conditional_with_both_alternatives():
    look = lookup_from({"set": "1", "empty": ""})
    assert expand("${set?{a}:{b}}|${empty?{a}:{b}}", look) == "a|b"


def test_conditional_text_is_expanded():
    look = lookup_from({"d": "example", "flag": "y"})
    assert expand("${flag?mail.$d}", look) == "mail.example"


def test_loop_is_reported_with_its_path():
    look = lookup_from({"a": "$b", "b": "${a}"})
    with pytest.raises(ConfigError, match="expansion loop: a -> b -> a"):
        expand_param("a", look)


def test_self_reference_is_a_loop():
    with pytest.raises(ConfigError, match="loop"):
        expand_param("a", lookup_from({"a": "x $a"}))


def test_bad_macro_name_is_reported():
    with pytest.raises(ConfigError, match="bad macro name"):
        expand("${bad name}", lookup_from({}))


def reference_expand(value, table):
    """Simple oracle for the $name / ${name} / $$ subset."""
    value = value.replace("$$", "\0")
    value = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: table.get(m.group(1) or m.group(2), ""), value)
    return value.replace("\0", "$")


words = st.from_regex(r"[a-c]{1,2}", fullmatch=True)
plain = st.from_regex(r"[ x.,:-]{0,3}", fullmatch=True)
piece = st.one_of(
    plain, words.map(lambda w: "$" + w), words.map(lambda w: "${" + w + "}"), st.just("$$")
)


@given(st.lists(piece, max_size=8), st.dictionaries(words, plain, max_size=6))
def test_matches_reference_on_simple_forms(pieces, table):
    # A name followed by a name character would change which name is meant.
    text = " ".join(pieces)
    assert expand(text, table.get) == reference_expand(text, table)
