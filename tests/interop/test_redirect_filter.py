"""REDIRECT and FILTER under the real master: smtpd access tables and header_checks.

REDIRECT replaces every recipient of the message (qmgr); FILTER sends the
whole message, every recipient in one delivery with its envelope as it was,
to the filter's transport and next hop (qmgr/content_filter.py), here a
second sink standing in for a content filter."""

import re
import smtplib

import pytest

from tests.support.running import relay_system, wait_for
from tests.unit.smtp.peers import sink

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    top = tmp_path_factory.mktemp("redirect")
    ctl, handler = sink()
    fctl, filtered = sink()  # where FILTER sends mail
    (top / "access").write_text(
        "a@remote.example REDIRECT other@redirect.example\n"
        f"f@remote.example FILTER smtp:[127.0.0.1]:{fctl.port}\n"
    )
    (top / "header_checks").write_text(
        "/^Subject: redirect me/ REDIRECT hdr@redirect.example\n"
        f"/^Subject: filter me/ FILTER smtp:[127.0.0.1]:{fctl.port}\n"
    )
    inst = relay_system(
        top,
        "smtp unix - - n - - smtp\n",
        transport_maps=f"inline:{{ {{remote.example=smtp:[127.0.0.1]:{ctl.port}}}, "
        f"{{redirect.example=smtp:[127.0.0.1]:{ctl.port}}} }}",
        smtpd_recipient_restrictions=f"check_recipient_access texthash:{top}/access, "
        "permit_mynetworks, reject",
        header_checks=f"regexp:{top}/header_checks",
    )
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    inst.filtered = filtered
    try:
        yield inst, handler
    finally:
        inst.stop()
        ctl.stop()
        fctl.stop()


def queue_id_of(text: str, rcpt: str) -> str:
    m = re.search(rf"(\w+): to=<{re.escape(rcpt)}>", text)
    assert m, text
    return m.group(1)


def received_by(handler, subject: str) -> list[list[str]]:
    return [rcpts for _, rcpts, data, _ in handler.messages if subject.encode() in data]


def submit(inst, rcpts: list[str], message: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
        s.sendmail("sender@ok.example", rcpts, message)


def redirected(inst, handler, rcpts: list[str], subject: str, target: str) -> str:
    """Submit a message with subject to rcpts, wait until it went out to target and its
    queue file is removed; returns its queue id."""
    submit(inst, rcpts, f"Subject: {subject}\r\n\r\nbody\r\n".encode())
    assert wait_for(lambda: received_by(handler, subject), 20)
    text = inst.wait_log(rf"to=<{re.escape(target)}>.*status=sent", 20)
    qid = queue_id_of(text, target)
    inst.wait_log(rf"{qid}: removed", 20)
    return qid


def test_access_table_redirect_replaces_every_recipient(system):
    inst, handler = system
    rcpts = ["a@remote.example", "b@remote.example"]
    qid = redirected(inst, handler, rcpts, "access redirect", "other@redirect.example")
    assert received_by(handler, "access redirect") == [["other@redirect.example"]]
    line = next(ln for ln in inst.log().splitlines() if f"{qid}: to=<other@" in ln)
    assert "orig_to=<a@remote.example>" in line
    assert not re.search(rf"{qid}: to=<[ab]@remote\.example>", inst.log())


def test_header_checks_redirect_replaces_every_recipient(system):
    inst, handler = system
    rcpts = ["c@remote.example", "d@remote.example"]
    qid = redirected(inst, handler, rcpts, "redirect me", "hdr@redirect.example")
    assert received_by(handler, "redirect me") == [["hdr@redirect.example"]]
    assert not re.search(rf"{qid}: to=<[cd]@remote\.example>", inst.log())


def test_header_checks_filter_sends_every_recipient_to_the_filter_at_once(system):
    inst, handler = system
    # elsewhere.example has no route of its own here: only the filter takes it
    rcpts = ["e@remote.example", "e2@elsewhere.example"]
    submit(inst, rcpts, b"Subject: filter me\r\n\r\nbody\r\n")
    assert wait_for(lambda: received_by(inst.filtered, "filter me"), 20), inst.log()
    assert received_by(inst.filtered, "filter me") == [rcpts]  # one delivery, both
    (msg,) = [m for m in inst.filtered.messages if b"filter me" in m[2]]
    assert msg[0] == "sender@ok.example"
    assert not received_by(handler, "filter me")
    text = inst.wait_log(r"to=<e2@elsewhere\.example>, relay=127\.0\.0\.1.*status=sent", 20)
    qid = queue_id_of(text, "e@remote.example")
    inst.wait_log(rf"{qid}: removed", 20)
    assert f"{qid}: filter: header Subject: filter me" in text
    assert "on hold" not in text


def test_access_table_filter_sends_the_message_to_the_filter(system):
    inst, handler = system
    submit(inst, ["f@remote.example"], b"Subject: access filter\r\n\r\nb\r\n")
    assert wait_for(lambda: received_by(inst.filtered, "access filter"), 20), inst.log()
    assert received_by(inst.filtered, "access filter") == [["f@remote.example"]]
    assert not received_by(handler, "access filter")
    listing = inst.mta("queue", "-p").stdout
    assert "!" not in listing  # nothing is held
