"""A remote server's refusal reaches the notice as Diagnostic-Code: smtp; and Remote-MTA: dns;.

The smtp agent delivers to an aiosmtpd server that refuses one recipient;
the bounce log it writes becomes a notice, which the stdlib email package
and a bounce processor from PyPI (flufl.bounce) read back."""

import email
import email.policy

import pytest

from mta.bounce import logfile
from mta.bounce.notice import make_notice
from mta.config import load_config
from mta.smtp import deliver
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.instance import make_instance
from tests.unit.smtp.peers import SinkHandler, sink

REFUSAL = "550 5.1.1 <bad@remote.test>: Recipient address rejected: User unknown"
SOFT = "450 4.2.0 <later@remote.test>: Recipient address rejected: Greylisted"


def config(tmp_path, port: int, main_cf: str = "", master_cf: str = ""):
    """An instance whose smtp client finds "localhost" (127.0.0.1) at port."""
    main_cf = (
        f"smtp_tcp_port = {port}\ninet_protocols = ipv4\nsmtp_host_lookup = native\n" + main_cf
    )
    return load_config(str(make_instance(tmp_path, main_cf, master_cf)))


def deliver_to_refusing_server(tmp_path):
    handler = SinkHandler(reject={"bad@remote.test": REFUSAL, "later@remote.test": SOFT})
    ctl, _ = sink(handler)
    try:
        cfg = config(tmp_path, ctl.port)
        msg = queue_message(cfg, ["good@remote.test", "bad@remote.test", "later@remote.test"])
        result = run_agent(deliver, cfg, request_for(msg, "[localhost]"), tmp_path)
    finally:
        ctl.stop()
    return cfg, msg, result


def status_blocks(data: bytes) -> list[dict]:
    m = email.message_from_bytes(data, policy=email.policy.default)
    part = list(m.iter_parts())[1]
    assert part.get_content_type() == "message/delivery-status"
    return [dict(block.items()) for block in part.get_payload()]


def test_bounce_log_keeps_the_remote_reply_apart_from_the_reason(tmp_path):
    cfg, msg, result = deliver_to_refusing_server(tmp_path)
    assert [s.action for s in result.statuses] == ["relayed", "failed", "delayed"]
    (st,) = logfile.read(cfg.get("queue_directory"), "bounce", msg.queue_id)
    assert st.reason.startswith("host localhost[127.0.0.1] said: 550 5.1.1 <bad@remote.test>")
    assert st.reason.endswith("(in reply to RCPT TO command)")
    assert (st.diag_type, st.diag_text, st.remote_mta) == ("smtp", REFUSAL, "localhost")
    (deferred,) = logfile.read(cfg.get("queue_directory"), "defer", msg.queue_id)
    assert (deferred.diag_type, deferred.diag_text) == ("smtp", SOFT)


def test_notice_says_smtp_diagnostic_and_remote_mta(tmp_path):
    cfg, msg, _ = deliver_to_refusing_server(tmp_path)
    failed = logfile.read(cfg.get("queue_directory"), "bounce", msg.queue_id)
    _, _, data = make_notice(cfg, msg, msg.path, failed)
    (block,) = status_blocks(data)[1:]
    assert block["Final-Recipient"] == "rfc822; bad@remote.test"
    assert block["Action"] == "failed"
    assert block["Status"] == "5.1.1"
    assert block["Remote-MTA"] == "dns; localhost"
    assert block["Diagnostic-Code"] == f"smtp; {REFUSAL}"
    # the letter keeps the sentence for people
    assert b"host localhost[127.0.0.1] said: 550 5.1.1" in data


def test_bounce_processor_finds_the_failed_address(tmp_path):
    bounce = pytest.importorskip("flufl.bounce")
    cfg, msg, _ = deliver_to_refusing_server(tmp_path)
    failed = logfile.read(cfg.get("queue_directory"), "bounce", msg.queue_id)
    _, _, data = make_notice(cfg, msg, msg.path, failed)
    temporary, permanent = bounce.all_failures(email.message_from_bytes(data))
    assert permanent == {b"bad@remote.test"}
    assert not temporary


def test_reason_made_here_stays_x_mta(tmp_path):
    """A refusal of our own (no server reply) is not dressed up as an SMTP reply."""
    cfg = load_config(str(make_instance(tmp_path)))
    msg = queue_message(cfg, ["u@example.com"])
    from mta.common.dsn import RecipientStatus

    st = RecipientStatus(
        "u@example.com",
        msg.recipients[0].offset,
        "failed",
        "5.6.7",
        "SMTPUTF8 is required, but was not offered by host mx[192.0.2.1]",
        relay="mx[192.0.2.1]:25",
    )
    _, _, data = make_notice(cfg, msg, msg.path, [st])
    (block,) = status_blocks(data)[1:]
    assert block["Diagnostic-Code"].startswith("X-Mta; SMTPUTF8 is required")


def test_log_entry_written_before_the_diagnostic_fields_still_reads(tmp_path):
    cfg = load_config(str(make_instance(tmp_path)))
    msg = queue_message(cfg, ["u@example.com"])
    path = logfile.log_path(cfg.get("queue_directory"), "bounce", msg.queue_id)
    old = (
        "recipient=u@example.com\norig_to=\ndsn_orcpt=\nnotify=0\n"
        f"offset={msg.recipients[0].offset}\nstatus=5.1.1\naction=failed\n"
        "relay=mx.example[192.0.2.1]:25\n"
        "reason=host mx.example[192.0.2.1] said: 550 5.1.1 no such user "
        "(in reply to RCPT TO command)\nwhen=1.000\n\n"
    )
    with open(path, "w") as f:
        f.write(old)
    (st,) = logfile.read(cfg.get("queue_directory"), "bounce", msg.queue_id)
    assert (st.diag_type, st.diag_text, st.remote_mta) == ("", "", "")
    _, _, data = make_notice(cfg, msg, msg.path, [st])
    (block,) = status_blocks(data)[1:]
    assert block["Remote-MTA"] == "dns; mx.example"
    assert block["Diagnostic-Code"].startswith("X-Mta; host mx.example[192.0.2.1] said:")


def test_expired_deferral_keeps_the_remote_reply_in_the_notice(tmp_path):
    """A 450, then the message expires: qmgr's bounce carries the last remote reply."""
    import time

    from mta import log
    from tests.unit.qmgr.test_manager import run_qmgr, sender_notice, serve_agent, until_gone

    handler = SinkHandler(reject={"later@remote.test": SOFT})
    ctl, _ = sink(handler)
    try:
        cfg = config(
            tmp_path,
            ctl.port,
            "default_transport = smtp:[localhost]\nmaximal_queue_lifetime = 1s\n",
            "qmgr fifo n - n 300 1 qmgr\nsmtp unix - - n - - smtp\n",
        )
        m = queue_message(cfg, ["later@remote.test"], queue="active")
        first = run_agent(deliver, cfg, request_for(m, "[localhost]"), tmp_path)
        assert [s.action for s in first.statuses] == ["delayed"]
        time.sleep(1.2)
        log.init("qmgr", cfg)
        agent = serve_agent(cfg, "smtp", deliver)
        try:  # qmgr takes the message back from active/, finds it expired
            run_qmgr(cfg, until_gone(m))
        finally:
            agent.stop()
    finally:
        ctl.stop()
    assert len(handler.messages) == 0
    text = (tmp_path / "maillog").read_text()
    _, data = sender_notice(cfg, text, m.queue_id)
    (block,) = status_blocks(data)[1:]
    assert block["Action"] == "failed"
    assert block["Remote-MTA"] == "dns; localhost"
    assert block["Diagnostic-Code"] == f"smtp; {SOFT}"
