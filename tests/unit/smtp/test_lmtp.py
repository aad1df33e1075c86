"""lmtp client: LHLO, one reply per recipient, TCP and UNIX-domain next hops (aiosmtpd LMTP)."""

from mta.config import load_config
from mta.queue.queue_file import read_queue_file
from mta.smtp import deliver_lmtp
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.instance import make_instance
from tests.unit.smtp.peers import lmtp_sink


def cfg_for(tmp_path, extra=""):
    return load_config(str(make_instance(tmp_path, "lmtp_lhlo_timeout = 2s\n" + extra)))


def test_lmtp_over_tcp_per_recipient_replies(tmp_path):
    ctl, handler = lmtp_sink()
    try:
        cfg = cfg_for(tmp_path)
        msg = queue_message(cfg, ["ok@example.com", "full@example.com"])
        req = request_for(msg, f"inet:127.0.0.1:{ctl.port}", transport="lmtp")
        result = run_agent(deliver_lmtp, cfg, req, tmp_path)
    finally:
        ctl.stop()
    got = {st.address: st for st in result.statuses}
    assert got["ok@example.com"].action == "delivered"
    assert got["ok@example.com"].reason == "250 2.0.0 <ok@example.com> saved"
    assert got["full@example.com"].action == "failed"
    assert got["full@example.com"].reason == (
        "host 127.0.0.1[127.0.0.1] said: 550 5.2.2 mailbox full (in reply to end of DATA command)"
    )
    assert all(r.done for r in read_queue_file(msg.path).recipients)
    assert handler.messages[0][1] == ["ok@example.com", "full@example.com"]


def test_lmtp_default_port_from_lmtp_tcp_port(tmp_path):
    ctl, handler = lmtp_sink()
    try:
        cfg = cfg_for(tmp_path, f"lmtp_tcp_port = {ctl.port}\n")
        msg = queue_message(cfg, ["ok@example.com"])
        result = run_agent(deliver_lmtp, cfg, request_for(msg, "127.0.0.1"), tmp_path)
    finally:
        ctl.stop()
    assert result.statuses[0].action == "delivered"
    assert result.statuses[0].relay == f"127.0.0.1[127.0.0.1]:{ctl.port}"


def test_lmtp_over_unix_socket(tmp_path):
    path = str(tmp_path / "lmtp.sock")
    ctl, handler = lmtp_sink(path)
    try:
        cfg = cfg_for(tmp_path)
        msg = queue_message(cfg, ["ok@example.com"])
        result = run_agent(deliver_lmtp, cfg, request_for(msg, f"unix:{path}"), tmp_path)
    finally:
        ctl.stop()
    (st,) = result.statuses
    assert st.action == "delivered"
    assert st.relay == f"localhost[{path}]"
    assert len(handler.messages) == 1


def test_lmtp_missing_socket_is_a_hop_failure(tmp_path):
    cfg = cfg_for(tmp_path)
    msg = queue_message(cfg, ["ok@example.com"])
    path = str(tmp_path / "nothing.sock")
    result = run_agent(deliver_lmtp, cfg, request_for(msg, f"unix:{path}"), tmp_path)
    assert result.hop_dsn == "4.4.1"
    assert result.statuses[0].reason == f"connect to {path}: No such file or directory"
