"""qmgr and the bulk-sender outcomes: bounce classes in the maillog, the notice and
the event log; hard bounces learned into the suppression list; suppressed
recipients dropped at activation. Real agents on real sockets, real queue files,
a real LMDB list."""

from __future__ import annotations

import json
import os

from mta.bounce import logfile
from mta.common.suppress import open_suppression
from tests.support.agent import queue_message
from tests.unit.qmgr.test_manager import (
    agents,
    files,
    instance,
    run_qmgr,
    sender_notice,
    until_gone,
)


def settings(tmp_path, transports: str) -> str:
    return (
        f"suppression_map = lmdb:{tmp_path}/data/suppression\n"
        f"event_log_file = {tmp_path}/events.jsonl\n" + transports
    )


def events(tmp_path) -> list[dict]:
    path = tmp_path / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_hard_bounce_is_classified_logged_and_suppressed(tmp_path):
    cfg = instance(
        tmp_path,
        settings(
            tmp_path,
            "transport_maps = inline:{ {gone.example=error:5.1.1 no such user here},"
            " ok.example=discard:taken }\n",
        ),
    )
    m = queue_message(
        cfg,
        ["nobody@gone.example", "fine@ok.example"],
        sender="news@shop.example",
        queue="incoming",
        attrs={"message_id": "<m1@shop.example>"},
    )
    with agents(cfg, "error", "discard"):
        run_qmgr(cfg, until_gone(m))
    maillog = (tmp_path / "maillog").read_text()
    line = next(x for x in maillog.splitlines() if "to=<nobody@gone.example>" in x)
    assert "status=bounced (no such user here) class=invalid_mailbox" in line
    assert "nobody@gone.example>, suppressed from now on (invalid_mailbox, global)" in maillog
    _, notice = sender_notice(cfg, maillog, m.queue_id)
    assert b"X-Bounce-Class: invalid_mailbox" in notice
    entry = open_suppression(cfg).check("nobody@gone.example", "other@else.example")
    assert (entry.klass, entry.source, entry.queue_id) == ("invalid_mailbox", "bounce", m.queue_id)
    evs = {e["recipient"]: e for e in events(tmp_path)}
    assert evs["nobody@gone.example"]["event"] == "bounced"
    assert evs["nobody@gone.example"]["class"] == "invalid_mailbox"
    assert evs["nobody@gone.example"]["dsn"] == "5.1.1"
    assert evs["nobody@gone.example"]["site"] == "gone.example"
    assert evs["nobody@gone.example"]["transport"] == "error"
    ok = evs["fine@ok.example"]
    assert (ok["event"], ok["class"], ok["queue_id"]) == ("delivered", "", m.queue_id)
    assert ok["message_id"] == "<m1@shop.example>" and ok["sender"] == "news@shop.example"
    assert len(ok["delays"]) == 4 and ok["time"].endswith("Z")


def test_suppressed_recipient_is_dropped_without_a_notice(tmp_path):
    cfg = instance(tmp_path, settings(tmp_path, "default_transport = discard:taken\n"))
    open_suppression(cfg).add("dead@x.example", klass="invalid_mailbox", source="manual")
    m = queue_message(cfg, ["dead@x.example", "live@x.example"], queue="incoming")
    with agents(cfg, "discard"):
        run_qmgr(cfg, until_gone(m))
    maillog = (tmp_path / "maillog").read_text()
    line = next(x for x in maillog.splitlines() if "to=<dead@x.example>" in x)
    assert "dsn=5.7.1, status=suppressed (recipient is on the suppression list" in line
    assert "to=<live@x.example>" in maillog and "status=sent" in maillog
    assert "non-delivery notification" not in maillog
    kinds = {e["recipient"]: e["event"] for e in events(tmp_path)}
    assert kinds == {"dead@x.example": "suppressed", "live@x.example": "delivered"}


def test_all_recipients_suppressed_message_is_removed(tmp_path):
    cfg = instance(tmp_path, settings(tmp_path, "default_transport = discard:taken\n"))
    open_suppression(cfg).add("dead@x.example")
    m = queue_message(cfg, ["dead@x.example"], queue="incoming")
    with agents(cfg, "discard"):
        run_qmgr(cfg, until_gone(m))
    assert not files(cfg, "deferred") and not os.path.exists(m.path)


def test_deferral_is_classified_and_not_suppressed(tmp_path):
    cfg = instance(
        tmp_path,
        settings(
            tmp_path,
            "default_transport = retry:4.7.0 [TSS04] Messages temporarily deferred due to"
            " unexpected volume\nminimal_backoff_time = 100s\n",
        ),
    )
    m = queue_message(cfg, ["u@yahoo.example"], queue="incoming")
    with agents(cfg, "retry"):
        run_qmgr(cfg, lambda qm: files(cfg, "deferred") and not qm.active)
    maillog = (tmp_path / "maillog").read_text()
    assert "class=rate_limited" in maillog
    (st,) = logfile.read(cfg.get("queue_directory"), "defer", m.queue_id)
    assert st.klass == "rate_limited"
    (ev,) = events(tmp_path)
    assert (ev["event"], ev["class"]) == ("deferred", "rate_limited")
    assert open_suppression(cfg).check("u@yahoo.example") is None
