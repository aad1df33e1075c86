"""Lookup order for addresses and domains: virtual(5) and access(5) rules."""

from hypothesis import given
from hypothesis import strategies as st

from mta.common.addr_find import (
    domain_keys,
    find_access,
    find_address,
    find_address_ext,
    find_domain,
    split_extension,
)
from mta.maps import Dict, Maps, open_map


class Recorder(Dict):
    """An in-memory table type that also records the keys it was asked for."""

    kind = "record"

    def __init__(self, fixed=True, answers=None):
        super().__init__("record:test", "test")
        self.fixed = fixed
        self.keys = []
        self.answers = answers or {}

    def lookup(self, key):
        self.keys.append(key)
        return self.answers.get(key)


def test_full_order_with_extension():
    rec = Recorder()
    assert find_address([rec], "user+ext@example.com", "+") is None
    assert rec.keys == [
        "user+ext@example.com",
        "user@example.com",
        "user+ext",
        "user",
        "@example.com",
    ]


def test_order_without_extension_skips_repeats():
    rec = Recorder()
    find_address([rec], "user@example.com", "+")
    assert rec.keys == ["user@example.com", "user", "@example.com"]


def test_non_local_domain_skips_localpart_steps():
    rec = Recorder()
    find_address([rec], "user+ext@example.com", "+", local=False)
    assert rec.keys == ["user+ext@example.com", "user@example.com", "@example.com"]


def test_pattern_tables_get_the_whole_address_only():
    rec = Recorder(fixed=False)
    find_address([rec], "user+ext@example.com", "+")
    assert rec.keys == ["user+ext@example.com"]


def test_first_step_with_an_answer_wins_and_reports_extension():
    maps = Maps(["inline:{ user@example.com=plain, @example.com=catchall }"])
    assert find_address_ext(maps, "User+Ext@Example.com", "+") == ("plain", "Ext")
    assert find_address(maps, "other@example.com", "+") == "catchall"


def test_multi_character_delimiter_set_splits_at_first():
    assert split_extension("a-b+c", "+-") == ("a", "b+c")


def test_special_localparts_are_not_split():
    assert split_extension("owner-list", "-") == ("owner-list", None)
    assert split_extension("list-request", "-") == ("list-request", None)
    assert split_extension("postmaster", "+") == ("postmaster", None)
    assert split_extension("+foo", "+") == ("+foo", None)


def test_trailing_delimiter_gives_empty_extension():
    assert split_extension("user+", "+") == ("user", "")


def reference_split(local, delims):
    """Simple reference: split at the first delimiter unless it is the first character."""
    positions = [local.find(d) for d in delims if local.find(d) >= 0]
    if not positions or min(positions) == 0:
        return local, None
    i = min(positions)
    return local[:i], local[i + 1 :]


@given(st.text(alphabet="abx+-.", max_size=12), st.sampled_from(["+", "+-", "."]))
def test_split_extension_matches_reference(local, delims):
    low = local.lower()
    special = low in ("postmaster", "mailer-daemon", "double-bounce") or (
        "-" in delims and (low.startswith("owner-") or (len(low) > 8 and low.endswith("-request")))
    )
    expected = (local, None) if special else reference_split(local, delims)
    assert split_extension(local, delims) == expected


def test_domain_keys_parent_style_and_dot_style():
    assert domain_keys("a.b.example.com", True) == [
        "a.b.example.com",
        "b.example.com",
        "example.com",
        "com",
    ]
    assert domain_keys("a.example.com", False) == ["a.example.com", ".example.com", ".com"]


def test_find_domain_parent_on_fixed_tables_only():
    fixed = Recorder(answers={".example.com": "dot"})
    pattern = Recorder(fixed=False)
    assert find_domain([pattern, fixed], "mail.example.com", False) == "dot"
    assert pattern.keys == ["mail.example.com"]


def test_find_access_order():
    rec = Recorder()
    find_access([rec], "user+x@mail.example.com", "+", parent_matches_subdomains=True)
    assert rec.keys == [
        "user+x@mail.example.com",
        "user@mail.example.com",
        "mail.example.com",
        "example.com",
        "com",
        "user+x@",
        "user@",
    ]


def test_works_with_a_single_dict():
    assert find_address(open_map("inline:{@example.com=x}"), "a@example.com") == "x"
