"""8-bit to quoted-printable downgrade, checked with the stdlib email parser."""

import email
import email.policy

from mta.smtp.mime_7bit import downgrade_8bit

TEXT = "Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ncaf\u00e9 cr\u00e8me\r\n"


def parse(data):
    return email.message_from_bytes(data, policy=email.policy.default)


def test_seven_bit_untouched():
    data = b"Subject: x\r\n\r\nplain\r\n"
    assert downgrade_8bit(data) is data


def test_text_body_becomes_quoted_printable():
    out = downgrade_8bit(TEXT.encode())
    assert out.isascii()
    msg = parse(out)
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg.get_content().replace("\r\n", "\n") == "caf\u00e9 cr\u00e8me\n"


def test_existing_cte_replaced():
    data = TEXT.replace("Subject: x\r\n", "Subject: x\r\nContent-Transfer-Encoding: 8bit\r\n")
    out = downgrade_8bit(data.encode())
    assert out.count(b"Content-Transfer-Encoding") == 1


def test_multipart_parts_converted_and_structure_kept():
    data = (
        "Subject: x\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="BB"\r\n\r\n'
        "preamble\r\n--BB\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n\u00fcber\r\n"
        "--BB\r\nContent-Type: text/plain\r\n\r\nascii part\r\n--BB--\r\nepilogue\r\n"
    ).encode()
    out = downgrade_8bit(data)
    assert out.isascii()
    msg = parse(out)
    parts = list(msg.iter_parts())
    assert [p.get_content() for p in parts] == ["\u00fcber", "ascii part"]
    assert parts[0]["Content-Transfer-Encoding"] == "quoted-printable"
    assert b"preamble\r\n" in out and out.endswith(b"epilogue\r\n")


def test_long_line_soft_broken():
    data = ("Content-Type: text/plain; charset=utf-8\r\n\r\n" + "\u00e9" * 100 + "\r\n").encode()
    out = downgrade_8bit(data)
    assert max(len(line) for line in out.split(b"\r\n")) <= 76
    assert parse(out).get_content().rstrip() == "\u00e9" * 100
