"""attr_proto framing: encode, push-style decode, limits, blocking and asyncio helpers."""

import asyncio
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.common import attr_proto
from mta.common.attr_proto import AttrReader, encode

names = st.text(
    alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=8,
)
values = st.text(
    alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=20
)
messages = st.dictionaries(names, values, max_size=5)


def test_encode_layout():
    assert encode({"a": "1", "b": ""}) == b"a\x001\x00b\x00\x00\x00"


def test_empty_message_is_one_nul():
    assert AttrReader().feed(b"\0") == [{}]


@given(st.lists(messages, max_size=4), st.integers(min_value=1, max_value=7))
def test_roundtrip_in_any_chunking(msgs, step):
    data = b"".join(encode(m) for m in msgs)
    reader = AttrReader()
    out = []
    for i in range(0, len(data), step):
        out += reader.feed(data[i : i + step])
    assert out == msgs and not reader.pending


def test_nul_in_value_is_refused():
    with pytest.raises(ValueError):
        encode({"a": "x\0y"})


def test_overlong_message_raises():
    reader = AttrReader(limit=16)
    with pytest.raises(ValueError, match="exceeds"):
        reader.feed(b"name\0" + b"v" * 40)


def test_non_utf8_raises():
    with pytest.raises(ValueError, match="UTF-8"):
        AttrReader().feed(b"a\0\xff\0\0")


def test_blocking_send_recv_over_socketpair():
    a, b = socket.socketpair()
    with a, b:
        attr_proto.send(a, {"x": "1"})
        attr_proto.send(a, {"y": "2"})
        reader = AttrReader()
        assert attr_proto.recv(b, reader) == {"x": "1"}
        assert attr_proto.recv(b, reader) == {"y": "2"}
        a.shutdown(socket.SHUT_WR)
        assert attr_proto.recv(b, reader) is None


def test_recv_truncated_message_raises():
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"x\0partial")
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(ValueError, match="end of stream"):
            attr_proto.recv(b)


def test_asyncio_helpers_over_unix_socket(tmp_path):
    async def run():
        got = []

        async def serve(reader, writer):
            got.append(await attr_proto.read_attrs(reader))
            await attr_proto.write_attrs(writer, {"status": "0", "value": "v" * 100000})
            got.append(await attr_proto.read_attrs(reader))
            writer.close()

        path = str(tmp_path / "s")
        server = await asyncio.start_unix_server(serve, path=path)
        reader, writer = await asyncio.open_unix_connection(path)
        await attr_proto.write_attrs(writer, {"request": "lookup"})
        reply = await attr_proto.read_attrs(reader)
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()
        return got, reply

    got, reply = asyncio.run(run())
    assert got == [{"request": "lookup"}, None]
    assert reply == {"status": "0", "value": "v" * 100000}


def test_asyncio_overlong_message_raises(tmp_path):
    async def run():
        reader = asyncio.StreamReader()  # its own buffer limit is 64 KiB
        reader.feed_data(b"n\0" + b"v" * 300000)
        return await attr_proto.read_attrs(reader, limit=200000)

    with pytest.raises(ValueError, match="exceeds"):
        asyncio.run(run())
