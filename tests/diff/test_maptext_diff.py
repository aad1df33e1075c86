"""maptext: the compiled parser against the reference, fixed cases and random input."""

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.maps import text

IMPLS = [pytest.param(text.parse_table_text_ref, id="ref")]
if text.parse_table_text_c is not None:
    IMPLS.append(pytest.param(text.parse_table_text_c, id="c"))


@pytest.fixture(params=IMPLS)
def parse(request):
    return request.param


def test_extension_loaded():
    if os.environ.get("MTA_NO_EXTENSIONS"):
        pytest.skip("pure build")
    assert text.parse_table_text is text.parse_table_text_c


def test_key_value_and_folding(parse):
    assert parse(b"Key  Value here \r\n", True) == ([(b"key", b"Value here")], [])
    assert parse(b"Key v\n", False) == ([(b"Key", b"v")], [])


def test_continuation_keeps_leading_whitespace(parse):
    assert parse(b"a b\n\tc \n# comment\n\n x\t\n", True) == ([(b"a", b"b\tc  x")], [])


def test_quoted_keys_and_backslashes(parse):
    pairs, _ = parse(b'"a b"c d\n"x\\" y" z\nn\\ o p\n', True)
    assert pairs == [(b'"a b"c', b"d"), (b'"x\\" y"', b"z"), (b"n\\ o", b"p")]


def test_warnings_name_first_line(parse):
    data = b' lead\nnovalue\n  more\n"open v\nk: v\n'
    assert parse(data, True) == (
        [(b"novalue", b"more"), (b"k:", b"v")],
        [
            (1, 'logical line must not start with whitespace: " lead"'),
            (4, "unbalanced '\"' in '\"open v' -- ignoring this line"),
            (5, 'record is in "key: value" format; is this an alias file?'),
        ],
    )


def test_missing_value_warning(parse):
    assert parse(b"a 1\nb\n", True) == (
        [(b"a", b"1")],
        [(2, "expected format: key whitespace value -- ignoring this line")],
    )


def test_empty_and_comment_only(parse):
    assert parse(b"", True) == ([], [])
    assert parse(b"# x\n   # y\n\n", True) == ([], [])


def test_accepts_bytearray_and_memoryview(parse):
    assert parse(bytearray(b"a b"), True) == parse(memoryview(b"a b"), True) == ([(b"a", b"b")], [])


ALPHABET = [b"\r", b"\n", b"\t", b" ", b"#", b"\xff", b"a", b"B", b'"', b"\\", b":", b"x"]


@pytest.mark.skipif(text.parse_table_text_c is None, reason="extension not built")
@given(st.lists(st.sampled_from(ALPHABET), max_size=200), st.booleans())
@settings(max_examples=300)
def test_c_agrees_with_ref_hypothesis(parts, fold):
    data = b"".join(parts)
    assert text.parse_table_text_c(data, fold) == text.parse_table_text_ref(data, fold)


@pytest.mark.skipif(text.parse_table_text_c is None, reason="extension not built")
@pytest.mark.parametrize("seed", range(200))
def test_c_agrees_with_ref(seed):
    rnd = random.Random(seed)
    data = b"".join(rnd.choice(ALPHABET) for _ in range(rnd.randrange(600)))
    fold = bool(seed % 2)
    assert text.parse_table_text_c(data, fold) == text.parse_table_text_ref(data, fold)


def test_folding_one_byte_keys_leaves_shared_bytes_alone(parse):
    assert parse(b"B x\nQ y\n", True)[0] == [(b"b", b"x"), (b"q", b"y")]
    assert bytes([66]) == b"B" and b"Q".lower() == b"q" and bytes([81]) == b"Q"
