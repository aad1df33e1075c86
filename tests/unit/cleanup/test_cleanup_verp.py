"""cleanup keeps the VERP delimiters in the queue file only when they can be used."""

from mta.common.verp import VERP_ATTR
from tests.unit.cleanup.conftest import REMOTE

MESSAGE = b"Subject: list\r\n\r\nHi.\r\n"


def test_delimiters_are_written_to_the_queue_file(instance):
    out = instance().run(MESSAGE, attrs={**REMOTE, VERP_ATTR: "+="})
    assert out.msg.attrs[VERP_ATTR] == "+="


def test_delimiters_the_filter_refuses_are_dropped_with_a_warning(instance):
    inst = instance()
    out = inst.run(MESSAGE, attrs={**REMOTE, VERP_ATTR: "+x"})
    assert VERP_ATTR not in out.msg.attrs
    log = (inst.tmp / "maillog").read_text()
    assert f'{out.msg.queue_id}: ignoring bad VERP request: "+x"' in log


def test_delimiters_for_the_null_sender_are_dropped_with_a_warning(instance):
    inst = instance()
    out = inst.run(MESSAGE, sender="", attrs={**REMOTE, VERP_ATTR: "+="})
    assert VERP_ATTR not in out.msg.attrs
    log = (inst.tmp / "maillog").read_text()
    assert f"{out.msg.queue_id}: ignoring VERP request for null sender" in log
