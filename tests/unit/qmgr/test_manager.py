"""qmgr against real agents on real sockets, with real queue files."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import pytest

from mta import log
from mta.bounce import logfile
from mta.common.deliver_agent import handle_request
from mta.common.dsn import RecipientStatus
from mta.config import load_config
from mta.discard import deliver as discard_deliver
from mta.error import make_deliver
from mta.master.preload import preload_deferred_imports
from mta.qmgr.manager import QueueManager
from mta.qmgr.scan import iter_queue
from mta.queue.queue_file import iter_content, read_queue_file
from tests.support.agent import queue_message
from tests.support.instance import make_instance
from tests.support.unix_server import HandlerServer

MASTER_CF = (
    "qmgr fifo n - n 300 1 qmgr\n"
    "discard unix - - n - - discard\n"
    "retry unix - - n - - error\n"
    "error unix - - n - - error\n"
)


def serve_agent(cfg, name: str, deliver_fn) -> HandlerServer:
    path = os.path.join(cfg.get("queue_directory"), "private", name)

    async def handler(reader, writer, ctx):
        try:
            await handle_request(reader, writer, ctx, deliver_fn)
        finally:
            writer.close()

    return HandlerServer(path, handler, cfg)


AGENTS = {
    "retry": make_deliver(retry=True),
    "error": make_deliver(retry=False),
    "discard": discard_deliver,
}


@contextmanager
def agents(cfg, *names: str):
    """The named agents of AGENTS on their sockets while the block runs."""
    servers = [serve_agent(cfg, name, AGENTS[name]) for name in names]
    try:
        yield
    finally:
        for server in servers:
            server.stop()


def instance(tmp_path: Path, main_cf: str):
    cfg = load_config(str(make_instance(tmp_path, main_cf, MASTER_CF)))
    log.init("qmgr", cfg)
    return cfg


def run_qmgr(cfg, until, timeout: float = 10.0, setup=None) -> QueueManager:
    """Run a QueueManager (after setup(qm), if given) until until(qm) is true; return it."""

    async def main():
        qm = QueueManager(cfg)
        if setup is not None:
            setup(qm)
        task = asyncio.create_task(qm.run())
        deadline = time.monotonic() + timeout
        while not until(qm) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        qm.stop()
        await task
        return qm

    return asyncio.run(main())


def until_gone(m):
    """run_qmgr's until: m's queue file is gone and nothing is left in the active set."""
    return lambda qm: not os.path.exists(m.path) and not qm.active


def sender_notice(cfg, maillog: str, queue_id: str):
    """The non-delivery notice the maillog says was sent for queue_id, and its content."""
    notice_id = maillog.split(f"{queue_id}: sender non-delivery notification: ")[1].split()[0]
    notice = read_queue_file(os.path.join(cfg.get("queue_directory"), "incoming", notice_id))
    return notice, b"\n".join(iter_content(notice.path, notice))


def files(cfg, queue: str) -> list[str]:
    return [q for q, _ in iter_queue(cfg.get("queue_directory"), queue, 1, ("deferred", "defer"))]


def test_delivered_message_is_removed(tmp_path):
    cfg = instance(tmp_path, "default_transport = discard:thrown away\n")
    msgs = [queue_message(cfg, [f"u{i}@remote.example"], queue="incoming") for i in range(3)]
    agent = serve_agent(cfg, "discard", discard_deliver)
    try:
        run_qmgr(
            cfg,
            lambda qm: not files(cfg, "incoming") and not files(cfg, "active") and not qm.active,
        )
    finally:
        agent.stop()
    log_text = (tmp_path / "maillog").read_text()
    for m in msgs:
        assert f"{m.queue_id}: from=<a@example.org>, size=" in log_text
        assert f"{m.queue_id}: to=<" in log_text
        assert f"{m.queue_id}: removed" in log_text
        assert not os.path.exists(m.path)
    assert "status=sent (thrown away)" in log_text


def test_temporary_failure_defers_with_back_off(tmp_path):
    cfg = instance(
        tmp_path, "default_transport = retry:4.4.4 try later\nminimal_backoff_time = 100s\n"
    )
    m = queue_message(cfg, ["u@remote.example"], queue="incoming")
    agent = serve_agent(cfg, "retry", make_deliver(retry=True))
    start = time.time()
    try:
        run_qmgr(cfg, lambda qm: bool(files(cfg, "deferred")))
    finally:
        agent.stop()
    assert files(cfg, "deferred") == [m.queue_id]
    path = next(p for q, p in iter_queue(cfg.get("queue_directory"), "deferred", 1, ("deferred",)))
    assert os.stat(path).st_mtime >= start + 100  # not due before minimal_backoff_time
    reasons = logfile.read(cfg.get("queue_directory"), "defer", m.queue_id)
    assert [(r.dsn, r.reason) for r in reasons] == [("4.4.4", "try later")]
    assert "status=deferred (try later)" in (tmp_path / "maillog").read_text()


def test_deferral_adds_the_message_to_the_flush_log_of_eligible_sites(tmp_path):
    from mta.flush import log_name

    cfg = instance(
        tmp_path,
        "transport_maps = inline:{ {later.example=retry:4.4.4 busy},"
        " {other.example=retry:4.4.4 busy}, ok.example=discard:taken }\n"
        "fast_flush_domains = later.example, ok.example\n",
    )
    m = queue_message(cfg, ["u@later.example", "v@other.example", "w@ok.example"], "incoming")
    m2 = queue_message(cfg, ["x@LATER.example"], queue="incoming")
    with agents(cfg, "retry", "discard"):
        run_qmgr(cfg, lambda qm: len(files(cfg, "deferred")) == 2 and not qm.active)
    fdir = Path(cfg.get("queue_directory")) / "flush"
    assert os.listdir(fdir) == [log_name("later.example")]  # ok.example was delivered
    assert sorted((fdir / "later.example").read_text().split()) == sorted([m.queue_id, m2.queue_id])


def test_stale_flush_log_is_refreshed_by_qmgr_and_its_mail_delivered(tmp_path):
    from mta.flush import FlushLogs, log_name

    cfg = instance(
        tmp_path, "default_transport = discard:flushed\nfast_flush_domains = later.example\n"
    )
    m = queue_message(cfg, ["u@later.example"], queue="deferred")
    os.utime(m.path, (time.time(), time.time() + 3600))  # not due for an hour
    FlushLogs(cfg).add(m.queue_id, ["u@later.example"])
    flog = Path(cfg.get("queue_directory")) / "flush" / log_name("later.example")
    os.utime(flog, (time.time() - 13 * 3600, time.time()))  # unread for 13h

    def setup(qm):
        qm.flush_refresh_every = 0.0

    agent = serve_agent(cfg, "discard", discard_deliver)
    try:
        run_qmgr(cfg, lambda qm: not files(cfg, "deferred") and not qm.active, setup=setup)
    finally:
        agent.stop()
    text = (tmp_path / "maillog").read_text()
    assert f"{m.queue_id}: removed" in text
    assert "fast flush logs: 1 refreshed, 0 purged, 1 messages due" in text


def test_deferred_message_is_retried_when_due(tmp_path):
    cfg = instance(tmp_path, "default_transport = discard:second try\n")
    m = queue_message(cfg, ["u@remote.example"], queue="deferred")
    os.utime(m.path, (time.time(), time.time() - 1))  # due
    later = queue_message(cfg, ["v@remote.example"], queue="deferred")
    os.utime(later.path, (time.time(), time.time() + 3600))  # not yet
    agent = serve_agent(cfg, "discard", discard_deliver)
    try:
        run_qmgr(cfg, lambda qm: m.queue_id not in files(cfg, "deferred") and not qm.active)
    finally:
        agent.stop()
    assert files(cfg, "deferred") == [later.queue_id]
    assert f"{m.queue_id}: removed" in (tmp_path / "maillog").read_text()


def test_unreachable_transport_defers_and_suspends_destination(tmp_path):
    cfg = instance(tmp_path, "default_transport = smtp\n")  # nobody serves private/smtp
    msgs = [queue_message(cfg, [f"u{i}@down.example"], queue="incoming") for i in range(8)]
    qm = run_qmgr(cfg, lambda qm: len(files(cfg, "deferred")) == len(msgs))
    assert sorted(files(cfg, "deferred")) == sorted(m.queue_id for m in msgs)
    text = (tmp_path / "maillog").read_text()
    assert "status=deferred (mail transport unavailable)" in text
    # after one pseudo-cohort of failures the rest wait without being tried
    assert "delivery temporarily suspended" in text
    d = qm.sched.find("smtp", "down.example")
    assert d is not None and d.is_dead()


def test_active_queue_is_recovered_at_start(tmp_path):
    cfg = instance(tmp_path, "default_transport = discard:again\n")
    m = queue_message(cfg, ["u@remote.example"], queue="active")
    agent = serve_agent(cfg, "discard", discard_deliver)
    try:
        run_qmgr(
            cfg,
            lambda qm: not os.path.exists(m.path) and not qm.active and not files(cfg, "incoming"),
        )
    finally:
        agent.stop()
    assert f"{m.queue_id}: removed" in (tmp_path / "maillog").read_text()


def test_damaged_file_goes_to_corrupt(tmp_path):
    cfg = instance(tmp_path, "default_transport = discard\n")
    bad = Path(cfg.get("queue_directory")) / "incoming" / "5BRk4K3ZBvzvRh"
    bad.write_bytes(b"garbage")
    run_qmgr(cfg, lambda qm: not bad.exists())
    assert (Path(cfg.get("queue_directory")) / "corrupt" / bad.name).exists()


def test_active_window_is_bounded(tmp_path):
    cfg = instance(tmp_path, "default_transport = smtp\nqmgr_message_active_limit = 3\n")
    for i in range(6):
        queue_message(cfg, [f"u{i}@x.example"], queue="incoming")
    seen = []

    def until(qm):
        seen.append(len(qm.active))
        return len(files(cfg, "deferred")) == 6

    run_qmgr(cfg, until)
    assert max(seen) <= 3
    assert len(files(cfg, "deferred")) == 6


def test_scan_paused_by_the_window_goes_on_without_listing_again(tmp_path):
    # a backlog bigger than the active window is read in one walk of its
    # directory: the scan pauses when the window fills and resumes where
    # it stopped, so no file is skipped and none is listed twice
    cfg = instance(tmp_path, "default_transport = smtp\nqmgr_message_active_limit = 3\n")
    msgs = [queue_message(cfg, [f"u{i}@x.example"], queue="incoming") for i in range(12)]
    walks = []

    def setup(qm):
        plain = qm._iter

        def counted(queue):
            walks.append(queue)
            return plain(queue)

        qm._iter = counted

    run_qmgr(cfg, lambda qm: len(files(cfg, "deferred")) == 12, setup=setup)
    assert sorted(files(cfg, "deferred")) == sorted(m.queue_id for m in msgs)
    assert walks.count("incoming") == 1


def test_bounce_sends_a_notice_and_removes_the_message(tmp_path):
    cfg = instance(tmp_path, "default_transport = error:5.1.2 domain is gone\n")
    m = queue_message(cfg, ["u@gone.example"], sender="writer@origin.example", queue="incoming")
    with agents(cfg, "error"):
        run_qmgr(cfg, until_gone(m))
    text = (tmp_path / "maillog").read_text()
    assert "dsn=5.1.2, status=bounced (domain is gone)" in text
    assert f"{m.queue_id}: sender non-delivery notification: " in text
    assert f"{m.queue_id}: removed" in text
    notice, body = sender_notice(cfg, text, m.queue_id)
    assert notice.sender == ""  # notices go out with the null sender
    assert [r.address for r in notice.recipients] == ["writer@origin.example"]
    assert b"report-type=delivery-status" in body
    assert b"Final-Recipient: rfc822; u@gone.example" in body
    assert not logfile.read(cfg.get("queue_directory"), "bounce", m.queue_id)


def test_expired_message_bounces_with_its_last_reason(tmp_path):
    cfg = instance(
        tmp_path, "default_transport = retry:4.4.1 no answer\nmaximal_queue_lifetime = 1s\n"
    )
    m = queue_message(cfg, ["u@slow.example"], sender="writer@origin.example", queue="incoming")
    time.sleep(1.2)
    with agents(cfg, "retry"):
        run_qmgr(cfg, until_gone(m))
    text = (tmp_path / "maillog").read_text()
    assert f"{m.queue_id}: from=<writer@origin.example>, status=expired, returned to sender" in text
    assert f"{m.queue_id}: sender non-delivery notification: " in text


def test_refusing_destination_is_suspended_after_a_cohort(tmp_path):
    """The real smtp client against a port that refuses connections: the first
    window of deliveries fails, the destination is marked dead and the rest of
    its mail is deferred without being tried."""
    from mta.smtp import deliver as smtp_deliver
    from tests.support.running import free_port

    closed = free_port()  # nothing listens here
    cfg = instance(
        tmp_path,
        f"relayhost = [127.0.0.1]:{closed}\ninitial_destination_concurrency = 2\n",
    )
    msgs = [queue_message(cfg, [f"u{i}@far.example"], queue="incoming") for i in range(10)]
    agent = serve_agent(cfg, "smtp", smtp_deliver)
    try:
        qm = run_qmgr(cfg, lambda qm: len(files(cfg, "deferred")) == len(msgs))
    finally:
        agent.stop()
    text = (tmp_path / "maillog").read_text()
    tried = text.count(f"relay=127.0.0.1[127.0.0.1]:{closed}")
    suspended = text.count("status=deferred (delivery temporarily suspended: connect to")
    assert tried >= 1 and suspended >= 1
    assert tried + suspended == len(msgs)
    assert tried <= 4  # one pseudo-cohort (window 2), not every message
    d = qm.sched.find("smtp", f"[127.0.0.1]:{closed}")
    assert d is not None and d.is_dead()


def test_delivery_starts_before_a_large_incoming_queue_is_all_read(tmp_path, monkeypatch):
    monkeypatch.setattr("mta.qmgr.manager.SCAN_CHUNK", 4)
    cfg = instance(tmp_path, "default_transport = discard:thrown away\n")
    msgs = [queue_message(cfg, [f"u{i}@remote.example"], queue="incoming") for i in range(12)]
    left_at_first_request = []

    def setup(qm):
        qm.on_use = lambda: left_at_first_request.append(len(files(cfg, "incoming")))

    with agents(cfg, "discard"):
        run_qmgr(cfg, lambda qm: not files(cfg, "incoming") and not qm.active, setup=setup)
    # the first chunk went out while two chunks still waited in incoming/
    assert left_at_first_request == [8]
    log_text = (tmp_path / "maillog").read_text()
    assert all(f"{m.queue_id}: removed" in log_text for m in msgs)


def test_trigger_during_a_scan_brings_a_new_scan_after_it(tmp_path, monkeypatch):
    monkeypatch.setattr("mta.qmgr.manager.SCAN_CHUNK", 2)
    cfg = instance(tmp_path, "default_transport = discard:thrown away\nqueue_run_delay = 3600s\n")
    for i in range(6):
        queue_message(cfg, [f"u{i}@remote.example"], queue="incoming")
    late = []

    def setup(qm):
        def first_request():
            # a message lands behind the scan's listing, and cleanup pokes qmgr
            late.append(queue_message(cfg, ["late@remote.example"], queue="incoming"))
            qm.trigger(b"I")

        qm.on_use = first_request

    with agents(cfg, "discard"):
        run_qmgr(
            cfg,
            lambda qm: late and not files(cfg, "incoming") and not qm.active,
            setup=setup,
        )
    assert files(cfg, "incoming") == []
    assert f"{late[0].queue_id}: removed" in (tmp_path / "maillog").read_text()


def test_deferred_scan_cut_short_by_the_window_goes_on_when_room_frees(tmp_path):
    # queue_run_delay is long: only the continuation can take in the rest soon
    cfg = instance(
        tmp_path,
        "default_transport = discard:second try\nqmgr_message_active_limit = 2\n"
        "queue_run_delay = 3600s\n",
    )
    msgs = [queue_message(cfg, [f"u{i}@remote.example"], queue="deferred") for i in range(7)]
    for m in msgs:
        os.utime(m.path, (time.time(), time.time() - 1))  # all due
    agent = serve_agent(cfg, "discard", discard_deliver)
    seen = []

    def until(qm):
        seen.append(len(qm.active))
        return not files(cfg, "deferred") and not qm.active

    try:
        run_qmgr(cfg, until, timeout=8)
    finally:
        agent.stop()
    assert files(cfg, "deferred") == []
    assert max(seen) <= 2
    log_text = (tmp_path / "maillog").read_text()
    assert all(f"{m.queue_id}: removed" in log_text for m in msgs)


def test_notify_success_sends_a_success_notice_for_those_who_asked(tmp_path):
    from mta.queue.rec_type import DSN_NOTIFY_FAILURE, DSN_NOTIFY_SUCCESS

    cfg = instance(tmp_path, "default_transport = discard:delivered fine\n")
    m = queue_message(
        cfg,
        ["yes@remote.example"],
        queue="incoming",
        notify=DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE,
    )
    quiet = queue_message(cfg, ["no@remote.example"], queue="incoming")
    agent = serve_agent(cfg, "discard", discard_deliver)
    try:
        # the notice goes through incoming and is delivered too (to the sender
        # at example.org, by the same discard transport)
        run_qmgr(
            cfg,
            lambda qm: (
                "sender delivery status notification" in (tmp_path / "maillog").read_text()
                and not os.path.exists(m.path)
                and not os.path.exists(quiet.path)
            ),
        )
    finally:
        agent.stop()
    text = (tmp_path / "maillog").read_text()
    assert f"{m.queue_id}: sender delivery status notification:" in text
    assert f"{quiet.queue_id}: sender delivery status notification" not in text


def test_success_notice_content(tmp_path):
    from email import message_from_bytes

    from mta.bounce.notice import make_notice
    from mta.common.dsn import ACTION_DELIVERED, ACTION_RELAYED, RecipientStatus

    cfg = instance(tmp_path, "")
    m = queue_message(cfg, ["a@remote.example", "b@remote.example"], queue="active")
    statuses = [
        RecipientStatus.of(m.recipients[0], ACTION_DELIVERED, "2.0.0", "delivered to mailbox"),
        RecipientStatus.of(
            m.recipients[1],
            ACTION_RELAYED,
            "2.0.0",
            "250 2.0.0 ok",
            "mx.remote.example[192.0.2.1]:25",
        ),
    ]
    sender, rcpts, data = make_notice(cfg, m, m.path, statuses, kind="success")
    assert sender == "" and rcpts == [m.sender]
    notice = message_from_bytes(data)
    assert notice["Subject"] == "Successful Mail Delivery Report"
    assert notice.get_content_type() == "multipart/report"
    report = notice.get_payload()[1]
    assert report.get_content_type() == "message/delivery-status"
    per_rcpt = report.get_payload()[1:]
    assert [(r["Final-Recipient"], r["Action"]) for r in per_rcpt] == [
        ("rfc822; a@remote.example", "delivered"),
        ("rfc822; b@remote.example", "relayed"),
    ]
    assert per_rcpt[1]["Remote-MTA"] == "dns; mx.remote.example"


def test_no_success_notice_when_the_next_hop_took_the_dsn_request(tmp_path):
    from mta.queue.rec_type import DSN_NOTIFY_SUCCESS

    cfg = instance(tmp_path, "default_transport = discard\n")
    m = queue_message(cfg, ["yes@remote.example"], queue="incoming", notify=DSN_NOTIFY_SUCCESS)

    async def passing_on(job):
        for r in job.pending():
            job.sent(r, "250 2.0.0 ok", relay="mx[192.0.2.1]:25", dsn_passed=True)

    agent = serve_agent(cfg, "discard", passing_on)
    try:
        run_qmgr(cfg, lambda qm: not os.path.exists(m.path) and not qm.active)
    finally:
        agent.stop()
    assert "delivery status notification" not in (tmp_path / "maillog").read_text()
    assert files(cfg, "incoming") == []


def queue_with_warning(cfg, rcpts, warn_time, notify=0):
    from mta.queue.queue_file import QueueFileWriter, Recipient

    w = QueueFileWriter(cfg.get("queue_directory"), "incoming")
    w.write_envelope(
        "a@example.org", [Recipient(address=r, notify=notify) for r in rcpts], warn_time=warn_time
    )
    w.write_content(b"Subject: stuck\n\nhello\n")
    return w.commit()


def notices_in(cfg, subject):
    from email import message_from_bytes

    from mta.queue.queue_file import iter_content

    found = []
    for queue in ("incoming", "active", "deferred"):
        for _qid, path in iter_queue(cfg.get("queue_directory"), queue, 1, ("deferred",)):
            msg = read_queue_file(path)
            if msg.sender:
                continue
            text = b"\n".join(iter_content(path, msg)) + b"\n"
            notice = message_from_bytes(text)
            if notice["Subject"] == subject:
                found.append(notice)
    return found


def test_delay_warning_is_sent_once_when_due(tmp_path):
    from mta.queue.rec_type import DSN_NOTIFY_FAILURE

    cfg = instance(
        tmp_path,
        "default_transport = retry:4.4.4 try later\nminimal_backoff_time = 100s\n"
        "transport_maps = inline:{example.org=discard}\n",
    )
    qid = queue_with_warning(cfg, ["u@remote.example"], time.time() - 1)
    quiet = queue_with_warning(cfg, ["v@remote.example"], time.time() - 1, DSN_NOTIFY_FAILURE)
    with agents(cfg, "retry"):
        run_qmgr(cfg, lambda qm: len(files(cfg, "deferred")) == 2 and not qm.active)
    log_text = (tmp_path / "maillog").read_text()
    assert f"{qid}: sender delay notification:" in log_text
    assert f"{quiet}: sender delay notification" not in log_text  # NOTIFY without DELAY
    (notice,) = notices_in(cfg, "Delayed Mail (still being retried)")
    report = notice.get_payload()[1].get_payload()
    assert report[1]["Action"] == "delayed" and report[1]["Final-Recipient"].endswith(
        "u@remote.example"
    )
    # the warning time is cleared in the file: the next deferral sends nothing more
    path = next(
        p
        for q, p in iter_queue(cfg.get("queue_directory"), "deferred", 1, ("deferred",))
        if q == qid
    )
    assert read_queue_file(path).warn_time == 0


def test_cleanup_sets_the_warning_time_from_delay_warning_time(tmp_path):
    from mta.cleanup import Cleanup

    cfg = instance(tmp_path, "delay_warning_time = 4h\n")
    job = Cleanup(cfg).open("a@example.org", {})
    job.add_recipient("b@remote.example")
    job.write(b"Subject: x\n\nbody\n")
    result = job.close("incoming")
    path = os.path.join(cfg.get("queue_directory"), "incoming", result.queue_id)
    msg = read_queue_file(path)
    assert msg.warn_time == int(msg.arrival) + 4 * 3600 and msg.warn_offset > 0
    plain = instance(tmp_path / "other", "")
    job = Cleanup(plain).open("a@example.org", {})
    job.add_recipient("b@remote.example")
    job.write(b"Subject: x\n\nbody\n")
    result = job.close("incoming")
    path = os.path.join(plain.get("queue_directory"), "incoming", result.queue_id)
    assert read_queue_file(path).warn_time == 0


def test_force_expired_message_bounces_at_once_with_its_last_reason(tmp_path):
    import stat

    cfg = instance(tmp_path, "default_transport = retry:4.4.1 no answer\n")
    m = queue_message(cfg, ["u@remote.example"], sender="writer@origin.example", queue="deferred")
    logfile.append(
        cfg.get("queue_directory"),
        "defer",
        m.queue_id,
        [RecipientStatus.of(m.recipients[0], "delayed", "4.4.1", "connect to mx: timed out")],
    )
    os.chmod(m.path, 0o700)  # postsuper -e's mark
    os.utime(m.path, (time.time(), time.time() - 1))
    assert os.stat(m.path).st_mode & stat.S_IXUSR
    agent = serve_agent(cfg, "retry", make_deliver(retry=True))
    try:
        run_qmgr(
            cfg,
            lambda qm: f"{m.queue_id}: removed" in (tmp_path / "maillog").read_text(),
        )
    finally:
        agent.stop()
    text = (tmp_path / "maillog").read_text()
    assert f"{m.queue_id}: from=<writer@origin.example>, status=force-expired" in text
    assert f"{m.queue_id}: sender non-delivery notification" in text
    assert f"{m.queue_id}: to=" not in text  # bounced, never tried again


def bounced_notice(cfg, tmp_path, queue_id, who):
    """The notice qmgr logged for queue_id ("sender" or "postmaster"), parsed."""
    from email import message_from_bytes

    from mta.queue.queue_file import iter_content

    text = (tmp_path / "maillog").read_text()
    marker = f"{queue_id}: {who} non-delivery notification: "
    notice_id = text.split(marker)[1].split()[0]
    notice = read_queue_file(os.path.join(cfg.get("queue_directory"), "incoming", notice_id))
    body = b"\n".join(iter_content(notice.path, notice)) + b"\n"
    return notice, message_from_bytes(body)


def run_bouncing(cfg, msgs, tmp_path):
    agent = serve_agent(cfg, "error", make_deliver(retry=False))
    try:
        run_qmgr(
            cfg,
            lambda qm: all(
                f"{m.queue_id}: removed" in (tmp_path / "maillog").read_text() for m in msgs
            ),
        )
    finally:
        agent.stop()
    return (tmp_path / "maillog").read_text()


def test_notify_classes_bounce_sends_the_postmaster_a_headers_only_copy(tmp_path):
    cfg = instance(
        tmp_path,
        "default_transport = error:5.1.2 domain is gone\nnotify_classes = bounce\n"
        "bounce_notice_recipient = hostmaster@origin.example\n",
    )
    m = queue_message(cfg, ["u@gone.example"], sender="writer@origin.example", queue="incoming")
    run_bouncing(cfg, [m], tmp_path)
    sender_env, sender_notice = bounced_notice(cfg, tmp_path, m.queue_id, "sender")
    pm_env, pm_notice = bounced_notice(cfg, tmp_path, m.queue_id, "postmaster")
    assert [r.address for r in pm_env.recipients] == ["hostmaster@origin.example"]
    assert pm_env.sender == "" and pm_env.attrs.get("notice") == "postmaster"
    assert sender_notice.get_payload()[2].get_content_type() == "message/rfc822"
    assert pm_notice.get_payload()[2].get_content_type() == "text/rfc822-headers"


def test_double_bounce_goes_to_the_postmaster_only_with_2bounce(tmp_path):
    cfg = instance(
        tmp_path,
        "default_transport = error:5.1.2 domain is gone\nnotify_classes = 2bounce\n"
        "2bounce_notice_recipient = hostmaster@origin.example\n",
    )
    notice = queue_message(cfg, ["writer@gone.example"], sender="", queue="incoming")
    run_bouncing(cfg, [notice], tmp_path)
    env, parsed = bounced_notice(cfg, tmp_path, notice.queue_id, "postmaster")
    assert [r.address for r in env.recipients] == ["hostmaster@origin.example"]
    assert parsed.get_payload()[2].get_content_type() == "message/rfc822"  # whole


def test_double_bounce_is_discarded_without_2bounce_and_a_postmaster_notice_always(tmp_path):
    # notify_classes without 2bounce (the default): the double bounce is dropped
    cfg = instance(tmp_path / "a", "default_transport = error:5.1.2 domain is gone\n")
    plain = queue_message(cfg, ["writer@gone.example"], sender="", queue="incoming")
    text = run_bouncing(cfg, [plain], tmp_path / "a")
    assert f"{plain.queue_id}: undeliverable postmaster notification discarded" in text
    assert "non-delivery notification" not in text
    # with 2bounce, a postmaster notice that bounces is dropped all the same
    cfg = instance(
        tmp_path / "b", "default_transport = error:5.1.2 domain is gone\nnotify_classes = 2bounce\n"
    )
    pm = queue_message(
        cfg, ["pm@gone.example"], sender="", queue="incoming", attrs={"notice": "postmaster"}
    )
    text = run_bouncing(cfg, [pm], tmp_path / "b")
    assert f"{pm.queue_id}: undeliverable postmaster notification discarded" in text
    assert "non-delivery notification" not in text


def queue_traced(cfg, rcpt):
    from mta.queue.rec_type import QF_TRACE

    return queue_flagged(cfg, [rcpt], QF_TRACE)


def test_sendmail_v_report_of_the_first_attempt_only(tmp_path):
    from mta.queue.rec_type import QF_TRACE

    cfg = instance(
        tmp_path,
        "default_transport = retry:4.4.4 try later\nminimal_backoff_time = 1s\n"
        "maximal_backoff_time = 1s\nqueue_run_delay = 1s\n"
        "transport_maps = inline:{{ok.example=discard:fine}, {example.org=error:5.0.0 x}}\n",
    )
    sent_id = queue_traced(cfg, "u@ok.example")
    stuck_id = queue_traced(cfg, "v@remote.example")
    with agents(cfg, "retry", "discard"):
        run_qmgr(
            cfg,
            lambda qm: (tmp_path / "maillog").read_text().count(f"{stuck_id}: to=") >= 2,
            timeout=15,
        )
    text = (tmp_path / "maillog").read_text()
    assert text.count(f"{sent_id}: sender delivery status notification") == 1
    assert text.count(f"{stuck_id}: sender delivery status notification") == 1  # once
    reports = notices_in(cfg, "Mail Delivery Status Report")
    actions = sorted(n.get_payload()[1].get_payload()[1]["Action"] for n in reports)
    assert actions == ["delayed", "delivered"]
    path = next(
        p
        for q, p in iter_queue(cfg.get("queue_directory"), "deferred", 1, ("deferred",))
        if q == stuck_id
    )
    assert not read_queue_file(path).flags & QF_TRACE


def queue_flagged(cfg, rcpts, flags, sender="a@example.org"):
    from mta.queue.queue_file import QueueFileWriter, Recipient

    w = QueueFileWriter(cfg.get("queue_directory"), "incoming")
    w.write_envelope(sender, [Recipient(address=r) for r in rcpts], flags=flags)
    w.write_content(b"Subject: verify\n\n")
    return w.commit()


VERIFY_MAIN = (
    "default_transport = retry:4.4.4 try later\n"
    "transport_maps = inline:{{ok.example=discard:fine}, {bad.example=error:5.1.1 no such user}}\n"
)


def test_sendmail_bv_reports_each_recipient_and_delivers_nothing(tmp_path):
    from mta.queue.rec_type import QF_TRACE, QF_VERIFY_USER

    cfg = instance(tmp_path, VERIFY_MAIN)
    qid = queue_flagged(
        cfg, ["u@ok.example", "v@bad.example", "w@far.example"], QF_TRACE | QF_VERIFY_USER
    )
    with agents(cfg, "retry", "error", "discard"):
        run_qmgr(cfg, lambda qm: f"{qid}: removed" in (tmp_path / "maillog").read_text())
    text = (tmp_path / "maillog").read_text()
    assert "to=<u@ok.example>" in text and "status=deliverable (fine)" in text
    assert "to=<v@bad.example>" in text and "status=undeliverable (no such user)" in text
    assert "non-delivery notification" not in text  # the report says it all
    assert qid not in files(cfg, "deferred")  # one attempt, then it goes
    (report,) = notices_in(cfg, "Mail Delivery Status Report")
    fields = report.get_payload()[1].get_payload()[1:]
    got = {f["Final-Recipient"].split(";")[1].strip(): f["Action"] for f in fields}
    assert got == {
        "u@ok.example": "deliverable",
        "v@bad.example": "undeliverable",
        "w@far.example": "delayed",
    }


def test_probe_results_go_to_the_verify_service_and_the_probe_goes(tmp_path):
    from mta.queue.rec_type import QF_VERIFY_MTA
    from mta.verify.cache import (
        STATUS_BOUNCE,
        STATUS_DEFER,
        STATUS_OK,
        MemoryStore,
        Policy,
        VerifyCache,
    )
    from mta.verify.server import VerifyService

    cfg = instance(tmp_path, VERIFY_MAIN)
    cache = VerifyCache(MemoryStore(), Policy.of(cfg))
    verify = HandlerServer(
        os.path.join(cfg.get("queue_directory"), "private", "verify"),
        VerifyService(cfg, cache).handle_client,
        cfg,
    )
    ids = [
        queue_flagged(cfg, [r], QF_VERIFY_MTA, sender="double-bounce@example.org")
        for r in ("u@ok.example", "v@bad.example", "w@far.example")
    ]

    def done(qm):
        return all(cache.get(a) for a in ("u@ok.example", "v@bad.example", "w@far.example"))

    with agents(cfg, "retry", "error", "discard"):
        try:
            run_qmgr(cfg, done)
        finally:
            verify.stop()
    assert cache.get("u@ok.example").status == STATUS_OK
    bad = cache.get("v@bad.example")
    assert (bad.status, bad.text) == (STATUS_BOUNCE, "no such user")
    assert cache.get("w@far.example").status == STATUS_DEFER
    text = (tmp_path / "maillog").read_text()
    assert all(f"{q}: removed" in text for q in ids)
    assert files(cfg, "deferred") == [] and files(cfg, "incoming") == []
    assert "notification" not in text  # probes are never bounced or reported
    logs = [os.path.join(cfg.get("queue_directory"), d) for d in ("bounce", "defer")]
    assert not [f for d in logs if os.path.isdir(d) for _, _, fs in os.walk(d) for f in fs]


def trace_log(cfg, queue_id):
    return logfile.read(cfg.get("queue_directory"), "trace", queue_id)


def test_sendmail_v_report_survives_a_qmgr_that_stopped_before_sending_it(tmp_path):
    from mta.common.deliver_request import REQ_FLAG_RECORD
    from mta.queue.rec_type import QF_TRACE
    from tests.support.agent import request_for, run_agent

    # the report goes to the sender at example.org, whose transport has no agent:
    # it stays queued where the test can read it
    cfg = instance(
        tmp_path,
        "default_transport = retry:4.4.4 later\ntransport_maps = inline:{ok.example=discard:fine}\n",
    )
    qid = queue_flagged(cfg, ["u@ok.example"], QF_TRACE)
    # the agent delivered and wrote the trace log; then qmgr went away
    active = os.path.join(cfg.get("queue_directory"), "active")
    os.makedirs(active, exist_ok=True)
    (path,) = [p for q, p in iter_queue(cfg.get("queue_directory"), "incoming", 1, ()) if q == qid]
    os.rename(path, os.path.join(active, qid))
    msg = read_queue_file(os.path.join(active, qid))
    req = request_for(msg, "fine", transport="discard", flags=REQ_FLAG_RECORD)
    result = run_agent(discard_deliver, cfg, req, tmp_path)
    assert [st.action for st in result.statuses] == ["delivered"]
    assert [st.address for st in trace_log(cfg, qid)] == ["u@ok.example"]
    # a new qmgr finds the message done, sends the report from the log, then removes it
    run_qmgr(cfg, lambda qm: f"{qid}: removed" in (tmp_path / "maillog").read_text())
    (report,) = notices_in(cfg, "Mail Delivery Status Report")
    status = report.get_payload()[1].get_payload()[1]
    assert (status["Final-Recipient"], status["Action"]) == ("rfc822; u@ok.example", "delivered")
    assert trace_log(cfg, qid) == []


def test_success_notice_that_cannot_be_queued_is_sent_at_the_next_attempt(tmp_path):
    from mta.queue.rec_type import DSN_NOTIFY_SUCCESS

    main = (
        "default_transport = retry:4.4.4 later\ntransport_maps = inline:{ok.example=discard:fine}\n"
    )
    (tmp_path / "refuse").write_text("/^Subject: Successful/ REJECT not now\n")
    # notices see header_checks only as internal_mail_filter_classes says (Postfix)
    checked = (
        f"header_checks = regexp:{tmp_path / 'refuse'}\ninternal_mail_filter_classes = bounce\n"
    )
    cfg = instance(tmp_path, main + checked)
    m = queue_message(cfg, ["u@ok.example"], queue="incoming", notify=DSN_NOTIFY_SUCCESS)
    agent = serve_agent(cfg, "discard", discard_deliver)
    try:
        run_qmgr(cfg, lambda qm: m.queue_id in files(cfg, "deferred"))
        text = (tmp_path / "maillog").read_text()
        assert f"{m.queue_id}: cannot queue sender delivery status notification" in text
        assert [st.address for st in trace_log(cfg, m.queue_id)] == ["u@ok.example"]
        assert notices_in(cfg, "Successful Mail Delivery Report") == []
        # the cause goes away; at the next attempt the notice goes and the message with it
        cfg = instance(tmp_path, main)
        (path,) = [
            p
            for q, p in iter_queue(cfg.get("queue_directory"), "deferred", 1, ("deferred",))
            if q == m.queue_id
        ]
        os.utime(path, (time.time(), time.time() - 1))
        run_qmgr(cfg, lambda qm: f"{m.queue_id}: removed" in (tmp_path / "maillog").read_text())
    finally:
        agent.stop()
    assert len(notices_in(cfg, "Successful Mail Delivery Report")) == 1
    assert trace_log(cfg, m.queue_id) == []


def test_probes_follow_the_address_verify_routing(tmp_path):
    from mta.queue.rec_type import QF_VERIFY_MTA

    cfg = instance(
        tmp_path,
        "transport_maps = inline:{{ok.example=retry:4.4.4 normal route}}\n"
        "address_verify_transport_maps = inline:{{ok.example=discard:probe route}}\n",
    )
    probe = queue_flagged(cfg, ["u@ok.example"], QF_VERIFY_MTA, sender="double-bounce@x.example")
    normal = queue_flagged(cfg, ["u@ok.example"], 0)
    with agents(cfg, "retry", "discard"):
        run_qmgr(
            cfg,
            lambda qm: (
                f"{probe}: removed" in (tmp_path / "maillog").read_text()
                and normal in files(cfg, "deferred")
            ),
        )
    text = (tmp_path / "maillog").read_text()
    assert f"{probe}: to=<u@ok.example>, relay=none" in text
    assert "status=deliverable (probe route)" in text
    assert f"{normal}: to=<u@ok.example>" in text and "normal route" in text


def test_routing_follows_the_envelope_sender(tmp_path):
    cfg = instance(
        tmp_path,
        "default_transport = retry:4.4.4 normal route\n"
        "sender_dependent_default_transport_maps = inline:{{@bulk.example=discard:bulk route}}\n",
    )
    bulk = queue_flagged(cfg, ["u@far.example"], 0, sender="news@bulk.example")
    other = queue_flagged(cfg, ["u@far.example"], 0, sender="me@example.org")
    with agents(cfg, "retry", "discard"):
        run_qmgr(
            cfg,
            lambda qm: (
                f"{bulk}: removed" in (tmp_path / "maillog").read_text()
                and other in files(cfg, "deferred")
            ),
        )
    text = (tmp_path / "maillog").read_text()
    assert f"{bulk}: to=<u@far.example>, relay=none" in text and "status=sent (bulk route)" in text
    assert "normal route" in text


def test_an_error_while_finishing_defers_the_message_and_it_is_retried(tmp_path, monkeypatch):
    # the failure of item 11: qmgr could not read the bounce log the agent wrote
    cfg = instance(
        tmp_path,
        "default_transport = error:5.1.2 domain is gone\n"
        "minimal_backoff_time = 1s\nmaximal_backoff_time = 1s\nqueue_run_delay = 1s\n",
    )
    m = queue_message(cfg, ["u@gone.example"], sender="writer@origin.example", queue="incoming")
    real_read, failures = logfile.read, []

    def read_once_denied(queue_dir, kind, queue_id, *args, **kw):
        if kind == "bounce" and queue_id == m.queue_id and not failures:
            failures.append(queue_id)
            raise PermissionError(13, "Permission denied", "bounce/" + queue_id)
        return real_read(queue_dir, kind, queue_id, *args, **kw)

    monkeypatch.setattr(logfile, "read", read_once_denied)
    with agents(cfg, "error"):
        qm = run_qmgr(cfg, lambda qm: bool(failures) and m.queue_id in files(cfg, "deferred"))
        assert m.queue_id not in qm.active
        text = (tmp_path / "maillog").read_text()
        assert (
            f"{m.queue_id}: cannot finish the delivery attempt: PermissionError: "
            "[Errno 13] Permission denied: 'bounce/" in text
        )
        assert "message deferred" in text
        # the next attempt reads the log and sends the notice
        run_qmgr(cfg, lambda qm: not os.path.exists(m.path) and not files(cfg, "deferred"))
    text = (tmp_path / "maillog").read_text()
    assert f"{m.queue_id}: sender non-delivery notification: " in text
    assert f"{m.queue_id}: removed" in text


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_an_unreadable_file_is_deferred_not_called_corrupt():
    # a file qmgr (as mail_owner) may not read is not damaged: it waits in
    # deferred/ for the administrator, it does not vanish into corrupt/
    nobody = pwd.getpwnam("nobody")
    top = Path(tempfile.mkdtemp(dir="/tmp"))  # tmp_path is in a 0700 directory
    try:
        os.chmod(top, 0o755)
        cfg = instance(top, "default_transport = discard\n")
        m = queue_message(cfg, ["u@remote.example"], queue="incoming")  # root's, 0600
        for root, dirs, names in os.walk(top):
            for name in [*dirs, *names]:
                if os.path.join(root, name) != m.path:
                    os.chown(os.path.join(root, name), nobody.pw_uid, nobody.pw_gid)
        pid = os.fork()
        if pid == 0:  # qmgr as mail_owner, as the service becomes it
            code = 1
            try:
                preload_deferred_imports()
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                run_qmgr(cfg, lambda qm: m.queue_id in files(cfg, "deferred"), timeout=5)
                code = 0
            except BaseException:  # noqa: BLE001 - shown in the test output
                traceback.print_exc()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        text = (top / "maillog").read_text()
        assert files(cfg, "deferred") == [m.queue_id], text
        text = (top / "maillog").read_text()
        assert f"{m.queue_id}: " in text and "Permission denied; message deferred" in text
    finally:
        shutil.rmtree(top)
