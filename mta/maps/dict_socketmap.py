"""maps.dict_socketmap - socketmap: tables, asked of a server in Sendmail's socketmap protocol

SYNOPSIS
    open_map("socketmap:inet:127.0.0.1:8780:virtual")
    open_map("socketmap:unix:/run/socketmap.sock:aliases")

DESCRIPTION
    Postfix's socketmap_table(5): each lookup sends the netstring
    "NAME KEY" ("LEN:NAME KEY,") to the server and reads one netstring
    back: "OK value" (found), "NOTFOUND " (not found), "TEMP reason",
    "TIMEOUT reason" (MapRetry: the caller defers) or "PERM reason" (a
    MapError: a broken table). The last colon-separated part of the
    table name is the map name sent to the server; what comes before it
    is inet:host:port or unix:/path.

    One connection per table is kept open and reused; it is made again
    when the server closed it, and given up for MAX_IDLE seconds of
    idleness or MAX_USE lookups. A reply longer than REPLY_LIMIT bytes,
    one that is not a netstring, or a server that does not answer within
    TIMEOUT seconds is a MapRetry, logged by the caller: the mail waits.

SECURITY
    Keys may be untrusted (addresses, domains); they are sent as the
    netstring's payload, never interpreted here. The reply is length-
    checked before it is read.
"""

from __future__ import annotations

import socket
import threading
import time

from mta.maps.maps import Dict, MapError, MapRetry, register

TIMEOUT = 10.0  # seconds for a connection or an answer
REPLY_LIMIT = 100000  # bytes of reply payload, as Postfix's socketmap client
MAX_IDLE = 10.0  # seconds an unused connection is kept
MAX_USE = 100  # lookups over one connection


def parse_socketmap_name(spec: str, name: str) -> tuple[str, tuple, str]:
    """(family, address, map name) of "inet:host:port:map" or "unix:/path:map"."""
    kind, _, rest = name.partition(":")
    where, colon, mapname = rest.rpartition(":")
    if not colon or not where or not mapname:
        raise MapError(
            f"{spec}: expected socketmap:inet:host:port:name or socketmap:unix:path:name"
        )
    if kind == "inet":
        host, colon, port = where.rpartition(":")
        if not colon or not port.isdigit():
            raise MapError(f"{spec}: bad inet address {where!r}")
        return "inet", (host.strip("[]"), int(port)), mapname
    if kind == "unix":
        return "unix", (where,), mapname
    raise MapError(f"{spec}: unknown socket type {kind!r} (inet or unix)")


def netstring(data: bytes) -> bytes:
    return str(len(data)).encode() + b":" + data + b","


def read_netstring(sock: socket.socket, limit: int) -> bytes:
    """One netstring's payload; ValueError when the bytes are not one."""
    head = b""
    while not head.endswith(b":"):
        c = sock.recv(1)
        if not c:
            raise ValueError("connection closed")
        head += c
        if len(head) > 12 or not (c.isdigit() or c == b":"):
            raise ValueError("not a netstring")
    size = int(head[:-1] or b"x")
    if size > limit:
        raise ValueError(f"reply of {size} bytes is too long")
    data = b""
    while len(data) < size + 1:
        chunk = sock.recv(size + 1 - len(data))
        if not chunk:
            raise ValueError("connection closed")
        data += chunk
    if data[-1:] != b",":
        raise ValueError("not a netstring")
    return data[:-1]


class SocketmapDict(Dict):
    kind = "socketmap"
    fixed = True

    def __init__(self, spec: str, name: str, cfg=None, fold: bool = True) -> None:
        super().__init__(spec, name, fold)
        self.family, self.address, self.mapname = parse_socketmap_name(spec, name)
        self.sock: socket.socket | None = None
        self.used = 0
        self.last = 0.0
        self.lock = threading.Lock()

    def _connect(self) -> socket.socket:
        family = socket.AF_INET if self.family == "inet" else socket.AF_UNIX
        if self.family == "inet" and ":" in self.address[0]:
            family = socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        try:
            sock.connect(self.address if self.family == "inet" else self.address[0])
        except OSError:
            sock.close()
            raise
        return sock

    def _close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def lookup(self, key: str) -> str | None:
        request = netstring(f"{self.mapname} {key}".encode("utf-8", "surrogateescape"))
        with self.lock:
            now = time.monotonic()
            if self.sock is not None and (now - self.last > MAX_IDLE or self.used >= MAX_USE):
                self._close()
            for attempt in (1, 2):  # a kept connection the server closed: once more
                fresh = self.sock is None
                try:
                    if fresh:
                        self.sock, self.used = self._connect(), 0
                    self.sock.sendall(request)
                    reply = read_netstring(self.sock, REPLY_LIMIT)
                    break
                except (OSError, ValueError) as exc:
                    self._close()
                    if fresh or attempt == 2:
                        raise MapRetry(f"{self.spec}: {exc}") from None
            self.used += 1
            self.last = time.monotonic()
        status, _, value = reply.decode("utf-8", "surrogateescape").partition(" ")
        if status == "OK":
            return value
        if status == "NOTFOUND":
            return None
        if status in ("TEMP", "TIMEOUT"):
            raise MapRetry(f"{self.spec}: {status} {value}".rstrip())
        if status == "PERM":
            raise MapError(f"{self.spec}: PERM {value}".rstrip())
        raise MapRetry(f"{self.spec}: unknown reply status {status[:20]!r}")

    def close(self) -> None:
        self._close()


register("socketmap", SocketmapDict)
