"""Queue file record kernel: compiled and reference versions agree."""

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta._speedups import record_ref
from mta.queue import queue_file
from tests.support import queue_blobs

ENCODERS = [pytest.param(record_ref.ContentEncoder, id="ref")]
DECODERS = [pytest.param(record_ref.decode_records, id="ref")]
if queue_file.ContentEncoder_c is not None:
    ENCODERS.append(pytest.param(queue_file.ContentEncoder_c, id="c"))
    DECODERS.append(pytest.param(queue_file.decode_records_c, id="c"))


def test_extension_loaded():
    if os.environ.get("MTA_NO_EXTENSIONS"):
        pytest.skip("pure build")
    assert queue_file.ContentEncoder is queue_file.ContentEncoder_c


def encode_all(cls, chunks, limit):
    enc = cls(limit)
    return b"".join(enc.feed(c) for c in chunks) + enc.flush()


def lines_of(records):
    """Rebuild content lines from N/L records."""
    out, pieces = [], []
    for _, rtype, payload in records:
        pieces.append(payload)
        if rtype == record_ref.REC_TYPE_NORM:
            out.append(b"".join(pieces))
            pieces = []
    return out


def reference_lines(data):
    """Oracle: split on LF, drop one CR before each LF."""
    if not data:
        return []
    parts = data.split(b"\n")
    last = parts.pop()
    lines = [p[:-1] if p.endswith(b"\r") else p for p in parts]
    if last:
        lines.append(last)
    return lines


@pytest.mark.parametrize("cls", ENCODERS)
def test_crlf_lines(cls):
    out = encode_all(cls, [b"a\r\nbc\n\r\n"], 10)
    assert out == b"N\x01aN\x02bcN\x00"


@pytest.mark.parametrize("cls", ENCODERS)
def test_long_line_is_cut(cls):
    assert encode_all(cls, [b"abcdefg\r\n"], 3) == b"L\x03abcL\x03defN\x01g"


@pytest.mark.parametrize("decode", DECODERS)
def test_multi_byte_length(decode):
    payload = b"z" * 300
    blob = record_ref.encode_record(ord("N"), payload)
    assert blob[:3] == b"N\xac\x02"
    assert decode(blob, 0, True) == ([(0, ord("N"), payload)], len(blob))


@pytest.mark.parametrize("decode", DECODERS)
def test_overlong_length_is_an_error(decode):
    with pytest.raises(record_ref.RecordError, match="bad record length"):
        decode(b"N\xff\xff\xff\xff\xff\x01", 0, False)


@pytest.mark.parametrize("decode", DECODERS)
def test_truncated_tail_is_left_over_unless_final(decode):
    blob = record_ref.encode_record(ord("S"), b"abc") + b"R\x05ab"
    assert decode(blob, 0, False) == ([(0, ord("S"), b"abc")], 5)
    with pytest.raises(record_ref.RecordError, match="truncated"):
        decode(blob, 0, True)


content = st.lists(
    st.sampled_from([b"a", b"bc", b"\r", b"\n", b"\r\n", b".", b"\xff", b" "]), max_size=60
).map(b"".join)


@pytest.mark.parametrize("cls", ENCODERS)
@given(data=content, cuts=st.lists(st.integers(0, 200), max_size=5), limit=st.integers(1, 8))
def test_any_chunking_gives_the_same_records_and_lines(cls, data, cuts, limit):
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    whole = encode_all(cls, [data], limit)
    assert encode_all(cls, chunks, limit) == whole
    records, used = record_ref.decode_records(whole, 0, True)
    assert used == len(whole)
    assert all(len(p) <= limit for _, _, p in records)
    assert lines_of(records) == reference_lines(data)


@pytest.mark.skipif(queue_file.ContentEncoder_c is None, reason="extension not built")
@pytest.mark.parametrize("seed", range(300))
def test_c_agrees_with_ref_fuzz(seed):
    rnd = random.Random(seed)
    data = bytes(rnd.choice(b"ab\r\n\x00\xff") for _ in range(rnd.randrange(300)))
    limit = rnd.randrange(1, 20)
    cuts = sorted(rnd.randrange(len(data) + 1) for _ in range(rnd.randrange(6)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    c_out = encode_all(queue_file.ContentEncoder_c, chunks, limit)
    assert c_out == encode_all(record_ref.ContentEncoder, chunks, limit)
    junk = bytes(rnd.randrange(256) for _ in range(rnd.randrange(64)))
    for blob in (c_out, junk, c_out[: rnd.randrange(len(c_out) + 1)]):
        for final in (False, True):
            for skip in (False, True):
                assert outcome(queue_file.decode_records_c, blob, final, skip) == outcome(
                    record_ref.decode_records, blob, final, skip
                )


@pytest.mark.parametrize("decode", DECODERS)
def test_skip_content_leaves_out_only_content_records(decode):
    enc = record_ref.ContentEncoder(4)
    blob = (
        record_ref.encode_record(ord("S"), b"a@x")
        + record_ref.encode_record(ord("M"), b"")
        + enc.feed(b"line one\nline two\n")
        + enc.flush()
        + record_ref.encode_record(ord("X"), b"")
    )
    full, end = decode(blob, 0, True)
    short, end2 = decode(blob, 0, True, True)
    assert end == end2 == len(blob)
    assert [r for r in full if r[1] not in (ord("N"), ord("L"))] == short
    assert [chr(t) for _, t, _ in short] == ["S", "M", "X"]


def outcome(fn, blob, final, skip=False):
    try:
        return fn(blob, 0, final, skip)
    except record_ref.RecordError as exc:
        return ("error", str(exc))


CONTENT_TEXTS = [pytest.param(record_ref.content_text, id="ref")]
if queue_file.content_text_c is not None:
    CONTENT_TEXTS.append(pytest.param(queue_file.content_text_c, id="c"))


def blob_of(records):
    return b"".join(record_ref.encode_record(t, p) for t, p in records)


@pytest.mark.parametrize("content_text", CONTENT_TEXTS)
def test_content_text_joins_lines_and_measures_the_longest(content_text):
    blob = blob_of(
        [
            (ord("S"), b"a@x"),
            (ord("M"), b""),
            (ord("L"), b"abc"),
            (ord("N"), b"de"),
            (ord("N"), b""),
            (ord("N"), b"f"),
            (ord("X"), b""),
            (ord("N"), b"not content"),
            (ord("E"), b""),
        ]
    )
    assert content_text(blob, 0, b"\r\n") == (b"abcde\r\n\r\nf\r\n", 5)
    assert content_text(blob, 0, b"") == (b"abcdef", 5)


@pytest.mark.parametrize("content_text", CONTENT_TEXTS)
def test_content_text_drops_pieces_no_line_completes(content_text):
    blob = blob_of([(ord("M"), b""), (ord("N"), b"ok"), (ord("L"), b"dangling"), (ord("X"), b"")])
    assert content_text(blob) == (b"ok\n", 2)


@pytest.mark.parametrize("content_text", CONTENT_TEXTS)
def test_content_text_without_content_is_empty(content_text):
    assert content_text(blob_of([(ord("S"), b"a@x"), (ord("E"), b"")])) == (b"", 0)
    assert content_text(b"") == (b"", 0)


@pytest.mark.parametrize("content_text", CONTENT_TEXTS)
def test_content_text_damaged_file_is_an_error(content_text):
    blob = blob_of([(ord("M"), b""), (ord("N"), b"line")])
    with pytest.raises(record_ref.RecordError):
        content_text(blob[:-2])


record_types = st.sampled_from([ord(c) for c in "MNLXSRE"])


@pytest.mark.skipif(queue_file.content_text_c is None, reason="extension not built")
@given(
    records=st.lists(st.tuples(record_types, st.binary(max_size=300)), max_size=30),
    start=st.integers(0, 40),
    cut=st.integers(0, 4),
    line_end=st.sampled_from([b"\n", b"\r\n", b""]),
)
def test_content_text_c_agrees_with_ref(records, start, cut, line_end):
    blob = blob_of(records)
    blob = blob[: len(blob) - cut] if cut else blob
    start = min(start, len(blob))

    def run(fn):
        try:
            return fn(blob, start, line_end)
        except record_ref.RecordError:
            return "error"

    assert run(queue_file.content_text_c) == run(record_ref.content_text)


SCANS = [pytest.param(record_ref.scan_envelope, id="ref")]
if queue_file.scan_envelope_c is not None:
    SCANS.append(pytest.param(queue_file.scan_envelope_c, id="c"))


def writer_file(tmp_path, content=b"Subject: t\n\nhello\n", extracted=()):
    w = queue_file.QueueFileWriter(str(tmp_path), ".", arrival=1700000000.25)
    rcpts = [queue_file.Recipient("one@example.net"), queue_file.Recipient("two@example.net")]
    w.write_envelope("s@example.org", rcpts, {"protocol": "ESMTP"}, warn_time=1700003600)
    w.write_content(content)
    for address in extracted:
        w.add_recipient(queue_file.Recipient(address))
    w.commit()
    with open(w.path, "rb") as f:
        return f.read(), [r.offset for r in rcpts]


@pytest.mark.parametrize("scan", SCANS)
def test_scan_envelope_of_a_written_file(scan, tmp_path):
    blob, (one, two) = writer_file(tmp_path, extracted=["three@example.net"])
    arrival, size, nrcpt, seen, sender, pending = scan(blob, True)
    assert (arrival, size, nrcpt, seen, sender) == (1700000000, 18, 3, 3, "s@example.org")
    assert [a for _, a in pending] == ["one@example.net", "two@example.net", "three@example.net"]
    assert [o for o, _ in pending][:2] == [one, two]


@pytest.mark.parametrize("scan", SCANS)
def test_scan_envelope_first_piece_stops_at_the_content(scan, tmp_path):
    blob, _ = writer_file(tmp_path, extracted=["three@example.net"])
    mesg = blob.index(b"M\x00N")
    assert scan(blob[: mesg + 1], False) is None  # the M record is not whole yet
    arrival, _, nrcpt, seen, _, pending = scan(blob[: mesg + 2], False)
    assert (nrcpt, seen, len(pending)) == (3, 2, 2)  # the third follows the content
    assert scan(blob[: mesg + 2], True) is None  # as a whole file it has no end


@pytest.mark.parametrize("scan", SCANS)
def test_scan_envelope_leaves_the_unusual_to_the_full_parser(scan, tmp_path):
    blob, _ = writer_file(tmp_path)
    assert scan(blob, True) is not None
    assert scan(blob.replace(b" ", b"\t", 1), True) is None  # size fields split by a tab
    assert scan(blob[:-2], True) is None  # no end record
    assert scan(blob + b"E\x00", True) is None  # something after it
    assert scan(b"", True) is None


@pytest.mark.skipif(queue_file.scan_envelope_c is None, reason="extension not built")
@given(blob=queue_blobs.queue_files(), cut=st.integers(0, 300))
@settings(max_examples=500)
def test_scan_envelope_c_agrees_with_ref(blob, cut):
    for piece, whole in ((blob, True), (blob, False), (blob[:cut], False)):
        assert queue_file.scan_envelope_c(piece, whole) == record_ref.scan_envelope(piece, whole)


@pytest.mark.skipif(queue_file.scan_envelope_c is None, reason="extension not built")
@pytest.mark.parametrize("seed", range(200))
def test_scan_envelope_c_agrees_with_ref_on_junk(seed):
    rnd = random.Random(seed)
    head = record_ref.encode_record(ord("C"), b"%15d %15d %15d %15d" % (80, 5, 1, 0))
    junk = bytes(rnd.choice(b"CTAFSRDMNLXE\x00\x01\x05= 0123456789\xff") for _ in range(120))
    for blob in (junk, head + junk):
        for whole in (True, False):
            assert queue_file.scan_envelope_c(blob, whole) == record_ref.scan_envelope(blob, whole)
