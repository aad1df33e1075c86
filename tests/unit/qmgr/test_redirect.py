"""qmgr acts on REDIRECT: the redirect address replaces every recipient."""

from __future__ import annotations

import os

from mta.config import load_config
from mta.qmgr.redirect import Routing
from mta.queue.queue_file import QueueFileWriter, Recipient, read_queue_file
from tests.support.instance import make_instance
from tests.unit.qmgr.test_manager import agents, instance, run_qmgr, sender_notice, until_gone


def queue_redirected(cfg, redirect: str, queue: str = "incoming"):
    w = QueueFileWriter(cfg.get("queue_directory"), queue)
    w.write_envelope(
        "writer@origin.example",
        [
            Recipient("a@one.example", orig="A@One.Example", dsn_orcpt="rfc822;A@One.Example"),
            Recipient("b@two.example"),
        ],
        {"redirect": redirect},
    )
    w.write_content(b"Subject: s\n\nbody\n")
    qid = w.commit()
    return read_queue_file(os.path.join(cfg.get("queue_directory"), queue, qid))


def test_redirect_target_replaces_all_recipients_and_keeps_the_original(tmp_path):
    cfg = load_config(str(make_instance(tmp_path, "myorigin = origin.example\n")))
    msg = queue_redirected(cfg, "trap", queue="active")
    (r,) = Routing(cfg).recipients(msg, [r for r in msg.recipients if not r.done])
    assert r.address == "trap@origin.example"  # made canonical
    assert (r.offset, r.orig, r.dsn_orcpt) == (
        msg.recipients[0].offset,
        "A@One.Example",
        "rfc822;A@One.Example",
    )


def test_no_redirect_keeps_the_recipients(tmp_path):
    cfg = load_config(str(make_instance(tmp_path)))
    msg = queue_redirected(cfg, "", queue="active")
    got = Routing(cfg).recipients(msg, msg.recipients)
    assert [r.address for r in got] == ["a@one.example", "b@two.example"]


def test_bounced_redirect_notice_names_the_target_and_the_original_recipient(tmp_path):
    cfg = instance(
        tmp_path,
        "transport_maps = inline:{ {trap.example=error:5.1.1 no such trap} }\n"
        "default_transport = error:5.3.0 should not be tried\n",
    )
    m = queue_redirected(cfg, "t@trap.example")
    with agents(cfg, "error"):
        run_qmgr(cfg, until_gone(m))
    text = (tmp_path / "maillog").read_text()
    assert f"{m.queue_id}: to=<t@trap.example>, orig_to=<A@One.Example>" in text
    assert "should not be tried" not in text
    assert f"{m.queue_id}: removed" in text
    _, body = sender_notice(cfg, text, m.queue_id)
    assert b"Final-Recipient: rfc822; t@trap.example" in body
    assert b"Original-Recipient: rfc822; A@One.Example" in body
    assert b"two.example" not in body


def test_redirect_already_delivered_is_not_delivered_again(tmp_path):
    """A crash after the redirect target's done mark and before removal: no second copy."""
    from mta.queue.queue_file import mark_done

    cfg = instance(tmp_path, "default_transport = error:5.3.0 should not be tried\n")
    m = queue_redirected(cfg, "t@trap.example")
    mark_done(m.path, [m.recipients[0].offset])
    with agents(cfg, "error"):
        run_qmgr(cfg, until_gone(m))
    text = (tmp_path / "maillog").read_text()
    assert f"{m.queue_id}: removed" in text
    assert "to=<" not in text


def test_expired_redirected_message_bounces_the_redirect_target_only(tmp_path):
    import time

    cfg = instance(
        tmp_path,
        "default_transport = error:5.3.0 should not be tried\nmaximal_queue_lifetime = 1s\n",
    )
    m = queue_redirected(cfg, "t@trap.example")
    time.sleep(1.2)
    run_qmgr(cfg, until_gone(m))
    text = (tmp_path / "maillog").read_text()
    assert f"{m.queue_id}: from=<writer@origin.example>, status=expired" in text
    _, body = sender_notice(cfg, text, m.queue_id)
    assert body.count(b"Final-Recipient:") == 1
    assert b"Final-Recipient: rfc822; t@trap.example" in body
