"""common.attr_proto - name/value framing of requests between mta processes

SYNOPSIS
    from mta.common import attr_proto
    data = attr_proto.encode({"request": "lookup", "key": "a@example.com"})
    reader = attr_proto.AttrReader()
    for msg in reader.feed(chunk): ...                 # push style, no I/O
    attr_proto.send(sock, msg); reply = attr_proto.recv(sock)
    await attr_proto.write_attrs(writer, msg); msg = await attr_proto.read_attrs(reader)

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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

ATTR_MAX_MESSAGE = 1 << 20  # bytes in one message, terminators included
ATTR_READ_CHUNK = 65536  # bytes asked of the socket per read


def encode(attrs: dict[str, str]) -> bytes:
    """Serialize one message; raise ValueError for names or values it cannot carry."""
    parts: list[bytes] = []
    for name, value in attrs.items():
        name_b = str(name).encode("utf-8", "surrogateescape")
        value_b = str(value).encode("utf-8", "surrogateescape")
        if not name_b or b"\0" in name_b or b"\0" in value_b:
            raise ValueError(f"attribute {name!r}: empty name or NUL byte")
        parts += (name_b, b"\0", value_b, b"\0")
    parts.append(b"\0")
    data = b"".join(parts)
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
        self._scan = 0  # fields before this offset are already known complete
        self._fields: list[bytes] = []
        self.backlog: list[dict[str, str]] = []  # decoded, not yet returned by recv()

    @property
    def pending(self) -> bool:
        """True when part of a message has been fed."""
        return len(self._buf) > self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> list[dict[str, str]]:
        buf = self._buf
        buf += data
        out: list[dict[str, str]] = []
        fields = self._fields
        while True:
            end = buf.find(b"\0", self._scan)
            if end < 0:
                break
            field = bytes(buf[self._scan : end])
            self._scan = end + 1
            if not field and len(fields) % 2 == 0:
                msg: dict[str, str] = {}
                for i in range(0, len(fields), 2):
                    msg[_decode(fields[i])] = _decode(fields[i + 1])
                out.append(msg)
                fields.clear()
                self._pos = self._scan
                continue
            fields.append(field)
            if self._scan - self._pos > self.limit:
                raise ValueError(f"message exceeds {self.limit} bytes")
        if len(buf) - self._pos > self.limit:
            raise ValueError(f"message exceeds {self.limit} bytes")
        if self._pos:
            del buf[: self._pos]
            self._scan -= self._pos
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
    """Read one message from a stream; None at a clean end of stream."""
    import asyncio

    fields: list[bytes] = []
    size = 0
    part = bytearray()  # a field longer than the stream's own buffer limit
    while True:
        try:
            chunk = await reader.readuntil(b"\0")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial and not fields and not part:
                return None
            if size + len(exc.partial) > limit:
                raise ValueError(f"message exceeds {limit} bytes") from None
            raise ValueError("end of stream inside a message") from None
        except asyncio.LimitOverrunError as exc:
            chunk = await reader.readexactly(max(exc.consumed, 1))
            size += len(chunk)
            if size > limit:
                raise ValueError(f"message exceeds {limit} bytes") from None
            part += chunk
            continue
        size += len(chunk)
        if size > limit:
            raise ValueError(f"message exceeds {limit} bytes")
        field = bytes(part) + chunk[:-1] if part else chunk[:-1]
        part.clear()
        if not field and len(fields) % 2 == 0:
            return {_decode(fields[i]): _decode(fields[i + 1]) for i in range(0, len(fields), 2)}
        fields.append(field)


async def write_attrs(writer: asyncio.StreamWriter, attrs: dict[str, str]) -> None:
    """Write one message and wait until the transport drains."""
    writer.write(encode(attrs))
    await writer.drain()
