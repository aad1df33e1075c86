"""common.dsn_params: RFC 3461's NOTIFY, ORCPT and xtext, as smtpd and the milter job read them."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.common.dsn_params import NOTIFY_BITS, decode_xtext, notify_mask, orcpt_value
from mta.queue import rec_type as R


@pytest.mark.parametrize(
    ("value", "mask"),
    [
        (b"NEVER", R.DSN_NOTIFY_NEVER),
        (b"success,Delay", R.DSN_NOTIFY_SUCCESS | R.DSN_NOTIFY_DELAY),
        (b"FAILURE", R.DSN_NOTIFY_FAILURE),
        (b"NEVER,SUCCESS", None),  # NEVER stands alone
        (b"SOMETIMES", None),
        (b"", None),
        (b"SUCCESS,", None),
    ],
)
def test_notify_mask(value, mask):
    assert notify_mask(value) == mask


@given(st.lists(st.sampled_from(sorted(NOTIFY_BITS)), min_size=1, max_size=4))
def test_notify_mask_is_the_union_of_its_words(words):
    value = b",".join(words)
    if b"NEVER" in words and len(words) > 1:
        assert notify_mask(value) is None
    else:
        expected = 0
        for w in words:
            expected |= NOTIFY_BITS[w]
        assert notify_mask(value) == expected


@pytest.mark.parametrize(
    ("value", "found"),
    [
        (b"rfc822;user+40example.org", "rfc822;user@example.org"),
        (b"rfc822;plain@example.org", "rfc822;plain@example.org"),
        (b"rfc822", None),  # no address type separator
        (b"rfc822;bad+4", None),  # a cut hex escape
        (b"rfc822;sp=ace", None),  # "=" is not xtext
    ],
)
def test_orcpt_value(value, found):
    assert orcpt_value(value) == found


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40))
def test_xtext_round_trip(text):
    encoded = "".join(c if c not in "+=" else f"+{ord(c):02X}" for c in text)
    assert decode_xtext(encoded.encode()) == text
