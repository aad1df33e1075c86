"""A message cleanup signed, converted to 7 bits for a server without 8BITMIME or
with headers rewritten by smtp_generic_maps: the smtp client signs it again with
the same keys, and dkimpy verifies what arrived."""

import os

import pytest

from mta.cleanup import Cleanup
from mta.config import load_config
from mta.queue.queue_file import queue_dir_for, read_queue_file
from mta.smtp import deliver
from tests.support.agent import request_for, run_agent
from tests.support.dkim_keys import write_keys
from tests.support.instance import make_instance
from tests.unit.smtp.test_client import FAST, content_of, dsn_server

dkim = pytest.importorskip("dkim")
pytest.importorskip("nacl")

MESSAGE = (
    b"From: Ann <ann@example.org>\r\nTo: u@example.com\r\nSubject: coffee news\r\n"
    b"Message-ID: <r1@example.org>\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    b"caf\xc3\xa9 au lait\r\nsecond line\r\n"
)


def setup(tmp_path, port, more=""):
    records, table = write_keys(tmp_path, [("rsa1", "rsa"), ("ed1", "ed25519")])
    (tmp_path / "signing").write_text("@example.org rsa1, ed1\n")
    extra = (
        f"dkim_key_table = texthash:{table}\n"
        f"dkim_signing_table = texthash:{tmp_path / 'signing'}\n" + more
    )
    cfg = load_config(str(make_instance(tmp_path, FAST + f"smtp_tcp_port = {port}\n" + extra)))
    job = Cleanup(cfg).open("ann@example.org", {"protocol": "ESMTP", "client_address": "192.0.2.1"})
    job.add_recipient("u@example.com")
    job.write(MESSAGE)
    result = job.close("active")
    assert result.action == "queued", result.reply
    qdir = queue_dir_for(cfg.get("queue_directory"), "active", result.queue_id)
    msg = read_queue_file(os.path.join(qdir, result.queue_id))
    assert msg.attrs["dkim_keys"] == "rsa1,ed1"
    return cfg, msg, records


def verdicts(message, records):
    def dnsfunc(name, timeout=5):
        return records[name.decode().split(".")[0]].encode()

    d = dkim.DKIM(message)
    return [d.verify(idx=i, dnsfunc=dnsfunc) for i in range(message.count(b"DKIM-Signature:"))]


def test_signed_again_after_conversion(tmp_path):
    srv = dsn_server((b"SIZE",))  # no 8BITMIME
    try:
        cfg, msg, records = setup(tmp_path, srv.port)
        result = run_agent(deliver, cfg, request_for(msg, "[127.0.0.1]"), tmp_path)
    finally:
        srv.stop()
    assert result.statuses[0].action == "relayed"
    content = content_of(srv.received)
    assert content.isascii() and b"caf=C3=A9 au lait" in content
    assert content.count(b"DKIM-Signature:") == 2  # replaced, not added to
    assert verdicts(content, records) == [True, True]


def test_signature_kept_for_a_server_with_8bitmime(tmp_path):
    srv = dsn_server((b"8BITMIME",))
    try:
        cfg, msg, records = setup(tmp_path, srv.port)
        run_agent(deliver, cfg, request_for(msg, "[127.0.0.1]"), tmp_path)
    finally:
        srv.stop()
    content = content_of(srv.received)
    assert b"caf\xc3\xa9 au lait" in content
    assert verdicts(content, records) == [True, True]


def test_key_gone_before_conversion_defers(tmp_path):
    srv = dsn_server((b"SIZE",))
    try:
        cfg, msg, _ = setup(tmp_path, srv.port)
        os.unlink(tmp_path / "ed1.pem")
        result = run_agent(deliver, cfg, request_for(msg, "[127.0.0.1]"), tmp_path)
    finally:
        srv.stop()
    (st,) = result.statuses
    assert (st.action, st.dsn) == ("delayed", "4.7.0")
    assert "cannot sign the message again after 8BITMIME conversion" in st.reason
    assert "ed1.pem: cannot open key file" in st.reason
    assert not any(line.startswith(b"DATA") for line in srv.received)


def test_signed_again_after_generic_mapping(tmp_path):
    (tmp_path / "generic").write_text("ann@example.org ann@public.example\n")
    srv = dsn_server((b"8BITMIME",))
    try:
        cfg, msg, records = setup(
            tmp_path, srv.port, f"smtp_generic_maps = texthash:{tmp_path / 'generic'}\n"
        )
        result = run_agent(deliver, cfg, request_for(msg, "[127.0.0.1]"), tmp_path)
    finally:
        srv.stop()
    assert result.statuses[0].action == "relayed"
    content = content_of(srv.received)
    assert b"From: Ann <ann@public.example>" in content
    assert content.count(b"DKIM-Signature:") == 2
    assert verdicts(content, records) == [True, True]
