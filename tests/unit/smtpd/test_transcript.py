"""smtpd transcripts: the ring's bounds, escaping, classes, and the notice it becomes."""

import email
import email.policy

from mta.config import load_config
from mta.smtpd.transcript import (
    NOTE_CONTENT,
    NOTIFY_BOUNCE,
    NOTIFY_POLICY,
    NOTIFY_PROTOCOL,
    NOTIFY_RESOURCE,
    NOTIFY_SOFTWARE,
    TRANSCRIPT_LINE_BYTES,
    Transcript,
    class_names,
    make_error_notice,
    notify_mask,
    show_bytes,
)


def cfg(tmp_path, text=""):
    (tmp_path / "main.cf").write_text("myhostname = mx.test.example\n" + text)
    return load_config(str(tmp_path))


def test_lines_come_back_in_order_with_their_side():
    t = Transcript()
    t.server(b"220 mx ESMTP\r\n")
    t.client(b"EHLO c.example")
    t.server(b"250-mx\r\n250 PIPELINING\r\n")
    assert t.render() == ["S: 220 mx ESMTP", "C: EHLO c.example", "S: 250-mx", "S: 250 PIPELINING"]


def test_ring_keeps_only_the_last_lines():
    t = Transcript(size=4)
    for n in range(10):
        t.client(b"NOOP %d" % n)
    assert t.full
    assert t.render() == [
        "-- (only the last 4 commands and replies are kept)",
        "C: NOOP 6",
        "C: NOOP 7",
        "C: NOOP 8",
        "C: NOOP 9",
    ]


def test_ring_holds_a_fixed_number_of_entries():
    t = Transcript(size=8)
    for n in range(1000):
        t.client(b"RCPT TO:<u%d@x.example>" % n)
        t.server(b"250 2.1.5 Ok\r\n")
    assert len(t) == 8 and t.maxlen == 8


def test_long_line_is_cut_when_recorded():
    t = Transcript()
    t.client(b"X" * 5000)
    assert len(t[0]) == TRANSCRIPT_LINE_BYTES
    (line,) = t.render()
    assert line.endswith(" ...(cut)") and len(line) < TRANSCRIPT_LINE_BYTES + 20


def test_short_line_is_kept_without_a_copy():
    t = Transcript()
    line = b"MAIL FROM:<a@b.example>"
    t.client(line)
    assert t[0] is line


def test_render_drops_oldest_lines_to_fit_the_byte_limit():
    t = Transcript()
    for n in range(50):
        t.client(b"VRFY %02d" % n + b"y" * 90)
    lines = t.render(limit=1000)
    assert sum(len(x) + 1 for x in lines[1:]) <= 1000
    assert lines[0] == "-- (41 earlier lines left out to fit)"
    assert lines[-1].startswith("C: VRFY 49")


def test_message_content_stands_as_one_note():
    t = Transcript()
    t.client(b"DATA")
    t.server(b"354 go ahead\r\n")
    t.note(NOTE_CONTENT)
    t.client(b".")
    assert t.render() == [
        "C: DATA",
        "S: 354 go ahead",
        "-- (message content not shown)",
        "C: .",
    ]


def test_long_reply_is_cut_when_shown():
    t = Transcript()
    t.server(b"550 " + b"z" * 3000 + b"\r\n")
    (line,) = t.render()
    assert line.startswith("S: 550 zzz") and line.endswith(" ...(cut)")
    assert len(line) < TRANSCRIPT_LINE_BYTES + 20


def test_unprintable_bytes_are_escaped():
    assert show_bytes(b"HELO \xff\x00x\\y") == "HELO \\xff\\x00x\\\\y"
    assert show_bytes(b"plain text") == "plain text"


def test_notify_mask_reads_the_smtpd_classes(tmp_path):
    assert notify_mask(cfg(tmp_path)) == NOTIFY_RESOURCE | NOTIFY_SOFTWARE
    mask = notify_mask(cfg(tmp_path, "notify_classes = Protocol, policy, bounce, delay\n"))
    assert mask == NOTIFY_PROTOCOL | NOTIFY_POLICY | NOTIFY_BOUNCE  # delay is qmgr's


def test_class_names_follow_the_documented_order():
    assert class_names(NOTIFY_POLICY | NOTIFY_RESOURCE) == ["resource", "policy"]


def test_notice_is_a_plain_ascii_mail_to_the_error_recipient(tmp_path):
    t = Transcript()
    t.client(b"BOGUS \xe9t\xe9")
    t.server(b"502 5.5.2 Error: command not recognized\r\n")
    data = make_error_notice(
        cfg(tmp_path, "error_notice_recipient = hostmaster\n"),
        "client.example[192.0.2.1]",
        NOTIFY_PROTOCOL,
        t,
    )
    assert data.isascii()
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["To"] == "hostmaster"
    assert msg["From"].addresses[0].addr_spec == "MAILER-DAEMON@mx.test.example"
    assert msg["Subject"] == "mta SMTP server: errors from client.example[192.0.2.1]"
    assert msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_content()
    assert "client.example[192.0.2.1]: protocol." in body
    assert "C: BOGUS \\xe9t\\xe9\nS: 502 5.5.2 Error: command not recognized\n" in body


def test_notice_without_transcript_says_so(tmp_path):
    data = make_error_notice(cfg(tmp_path), "h[192.0.2.2]", NOTIFY_SOFTWARE, None)
    assert b"-- (no transcript was kept)" in data


def test_cleanup_refusals_are_classified_by_their_reply():
    from mta.cleanup.cleanup import REPLY_LOOKUP_ERROR, REPLY_TOO_BIG, REPLY_WRITE_ERROR
    from mta.smtpd.session import CLEANUP_CLASSES

    assert CLEANUP_CLASSES[REPLY_WRITE_ERROR] == NOTIFY_RESOURCE
    assert CLEANUP_CLASSES[REPLY_LOOKUP_ERROR] == NOTIFY_RESOURCE
    assert CLEANUP_CLASSES[REPLY_TOO_BIG] == NOTIFY_BOUNCE
    assert CLEANUP_CLASSES.get("5.7.1 message content rejected", NOTIFY_POLICY) == NOTIFY_POLICY
