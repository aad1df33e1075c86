"""qmgr and the content filter: every recipient of a filtered message goes to the
filter's transport and next hop (qmgr/content_filter.py)."""

from __future__ import annotations

import os

import pytest

from mta.config import load_config
from mta.qmgr.content_filter import ContentFilter, parse_filter
from mta.queue.queue_file import QueueFileWriter, Recipient, read_queue_file
from tests.support.instance import make_instance
from tests.unit.qmgr.test_manager import agents, instance, run_qmgr, until_gone


def queue_filtered(cfg, filt: str, rcpts=("a@one.example", "b@two.example")):
    w = QueueFileWriter(cfg.get("queue_directory"), "incoming")
    w.write_envelope("writer@origin.example", [Recipient(r) for r in rcpts], {"filter": filt})
    w.write_content(b"Subject: s\n\nbody\n")
    qid = w.commit()
    return read_queue_file(os.path.join(cfg.get("queue_directory"), "incoming", qid))


@pytest.mark.parametrize(
    "value, route",
    [
        ("scan:[127.0.0.1]:10025", ("scan", "[127.0.0.1]:10025")),
        ("filter:dummy", ("filter", "dummy")),
        ("smtp:", ("smtp", "")),
        ("smtp", ("smtp", "")),
        (" lmtp:unix:/x ", ("lmtp", "unix:/x")),
    ],
)
def test_parse_filter(value, route):
    assert parse_filter(value) == route


@pytest.mark.parametrize("value", [":x", " : ", ":"])
def test_filter_without_a_transport_is_an_error(value):
    with pytest.raises(ValueError):
        parse_filter(value)


def test_empty_next_hop_is_default_filter_nexthop_then_the_recipient_domain(tmp_path):
    cfg = load_config(str(make_instance(tmp_path)))
    cf = ContentFilter(cfg)
    assert cf.destination(("scan", ""), "u@Dom.example") == ("scan", "Dom.example")
    assert cf.destination(("scan", ""), "u") == ("scan", "mx.test.example")
    assert cf.destination(("scan", "hop"), "u@dom.example") == ("scan", "hop")
    cfg = load_config(str(make_instance(tmp_path, "default_filter_nexthop = [::1]:25\n")))
    assert ContentFilter(cfg).destination(("scan", ""), "u@d.example") == ("scan", "[::1]:25")


def test_every_recipient_goes_to_the_filter_in_one_request(tmp_path):
    cfg = instance(tmp_path, "default_transport = discard:should not be used\n")
    m = queue_filtered(cfg, "error:5.7.1 seen by the filter")
    with agents(cfg, "error", "discard"):
        run_qmgr(cfg, until_gone(m))
    text = (tmp_path / "maillog").read_text()
    for rcpt in ("a@one.example", "b@two.example"):
        assert f"{m.queue_id}: to=<{rcpt}>, relay=none" in text
    assert "seen by the filter" in text
    assert "should not be used" not in text


def test_bad_filter_defers_the_message(tmp_path):
    cfg = instance(tmp_path, "default_transport = discard:should not be used\n")
    m = queue_filtered(cfg, ":nowhere")
    with agents(cfg, "discard"):
        run_qmgr(cfg, lambda qm: "no transport name" in (tmp_path / "maillog").read_text())
    text = (tmp_path / "maillog").read_text()
    assert "should not be used" not in text
    assert (
        f"warning: {m.queue_id}: cannot route the recipients: ValueError: bad content "
        "filter ':nowhere': no transport name; message deferred" in text
    )
    assert f"{m.queue_id}: removed" not in text


def test_address_probes_are_not_filtered(tmp_path):
    from mta.queue.rec_type import QF_VERIFY_USER

    cfg = instance(tmp_path, "default_transport = error:5.1.1 routed as usual\n")
    w = QueueFileWriter(cfg.get("queue_directory"), "incoming")
    w.flags |= QF_VERIFY_USER
    w.write_envelope("writer@origin.example", [Recipient("a@one.example")], {"filter": "nosuch:x"})
    w.write_content(b"")
    qid = w.commit()
    m = read_queue_file(os.path.join(cfg.get("queue_directory"), "incoming", qid))
    with agents(cfg, "error"):
        run_qmgr(cfg, lambda qm: "routed as usual" in (tmp_path / "maillog").read_text())
    text = (tmp_path / "maillog").read_text()
    assert f"{m.queue_id}: to=<a@one.example>" in text and "routed as usual" in text
    assert "nosuch" not in text
