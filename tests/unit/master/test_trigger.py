"""What counts as the master's own wakeup."""

from mta.master.trigger_server import is_wakeup_only


def test_wakeup_only():
    assert is_wakeup_only(b"W")
    assert is_wakeup_only(b"WW")
    assert not is_wakeup_only(b"")
    assert not is_wakeup_only(b"Wx")
