"""The answer of a delivery helper that ran as the recipient is data, never code."""

import pickle

import pytest

from mta.local.privs import Outcome, _decode, _encode


@pytest.mark.parametrize(
    "value", [Outcome("sent", "2.0.0", "delivered"), None, ("path", "text"), ("t", None, 3)]
)
def test_answers_round_trip(value):
    assert _decode(_encode(value)) == value


@pytest.mark.parametrize(
    "data",
    [
        pickle.dumps(Outcome("sent", "2.0.0", "x")),  # a pickle is refused, not loaded
        b'{"o": ["owned", "2.0.0", "x"]}',  # not an outcome status
        b'{"v": {"nested": 1}}',
        b'{"x": 1}',
        b"[]",
    ],
)
def test_anything_else_is_refused(data):
    with pytest.raises((ValueError, TypeError, KeyError)):
        _decode(data)
