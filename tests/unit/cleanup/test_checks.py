"""header_checks, mime_header_checks, nested_header_checks and body_checks in cleanup."""

import re

import pytest

from mta.cleanup.checks import Action, parse_action, reject_text
from mta.maps import clear_cache
from mta.queue.queue_file import read_queue_file

MSG = (
    b"Subject: buy cheap stuff\r\n"
    b"From: spammer@example.org\r\n"
    b"X-Mailer: Foo\r\n"
    b"\r\n"
    b"line one\r\n"
    b"click here now\r\n"
)


def checks(instance, tmp_path, header="", body="", mime=None, nested=None):
    lines = []
    if header:
        (tmp_path / "hc").write_text(header)
        lines.append(f"header_checks = regexp:{tmp_path / 'hc'}")
    if body:
        (tmp_path / "bc").write_text(body)
        lines.append(f"body_checks = pcre:{tmp_path / 'bc'}")
    if mime is not None:
        (tmp_path / "mc").write_text(mime)
        lines.append(f"mime_header_checks = regexp:{tmp_path / 'mc'}")
    if nested is not None:
        (tmp_path / "nc").write_text(nested)
        lines.append(f"nested_header_checks = regexp:{tmp_path / 'nc'}")
    return instance("\n".join(lines) + "\n")


# ---- action parsing


def test_parse_action_case_insensitive():
    assert parse_action("reject no thanks") == Action("REJECT", "no thanks")
    assert parse_action("PREPEND X-A: b") == Action("PREPEND", "X-A: b")
    assert parse_action("dunno") == Action("DUNNO", "")


def test_unknown_action_is_no_action():
    assert parse_action("FROBNICATE x").verb == ""


@pytest.mark.parametrize(
    "text, reply",
    [
        ("", "5.7.1 message content rejected"),
        ("go away", "5.7.1 go away"),
        ("5.7.0 custom", "5.7.0 custom"),
        ("554 5.7.9 with code", "5.7.9 with code"),
    ],
)
def test_reject_text(text, reply):
    assert reject_text(text) == reply


# ---- header actions


def test_header_reject_logs_postfix_line(instance, tmp_path):
    inst = checks(instance, tmp_path, header="/^Subject:.*cheap/ REJECT no spam here\n")
    out = inst.run(MSG)
    assert (out.result.action, out.result.reply) == ("rejected", "5.7.1 no spam here")
    assert inst.files() == []
    qid = out.result.queue_id
    assert (
        f"{qid}: reject: header Subject: buy cheap stuff from client.example[192.0.2.1]; "
        "from=<sender@example.org> to=<rcpt@example.net> proto=ESMTP helo=<helo.example>: "
        "5.7.1 no spam here"
    ) in inst.maillog()


def test_header_checks_see_unfolded_header(instance, tmp_path):
    inst = checks(instance, tmp_path, header="/^Subject: buy cheap stuff$/ REJECT\n")
    out = inst.run(b"Subject: buy\r\n cheap stuff\r\n\r\nx\r\n")
    assert out.result.reply == "5.7.1 message content rejected"


def test_header_discard(instance, tmp_path):
    inst = checks(instance, tmp_path, header="/^X-Mailer: Foo/ DISCARD bye\n")
    out = inst.run(MSG)
    assert out.result.action == "discarded" and inst.files() == []
    assert f"{out.result.queue_id}: discard: header X-Mailer: Foo from" in inst.maillog()


def test_header_hold(instance, tmp_path):
    inst = checks(instance, tmp_path, header="/^X-Mailer:/ HOLD look at this\n")
    out = inst.run(MSG)
    assert out.result.action == "queued" and out.result.hold
    assert inst.files("hold") and not inst.files("incoming")
    assert ": hold: header X-Mailer: Foo from" in inst.maillog()


def test_header_redirect_and_filter_are_envelope_attributes(instance, tmp_path):
    inst = checks(
        instance,
        tmp_path,
        header="/^X-Mailer:/ REDIRECT trap@example.org\n/^From:/ FILTER scan:[127.0.0.1]:10025\n",
    )
    out = inst.run(MSG)
    assert out.msg.attrs["redirect"] == "trap@example.org"
    assert out.msg.attrs["filter"] == "scan:[127.0.0.1]:10025"


def test_header_warn_keeps_message(instance, tmp_path):
    inst = checks(instance, tmp_path, header="/^Subject:/ WARN suspicious\n")
    out = inst.run(MSG)
    assert out.result.action == "queued"
    assert ": warning: header Subject: buy cheap stuff from" in inst.maillog()
    assert inst.maillog().count("suspicious") == 1


def test_header_ignore_removes_header(instance, tmp_path):
    inst = checks(instance, tmp_path, header="/^X-Mailer:/ IGNORE\n")
    out = inst.run(MSG)
    assert out.email["X-Mailer"] is None and out.email["Subject"]


def test_header_prepend(instance, tmp_path):
    inst = checks(instance, tmp_path, header="/^X-Mailer:/ PREPEND X-Seen: yes\n")
    lines = inst.run(MSG).header_lines()
    i = lines.index(b"X-Mailer: Foo")
    assert lines[i - 1] == b"X-Seen: yes"


def test_header_replace(instance, tmp_path):
    inst = checks(instance, tmp_path, header="/^Subject: (.*)/ REPLACE Subject: [SPAM] $1\n")
    assert inst.run(MSG).email["Subject"] == "[SPAM] buy cheap stuff"


def test_header_bcc(instance, tmp_path):
    inst = checks(instance, tmp_path, header="/^X-Mailer:/ BCC archive@example.org\n")
    out = inst.run(MSG)
    assert [r.address for r in out.msg.recipients] == ["rcpt@example.net", "archive@example.org"]


def test_pass_stops_checks(instance, tmp_path):
    inst = checks(instance, tmp_path, header="/^Subject:/ PASS trusted\n/^X-Mailer:/ REJECT\n")
    assert inst.run(MSG).result.action == "queued"


def test_reject_stops_inspection(instance, tmp_path):
    inst = checks(instance, tmp_path, header="/^Subject:/ REJECT\n/^X-Mailer:/ WARN later\n")
    inst.run(MSG)
    assert "later" not in inst.maillog()


# ---- body actions


def test_body_reject(instance, tmp_path):
    inst = checks(instance, tmp_path, body="/click here/ REJECT no links\n")
    out = inst.run(MSG)
    assert (out.result.action, out.result.reply) == ("rejected", "5.7.1 no links")
    assert ": reject: body click here now from client.example[192.0.2.1]" in inst.maillog()


def test_body_checks_do_not_see_headers(instance, tmp_path):
    inst = checks(instance, tmp_path, body="/cheap/ REJECT\n")
    assert inst.run(MSG).result.action == "queued"


def test_body_replace_and_ignore(instance, tmp_path):
    inst = checks(instance, tmp_path, body="/^line one$/ REPLACE line 1\n/click/ IGNORE\n")
    assert inst.run(MSG).email.get_payload() == "line 1\n"


def test_body_redirect_goes_to_extracted_section(instance, tmp_path):
    inst = checks(instance, tmp_path, body="/click/ REDIRECT trap@example.org\n")
    out = inst.run(MSG)
    assert read_queue_file(out.path).attrs["redirect"] == "trap@example.org"


def test_body_bcc_after_envelope(instance, tmp_path):
    inst = checks(instance, tmp_path, body="/click/ BCC copy@example.org\n")
    out = inst.run(MSG)
    assert [r.address for r in out.msg.recipients][-1] == "copy@example.org"
    assert out.msg.recipients[-1].notify == 1


def test_body_checks_size_limit(instance, tmp_path):
    inst = checks(instance, tmp_path, body="/needle/ REJECT\n")
    inst2 = instance(f"body_checks = pcre:{tmp_path / 'bc'}\nbody_checks_size_limit = 100\n")
    late = b"Subject: x\r\n\r\n" + b"filler\r\n" * 50 + b"needle\r\n"
    assert inst.run(late).result.action == "rejected"
    assert inst2.run(late).result.action == "queued"


def test_body_unterminated_last_line_checked(instance, tmp_path):
    inst = checks(instance, tmp_path, body="/^needle$/ REJECT\n")
    assert inst.run(b"Subject: x\r\n\r\nneedle").result.action == "rejected"


# ---- MIME


MIME_MSG = (
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"Subject: mime\r\n"
    b"\r\n"
    b"preamble\r\n"
    b"--outer\r\n"
    b"Content-Type: text/plain\r\n"
    b"X-Part: one\r\n"
    b"\r\n"
    b"part one body\r\n"
    b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"Subject: inner subject\r\n"
    b"From: inner@example.org\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--outer\r\n"
    b"Content-Type: application/x-evil; name=bad.exe\r\n"
    b"\r\n"
    b"AAAA\r\n"
    b"--outer--\r\n"
    b"epilogue\r\n"
)


def test_mime_header_checks_see_part_headers(instance, tmp_path):
    inst = checks(instance, tmp_path, mime="/^Content-Type:.*name=.*\\.exe/ REJECT no exe\n")
    out = inst.run(MIME_MSG)
    assert out.result.reply == "5.7.1 no exe"
    assert "reject: header Content-Type: application/x-evil; name=bad.exe" in inst.maillog()


def test_nested_header_checks_see_attached_message(instance, tmp_path):
    inst = checks(instance, tmp_path, nested="/^Subject: inner/ REJECT nested\n", mime="")
    assert inst.run(MIME_MSG).result.reply == "5.7.1 nested"


def test_header_checks_do_not_see_nested_headers(instance, tmp_path):
    inst = checks(instance, tmp_path, header="/^Subject: inner/ REJECT\n", nested="", mime="")
    assert inst.run(MIME_MSG).result.action == "queued"


def test_body_checks_see_boundaries_not_part_headers(instance, tmp_path):
    inst = checks(instance, tmp_path, body="/^X-Part/ REJECT\n")
    assert inst.run(MIME_MSG).result.action == "queued"
    clear_cache()
    inst = checks(instance, tmp_path, body="/^--outer--$/ REJECT closing\n")
    assert inst.run(MIME_MSG).result.reply == "5.7.1 closing"


def test_mime_message_content_intact(instance, tmp_path):
    inst = checks(instance, tmp_path, body="/nothing matches this/ REJECT\n")
    out = inst.run(MIME_MSG)
    parts = [p.get_content_type() for p in out.email.walk()]
    assert parts == [
        "multipart/mixed",
        "text/plain",
        "message/rfc822",
        "text/plain",
        "application/x-evil",
    ]
    assert re.search(rb"\n\nepilogue\n$|epilogue\n$", out.content)


def test_filter_no_longer_holds_the_message(instance, tmp_path):
    inst = checks(instance, tmp_path, header="/^From:/ FILTER scan:[127.0.0.1]:10025\n")
    out = inst.run(MSG)
    assert out.result.action == "queued" and not out.result.hold
    assert inst.files("incoming") and not inst.files("hold")
    assert out.msg.attrs["filter"] == "scan:[127.0.0.1]:10025"
    assert "not implemented" not in inst.maillog()
