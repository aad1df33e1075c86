"""strict_7bit_headers, strict_8bitmime_body, strict_8bitmime, strict_mime_encoding_domain."""

import pytest

from mta.cleanup.mime_strict import (
    DETAIL_8BIT_BODY,
    DETAIL_8BIT_HEADER,
    DETAIL_DOMAIN,
    domain_error,
    parse_encoding,
)

HEADERS = "strict_7bit_headers = yes\n"
BODY = "strict_8bitmime_body = yes\n"
BOTH = "strict_8bitmime = yes\n"
DOMAIN = "strict_mime_encoding_domain = yes\n"

PLAIN_8BIT_BODY = b"Subject: s\n\ncaf\xc3\xa9\n"
EIGHT_BIT_HEADER = b"Subject: caf\xc3\xa9\n\nbody\n"
DECLARED_8BIT = (
    b"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: 8bit\n\ncaf\xc3\xa9\n"
)
MULTIPART = (
    b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b1\n\n"
    b"prolog\n--b1\nContent-Type: text/plain\nContent-Transfer-Encoding: %s\n\n"
    b"%s\n--b1\nContent-Type: text/plain\n\nplain part\n--b1--\nepilog\n"
)
NESTED_HEADER = (
    b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b1\n\n"
    b"--b1\nContent-Type: message/rfc822\n\nSubject: caf\xc3\xa9\n\nbody\n--b1--\n"
)


def test_parse_encoding():
    assert parse_encoding(b" Quoted-Printable (comment)") == "quoted-printable"
    assert parse_encoding(b"x-unknown") == "7bit"


@pytest.mark.parametrize(
    ("kind", "encoding", "wrong"),
    [
        ("multipart/mixed", "base64", True),
        ("multipart/mixed", "8bit", False),
        ("message/rfc822", "quoted-printable", True),
        ("message/rfc822", "binary", False),
        ("message/partial", "8bit", True),
        ("message/external-body", "7bit", False),
        ("text/plain", "base64", False),
    ],
)
def test_domain_error(kind, encoding, wrong):
    assert domain_error(kind, encoding) is wrong


def test_everything_passes_by_default(instance):
    inst = instance()
    for content in (PLAIN_8BIT_BODY, EIGHT_BIT_HEADER, NESTED_HEADER):
        assert inst.run(content).result.action == "queued"


@pytest.mark.parametrize("setting", [HEADERS, BOTH])
def test_8bit_header_is_rejected(instance, setting):
    inst = instance(setting)
    out = inst.run(EIGHT_BIT_HEADER)
    assert (out.result.action, out.result.reply) == ("rejected", DETAIL_8BIT_HEADER)
    assert inst.files() == []
    log = inst.maillog()
    assert ": reject: mime-error improper use of 8-bit data in message header: Subject: caf" in log
    assert "from client.example[192.0.2.1]; from=<sender@example.org> to=<rcpt@example.net>" in log


def test_8bit_header_of_an_attached_message_is_rejected(instance):
    out = instance(HEADERS).run(NESTED_HEADER)
    assert out.result.reply == DETAIL_8BIT_HEADER


def test_8bit_headers_pass_when_only_the_body_is_checked(instance):
    assert instance(BODY).run(EIGHT_BIT_HEADER).result.action == "queued"


@pytest.mark.parametrize("setting", [BODY, BOTH])
def test_undeclared_8bit_body_is_rejected(instance, setting):
    out = instance(setting).run(PLAIN_8BIT_BODY)
    assert (out.result.action, out.result.reply) == ("rejected", DETAIL_8BIT_BODY)


def test_declared_8bit_body_passes(instance):
    out = instance(BOTH).run(DECLARED_8BIT)
    assert out.result.action == "queued"
    assert out.content.endswith(b"caf\xc3\xa9\n")


@pytest.mark.parametrize(
    ("encoding", "text", "action"),
    [
        (b"8bit", b"caf\xc3\xa9", "queued"),
        (b"7bit", b"caf\xc3\xa9", "rejected"),
        (b"quoted-printable", b"caf\xc3\xa9", "queued"),  # Postfix checks only 7bit parts
        (b"7bit", b"plain", "queued"),
    ],
)
def test_body_parts_are_checked_by_their_own_encoding(instance, encoding, text, action):
    out = instance(BODY).run(MULTIPART % (encoding, text))
    assert out.result.action == action


def test_8bit_in_a_multipart_epilog_is_rejected(instance):
    content = (MULTIPART % (b"8bit", b"x")) + b"caf\xc3\xa9\n"
    assert instance(BODY).run(content).result.reply == DETAIL_8BIT_BODY


@pytest.mark.parametrize(
    ("content", "action"),
    [
        (
            b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n"
            b"Content-Transfer-Encoding: base64\n\n--b\n\nx\n--b--\n",
            "rejected",
        ),
        (
            b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
            b"Content-Type: message/rfc822\nContent-Transfer-Encoding: quoted-printable\n\n"
            b"Subject: x\n\nbody\n--b--\n",
            "rejected",
        ),
        (
            b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
            b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\naGk=\n--b--\n",
            "queued",
        ),
    ],
)
def test_encoding_domain(instance, content, action):
    out = instance(DOMAIN).run(content)
    assert out.result.action == action
    if action == "rejected":
        assert out.result.reply == DETAIL_DOMAIN


def test_header_checks_reject_wins_over_a_mime_error(instance, tmp_path):
    (tmp_path / "hc").write_text("/^Subject:/ REJECT no subjects here\n")
    out = instance(HEADERS + f"header_checks = regexp:{tmp_path / 'hc'}\n").run(EIGHT_BIT_HEADER)
    assert out.result.reply == "5.7.1 no subjects here"


def test_internal_mail_is_not_checked(instance):
    assert instance(BOTH).run(PLAIN_8BIT_BODY, internal=True).result.action == "queued"


def test_disable_mime_input_processing_turns_the_checks_off(instance):
    inst = instance(BOTH + "disable_mime_input_processing = yes\n")
    assert inst.run(EIGHT_BIT_HEADER).result.action == "queued"


def test_notices_are_not_checked(instance):
    from mta.bounce.notice import open_notice

    inst = instance(BOTH)
    job = open_notice(inst.cleanup, ["postmaster@example.org"], EIGHT_BIT_HEADER, postmaster=True)
    assert job.close().action == "queued"
