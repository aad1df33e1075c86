"""common.attr_proto - name/value framing of requests between mta processes

SYNOPSIS
    from mta.common import attr_proto
    data = attr_proto.encode({"request": "lookup", "key": "a@example.com"})
    reader = attr_proto.AttrReader()
    for msg in reader.feed(chunk): ...                 # push style, no I/O
    attr_proto.send(sock, msg); reply = attr_proto.recv(sock)
    await attr_proto.write_attrs(writer, msg); msg = await attr_proto.read_attrs(reader)
    await attr_proto.serve_requests(reader, writer, answer)   # a service's request loop

DESCRIPTION
    One message is a sequence of "name NUL value NUL" pairs ended by one
    more NUL (an empty name), the shape of Postfix's attr_print0 stream.
    Names and values are UTF-8 text; a name may not be empty and neither
    may contain NUL. A repeated name keeps its last value.

    A message longer than ATTR_MAX_MESSAGE (1 MiB), a name without its
    value at the end of a message, or bytes that are not UTF-8 raise
    ValueError; the peer should then be dropped, since the stream can no
    longer be trusted to be in step. recv() and read_attrs() return None
    at a clean end of stream (no partial message) and raise ValueError
    when the stream ends inside a message.

SECURITY
    Sees data from other mta processes, which may have been fed by
    untrusted clients: every message is bounded in size.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

ATTR_MAX_MESSAGE = 1 << 20  # bytes in one message, terminators included
ATTR_READ_CHUNK = 65536  # bytes asked of the socket per read


def encode(attrs: dict[str, str]) -> bytes:
    """Serialize one message; raise ValueError for names or values it cannot carry."""
    if not attrs:
        return b"\0"
    text = "\0".join(f"{name}\0{value}" for name, value in attrs.items())
    if "" in attrs or text.count("\0") != 2 * len(attrs) - 1:
        bad = next(k for k, v in attrs.items() if not k or "\0" in k or "\0" in str(v))
        raise ValueError(f"attribute {bad!r}: empty name or NUL byte")
    data = (text + "\0\0").encode("utf-8", "surrogateescape")
    if len(data) > ATTR_MAX_MESSAGE:
        raise ValueError(f"message of {len(data)} bytes exceeds {ATTR_MAX_MESSAGE}")
    return data


def _decode(text: bytes) -> str:
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("attribute is not UTF-8") from None


class AttrReader:
    """Push-style decoder: feed() bytes, get back every complete message."""

    def __init__(self, limit: int = ATTR_MAX_MESSAGE) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._pos = 0  # where the current message starts in _buf
        self.backlog: list[dict[str, str]] = []  # decoded, not yet returned by recv()

    @property
    def pending(self) -> bool:
        """True when part of a message has been fed."""
        return len(self._buf) > self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> list[dict[str, str]]:
        buf = self._buf
        buf += data
        out: list[dict[str, str]] = []
        last = buf.rfind(b"\0")
        if last >= self._pos:
            # every field up to the last NUL is complete; a message still
            # open at the end is parsed again when more arrives
            parts = bytes(buf[self._pos : last]).split(b"\0")
            pos = start = self._pos
            msg: dict[str, str] = {}
            i, n = 0, len(parts)
            while i < n:
                name = parts[i]
                if not name:
                    pos += 1
                    out.append(msg)
                    msg = {}
                    start = pos
                    i += 1
                    continue
                if i + 1 >= n:
                    break
                value = parts[i + 1]
                msg[_decode(name)] = _decode(value)
                pos += len(name) + len(value) + 2
                if pos - start > self.limit:
                    raise ValueError(f"message exceeds {self.limit} bytes")
                i += 2
            self._pos = start
        if len(buf) - self._pos > self.limit:
            raise ValueError(f"message exceeds {self.limit} bytes")
        if self._pos:
            del buf[: self._pos]
            self._pos = 0
        return out


def send(sock: socket.socket, attrs: dict[str, str]) -> None:
    """Write one message on a blocking socket."""
    sock.sendall(encode(attrs))


def recv(sock: socket.socket, reader: AttrReader | None = None) -> dict[str, str] | None:
    """Read one message from a blocking socket; None at a clean end of stream.

    Pass the same reader on every call when the peer may pipeline several
    messages: what arrives after the first message waits in reader.backlog.
    """
    reader = reader or AttrReader()
    while not reader.backlog:
        data = sock.recv(ATTR_READ_CHUNK)
        if not data:
            if reader.pending:
                raise ValueError("end of stream inside a message")
            return None
        reader.backlog.extend(reader.feed(data))
    return reader.backlog.pop(0)


async def read_attrs(
    reader: asyncio.StreamReader, limit: int = ATTR_MAX_MESSAGE
) -> dict[str, str] | None:
    """Read one message from a stream; None at a clean end of stream.

    Messages that arrive together are kept with the stream for the next call."""
    decoder = getattr(reader, "_attr_reader", None)
    if decoder is None:
        decoder = AttrReader(limit)
        reader._attr_reader = decoder  # type: ignore[attr-defined]
    while not decoder.backlog:
        data = await reader.read(ATTR_READ_CHUNK)
        if not data:
            if decoder.pending:
                raise ValueError("end of stream inside a message")
            return None
        decoder.backlog.extend(decoder.feed(data))
    return decoder.backlog.pop(0)


async def write_attrs(writer: asyncio.StreamWriter, attrs: dict[str, str]) -> None:
    """Write one message and wait until the transport drains."""
    writer.write(encode(attrs))
    await writer.drain()


async def serve_requests(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    answer: Callable[[dict[str, str]], dict[str, str]],
    what: str = "request",
) -> None:
    """Answer each message on a connection with answer(message) until the peer
    closes it or sends bytes that do not decode (one warning naming what);
    then close it. The request/reply loop of proxymap, verify and the like."""
    from mta import log

    try:
        while True:
            try:
                msg = await read_attrs(reader)
            except ValueError as exc:
                log.warning("malformed %s: %s; closing connection", what, exc)
                break
            if msg is None:
                break
            await write_attrs(writer, answer(msg))
    except (ConnectionError, OSError):
        pass
    finally:
        await close_writer(writer)


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a connection and wait until it is closed; a peer already gone is fine."""
    try:
        writer.close()
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass
