"""smtp and lmtp agents against Postfix's smtp-sink: accept, 4xx, 5xx, disconnects, LMTP, reuse."""

import os
import shutil
import socket
import subprocess
import time

import pytest

from mta.config import load_config
from mta.queue.queue_file import read_queue_file
from mta.smtp import deliver, deliver_lmtp, nexthop, session_cache
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.instance import make_instance
from tests.unit.smtp.peers import AgentServer, free_port

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("smtp-sink") is None, reason="smtp-sink not installed"),
]


@pytest.fixture(autouse=True)
def fresh():
    nexthop.clear_cache()
    session_cache.idle = {}
    session_cache.loop = None


class SmtpSink:
    def __init__(self, *options: str) -> None:
        self.port = free_port()
        privs = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen(
            ["smtp-sink", *privs, *options, f"127.0.0.1:{self.port}", "100"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("smtp-sink did not start")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(5)


def cfg_for(tmp_path, port):
    return load_config(
        str(
            make_instance(
                tmp_path,
                f"smtp_tcp_port = {port}\nsmtp_helo_timeout = 3s\nsmtp_mail_timeout = 3s\n"
                "smtp_rcpt_timeout = 3s\nsmtp_data_done_timeout = 3s\n",
            )
        )
    )


def send(tmp_path, options, rcpts=("u@example.com",), agent=deliver):
    with SmtpSink(*options) as sink:
        cfg = cfg_for(tmp_path, sink.port)
        msg = queue_message(cfg, list(rcpts))
        hop = f"[127.0.0.1]:{sink.port}"
        return msg, run_agent(agent, cfg, request_for(msg, hop), tmp_path), sink.port


def test_accepting_sink(tmp_path):
    """smtp-sink offers DSN: the action is delivered, not relayed."""
    msg, result, port = send(tmp_path, [], ("a@example.com", "b@example.com"))
    assert [s.action for s in result.statuses] == ["delivered", "delivered"]
    assert result.statuses[0].reason == "250 2.0.0 Ok"
    assert result.statuses[0].relay == f"127.0.0.1[127.0.0.1]:{port}"
    assert all(r.done for r in read_queue_file(msg.path).recipients)
    assert "dsn=2.0.0, status=sent (250 2.0.0 Ok)" in (tmp_path / "maillog").read_text()


def test_hard_rcpt_reject_bounces(tmp_path):
    _, result, _ = send(tmp_path, ["-f", "RCPT"])
    (st,) = result.statuses
    assert (st.action, st.dsn) == ("failed", "5.3.0")
    assert st.reason == (
        "host 127.0.0.1[127.0.0.1] said: 500 5.3.0 Error: command failed "
        "(in reply to RCPT TO command)"
    )


def test_soft_rcpt_reject_defers(tmp_path):
    msg, result, _ = send(tmp_path, ["-r", "RCPT"])
    assert [(s.action, s.dsn) for s in result.statuses] == [("delayed", "4.3.0")]
    assert not any(r.done for r in read_queue_file(msg.path).recipients)


def test_mail_reject_bounces_everyone(tmp_path):
    _, result, _ = send(tmp_path, ["-f", "MAIL"], ("a@example.com", "b@example.com"))
    assert [s.action for s in result.statuses] == ["failed", "failed"]
    assert result.statuses[0].reason.endswith("(in reply to MAIL FROM command)")


def test_end_of_data_reject_bounces(tmp_path):
    _, result, _ = send(tmp_path, ["-f", "."])
    assert result.statuses[0].action == "failed"
    assert result.statuses[0].reason.endswith("(in reply to end of DATA command)")


def test_disconnect_after_mail_defers(tmp_path):
    _, result, _ = send(tmp_path, ["-q", "MAIL"])
    (st,) = result.statuses
    assert st.action == "delayed"
    assert st.reason == "lost connection with 127.0.0.1[127.0.0.1] while sending MAIL FROM"


def test_no_pipelining_sink(tmp_path):
    _, result, _ = send(tmp_path, ["-p"], ("a@example.com", "b@example.com", "c@example.com"))
    assert [s.action for s in result.statuses] == ["delivered"] * 3


def test_lmtp_sink(tmp_path):
    _, result, _ = send(tmp_path, ["-L"], ("a@example.com", "b@example.com"), deliver_lmtp)
    assert [s.action for s in result.statuses] == ["delivered", "delivered"]


def test_many_messages_over_reused_sessions(tmp_path):
    with SmtpSink() as sink:
        cfg = cfg_for(tmp_path, sink.port)
        agent = AgentServer(deliver, cfg, tmp_path)
        try:
            results = []
            for i in range(30):
                msg = queue_message(cfg, [f"u{i}@example.com"])
                results.append(agent.send(request_for(msg, "[127.0.0.1]")))
        finally:
            agent.stop()
    assert all(r.statuses[0].action == "delivered" for r in results)
    # all but the first found a ready session: no connection set-up time
    assert "delays=" in (tmp_path / "maillog").read_text()


def test_through_the_master_smtpd_qmgr_smtp_and_lmtp(tmp_path):
    """Mail for two domains goes out through the smtp and lmtp services run by the master."""
    import smtplib

    from tests.support.running import Instance
    from tests.unit.smtp.peers import lmtp_sink, sink

    smtp_ctl, smtp_handler = sink()
    lmtp_ctl, lmtp_handler = lmtp_sink()
    port = free_port()
    master_cf = (
        f"127.0.0.1:{port} inet n - n - - smtpd\n"
        "qmgr fifo n - n 300 1 qmgr\n"
        "cleanup unix n - n - 0 cleanup\n"
        "smtp unix - - n - - smtp\n"
        "scache unix - - n - 1 scache\n"
        # a service of another name running the lmtp command speaks LMTP
        "dovecot unix - - n - - lmtp\n"
    )
    inst = Instance(
        tmp_path,
        master_cf,
        {
            "myhostname": "mx.test.example",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "transport_maps": f"inline:{{ {{remote.example=smtp:[127.0.0.1]:{smtp_ctl.port}}}, "
            f"{{box.example=dovecot:inet:127.0.0.1:{lmtp_ctl.port}}} }}",
            "local_recipient_maps": "",
            "smtpd_peername_lookup": "no",
        },
    )
    try:
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.sendmail(
                "sender@ok.example",
                ["a@remote.example", "b@box.example"],
                b"Subject: hi\r\n\r\nbody\r\n",
            )
        text = inst.wait_log(r": removed", 20)
        scache_works = check_scache(inst)
    finally:
        inst.stop()
        smtp_ctl.stop()
        lmtp_ctl.stop()
    assert f"to=<a@remote.example>, relay=127.0.0.1[127.0.0.1]:{smtp_ctl.port}" in text
    assert "status=sent (250 2.0.0 Ok: queued as SINK1)" in text
    assert "status=sent (250 2.0.0 <b@box.example> saved)" in text
    assert smtp_handler.messages[0][1] == ["a@remote.example"]
    assert lmtp_handler.messages[0][1] == ["b@box.example"]
    bad = [ln for ln in text.splitlines() if "scache" in ln and ("warning" in ln or "fatal" in ln)]
    assert not bad
    assert scache_works


def check_scache(inst) -> bool:
    """The master's scache service takes a connection and gives it back."""
    from mta.scache import scache_find, scache_save

    path = os.path.join(inst.queue, "private", "scache")
    left, right = socket.socketpair()
    try:
        if not scache_save(path, "smtp:probe", b"{}", left.fileno(), 5):
            return False
        found = scache_find(path, "smtp:probe")
        if found is None:
            return False
        os.close(found[1])
        return found[0] == b"{}"
    finally:
        left.close()
        right.close()
