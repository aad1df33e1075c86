"""SMTP wire kernels: compiled and reference versions agree, and both are right."""

import os
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.smtpd import wire

STREAMS = [pytest.param(wire.DataStream_ref, id="ref")]
SPLITS = [pytest.param(wire.split_lines_ref, id="ref")]
COMMANDS = [pytest.param(wire.parse_command_ref, id="ref")]
if wire.DataStream_c is not None:
    STREAMS.append(pytest.param(wire.DataStream_c, id="c"))
    SPLITS.append(pytest.param(wire.split_lines_c, id="c"))
    COMMANDS.append(pytest.param(wire.parse_command_c, id="c"))


def test_extension_loaded():
    if os.environ.get("MTA_NO_EXTENSIONS"):
        pytest.skip("pure build")
    assert wire.DataStream is wire.DataStream_c
    assert wire.split_lines is wire.split_lines_c


def run_stream(cls, chunks, max_size=0):
    stream = cls(max_size)
    out, used = bytearray(), 0
    for chunk in chunks:
        content, n, done = stream.feed(chunk)
        out += content
        used += n
        if done:
            return bytes(out), used, True, stream
    return bytes(out), used, False, stream


def oracle(data):
    """Content and length of a DATA stream, by a different method: split on CRLF."""
    framed = b"\r\n" + data
    end = framed.find(b"\r\n.\r\n")
    if end < 0:
        return None
    body = framed[2 : end + 2]
    lines = body.split(b"\r\n")
    unstuffed = [ln[1:] if ln.startswith(b".") else ln for ln in lines]
    return b"\r\n".join(unstuffed), end + 3


@pytest.mark.parametrize("cls", STREAMS)
def test_simple_message(cls):
    content, used, done, _ = run_stream(cls, [b"Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n"])
    assert (content, used, done) == (b"Subject: x\r\n\r\n.dot\r\n", 24, True)


@pytest.mark.parametrize("cls", STREAMS)
def test_empty_message(cls):
    assert run_stream(cls, [b".\r\n"])[:3] == (b"", 3, True)


@pytest.mark.parametrize("cls", STREAMS)
@pytest.mark.parametrize(
    "smuggle", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\n.\r"]
)
def test_smuggling_never_ends_data(cls, smuggle):
    data = b"a" + smuggle + b"MAIL FROM:<evil@x>\r\n"
    content, used, done, stream = run_stream(cls, [data])
    assert not done and used == len(data)


@pytest.mark.parametrize("cls", STREAMS)
def test_bare_lf_is_counted(cls):
    *_, stream = run_stream(cls, [b"a\nb\r\nc\n\r\n.\r\n"])
    assert stream.bare_lf == 2


@pytest.mark.parametrize("cls", STREAMS)
def test_size_limit_drops_content_but_finds_end(cls):
    content, used, done, stream = run_stream(cls, [b"0123456789\r\n", b"abc\r\n.\r\n"], 8)
    assert (content, done, stream.too_big, stream.size) == (b"01234567", True, True, 17)


@pytest.mark.parametrize("split", SPLITS)
def test_split_lines_reports_bare_lf(split):
    assert split(b"EHLO x\r\nNOOP\nQU", 100) == ([b"EHLO x", b"NOOP"], 13, 1)


@pytest.mark.parametrize("split", SPLITS)
def test_split_lines_too_long(split):
    with pytest.raises(wire.LineTooLong):
        split(b"NOOP\r\n" + b"x" * 50, 20)


@pytest.mark.parametrize("parse", COMMANDS)
def test_parse_command(parse):
    assert parse(b"  mail   FROM:<a@b>  SIZE=1 ") == (b"MAIL", b"FROM:<a@b>  SIZE=1")
    assert parse(b"quit") == (b"QUIT", b"")
    assert parse(b"") == (b"", b"")


def test_one_letter_verbs_do_not_corrupt_shared_bytes():
    for parse in (wire.parse_command_ref, wire.parse_command_c):
        if parse is not None:
            assert parse(b"q") == (b"Q", b"")
    assert b"q" == bytes([113])


data_bytes = st.lists(
    st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"\r\n.", b"..", b"\xff"]), max_size=40
).map(b"".join)


@pytest.mark.parametrize("cls", STREAMS)
@given(data=data_bytes, cuts=st.lists(st.integers(0, 200), max_size=6))
def test_any_chunking_matches_the_oracle(cls, data, cuts):
    data += b"\r\n.\r\n"  # always terminated
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    content, used, done, _ = run_stream(cls, chunks)
    expected_content, expected_used = oracle(data)
    assert done and (content, used) == (expected_content, expected_used)


@given(
    lines=st.lists(
        st.binary(max_size=20).filter(lambda b: b"\r" not in b and b"\n" not in b), max_size=10
    )
)
def test_dot_stuffing_round_trip(lines):
    body = b"".join(line + b"\r\n" for line in lines)
    stuffed = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
    for cls in (wire.DataStream_ref, wire.DataStream_c):
        if cls is not None:
            assert run_stream(cls, [stuffed + b".\r\n"])[:3] == (body, len(stuffed) + 3, True)


@pytest.mark.skipif(wire.DataStream_c is None, reason="extension not built")
@pytest.mark.parametrize("seed", range(300))
def test_c_agrees_with_ref_fuzz(seed):
    rnd = random.Random(seed)
    data = bytes(rnd.choice(b"a.\r\n\x00") for _ in range(rnd.randrange(200)))
    cuts = sorted(rnd.randrange(len(data) + 1) for _ in range(rnd.randrange(5)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    limit = rnd.choice([0, 5, 50])
    c = run_stream(wire.DataStream_c, chunks, limit)
    r = run_stream(wire.DataStream_ref, chunks, limit)
    assert c[:3] == r[:3]
    assert (c[3].size, c[3].bare_lf, c[3].too_big) == (r[3].size, r[3].bare_lf, r[3].too_big)
    for lim in (4, 30, 1000):
        assert split_outcome(wire.split_lines_c, data, lim) == split_outcome(
            wire.split_lines_ref, data, lim
        )


def split_outcome(fn, data, limit):
    try:
        return fn(data, limit)
    except wire.LineTooLong as exc:
        return ("too long", exc.args)
