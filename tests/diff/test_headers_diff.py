"""Header kernels: compiled and reference versions agree, and both are right."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.cleanup import header_parse as H
from tests.oracles.email_oracle import header_fields

PARSERS = [pytest.param(H.HeaderParser_ref, id="ref")]
UNFOLDS = [pytest.param(H.unfold_ref, id="ref")]
FOLDS = [pytest.param(H.fold_ref, id="ref")]
IS_HEADER = [pytest.param(H.is_header_ref, id="ref")]
if H.HeaderParser_c is not None:
    PARSERS.append(pytest.param(H.HeaderParser_c, id="c"))
    UNFOLDS.append(pytest.param(H.unfold_c, id="c"))
    FOLDS.append(pytest.param(H.fold_c, id="c"))
    IS_HEADER.append(pytest.param(H.is_header_c, id="c"))


@pytest.fixture(params=PARSERS)
def parser_cls(request):
    return request.param


def test_extension_loaded():
    if os.environ.get("MTA_NO_EXTENSIONS"):
        pytest.skip("pure build")
    assert H.HeaderParser is H.HeaderParser_c
    assert H.unfold is H.unfold_c


def run(cls, chunks, limit=102400):
    """Headers, end state, and the body: rest plus the chunks never fed."""
    p = cls(limit)
    out = []
    for i, chunk in enumerate(chunks):
        out += p.feed(chunk)
        if p.done:
            return out, p.done, p.blank, p.rest + b"".join(chunks[i + 1 :]), p.truncated
    out += p.finish()
    return out, p.done, p.blank, p.rest, p.truncated


MSG = (
    b"Received: from a\r\n\tby b; Sat, 1 Jan 2000 00:00:00 +0000\r\n"
    b"From: Ann <ann@example.org>\r\n"
    b"Subject: hello\r\n   world\r\n"
    b"X-Thing : odd spacing\r\n"
    b"\r\n"
    b"body line\r\n"
)


def test_logical_headers(parser_cls):
    out, done, blank, rest, _ = run(parser_cls, [MSG])
    assert out == [
        (b"received", b"Received: from a\n\tby b; Sat, 1 Jan 2000 00:00:00 +0000", H.HDR_RECEIVED),
        (b"from", b"From: Ann <ann@example.org>", H.HDR_FROM),
        (b"subject", b"Subject: hello\n   world", H.HDR_SUBJECT),
        (b"x-thing", b"X-Thing : odd spacing", 0),
    ]
    assert (done, blank, rest) == (True, True, b"body line\r\n")


def test_non_header_line_starts_body(parser_cls):
    out, done, blank, rest, _ = run(parser_cls, [b"From: a\nthis is body\nmore\n"])
    assert out == [(b"from", b"From: a", H.HDR_FROM)]
    assert (done, blank, rest) == (True, False, b"this is body\nmore\n")


def test_leading_continuation_is_body(parser_cls):
    out, done, blank, rest, _ = run(parser_cls, [b" indented\nFrom: a\n"])
    assert (out, done, blank, rest) == ([], True, False, b" indented\nFrom: a\n")


def test_header_size_limit_truncates(parser_cls):
    long = b"X-Long: " + b"a" * 50 + b"\n" + b" b" * 40 + b"\nTo: x\n\n"
    out, _, _, _, truncated = run(parser_cls, [long], limit=30)
    assert out[0] == (b"x-long", b"X-Long: " + b"a" * 22, 0)
    assert out[1] == (b"to", b"To: x", H.HDR_TO)
    assert truncated == 1


def test_finish_flushes_unterminated_header(parser_cls):
    out, done, blank, rest, _ = run(parser_cls, [b"From: a\nSubject: b"])
    assert out == [(b"from", b"From: a", H.HDR_FROM), (b"subject", b"Subject: b", H.HDR_SUBJECT)]
    assert done and not blank


def test_feed_line(parser_cls):
    p = parser_cls(1000)
    assert p.feed_line(b"Content-Type: text/plain;") == []
    assert p.feed_line(b"\tcharset=us-ascii") == []
    assert p.feed_line(b"") == [
        (b"content-type", b"Content-Type: text/plain;\n\tcharset=us-ascii", H.HDR_CONTENT_TYPE)
    ]
    assert p.done and p.blank


def test_feed_line_body_line_kept(parser_cls):
    p = parser_cls(1000)
    p.feed_line(b"A: b")
    p.feed_line(b"--boundary")
    assert p.done and not p.blank and p.rest == b"--boundary"


def test_feed_after_done_is_an_error(parser_cls):
    p = parser_cls(1000)
    p.feed(b"\n")
    with pytest.raises(ValueError):
        p.feed(b"x")


@pytest.mark.parametrize("fn", IS_HEADER)
def test_is_header(fn):
    assert fn(b"Subject: x") == 7
    assert fn(b"Subject  :x") == 7
    assert fn(b"Sub ject: x") == 0
    assert fn(b": x") == 0
    assert fn(b"From jdoe Mon") == 0
    assert fn(b"X\xffY: z") == 0
    assert fn(b"") == 0


@pytest.mark.parametrize("fn", UNFOLDS)
def test_unfold(fn):
    assert fn(b"Subject: a\n b\r\n\tc") == b"Subject: a b\tc"
    assert fn(b"plain") == b"plain"


@pytest.mark.parametrize("fn", FOLDS)
def test_fold_short_stays(fn):
    assert fn(b"Subject", b"short") == b"Subject: short"


@pytest.mark.parametrize("fn", FOLDS)
def test_fold_breaks_before_blanks(fn):
    folded = fn(b"To", b", ".join(b"user%d@example.org" % i for i in range(10)), 40)
    lines = folded.split(b"\n")
    assert len(lines) > 1
    assert all(len(line) <= 40 for line in lines)
    assert all(line[:1] == b" " for line in lines[1:])


def test_header_id_table():
    assert H.header_id(b"resent-from") == H.HDR_RESENT_FROM
    assert H.header_id(b"x-mailer") == 0
    if H.header_id_c is not None:
        for name in H.HEADER_NAMES:
            assert H.header_id_c(name) == H.header_id_ref(name)


# ---- properties

FIELD = st.sampled_from([b"From", b"To", b"Subject", b"X-A", b"Received", b"Cc"])
WORD = st.binary(min_size=1, max_size=12).map(
    lambda b: bytes(c for c in b if c > 32 and c != 127 and c < 128) or b"w"
)
VALUE = st.lists(WORD, min_size=1, max_size=8).map(b" ".join)


@st.composite
def header_block(draw):
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(FIELD)
        first = draw(VALUE)
        line = name + b": " + first
        for _ in range(draw(st.integers(0, 2))):
            line += b"\r\n" + draw(st.sampled_from([b" ", b"\t", b"  "])) + draw(VALUE)
        lines.append(line)
    return b"".join(line + b"\r\n" for line in lines) + b"\r\nbody\r\n"


@st.composite
def chunked(draw, data):
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    pieces, last = [], 0
    for c in cuts:
        pieces.append(data[last:c])
        last = c
    pieces.append(data[last:])
    return pieces


@given(st.data())
@settings(max_examples=200)
def test_any_chunking_same_result(data):
    block = data.draw(header_block())
    pieces = data.draw(chunked(block))
    whole = run(H.HeaderParser, [block])
    assert run(H.HeaderParser, pieces) == whole
    assert run(H.HeaderParser_ref, pieces) == whole


@given(header_block())
@settings(max_examples=200)
def test_unfold_agrees_with_email_package(block):
    out, *_ = run(H.HeaderParser, [block])
    head = block[: block.index(b"\r\nbody\r\n") + 2]
    fields = header_fields(head)
    ours = []
    for _, raw, _ in out:
        text = H.unfold(raw).decode()
        name, _, value = text.partition(":")
        ours.append((name, value.lstrip(" \t")))
    assert ours == [(n, v.lstrip(" \t")) for n, v in fields]


@given(VALUE, st.integers(10, 100))
@settings(max_examples=200)
def test_fold_unfold_round_trip(value, width):
    for fold, unfold in ((H.fold_ref, H.unfold_ref), (H.fold, H.unfold)):
        assert unfold(fold(b"Subject", value, width)) == b"Subject: " + value


@pytest.mark.skipif(H.HeaderParser_c is None, reason="extension not built")
@given(st.binary(max_size=200), st.integers(1, 64))
@settings(max_examples=200)
def test_c_agrees_with_ref_on_any_bytes(data, limit):
    cut = len(data) // 2
    assert run(H.HeaderParser_c, [data[:cut], data[cut:]], limit) == run(
        H.HeaderParser_ref, [data], limit
    )


@pytest.mark.skipif(H.fold_c is None, reason="extension not built")
@given(st.binary(max_size=200), st.integers(1, 80))
@settings(max_examples=300)
def test_fold_c_agrees_on_any_bytes(value, width):
    assert H.fold_c(b"X", value, width) == H.fold_ref(b"X", value, width)
    assert H.unfold_c(value) == H.unfold_ref(value)
