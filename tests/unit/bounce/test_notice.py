"""Non-delivery notices, parsed back with the stdlib email package (RFC 3464)."""

import email
import email.policy
from email.utils import parsedate_to_datetime

import pytest

from mta.bounce.notice import make_notice, notice_recipients, send_notice
from mta.common.dsn import RecipientStatus
from mta.config import load_config
from mta.queue import rec_type as R
from mta.queue.queue_file import iter_content, read_queue_file
from tests.support.agent import queue_message
from tests.support.instance import incoming_files, make_instance

BODY = b"Subject: hello there\nFrom: <a@example.org>\nMessage-Id: <m1@example.org>\n\nbody line\n"


def setup(tmp_path, main_cf="", attrs=None, sender="a@example.org", body=BODY):
    cfg = load_config(str(make_instance(tmp_path, main_cf=main_cf)))
    msg = queue_message(
        cfg, ["x@one.example", "y@two.example"], sender=sender, body=body, attrs=attrs
    )
    return cfg, msg


def failed_of(msg, **kw):
    a, b = msg.recipients
    return [
        RecipientStatus(
            a.address,
            a.offset,
            "failed",
            "5.1.1",
            "550 5.1.1 <x@one.example>: no such user",
            relay="mx.one.example[192.0.2.1]:25",
            dsn_orcpt="rfc822;X@One.Example",
        ),
        RecipientStatus(
            b.address, b.offset, "failed", "5.2.3", "message too large", relay="mypipe", **kw
        ),
    ]


def parse(data):
    return email.message_from_bytes(data, policy=email.policy.default)


def report(cfg, msg, **kw):
    sender, rcpts, data = make_notice(cfg, msg, msg.path, failed_of(msg, **kw))
    return sender, rcpts, parse(data), data


def test_envelope_is_null_sender_to_original_sender(tmp_path):
    cfg, msg = setup(tmp_path)
    sender, rcpts, _, _ = report(cfg, msg)
    assert (sender, rcpts) == ("", ["a@example.org"])


def test_top_headers(tmp_path):
    cfg, msg = setup(tmp_path)
    _, _, m, data = report(cfg, msg)
    raw = email.message_from_bytes(data)  # compat32 keeps the comment
    assert raw["From"] == "MAILER-DAEMON@mx.test.example (Mail Delivery System)"
    assert m["From"].addresses[0].addr_spec == "MAILER-DAEMON@mx.test.example"
    assert m["To"] == "a@example.org"
    assert m["Subject"] == "Undelivered Mail Returned to Sender"
    assert m["Auto-Submitted"] == "auto-replied"
    assert m["MIME-Version"] == "1.0"
    assert parsedate_to_datetime(m["Date"]) is not None
    assert m["Message-Id"].endswith("@mx.test.example>")


def test_multipart_report_structure(tmp_path):
    cfg, msg = setup(tmp_path, attrs={"ret": "HDRS"})
    _, _, m, _ = report(cfg, msg)
    assert m.get_content_type() == "multipart/report"
    assert m.get_param("report-type") == "delivery-status"
    parts = list(m.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert not m.defects and not any(p.defects for p in parts)


def test_human_part_names_host_and_each_recipient(tmp_path):
    cfg, msg = setup(tmp_path)
    _, _, m, _ = report(cfg, msg)
    text = list(m.iter_parts())[0].get_content()
    assert "This is the mail system at host mx.test.example." in text
    assert "<x@one.example>: 550 5.1.1 <x@one.example>: no such user" in text
    assert "<y@two.example>: message too large" in text


def status_blocks(m):
    part = list(m.iter_parts())[1]
    # the email package parses message/delivery-status into header blocks
    return [dict(block.items()) for block in part.get_payload()]


def test_per_message_fields(tmp_path):
    cfg, msg = setup(tmp_path, attrs={"envid": "ENV-42"})
    _, _, m, _ = report(cfg, msg)
    first = status_blocks(m)[0]
    assert first["Reporting-MTA"] == "dns; mx.test.example"
    assert first["X-Mta-Queue-ID"] == msg.queue_id
    assert first["Original-Envelope-Id"] == "ENV-42"
    assert abs(parsedate_to_datetime(first["Arrival-Date"]).timestamp() - msg.arrival) < 1


def test_per_recipient_fields(tmp_path):
    cfg, msg = setup(tmp_path)
    _, _, m, _ = report(cfg, msg)
    one, two = status_blocks(m)[1:]
    assert one["Final-Recipient"] == "rfc822; x@one.example"
    assert one["Original-Recipient"] == "rfc822; X@One.Example"
    assert one["Action"] == "failed"
    assert one["Status"] == "5.1.1"
    assert one["Remote-MTA"] == "dns; mx.one.example"
    assert one["Diagnostic-Code"] == "smtp; 550 5.1.1 <x@one.example>: no such user"
    assert two["Final-Recipient"] == "rfc822; y@two.example"
    assert "Original-Recipient" not in two
    assert "Remote-MTA" not in two  # a transport name is not a host
    assert two["Status"] == "5.2.3"
    assert two["Diagnostic-Code"] == "X-Mta; message too large"


def test_ret_hdrs_returns_headers_only(tmp_path):
    cfg, msg = setup(tmp_path, attrs={"ret": "HDRS"})
    _, _, m, data = report(cfg, msg)
    third = list(m.iter_parts())[2]
    assert b"Subject: hello there" in data and b"body line" not in data
    assert "Message-Id: <m1@example.org>" in third.get_content()


@pytest.mark.parametrize("attrs", [{"ret": "FULL"}, None], ids=["RET=FULL", "no RET"])
def test_whole_message_for_ret_full_and_by_default(tmp_path, attrs):
    cfg, msg = setup(tmp_path, attrs=attrs)
    _, _, m, _ = report(cfg, msg)
    third = list(m.iter_parts())[2]
    assert third.get_content_type() == "message/rfc822"
    inner = third.get_content()
    assert inner["Subject"] == "hello there"
    assert inner.get_content().strip() == "body line"


def test_ret_full_over_bounce_size_limit_falls_back_to_headers(tmp_path):
    body = BODY + b"x" * 5000 + b"\n"
    cfg, msg = setup(tmp_path, "bounce_size_limit = 1000\n", attrs={"ret": "FULL"}, body=body)
    _, _, m, data = report(cfg, msg)
    assert list(m.iter_parts())[2].get_content_type() == "text/rfc822-headers"
    assert b"xxxx" not in data


def test_header_part_is_cut_at_bounce_size_limit(tmp_path):
    many = b"".join(b"X-Filler-%d: %s\n" % (i, b"y" * 60) for i in range(100))
    cfg, msg = setup(
        tmp_path, "bounce_size_limit = 500\n", attrs={"ret": "HDRS"}, body=many + b"\nbody\n"
    )
    _, _, m, _ = report(cfg, msg)
    third = list(m.iter_parts())[2].get_content()
    assert 0 < len(third) <= 500 + 10
    assert third.startswith("X-Filler-0:")


def test_notify_never_and_success_only_get_no_notice():
    base = dict(address="a@x", offset=1, action="failed", dsn="5.0.0", reason="r")
    sts = [
        RecipientStatus(**base, notify=0),
        RecipientStatus(**base, notify=R.DSN_NOTIFY_NEVER),
        RecipientStatus(**base, notify=R.DSN_NOTIFY_SUCCESS),
        RecipientStatus(**base, notify=R.DSN_NOTIFY_FAILURE | R.DSN_NOTIFY_DELAY),
    ]
    assert [st.notify for st in notice_recipients(sts)] == [0, 12]


def test_send_notice_queues_into_incoming(tmp_path):
    cfg, msg = setup(tmp_path)
    qid = send_notice(cfg, msg, msg.path, failed_of(msg))
    files = incoming_files(tmp_path / "etc")
    assert len(files) == 1 and files[0].endswith(qid)
    queued = read_queue_file(files[0])
    assert queued.sender == ""
    assert [r.address for r in queued.recipients] == ["a@example.org"]
    content = b"\n".join(iter_content(files[0], queued))
    m = parse(content)
    assert m.get_content_type() == "multipart/report"
    assert m["Subject"] == "Undelivered Mail Returned to Sender"


def test_send_notice_for_null_sender_sends_nothing(tmp_path):
    cfg, msg = setup(tmp_path, sender="")
    assert send_notice(cfg, msg, msg.path, failed_of(msg)) is None
    assert incoming_files(tmp_path / "etc") == []


def test_unknown_kind_is_refused(tmp_path):
    cfg, msg = setup(tmp_path)
    with pytest.raises(ValueError):
        make_notice(cfg, msg, msg.path, failed_of(msg), kind="nonsense")
