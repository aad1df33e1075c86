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


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="needs root")
def test_a_users_own_deliveries_never_run_as_root(tmp_path):
    """Even when mail_owner is root (no privilege separation), a real user's
    .forward, mailbox and commands run with that user's ids."""
    import pwd

    from mta.config import load_config
    from mta.local import LocalAgent
    from tests.support.instance import make_instance

    cfg = load_config(str(make_instance(tmp_path, "mail_owner = root\nalias_maps =\n")))
    agent = LocalAgent(cfg)
    nobody = pwd.getpwnam("nobody")
    privs = agent._privs(nobody)
    assert (privs.uid, privs.gid) == (nobody.pw_uid, nobody.pw_gid)
    assert agent._privs(pwd.getpwnam("root")) is None  # root's own: as the agent
