"""common.verp.verp_recipient: reading a VERP address back, and the round trip
through verp_sender()."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mta.common.verp import verp_recipient, verp_sender


@pytest.mark.parametrize(
    "address, delims, expected",
    [
        ("bounces+user=domain.tld@shop.example", "+=", "user@domain.tld"),
        ("list-u=x.example@example.org", "-=", "u@x.example"),
        ("owner+a+b=c=d.example@example.com", "+=", "a+b=c@d.example"),
        ("owner+a@b=c.example@example.com", "+=", "a@b@c.example"),
        ("owner+user=domain.tld", "+=", "user@domain.tld"),
        ("bounces@shop.example", "+=", None),
        ("bounces+campaign7@shop.example", "+=", None),
        ("bounces+=domain.tld@shop.example", "+=", None),
        ("bounces+user=@shop.example", "+=", None),
        ("bounces+user=domain.tld@shop.example", "+", None),
    ],
    ids=[
        "postfix-example",
        "qmail-delimiters",
        "delimiters-in-recipient-local-part",
        "at-in-recipient-local-part",
        "sender-without-domain",
        "plain-address",
        "extension-without-second-delimiter",
        "empty-user",
        "empty-domain",
        "bad-delimiters",
    ],
)
def test_verp_recipient(address, delims, expected):
    assert verp_recipient(address, delims) == expected


DELIMS = st.sampled_from(["+=", "-=", "=+", "+-", "-+"])
TEXT = st.text(alphabet="abcxyz09.-+=_@!", min_size=1, max_size=12)


@given(DELIMS, TEXT, TEXT, TEXT, TEXT)
def test_round_trip_through_verp_sender(delims, prefix, origin, user, domain):
    # what Postfix's encoding needs: the sender's local part has no first
    # delimiter, the recipient's domain no second one, and domains no "@"
    assume(delims[0] not in prefix and "@" not in prefix and "@" not in origin)
    assume(delims[1] not in domain and "@" not in domain)
    recipient = f"{user}@{domain}"
    address = verp_sender(delims, f"{prefix}@{origin}", recipient)
    assert verp_recipient(address, delims) == recipient
