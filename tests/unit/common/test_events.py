"""The event log: one JSON line per event, shared appends, rotation; and mta log --json
from the event log or derived from the maillog."""

import json
import os

from mta.cli.main import run
from mta.common import events as events_mod
from mta.common.dsn import ACTION_DELIVERED, ACTION_FAILED, RecipientStatus, status_line
from mta.common.events import KEYS, EventLog, status_event
from mta.log.maillog_events import events_from_lines
from tests.support.instance import make_instance


def failed_status() -> RecipientStatus:
    st = RecipientStatus("u@gone.example", 7, ACTION_FAILED, "5.1.1", "host mx said: 550 nope")
    st.diag_text = '550 5.1.1 "no\nsuch" user\x00'
    st.klass, st.delays, st.source = "invalid_mailbox", (0.5, 0.01, 0.2, 0.1), "192.0.2.7"
    return st


def test_status_event_has_every_key_in_order():
    ev = status_event(
        failed_status(), "4Qid", "news@shop.example", "<m@x>", "gone.example", "smtp", 0.25
    )
    assert tuple(ev) == KEYS
    assert ev["event"] == "bounced" and ev["time"] == "1970-01-01T00:00:00.250Z"
    assert ev["reply"] == '550 5.1.1 "no\nsuch" user\x00' and ev["source"] == "192.0.2.7"
    assert ev["delays"] == [0.5, 0.01, 0.2, 0.1]


def test_each_event_is_one_line_and_rotation_is_followed(tmp_path, monkeypatch):
    monkeypatch.setattr(events_mod, "RECHECK", 0.0)
    path = tmp_path / "events.jsonl"
    log = EventLog(str(path))
    log.write(status_event(failed_status(), "Q1", "s@x", when=1.0))
    os.rename(path, tmp_path / "events.jsonl.1")  # logrotate
    log.write_many([status_event(failed_status(), q, "s@x", when=2.0) for q in ("Q2", "Q3")])
    old = (tmp_path / "events.jsonl.1").read_text().splitlines()
    new = path.read_text().splitlines()
    assert [json.loads(x)["queue_id"] for x in old] == ["Q1"]
    assert [json.loads(x)["queue_id"] for x in new] == ["Q2", "Q3"]
    assert json.loads(old[0])["reply"].endswith("user\x00")


def test_unwritable_event_log_is_skipped(tmp_path):
    log = EventLog(str(tmp_path / "no" / "such" / "dir" / "events.jsonl"))
    log.write({"event": "delivered"})  # no exception: events never hold mail up
    assert log.fd is None


MAILLOG = """\
Dec 03 09:00:00 mx mta/cleanup[10]: 4AbC12: message-id=<m1@shop.example>
Dec 03 09:00:00 mx mta/qmgr[11]: 4AbC12: from=<news@shop.example>, size=300, nrcpt=2 (queue active)
Dec 03 09:00:01 mx mta/smtp[12]: 4AbC12: to=<a@ok.example>, relay=mx.ok.example[192.0.2.1]:25, delay=1.2, delays=0.1/0.01/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as X)
Dec 03 09:00:01 mx postfix/smtp[13]: 4AbC12: to=<b@gone.example>, orig_to=<B@gone.example>, relay=mx.gone.example[192.0.2.2]:25, delay=1.2, delays=0.1/0.01/0.5/0.6, dsn=5.1.1, status=bounced (host mx.gone.example[192.0.2.2] said: 550 5.1.1 (no) user (in reply to RCPT TO command)) class=invalid_mailbox
Dec 03 09:00:02 mx mta/qmgr[11]: 4AbC12: removed
"""


def test_events_derived_from_the_maillog():
    evs = list(events_from_lines(MAILLOG.splitlines(True)))
    assert [e["event"] for e in evs] == ["delivered", "bounced"]
    assert all(tuple(e) == KEYS for e in evs)
    a, b = evs
    assert (a["sender"], a["message_id"], a["relay"]) == (
        "news@shop.example",
        "<m1@shop.example>",
        "mx.ok.example[192.0.2.1]:25",
    )
    assert a["delays"] == [0.1, 0.01, 0.5, 0.6] and a["class"] == ""
    assert b["class"] == "invalid_mailbox" and b["orig_recipient"] == "B@gone.example"
    assert (
        b["reply"]
        == "host mx.gone.example[192.0.2.2] said: 550 5.1.1 (no) user (in reply to RCPT TO command)"
    )


def test_status_line_round_trips_through_the_reader():
    line = (
        "Dec 03 09:00:01 mx mta/smtp[1]: 4Q: "
        + status_line("4Q", failed_status(), (0.5, 0.01, 0.2, 0.1)).partition(": ")[2]
    )
    (ev,) = events_from_lines([line])
    assert (ev["event"], ev["class"], ev["dsn"]) == ("bounced", "invalid_mailbox", "5.1.1")


def test_mta_log_json_prefers_the_event_log(tmp_path, capsys):
    cdir = make_instance(tmp_path, f"event_log_file = {tmp_path}/events.jsonl\n")
    (tmp_path / "maillog").write_text(MAILLOG)
    assert run(["-c", str(cdir), "log", "--json"]) == 0  # no event log yet: from the maillog
    assert [json.loads(x)["event"] for x in capsys.readouterr().out.splitlines()] == [
        "delivered",
        "bounced",
    ]
    st = RecipientStatus("c@x.example", 1, ACTION_DELIVERED, "2.0.0", "250 ok")
    EventLog(str(tmp_path / "events.jsonl")).write(status_event(st, "Q9", "s@x"))
    assert run(["-c", str(cdir), "log", "--json", "--tail", "1"]) == 0
    (row,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert (row["queue_id"], row["event"]) == ("Q9", "delivered")
