"""common.verp: the VERP sender, the delimiter filter, and what a queue file asks for."""

from __future__ import annotations

import pytest

from mta.common.verp import VERP_ATTR, delimiters_problem, message_delimiters, verp_sender


@pytest.mark.parametrize(
    "delims, sender, recipient, expected",
    [
        (
            "+=",
            "owner-list@example.com",
            "user@domain.tld",
            "owner-list+user=domain.tld@example.com",
        ),
        ("-=", "list@example.org", "u@x.example", "list-u=x.example@example.org"),
        ("+=", "owner-list@example.com", "user", "owner-list+user@example.com"),
        ("+=", "owner-list", "user@domain.tld", "owner-list+user=domain.tld"),
        ("+=", "owner@example.com", "a@b@c.example", "owner+a@b=c.example@example.com"),
    ],
    ids=[
        "postfix-example",
        "qmail-delimiters",
        "recipient-without-domain",
        "sender-without-domain",
        "last-at-splits",
    ],
)
def test_verp_sender(delims, sender, recipient, expected):
    assert verp_sender(delims, sender, recipient) == expected


@pytest.mark.parametrize(
    "delims, problem",
    [
        ("+=", None),
        ("-+", None),
        ("+", "bad VERP delimiter character count"),
        ("+=-", "bad VERP delimiter character count"),
        ("", "bad VERP delimiter character count"),
        ("x=", "bad first VERP delimiter character"),
        ("+@", "bad second VERP delimiter character"),
    ],
)
def test_delimiters_problem(delims, problem):
    assert delimiters_problem(delims, "-=+") == problem


def test_message_delimiters_of_a_verp_message():
    assert message_delimiters({VERP_ATTR: "+="}, "owner@example.com", "-=+") == "+="


def test_message_delimiters_none_without_the_attribute():
    assert message_delimiters({}, "owner@example.com", "-=+") is None


def test_message_delimiters_ignored_for_the_null_sender():
    assert message_delimiters({VERP_ATTR: "+="}, "", "-=+") is None


def test_message_delimiters_ignored_when_the_filter_refuses_them():
    assert message_delimiters({VERP_ATTR: "+="}, "owner@example.com", "-=") is None
