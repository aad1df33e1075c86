"""smtpline kernels: reference against compiled, on pipelined commands and DATA."""

import pytest

from mta.smtpd import wire

RCPTS = bytearray(b"".join(b"RCPT TO:<u%d@example.org>\r\n" % i for i in range(1000)))
# a 64 KiB message with dot-stuffed lines, as a client would send it
LINE = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\r\n"
DOTTED = b"..starts with a dot\r\n"
MESSAGE = (LINE * 9 + DOTTED) * 80 + b".\r\n"

SPLIT = {"ref": wire.split_lines_ref, "c": wire.split_lines_c}
STREAM = {"ref": wire.DataStream_ref, "c": wire.DataStream_c}


@pytest.mark.benchmark(group="split_lines: 1000 pipelined RCPT")
@pytest.mark.parametrize("impl", [name for name, fn in SPLIT.items() if fn])
def test_split_1000_rcpt(benchmark, impl):
    lines, _, _ = benchmark(SPLIT[impl], RCPTS, 2048)
    assert len(lines) == 1000


@pytest.mark.benchmark(group="DataStream: 64 KiB message in 4 KiB reads")
@pytest.mark.parametrize("impl", [name for name, cls in STREAM.items() if cls])
def test_data_stream(benchmark, impl):
    chunks = [MESSAGE[i : i + 4096] for i in range(0, len(MESSAGE), 4096)]

    def run():
        stream = STREAM[impl](0)
        size = 0
        for chunk in chunks:
            content, _, done = stream.feed(chunk)
            size += len(content)
        return size, done

    size, done = benchmark(run)
    assert done and size == len(MESSAGE) - 3 - 80


@pytest.mark.benchmark(group="DataStream: 64 KiB message in 4 KiB reads")
def test_data_stream_stdlib_baseline(benchmark):
    """What plain Python would do: split lines, unstuff, join."""

    def run():
        body = MESSAGE[: MESSAGE.rindex(b"\r\n.\r\n") + 2]
        lines = body.split(b"\r\n")
        return len(b"\r\n".join(x[1:] if x.startswith(b".") else x for x in lines))

    assert benchmark(run) == len(MESSAGE) - 3 - 80
