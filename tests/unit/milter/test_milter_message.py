"""milter.message: the held message, what milters see of it, and their edits."""

from __future__ import annotations

import io
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from mta.milter import protocol as P
from mta.milter.message import MilterMessage

RAW = (
    b"Received: from a\r\n\tby b\r\n"
    b"Subject: hi\r\n"
    b"X-Tag: one\r\n"
    b"x-tag: two\r\n"
    b"\r\n"
    b"line 1\r\nline 2\n"
)


def parsed(raw: bytes = RAW) -> MilterMessage:
    return MilterMessage.parse(io.BytesIO(raw))


def out(msg: MilterMessage) -> bytes:
    buf = io.BytesIO()
    msg.write_to(buf.write)
    return buf.getvalue()


def reply(cmd, *strings, index=None):
    data = (struct.pack("!I", index) if index is not None else b"") + P.cstrings(*strings)
    return P.parse_reply(cmd, data)


def test_headers_body_and_folding():
    msg = parsed()
    assert [n for n, _ in msg.headers] == [b"Received", b"Subject", b"X-Tag", b"x-tag"]
    assert msg.header_value(msg.headers[0][1], False) == b"from a\n\tby b"
    assert msg.header_value(msg.headers[1][1], True) == b" hi"
    assert b"".join(msg.body_chunks()) == b"line 1\r\nline 2\r\n"  # CRLF for the milter


def test_unchanged_message_is_written_as_it_came():
    assert out(parsed()) == RAW.replace(b"line 2\n", b"line 2\r\n")


def test_body_chunks_are_bounded():
    body = b"x" * 100 + b"\r\n"
    msg = parsed(b"A: b\r\n\r\n" + body * 1000)
    chunks = list(msg.body_chunks())
    assert all(len(c) <= P.MILTER_CHUNK_SIZE for c in chunks)
    assert b"".join(chunks) == body * 1000


def _crlf_by_lines(body: bytes) -> bytes:
    """The reference: each LF-ended line gets CRLF, nothing else changes."""
    out = []
    for line in io.BytesIO(body):
        if line.endswith(b"\n") and not line.endswith(b"\r\n"):
            line = line[:-1] + b"\r\n"
        out.append(line)
    return b"".join(out)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"xyz" * 7]), max_size=200),
    st.integers(1, 40),
    st.integers(1, 64),
)
def test_body_chunks_match_the_line_by_line_reference(pieces, size, block):
    import mta.milter.message as M

    body = b"".join(pieces)
    old, M.READ_BLOCK = M.READ_BLOCK, block  # blocks cut anywhere, CRLF split too
    try:
        msg = parsed(b"Subject: x\r\n\r\n" + body)
        chunks = list(msg.body_chunks(size))
    finally:
        M.READ_BLOCK = old
    assert b"".join(chunks) == _crlf_by_lines(body)
    assert all(0 < len(c) <= size for c in chunks)


def test_a_non_header_line_starts_the_body():
    msg = parsed(b"A: b\r\nnot a header\r\nmore\r\n")
    assert msg.headers == [(b"A", b" b")]
    assert out(msg) == b"A: b\r\n\r\nnot a header\r\nmore\r\n"


def test_header_edits():
    msg = parsed()
    msg.apply(
        [
            reply(P.SMFIR_ADDHEADER, "X-End", "last"),
            reply(P.SMFIR_INSHEADER, "X-Top", "first", index=0),
            reply(P.SMFIR_CHGHEADER, "X-TAG", "second changed", index=2),
            reply(P.SMFIR_CHGHEADER, "Subject", "", index=1),
            reply(P.SMFIR_CHGHEADER, "X-Missing", "added", index=1),
            reply(P.SMFIR_ADDHEADER, "X-Folded", "a\r\n\tb"),
        ],
        leadspc=False,
    )
    assert out(msg).split(b"\r\n\r\n")[0].split(b"\r\n") == [
        b"X-Top: first",
        b"Received: from a",
        b"\tby b",
        b"X-Tag: one",
        b"x-tag: second changed",
        b"X-End: last",
        b"X-Missing: added",
        b"X-Folded: a",
        b"\tb",
    ]


def test_leading_space_is_kept_with_hdr_leadspc():
    msg = parsed()
    msg.apply([reply(P.SMFIR_ADDHEADER, "X-A", "  two spaces")], leadspc=True)
    assert msg.headers[-1] == (b"X-A", b"  two spaces")


def test_body_replacement_in_pieces():
    msg = parsed()
    msg.apply(
        [P.Reply(P.SMFIR_REPLBODY, raw=b"new "), P.Reply(P.SMFIR_REPLBODY, raw=b"body\r\n")],
        leadspc=False,
    )
    assert out(msg).endswith(b"\r\n\r\nnew body\r\n")
    msg.close()


def test_envelope_edits_are_kept_for_the_caller():
    msg = parsed()
    hold = msg.apply(
        [
            reply(P.SMFIR_ADDRCPT, "<new@x>"),
            reply(P.SMFIR_ADDRCPT_PAR, "<par@x>", "NOTIFY=NEVER"),
            reply(P.SMFIR_DELRCPT, "<old@x>"),
            reply(P.SMFIR_CHGFROM, "<s@x>", "BODY=8BITMIME"),
            reply(P.SMFIR_QUARANTINE, "looks bad"),
        ],
        leadspc=False,
    )
    env = msg.envelope
    assert env.added == [("new@x", ""), ("par@x", "NOTIFY=NEVER")]
    assert env.deleted == ["old@x"]
    assert env.sender == ("s@x", "BODY=8BITMIME")
    assert hold == env.hold == "looks bad"


def test_header_check_can_drop_an_added_header():
    msg = parsed()
    msg.apply(
        [reply(P.SMFIR_ADDHEADER, "X-Drop", "me"), reply(P.SMFIR_ADDHEADER, "X-Keep", "me")],
        leadspc=False,
        header_check=lambda n, v: None if n == b"X-Drop" else (n, v),
    )
    assert [n for n, _ in msg.headers][-1] == b"X-Keep"
    assert b"X-Drop" not in out(msg)
