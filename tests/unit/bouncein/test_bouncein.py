"""bouncein: reports in real queue files, delivered by the real request handler over
a real socket; the suppression list is a real LMDB file, the event log a real file.
The last tests run qmgr with the agent, to see a non-report come back to its sender."""

from __future__ import annotations

import json

from mta.bounce import logfile
from mta.bouncein import deliver as bouncein_deliver
from mta.common.suppress import open_suppression
from mta.config import load_config
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.instance import make_instance
from tests.unit.common.test_report_parse import BIG_DSN, arf_bytes, dsn_bytes
from tests.unit.qmgr.test_manager import (
    instance,
    run_qmgr,
    sender_notice,
    serve_agent,
    until_gone,
)

BOUNCE = "bounces@shop.example"


def verp(rcpt: str) -> str:
    user, _, domain = rcpt.partition("@")
    return f"bounces+{user}={domain}@shop.example"


def setup(tmp_path, extra: str = "", suppression: bool = True):
    main = f"event_log_file = {tmp_path}/events.jsonl\n" + extra
    if suppression:
        main = f"suppression_map = lmdb:{tmp_path}/data/suppression\n" + main
    return load_config(str(make_instance(tmp_path, main)))


def handle(cfg, tmp_path, content: bytes, to: str = BOUNCE, sender: str = ""):
    """Queue content from sender to the bounce address to; deliver it with bouncein."""
    msg = queue_message(cfg, [to], sender=sender, body=content)
    result = run_agent(bouncein_deliver, cfg, request_for(msg, "", "bouncein"), tmp_path)
    (st,) = result.statuses
    return msg, st


def events(tmp_path) -> list[dict]:
    path = tmp_path / "events.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def entry(cfg, address: str, sender: str = "x@elsewhere.example"):
    return open_suppression(cfg).check(address, sender)


def failed(final: str, status: str = "5.1.1", diag: str = "550 5.1.1 User unknown", **kw):
    return {"final": final, "action": "failed", "status": status, "diag": diag, **kw}


# ---- DSNs
def test_failed_recipient_is_learned_and_logged(tmp_path):
    cfg = setup(tmp_path)
    content = dsn_bytes(
        [failed("dead@far.example", mta="mx.far.example")], Message_ID="<n1@shop.example>"
    )
    msg, st = handle(cfg, tmp_path, content)
    assert (st.action, st.dsn, st.relay) == ("delivered", "2.0.0", "bouncein")
    assert st.reason == "DSN: 1 failed recipient learned (1 suppressed)"
    e = entry(cfg, "dead@far.example")
    assert (e.klass, e.source, e.queue_id, e.scope) == (
        "invalid_mailbox",
        "bounce",
        msg.queue_id,
        "",
    )
    maillog = (tmp_path / "maillog").read_text()
    assert (
        f"{msg.queue_id}: to=<dead@far.example>, suppressed from now on (invalid_mailbox, global)"
        in maillog
    )
    assert "relay=bouncein" in maillog and "status=sent (DSN: 1 failed" in maillog
    (ev,) = events(tmp_path)
    assert list(ev)[:6] == ["event", "time", "queue_id", "message_id", "sender", "recipient"]
    assert (ev["event"], ev["recipient"], ev["class"], ev["dsn"]) == (
        "bounced",
        "dead@far.example",
        "invalid_mailbox",
        "5.1.1",
    )
    assert (ev["queue_id"], ev["message_id"], ev["sender"]) == (
        msg.queue_id,
        "<n1@shop.example>",
        BOUNCE,
    )
    assert (ev["site"], ev["relay"], ev["transport"], ev["reply"]) == (
        "far.example",
        "mx.far.example",
        "bouncein",
        "550 5.1.1 User unknown",
    )


def test_event_has_the_keys_of_a_delivery_event(tmp_path):
    from mta.common.events import KEYS

    cfg = setup(tmp_path)
    handle(cfg, tmp_path, dsn_bytes([failed("dead@far.example")]))
    (ev,) = events(tmp_path)
    assert tuple(ev) == KEYS


def test_delayed_recipient_is_a_deferred_event_only(tmp_path):
    cfg = setup(tmp_path)
    rcpts = [
        {"final": "slow@far.example", "action": "delayed", "status": "4.2.2", "diag": "full"},
        {"final": "ok@far.example", "action": "delivered", "status": "2.0.0"},
    ]
    _, st = handle(cfg, tmp_path, dsn_bytes(rcpts))
    assert st.reason == "DSN: 1 delayed"
    assert entry(cfg, "slow@far.example") is None
    assert [(e["event"], e["recipient"], e["class"]) for e in events(tmp_path)] == [
        ("deferred", "slow@far.example", "mailbox_full")
    ]


def test_failure_of_a_class_that_does_not_suppress_is_an_event_only(tmp_path):
    cfg = setup(tmp_path)
    _, st = handle(cfg, tmp_path, dsn_bytes([failed("full@far.example", "5.2.2", "mailbox full")]))
    assert st.reason == "DSN: 1 failed recipient learned"
    assert entry(cfg, "full@far.example") is None
    assert [(e["event"], e["class"]) for e in events(tmp_path)] == [("bounced", "mailbox_full")]


def test_original_recipient_is_preferred_without_verp(tmp_path):
    cfg = setup(tmp_path)
    content = dsn_bytes(
        [
            failed("user@mailhost.far.example", orig="User@far.example"),
            failed("other@far.example"),
        ]
    )
    _, st = handle(cfg, tmp_path, content)
    assert st.reason == "DSN: 2 failed recipients learned (2 suppressed)"
    assert entry(cfg, "user@far.example") is not None
    assert entry(cfg, "user@mailhost.far.example") is None
    assert entry(cfg, "other@far.example") is not None
    assert [(e["recipient"], e["orig_recipient"]) for e in events(tmp_path)] == [
        ("User@far.example", ""),
        ("other@far.example", ""),
    ]


def test_verp_address_wins_over_a_forwarded_final_recipient(tmp_path):
    cfg = setup(tmp_path)
    content = dsn_bytes([failed("forward.target@mail.example")])
    _, st = handle(cfg, tmp_path, content, to=verp("user@far.example"))
    assert st.reason == "DSN: 1 failed recipient learned (1 suppressed)"
    assert entry(cfg, "user@far.example") is not None
    assert entry(cfg, "forward.target@mail.example") is None
    (ev,) = events(tmp_path)
    assert (ev["recipient"], ev["sender"]) == ("user@far.example", verp("user@far.example"))


def test_verp_with_several_blocks_takes_the_one_that_names_it(tmp_path):
    cfg = setup(tmp_path)
    content = dsn_bytes(
        [failed("member@far.example"), failed("list@far.example", orig="List@Far.example")]
    )
    handle(cfg, tmp_path, content, to=verp("list@far.example"))
    assert [e["recipient"] for e in events(tmp_path)] == ["member@far.example", "list@far.example"]
    assert entry(cfg, "list@far.example") and entry(cfg, "member@far.example")


def test_sender_domain_scope_is_the_bounce_address_domain(tmp_path):
    cfg = setup(tmp_path, "suppression_scope = sender_domain\n")
    handle(cfg, tmp_path, dsn_bytes([failed("dead@far.example")]), to=verp("dead@far.example"))
    assert entry(cfg, "dead@far.example", "news@shop.example").scope == "shop.example"
    assert entry(cfg, "dead@far.example", "news@other.example") is None
    maillog = (tmp_path / "maillog").read_text()
    assert "suppressed from now on (invalid_mailbox, for shop.example)" in maillog


def test_without_a_suppression_list_events_are_still_written(tmp_path):
    cfg = setup(tmp_path, suppression=False)
    _, st = handle(cfg, tmp_path, dsn_bytes([failed("dead@far.example")]))
    assert st.reason == "DSN: 1 failed recipient learned"
    assert [e["event"] for e in events(tmp_path)] == ["bounced"]


def test_ten_megabyte_dsn_is_handled_within_the_size_limit(tmp_path):
    cfg = setup(tmp_path, "bouncein_report_size_limit = 65536\n")
    content = BIG_DSN % ((b"x" * 998 + b"\n") * 10_100)
    _, st = handle(cfg, tmp_path, content)
    assert st.reason == "DSN: 1 failed recipient learned"
    (ev,) = events(tmp_path)
    assert (ev["recipient"], ev["class"], ev["message_id"]) == (
        "big@x.example",
        "mailbox_full",
        "<big@shop.example>",
    )


# ---- feedback reports
def arf(kind: str = "abuse", rcpt_to: list[str] = (), mail_from: str = "", original=None):
    pairs = [("Feedback-Type", kind), ("User-Agent", "FBL/1"), ("Version", "1")]
    if mail_from:
        pairs.append(("Original-Mail-From", f"<{mail_from}>"))
    pairs += [("Original-Rcpt-To", f"<{a}>") for a in rcpt_to]
    pairs += [("Reporting-MTA", "dns; fbl.isp.example"), ("Source-IP", "192.0.2.9")]
    return arf_bytes(pairs, original)


def test_complaint_is_learned_forever(tmp_path):
    cfg = setup(tmp_path)
    msg, st = handle(cfg, tmp_path, arf(rcpt_to=["c@isp.example"]))
    assert st.reason == "ARF abuse: complaint learned for c@isp.example (1 suppressed)"
    e = entry(cfg, "c@isp.example")
    assert (e.klass, e.source, e.expires, e.queue_id) == ("complaint", "feedback", 0, msg.queue_id)
    assert (
        "to=<c@isp.example>, suppressed from now on (complaint, global)"
        in (tmp_path / "maillog").read_text()
    )
    (ev,) = events(tmp_path)
    assert (ev["event"], ev["class"], ev["dsn"], ev["recipient"]) == (
        "feedback",
        "complaint",
        "",
        "c@isp.example",
    )
    assert ev["reply"] == (
        "Feedback-Type: abuse; Reporting-MTA: fbl.isp.example; Source-IP: 192.0.2.9"
    )


def test_complaint_verp_envelope_wins_over_original_rcpt_to(tmp_path):
    cfg = setup(tmp_path)
    handle(cfg, tmp_path, arf(rcpt_to=["fwd@isp.example"]), to=verp("c@shop-list.example"))
    assert entry(cfg, "c@shop-list.example") is not None
    assert entry(cfg, "fwd@isp.example") is None


def test_complaint_recipient_from_original_mail_from(tmp_path):
    cfg = setup(tmp_path)
    handle(cfg, tmp_path, arf(mail_from=verp("c@isp.example")))
    assert entry(cfg, "c@isp.example") is not None


def test_complaint_recipient_from_the_reported_message(tmp_path):
    cfg = setup(tmp_path)
    original = b"Return-Path: <news@shop.example>\nTo: C <c@isp.example>\nSubject: s\n\nbody\n"
    handle(cfg, tmp_path, arf(original=original))
    assert entry(cfg, "c@isp.example") is not None
    original = b"Return-Path: <" + verp("d@isp.example").encode() + b">\nTo: x@y.example\n\nb\n"
    handle(cfg, tmp_path, arf(original=original))
    assert entry(cfg, "d@isp.example") is not None
    assert entry(cfg, "x@y.example") is None


def test_complaint_without_a_recipient_is_logged_and_consumed(tmp_path):
    cfg = setup(tmp_path)
    msg, st = handle(cfg, tmp_path, arf())
    assert (st.action, st.reason) == ("delivered", "ARF abuse: feedback report without a recipient")
    assert (
        f"{msg.queue_id}: feedback report without a recipient" in (tmp_path / "maillog").read_text()
    )
    assert events(tmp_path) == []


def test_not_spam_report_learns_nothing(tmp_path):
    cfg = setup(tmp_path)
    _, st = handle(cfg, tmp_path, arf("not-spam", rcpt_to=["c@isp.example"]))
    assert st.reason == "ARF not-spam: not a complaint, nothing learned"
    assert entry(cfg, "c@isp.example") is None and events(tmp_path) == []


# ---- what is not a report, and failures
def test_garbage_is_bounced_with_5_6_0(tmp_path):
    cfg = setup(tmp_path)
    msg, st = handle(cfg, tmp_path, b"Subject: hi\n\njust some mail\n", sender="u@x.example")
    assert (st.action, st.dsn) == ("failed", "5.6.0")
    assert st.reason == "not a delivery status notification or feedback report"
    (logged,) = logfile.read(cfg.get("queue_directory"), "bounce", msg.queue_id)
    assert logged.dsn == "5.6.0"
    assert events(tmp_path) == []


def test_broken_suppression_list_defers(tmp_path):
    cfg = setup(tmp_path)
    (tmp_path / "data" / "suppression.lmdb").mkdir(mode=0)  # cannot be opened as a file
    _, st = handle(cfg, tmp_path, dsn_bytes([failed("dead@far.example")]))
    assert (st.action, st.dsn) == ("delayed", "4.3.0")
    assert st.reason.startswith("suppression list: ")
    assert events(tmp_path) == []  # written when the retry learns it


def test_not_a_report_goes_back_to_its_sender(tmp_path):
    cfg = instance(tmp_path, f"transport_maps = inline:{{ {BOUNCE}=bouncein: }}\n")
    m = queue_message(
        cfg, [BOUNCE], sender="someone@x.example", body=b"Subject: hi\n\nhello\n", queue="incoming"
    )
    agent = serve_agent(cfg, "bouncein", bouncein_deliver)
    try:
        run_qmgr(cfg, until_gone(m))
    finally:
        agent.stop()
    maillog = (tmp_path / "maillog").read_text()
    assert "dsn=5.6.0, status=bounced (not a delivery status notification" in maillog
    notice, content = sender_notice(cfg, maillog, m.queue_id)
    assert [r.address for r in notice.recipients] == ["someone@x.example"]
    assert b"Status: 5.6.0" in content and b"hello" in content
