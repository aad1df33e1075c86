"""Reading the maillog: the last lines, and following it across rotation."""

import io
import os
import threading
import time

import pytest

from mta.log import read


def test_last_lines_of_a_log_bigger_than_one_block(tmp_path, monkeypatch):
    monkeypatch.setattr(read, "READ_BLOCK", 7)
    path = tmp_path / "maillog"
    path.write_bytes(b"".join(b"line %d\n" % i for i in range(100)))
    assert read.last_lines(str(path), 3) == [b"line 97\n", b"line 98\n", b"line 99\n"]
    assert read.last_lines(str(path), 0) == []
    assert len(read.last_lines(str(path), 500)) == 100


def test_last_lines_keeps_an_unfinished_last_line(tmp_path):
    path = tmp_path / "maillog"
    path.write_bytes(b"a\nb\nc")
    assert read.last_lines(str(path), 2) == [b"b\n", b"c"]


class Collector(io.RawIOBase):
    def __init__(self):
        self.data = b""

    def writable(self):
        return True

    def write(self, b):
        if self.closed:
            raise ValueError("closed")
        self.data += bytes(b)
        return len(b)


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def following(tmp_path, monkeypatch):
    """follow() on tmp_path/maillog in a thread; stopped by closing its output."""
    monkeypatch.setattr(read, "FOLLOW_INTERVAL", 0.02)
    path = tmp_path / "maillog"
    out = Collector()

    stop = threading.Event()
    threads = []

    def start():
        thread = threading.Thread(
            target=read.follow, args=(str(path), out), kwargs={"start": 2, "stop": stop}
        )
        thread.start()
        threads.append(thread)

    yield path, out, start
    stop.set()
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()


def test_follow_shows_the_last_lines_then_new_ones(following):
    path, out, start = following
    path.write_bytes(b"old 1\nold 2\nold 3\n")
    start()
    assert wait_until(lambda: out.data == b"old 2\nold 3\n"), out.data
    with open(path, "ab") as f:
        f.write(b"new 1\n")
    assert wait_until(lambda: out.data.endswith(b"old 3\nnew 1\n")), out.data


def test_follow_carries_on_after_rotation(following):
    path, out, start = following
    path.write_bytes(b"before\n")
    start()
    assert wait_until(lambda: out.data == b"before\n")
    os.rename(path, str(path) + ".1")
    path.write_bytes(b"after rotation\n")
    assert wait_until(lambda: out.data == b"before\nafter rotation\n"), out.data


def test_follow_waits_for_a_log_that_does_not_exist_yet(following):
    path, out, start = following
    start()
    time.sleep(0.1)
    path.write_bytes(b"first\n")
    assert wait_until(lambda: out.data == b"first\n"), out.data
