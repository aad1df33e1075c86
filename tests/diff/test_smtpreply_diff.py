"""SMTP reply parser: compiled and reference versions agree, on any chunking, and are right."""

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.smtp import reply

IMPLS = [pytest.param(reply.ReplyParser_ref, id="ref")]
if reply.ReplyParser_c is not None:
    IMPLS.append(pytest.param(reply.ReplyParser_c, id="c"))


@pytest.fixture(params=IMPLS)
def parser_cls(request):
    return request.param


def outcome(cls, chunks, line_limit=64, max_lines=5):
    p = cls(line_limit, max_lines)
    out = []
    try:
        for chunk in chunks:
            out += p.feed(chunk)
    except reply.ReplyError as exc:
        return out, ("error", str(exc))
    return out, p.pending()


def test_extension_loaded():
    if os.environ.get("MTA_NO_EXTENSIONS"):
        pytest.skip("pure build")
    assert reply.ReplyParser is reply.ReplyParser_c


def test_single_line_reply(parser_cls):
    assert parser_cls().feed(b"220 mx.example ESMTP\r\n") == [(220, "", [b"mx.example ESMTP"])]


def test_multi_line_reply_is_one_reply(parser_cls):
    got = parser_cls().feed(b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n")
    assert got == [(250, "", [b"mx.example", b"PIPELINING", b"SIZE 1000"])]


def test_enhanced_code_of_matching_class(parser_cls):
    assert parser_cls().feed(b"550 5.1.1 no such user\r\n")[0][1] == "5.1.1"


def test_enhanced_code_of_other_class_ignored(parser_cls):
    assert parser_cls().feed(b"550 4.1.1 odd\r\n")[0][1] == ""


@pytest.mark.parametrize(
    "text", [b"250 2.0.0Ok", b"250 2.0", b"250 2..0", b"250 2.1234.0 x", b"250 x2.0.0"]
)
def test_malformed_enhanced_code_ignored(parser_cls, text):
    assert parser_cls().feed(text + b"\r\n")[0][1] == ""


def test_bare_code_ends_reply(parser_cls):
    assert parser_cls().feed(b"354\r\n") == [(354, "", [b""])]


def test_bare_lf_line_end(parser_cls):
    assert parser_cls().feed(b"250 ok\n") == [(250, "", [b"ok"])]


def test_incomplete_reply_waits(parser_cls):
    p = parser_cls()
    assert p.feed(b"250-a\r\n250 b") == []
    assert p.pending()
    assert p.feed(b"\r\n") == [(250, "", [b"a", b"b"])]
    assert not p.pending()


def test_several_replies_in_one_chunk(parser_cls):
    got = parser_cls().feed(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n")
    assert [c for c, _, _ in got] == [250, 250, 354]


@pytest.mark.parametrize(
    "data",
    [b"hello\r\n", b"25 x\r\n", b"2x0 x\r\n", b"250_x\r\n", b"099 x\r\n", b"600 x\r\n"],
)
def test_garbage_raises(parser_cls, data):
    with pytest.raises(reply.ReplyError):
        parser_cls().feed(data)


def test_code_change_inside_reply_raises(parser_cls):
    with pytest.raises(reply.ReplyError):
        parser_cls().feed(b"250-a\r\n251 b\r\n")


def test_long_line_raises(parser_cls):
    with pytest.raises(reply.ReplyError):
        parser_cls(16, 5).feed(b"250 " + b"x" * 20 + b"\r\n")


def test_long_incomplete_line_raises(parser_cls):
    with pytest.raises(reply.ReplyError):
        parser_cls(16, 5).feed(b"250 " + b"x" * 20)


def test_too_many_lines_raises(parser_cls):
    with pytest.raises(reply.ReplyError):
        parser_cls(64, 3).feed(b"250-a\r\n" * 4)


def reference_parse(data):
    """A different method: split the whole input into lines, then group them."""
    replies, cur = [], []
    for raw in data.split(b"\n")[:-1]:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        cur.append(line[4:])
        if line[3:4] != b"-":
            replies.append((int(line[:3]), cur))
            cur = []
    return replies


line_st = st.builds(
    lambda code, text, end: (code, text, end),
    st.sampled_from([220, 250, 354, 421, 451, 550]),
    st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
    st.sampled_from([b"\r\n", b"\n"]),
)


@st.composite
def wellformed(draw):
    out = bytearray()
    for _ in range(draw(st.integers(1, 5))):
        code = draw(st.sampled_from([220, 250, 354, 421, 451, 550]))
        lines = draw(st.lists(line_st, min_size=1, max_size=4))
        for i, (_, text, end) in enumerate(lines):
            sep = b" " if i == len(lines) - 1 else b"-"
            out += b"%d%s%s%s" % (code, sep, text, end)
    return bytes(out)


def chunked(data, cuts):
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, prev = [], 0
    for p in points + [len(data)]:
        pieces.append(data[prev:p])
        prev = p
    return pieces


@settings(max_examples=200, deadline=None)
@given(data=wellformed(), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_any_chunking_parses_the_same(data, cuts):
    for cls in [p.values[0] for p in IMPLS]:
        whole = outcome(cls, [data], 4096, 100)
        assert outcome(cls, chunked(data, cuts), 4096, 100) == whole
        assert [(c, lines) for c, _, lines in whole[0]] == reference_parse(data)


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=200).map(lambda b: b.replace(b"\x00", b"2")),
    cuts=st.lists(st.integers(0, 1000), max_size=5),
)
def test_c_agrees_with_ref_on_any_bytes(data, cuts):
    if reply.ReplyParser_c is None:
        return
    chunks = chunked(data, cuts)
    assert outcome(reply.ReplyParser_c, chunks) == outcome(reply.ReplyParser_ref, chunks)


@pytest.mark.skipif(reply.ReplyParser_c is None, reason="extension not built")
@pytest.mark.parametrize("seed", range(200))
def test_c_agrees_with_ref_random(seed):
    rnd = random.Random(seed)
    parts = [b"250", b"-", b" ", b"\r\n", b"\n", b"5.1.1", b"2.0.0 ", b"x", b"550", b"4", b"\r"]
    data = b"".join(rnd.choice(parts) for _ in range(rnd.randrange(60)))
    chunks = chunked(data, [rnd.randrange(100) for _ in range(3)])
    assert outcome(reply.ReplyParser_c, chunks) == outcome(reply.ReplyParser_ref, chunks)
