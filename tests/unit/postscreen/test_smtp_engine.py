"""The dummy engine's line reader (bare newlines, pipelining, length limit), the
non-SMTP command test and the log escaping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.common.forbidden_commands import ForbiddenCommands, is_non_smtp
from mta.postscreen.engine import ehlo_reply
from mta.postscreen.smtp_engine import LineReader, LineTooLong, printable

STOCK_FORBIDDEN = ["CONNECT", "GET", "POST", "regexp:{{/^[^A-Z]/ Bogus}}"]


def test_lines_bare_newlines_and_pipelined_input():
    reader = LineReader(100)
    assert reader.feed(b"EHLO a\r\nMAIL FROM:<x>\nRC") == [
        (b"EHLO a", False, True),
        (b"MAIL FROM:<x>", True, True),
    ]
    assert reader.feed(b"PT TO:<y>\r\n") == [(b"RCPT TO:<y>", False, False)]


def test_a_line_longer_than_the_limit_is_refused_without_keeping_it():
    reader = LineReader(16)
    with pytest.raises(LineTooLong):
        reader.feed(b"X" * 17)
    with pytest.raises(LineTooLong):
        LineReader(16).feed(b"Y" * 20 + b"\r\n")


@given(
    lines=st.lists(st.binary(max_size=30).filter(lambda b: b"\n" not in b), max_size=8),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_chunking_never_changes_the_lines(lines, cuts):
    data = b"".join(line + b"\r\n" for line in lines)
    whole = [x[0] for x in LineReader(1000).feed(data)]
    reader = LineReader(1000)
    parts, start = [], 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        parts.append(data[start:cut])
        start = cut
    parts.append(data[start:])
    pieces = [x[0] for part in parts for x in reader.feed(part)]
    assert pieces == whole
    assert [w.rstrip(b"\r") for w in whole] == [line.rstrip(b"\r") for line in lines]


def test_non_smtp_commands_of_the_stock_list_and_header_labels():
    forbidden = ForbiddenCommands(STOCK_FORBIDDEN)
    for line in (
        b"CONNECT 1.2.3.4:25 HTTP/1.0",
        b"get / HTTP/1.1",
        b"POST /x",
        b"\x16\x03\x01",
        b"Subject: buy now",
        b"From : x",
    ):
        assert is_non_smtp(line, forbidden), line
    for line in (b"EHLO client.example", b"ehlo x", b"MAIL FROM:<a@b>", b"RCPT TO:<c@d>", b"QUIT"):
        assert not is_non_smtp(line, forbidden), line


def test_printable_escapes_and_truncates():
    assert printable(b"EHLO x\r\n\t\x01") == "EHLO x\\r\\n\\t\\001"
    assert printable(b"A" * 150) == "A" * 100


class _Server:
    hostname = "mx.example"
    size_limit = 10240000
    disable_vrfy = False
    discard_ehlo: set[str] = set()


def test_ehlo_announces_neither_pipelining_nor_starttls():
    server = _Server()
    reply = ehlo_reply(server)
    assert reply.startswith("250-mx.example\r\n250-SIZE 10240000\r\n")
    assert "PIPELINING" not in reply and "STARTTLS" not in reply
    server.discard_ehlo = {"SIZE", "SMTPUTF8"}
    server.disable_vrfy = True
    assert ehlo_reply(server) == (
        "250-mx.example\r\n250-ETRN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 DSN"
    )
