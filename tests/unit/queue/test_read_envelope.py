"""read_envelope(): the queue listing's reader gives what read_queue_file() gives."""

import os

import pytest
from hypothesis import given, settings

from mta._speedups.record_ref import encode_record
from mta.queue import queue_file
from mta.queue import rec_type as R
from mta.queue.queue_file import (
    ENVELOPE_CHUNK,
    QueueFileError,
    QueueFileWriter,
    Recipient,
    mark_done,
    parse_queue_file,
    read_envelope,
    read_queue_file,
)
from tests.support import queue_blobs

BIG = b"Subject: big\n\n" + b"y" * 100 + b"\n" + b"z" * (4 * ENVELOPE_CHUNK) + b"\n"


def write(tmp_path, content=b"Subject: t\n\nhi\n", extracted=()):
    w = QueueFileWriter(str(tmp_path), ".")
    w.write_envelope("s@example.org", [Recipient("one@example.net"), Recipient("two@x.example")])
    w.write_content(content)
    for address in extracted:
        w.add_recipient(Recipient(address))
    w.commit()
    return w.path


def expected(path):
    msg = read_queue_file(path)
    pending = [(r.offset, r.address) for r in msg.recipients if not r.done]
    return (int(msg.arrival), msg.content_size, msg.sender, pending, msg.forced_expire)


def test_a_small_file_reads_as_the_full_reader_reads_it(tmp_path):
    path = write(tmp_path)
    mark_done(path, [read_queue_file(path).recipients[0].offset])
    assert tuple(read_envelope(path)) == expected(path)
    assert [a for _, a in read_envelope(path).pending] == ["two@x.example"]


def test_a_large_file_is_read_no_further_than_its_envelope(tmp_path, monkeypatch):
    path = write(tmp_path, BIG)
    real_read, got = os.read, []
    monkeypatch.setattr(
        queue_file.os, "read", lambda fd, n: got.append(real_read(fd, n)) or got[-1]
    )
    env = read_envelope(path)
    monkeypatch.undo()
    assert sum(map(len, got)) == ENVELOPE_CHUNK
    assert tuple(env) == expected(path)


def test_recipients_after_the_content_of_a_large_file_are_listed(tmp_path):
    path = write(tmp_path, BIG, extracted=["three@example.net"])
    assert [a for _, a in read_envelope(path).pending][-1] == "three@example.net"
    assert tuple(read_envelope(path)) == expected(path)


def test_a_large_file_without_its_end_is_damaged(tmp_path):
    path = write(tmp_path, BIG)
    os.truncate(path, os.path.getsize(path) - 1)
    with pytest.raises(QueueFileError):
        read_envelope(path)


@pytest.mark.parametrize("cut", [1, 10, 40, -1, -2])
def test_a_truncated_file_is_damaged(tmp_path, cut):
    path = write(tmp_path)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:cut])
    with pytest.raises(QueueFileError):
        read_envelope(path)


def test_a_vanished_file_is_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_envelope(str(tmp_path / "5BRk4K3ZBvzvRh"))


def test_the_expire_mark_comes_from_the_mode(tmp_path):
    path = write(tmp_path)
    assert not read_envelope(path).forced_expire
    os.chmod(path, 0o700)
    assert read_envelope(path).forced_expire


def test_a_file_the_scan_refuses_goes_to_the_full_parser(tmp_path):
    # size fields split by tabs: unusual, but the full parser takes them
    env = [(R.REC_TYPE_TIME, b"1700000000 5"), (R.REC_TYPE_FROM, b""), (R.REC_TYPE_RCPT, b"r@x")]
    offset = 2 + 4 * R.SIZE_FIELD_WIDTH + 3 + len(queue_blobs.encode_all(env))
    fields = "\t".join(f"{n:{R.SIZE_FIELD_WIDTH}d}" for n in (offset, 3, 1, 0))
    records = [(R.REC_TYPE_SIZE, fields.encode()), *env, (R.REC_TYPE_MESG, b"")]
    records += [(R.REC_TYPE_NORM, b"abc"), (R.REC_TYPE_XTRA, b""), (R.REC_TYPE_END, b"")]
    path = tmp_path / "5BRk4K3ZBvzvRh"
    path.write_bytes(queue_blobs.encode_all(records))
    assert queue_file.scan_envelope(path.read_bytes(), True) is None
    assert tuple(read_envelope(str(path))) == (1700000000, 3, "", [(offset - 5, "r@x")], False)


def test_an_unreadable_file_is_damaged(tmp_path):
    os.mkdir(tmp_path / "5BRk4K3ZBvzvRh")  # a directory where the file should be
    with pytest.raises(QueueFileError):
        read_envelope(str(tmp_path / "5BRk4K3ZBvzvRh"))


@given(blob=queue_blobs.queue_files())
@settings(max_examples=400)
def test_whatever_the_scan_takes_the_full_parser_reads_the_same(blob):
    found = queue_file.scan_envelope(blob, True)
    if found is None:
        return
    msg = parse_queue_file(blob, "q")
    assert found[0] == int(msg.arrival)
    assert (found[1], found[4]) == (msg.content_size, msg.sender)
    assert found[5] == [(r.offset, r.address) for r in msg.recipients if not r.done]
    assert found[3] == len(msg.recipients)


def test_end_record_is_two_bytes():
    assert queue_file.END_RECORD == encode_record(R.REC_TYPE_END, b"")
