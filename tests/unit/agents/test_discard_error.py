"""discard, error and retry agents through the real request protocol."""

from mta.bounce import logfile
from mta.config import load_config
from mta.discard import deliver as discard_deliver
from mta.error import make_deliver, split_reason
from mta.queue.queue_file import read_queue_file
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.instance import make_instance


def setup(tmp_path):
    cfg = load_config(str(make_instance(tmp_path)))
    msg = queue_message(cfg, ["x@one.example", "y@one.example"])
    return cfg, msg


def test_discard_reports_sent_and_marks_done(tmp_path):
    cfg, msg = setup(tmp_path)
    result = run_agent(discard_deliver, cfg, request_for(msg, "dropped by policy"), tmp_path)
    assert [st.action for st in result.statuses] == ["delivered", "delivered"]
    assert all(st.reason == "dropped by policy" for st in result.statuses)
    assert all(r.done for r in read_queue_file(msg.path).recipients)
    log = (tmp_path / "maillog").read_text()
    assert f"{msg.queue_id}: to=<x@one.example>, relay=none" in log
    assert "dsn=2.0.0, status=sent (dropped by policy)" in log


def test_error_bounces_with_code_from_nexthop(tmp_path):
    cfg, msg = setup(tmp_path)
    req = request_for(msg, "5.1.2 this domain is gone")
    result = run_agent(make_deliver(retry=False), cfg, req, tmp_path)
    assert [(st.action, st.dsn, st.reason) for st in result.statuses] == [
        ("failed", "5.1.2", "this domain is gone")
    ] * 2
    assert all(r.done for r in read_queue_file(msg.path).recipients)
    logged = logfile.read(cfg.get("queue_directory"), "bounce", msg.queue_id)
    assert [st.address for st in logged] == ["x@one.example", "y@one.example"]
    assert "status=bounced (this domain is gone)" in (tmp_path / "maillog").read_text()


def test_retry_defers_and_leaves_recipients_queued(tmp_path):
    cfg, msg = setup(tmp_path)
    result = run_agent(make_deliver(retry=True), cfg, request_for(msg, "try later"), tmp_path)
    assert [(st.action, st.dsn) for st in result.statuses] == [("delayed", "4.0.0")] * 2
    assert not any(r.done for r in read_queue_file(msg.path).recipients)
    logged = logfile.read(cfg.get("queue_directory"), "defer", msg.queue_id)
    assert [st.reason for st in logged] == ["try later", "try later"]


def test_missing_queue_file_defers_everything(tmp_path):
    cfg, msg = setup(tmp_path)
    import os

    os.unlink(msg.path)
    result = run_agent(discard_deliver, cfg, request_for(msg, "x"), tmp_path)
    assert [(st.action, st.dsn) for st in result.statuses] == [("delayed", "4.3.0")] * 2


def test_split_reason_keeps_only_codes_of_its_class():
    assert split_reason("5.7.1 go away", "5") == ("5.7.1", "go away")
    assert split_reason("4.7.1 go away", "5") == ("5.0.0", "4.7.1 go away")
    assert split_reason("", "4")[0] == "4.0.0"
