"""Rewriting to standard form (trivial-rewrite's "local" and "remote" rule sets)."""

import pytest

from mta.trivial_rewrite.rewrite import Rewriter, find_unquoted, strip_route


def test_bare_user_gets_myorigin(make_cfg):
    assert Rewriter(make_cfg()).rewrite("joe") == "joe@mx.example.com"


def test_myorigin_setting_is_used(make_cfg):
    assert Rewriter(make_cfg("myorigin = $mydomain\n")).rewrite("joe") == "joe@example.com"


def test_append_at_myorigin_off_leaves_bare_user(make_cfg):
    assert Rewriter(make_cfg("append_at_myorigin = no\n")).rewrite("joe") == "joe"


def test_empty_address_stays_empty(make_cfg):
    assert Rewriter(make_cfg()).rewrite("") == ""


def test_full_address_unchanged(make_cfg):
    assert Rewriter(make_cfg()).rewrite("Joe@Example.ORG") == "Joe@Example.ORG"


def test_source_route_dropped(make_cfg):
    assert Rewriter(make_cfg()).rewrite("@a.example,@b.example:u@x.org") == "u@x.org"


def test_trailing_dot_of_domain_dropped(make_cfg):
    assert Rewriter(make_cfg()).rewrite("u@x.org.") == "u@x.org"


def test_bang_path_swapped(make_cfg):
    rw = Rewriter(make_cfg())
    assert rw.rewrite("site!joe") == "joe@site"
    assert rw.rewrite("a!b!joe") == "b!joe@a"


def test_bang_path_kept_when_off(make_cfg):
    rw = Rewriter(make_cfg("swap_bangpath = no\nallow_percent_hack = no\n"))
    assert rw.rewrite("site!joe") == "site!joe@mx.example.com"


def test_percent_hack_uses_last_percent(make_cfg):
    rw = Rewriter(make_cfg())
    assert rw.rewrite("joe%site") == "joe@site"
    assert rw.rewrite("u%v%w") == "u%v@w"


def test_percent_hack_off(make_cfg):
    assert Rewriter(make_cfg("allow_percent_hack = no\n")).rewrite("joe%site") == (
        "joe%site@mx.example.com"
    )


def test_percent_inside_quotes_ignored(make_cfg):
    assert Rewriter(make_cfg()).rewrite('"a%b"') == '"a%b"@mx.example.com'


def test_remote_context_without_domain_leaves_address(make_cfg):
    assert Rewriter(make_cfg()).rewrite("joe", "remote") == "joe"


def test_remote_context_appends_remote_header_rewrite_domain(make_cfg):
    rw = Rewriter(make_cfg("remote_header_rewrite_domain = domain.invalid\n"))
    assert rw.rewrite("joe", "remote") == "joe@domain.invalid"


def test_append_dot_mydomain(make_cfg):
    rw = Rewriter(make_cfg("append_dot_mydomain = yes\n"))
    assert rw.rewrite("u@host") == "u@host.example.com"
    assert rw.rewrite("u@localhost") == "u@localhost"
    assert rw.rewrite("u@[192.0.2.1]") == "u@[192.0.2.1]"
    assert rw.rewrite("u@host.other") == "u@host.other"


def test_append_dot_mydomain_off_by_default(make_cfg):
    assert Rewriter(make_cfg()).rewrite("u@host") == "u@host"


def test_unknown_context_is_an_error(make_cfg):
    with pytest.raises(ValueError):
        Rewriter(make_cfg()).rewrite("joe", "elsewhere")


def test_cache_returns_same_answer(make_cfg):
    rw = Rewriter(make_cfg())
    assert rw.rewrite("joe") == rw.rewrite("joe") == "joe@mx.example.com"
    assert ("joe", "local") in rw._cache


def test_find_unquoted_skips_quotes_and_escapes():
    assert find_unquoted('"a!b"!c', "!") == 5
    assert find_unquoted("a\\!b", "!") == -1
    assert find_unquoted("a%b%c", "%", last=True) == 3


def test_strip_route_without_route():
    assert strip_route("u@x") == "u@x"
