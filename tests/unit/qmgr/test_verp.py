"""qmgr and VERP: one recipient per delivery request, each with its own sender,
and the non-delivery notices disable_verp_bounces chooses between."""

from __future__ import annotations

import os

from mta.common.deliver_agent import DeliveryJob
from mta.common.verp import VERP_ATTR
from mta.queue.queue_file import QueueFileWriter, Recipient, queue_dir_for, read_queue_file
from tests.support.agent import queue_message
from tests.unit.qmgr.test_manager import agents, instance, run_qmgr, serve_agent, until_gone

RCPTS = ["a@one.example", "b@one.example", "c@one.example"]  # one next hop


def recording_agent(cfg, requests: list):
    """Serve private/discard with an agent that notes (sender, recipients) of each request."""

    async def deliver(job: DeliveryJob) -> None:
        requests.append((job.req.sender, [r.address for r in job.req.recipients]))
        for rcpt in job.pending():
            job.sent(rcpt, "taken", relay="none", dsn="2.0.0")

    return serve_agent(cfg, "discard", deliver)


def deliver_all(tmp_path, sender: str, attrs: dict, rcpts=RCPTS) -> list:
    cfg = instance(tmp_path, "default_transport = discard\n")
    m = queue_message(cfg, rcpts, sender=sender, queue="incoming", attrs=attrs)
    requests: list = []
    agent = recording_agent(cfg, requests)
    try:
        run_qmgr(cfg, until_gone(m))
    finally:
        agent.stop()
    return requests


def test_verp_message_gets_one_request_per_recipient_with_its_own_sender(tmp_path):
    requests = deliver_all(tmp_path, "owner-list@example.com", {VERP_ATTR: "+="})
    assert sorted(requests) == [
        ("owner-list+a=one.example@example.com", ["a@one.example"]),
        ("owner-list+b=one.example@example.com", ["b@one.example"]),
        ("owner-list+c=one.example@example.com", ["c@one.example"]),
    ]


def test_message_without_verp_goes_in_one_request(tmp_path):
    requests = deliver_all(tmp_path, "owner-list@example.com", {})
    assert [(s, sorted(r)) for s, r in requests] == [("owner-list@example.com", sorted(RCPTS))]


def test_verp_uses_the_delimiters_of_the_message(tmp_path):
    requests = deliver_all(tmp_path, "list@example.org", {VERP_ATTR: "-="}, ["u@x.example"])
    assert requests == [("list-u=x.example@example.org", ["u@x.example"])]


def test_verp_is_ignored_for_the_null_sender(tmp_path):
    requests = deliver_all(tmp_path, "", {VERP_ATTR: "+="})
    assert [(s, sorted(r)) for s, r in requests] == [("", sorted(RCPTS))]


def test_verp_is_ignored_when_the_filter_refuses_the_delimiters(tmp_path):
    requests = deliver_all(tmp_path, "owner@example.com", {VERP_ATTR: "+x"})
    assert [(s, sorted(r)) for s, r in requests] == [("owner@example.com", sorted(RCPTS))]


def test_verp_sender_encodes_the_original_recipient(tmp_path):
    cfg = instance(tmp_path, "default_transport = discard\n")
    w = QueueFileWriter(cfg.get("queue_directory"), "incoming")
    rcpt = Recipient(address="member@mail.example", orig="alias@list.example")
    w.write_envelope("owner@example.com", [rcpt], {VERP_ATTR: "+="})
    w.write_content(b"Subject: x\n\nhi\n")
    qid = w.commit()
    path = os.path.join(queue_dir_for(cfg.get("queue_directory"), "incoming", qid), qid)
    m = read_queue_file(path)
    requests: list = []
    agent = recording_agent(cfg, requests)
    try:
        run_qmgr(cfg, until_gone(m))
    finally:
        agent.stop()
    assert requests == [("owner+alias=list.example@example.com", ["member@mail.example"])]


def notices(cfg, text: str, queue_id: str) -> list[tuple[str, list[str]]]:
    """(sender, recipients) of each sender non-delivery notice the maillog names for queue_id."""
    out = []
    for part in text.split(f"{queue_id}: sender non-delivery notification: ")[1:]:
        notice_id = part.split()[0]
        d = queue_dir_for(cfg.get("queue_directory"), "incoming", notice_id)
        n = read_queue_file(os.path.join(d, notice_id))
        out.append((n.sender, [r.address for r in n.recipients]))
    return sorted(out)


def bounce_all(tmp_path, main_cf: str):
    cfg = instance(tmp_path, "default_transport = error:5.1.1 no such user\n" + main_cf)
    m = queue_message(
        cfg,
        ["a@one.example", "b@two.example"],
        sender="owner@example.com",
        queue="incoming",
        attrs={VERP_ATTR: "+="},
    )
    with agents(cfg, "error"):
        run_qmgr(cfg, until_gone(m))
    return notices(cfg, (tmp_path / "maillog").read_text(), m.queue_id)


def test_verp_bounces_go_one_per_recipient_to_its_verp_address(tmp_path):
    assert bounce_all(tmp_path, "") == [
        ("", ["owner+a=one.example@example.com"]),
        ("", ["owner+b=two.example@example.com"]),
    ]


def test_disable_verp_bounces_sends_one_notice_to_the_sender(tmp_path):
    assert bounce_all(tmp_path, "disable_verp_bounces = yes\n") == [("", ["owner@example.com"])]
