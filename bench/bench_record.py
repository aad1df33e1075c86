"""record kernel: queue file content encoding and decoding, reference against compiled."""

import pytest

from mta._speedups import record_ref
from mta.queue import queue_file

LINE = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\r\n"
MESSAGE = LINE * 900  # about 64 KiB
CHUNKS = [MESSAGE[i : i + 4096] for i in range(0, len(MESSAGE), 4096)]
ENCODERS = {"ref": record_ref.ContentEncoder, "c": queue_file.ContentEncoder_c}
DECODERS = {"ref": record_ref.decode_records, "c": queue_file.decode_records_c}


def encode():
    enc = record_ref.ContentEncoder(2048)
    return b"".join(enc.feed(c) for c in CHUNKS) + enc.flush()


RECORDS = encode()


@pytest.mark.benchmark(group="ContentEncoder: 64 KiB in 4 KiB chunks")
@pytest.mark.parametrize("impl", [k for k, v in ENCODERS.items() if v])
def test_encode(benchmark, impl):
    def run():
        enc = ENCODERS[impl](2048)
        return b"".join(enc.feed(c) for c in CHUNKS) + enc.flush()

    assert benchmark(run) == RECORDS


@pytest.mark.benchmark(group="decode_records: 900 content records")
@pytest.mark.parametrize("impl", [k for k, v in DECODERS.items() if v])
def test_decode(benchmark, impl):
    records, used = benchmark(DECODERS[impl], RECORDS, 0, True)
    assert len(records) == 900 and used == len(RECORDS)


CONTENT_TEXTS = {"ref": record_ref.content_text, "c": queue_file.content_text_c}
QUEUED = record_ref.encode_record(ord("M"), b"") + RECORDS + record_ref.encode_record(ord("X"), b"")


@pytest.mark.benchmark(group="content_text: 900 lines back to CRLF text")
@pytest.mark.parametrize("impl", [k for k, v in CONTENT_TEXTS.items() if v])
def test_content_text(benchmark, impl):
    text, longest = benchmark(CONTENT_TEXTS[impl], QUEUED, 0, b"\r\n")
    assert text == MESSAGE and longest == len(LINE) - 2
