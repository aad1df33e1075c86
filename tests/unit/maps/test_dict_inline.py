"""inline:, static: and fail: tables."""

import pytest

from mta.maps import MapError, MapRetry, open_map


def test_inline_pairs_and_braced_items():
    table = open_map("inline:{ A@Example.com=b@x, { c = two words }, d=e }")
    assert table.lookup("a@example.com") == "b@x"
    assert table.lookup("c") == "two words"
    assert table.lookup("d") == "e"
    assert table.lookup("zz") is None


def test_inline_item_without_equals_is_an_error():
    with pytest.raises(MapError, match='expected "key=value", got "oops"'):
        open_map("inline:{ a=b, oops }")


def test_inline_needs_braces():
    with pytest.raises(MapError, match="inline:a=b"):
        open_map("inline:a=b")


def test_static_answers_every_key():
    assert open_map("static:smtp:[relay.example]").lookup("anything") == "smtp:[relay.example]"


def test_static_braced_value_keeps_spaces():
    assert open_map("static:{ 550 go away }").lookup("x") == "550 go away"


def test_fail_raises_retry():
    with pytest.raises(MapRetry):
        open_map("fail:test").lookup("x")
