"""smtp_generic_maps / lmtp_generic_maps: generic(5) mapping of envelope and header addresses."""

from mta.config import load_config
from mta.queue.queue_file import iter_content, read_queue_file
from mta.smtp import deliver
from mta.smtp.generic import GenericMapper
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.instance import make_instance
from tests.unit.smtp.peers import SinkHandler, deliver_to_lmtp_sink, sink

GENERIC = (
    "his@box.localdomain his.account@isp.example\n"
    "postmaster postmaster@isp.example\n"
    "@box.localdomain whole.house@isp.example\n"
    "@old.example @new.example\n"
)

BODY = (
    b"From: Him <his@box.localdomain>\n"
    b'To: friend@old.example, "Her" <her@box.localdomain>\n'
    b"Cc: stranger@elsewhere.example\n"
    b"Subject: mail from his@box.localdomain\n"
    b"\n"
    b"To: his@box.localdomain is body text\n"
)


def config(tmp_path, extra=""):
    (tmp_path / "generic").write_text(GENERIC)
    return load_config(
        str(
            make_instance(
                tmp_path,
                f"smtp_generic_maps = texthash:{tmp_path}/generic\n"
                "myorigin = box.localdomain\nmydestination = box.localdomain\n"
                "recipient_delimiter = +\n" + extra,
            )
        )
    )


def test_lookup_order(tmp_path):
    m = GenericMapper.of(config(tmp_path))
    assert m.address("his@box.localdomain") == "his.account@isp.example"  # user@domain first
    assert m.address("her@box.localdomain") == "whole.house@isp.example"  # then @domain
    assert m.address("postmaster@box.localdomain") == "postmaster@isp.example"  # "user": local site
    assert m.address("postmaster@elsewhere.example") == "postmaster@elsewhere.example"  # not local
    assert m.address("friend@old.example") == "friend@new.example"  # @domain keeps the user
    assert m.address("his+tag@box.localdomain") == "his.account@isp.example"
    assert m.address("") == ""


def test_unmatched_extension_is_kept_when_asked(tmp_path):
    m = GenericMapper.of(config(tmp_path, "propagate_unmatched_extensions = generic\n"))
    assert m.address("his+tag@box.localdomain") == "his.account+tag@isp.example"


def test_no_tables_no_mapper(tmp_path):
    assert GenericMapper.of(load_config(str(make_instance(tmp_path)))) is None


def test_receiver_sees_mapped_envelope_and_headers(tmp_path):
    handler = SinkHandler()
    ctl, _ = sink(handler)
    try:
        cfg = config(tmp_path, f"smtp_tcp_port = {ctl.port}\n")
        msg = queue_message(
            cfg,
            ["friend@old.example", "stranger@elsewhere.example"],
            sender="his@box.localdomain",
            body=BODY,
        )
        result = run_agent(deliver, cfg, request_for(msg, "[127.0.0.1]"), tmp_path)
    finally:
        ctl.stop()
    assert [s.action for s in result.statuses] == ["relayed", "relayed"]
    # the log and the statuses keep the queue file's addresses
    assert [s.address for s in result.statuses] == [
        "friend@old.example",
        "stranger@elsewhere.example",
    ]
    ((sender, rcpts, data, _),) = handler.messages
    assert sender == "his.account@isp.example"
    assert rcpts == ["friend@new.example", "stranger@elsewhere.example"]
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"From: Him <his.account@isp.example>",
        b'To: friend@new.example, "Her" <whole.house@isp.example>',
        b"Cc: stranger@elsewhere.example",
        b"Subject: mail from his@box.localdomain",
    ]
    assert body == b"To: his@box.localdomain is body text\r\n"
    # the queue file is left as it was
    kept = b"\n".join(iter_content(msg.path, read_queue_file(msg.path)))
    assert b"From: Him <his@box.localdomain>" in kept


def lmtp_with_generic_maps(tmp_path, parameter: str):
    """Deliver BODY from his@box.localdomain to friend@old.example by lmtp, with GENERIC
    as the table of parameter; (LmtpHandler, agent result)."""
    (tmp_path / "generic").write_text(GENERIC)
    return deliver_to_lmtp_sink(
        tmp_path,
        f"{parameter} = texthash:{tmp_path}/generic\n",
        ["friend@old.example"],
        sender="his@box.localdomain",
        body=BODY,
    )


def test_lmtp_generic_maps(tmp_path):
    handler, result = lmtp_with_generic_maps(tmp_path, "lmtp_generic_maps")
    assert [s.action for s in result.statuses] == ["delivered"]
    ((sender, rcpts, data, _),) = handler.messages
    assert (sender, rcpts) == ("his.account@isp.example", ["friend@new.example"])
    assert b"From: Him <his.account@isp.example>" in data


def test_smtp_generic_maps_do_not_apply_to_lmtp(tmp_path):
    handler, _ = lmtp_with_generic_maps(tmp_path, "smtp_generic_maps")
    ((sender, rcpts, _, _),) = handler.messages
    assert (sender, rcpts) == ("his@box.localdomain", ["friend@old.example"])
