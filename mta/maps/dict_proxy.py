"""maps.dict_proxy - proxy:TYPE:NAME tables, looked up through the proxymap service

SYNOPSIS
    table = open_map("proxy:lmdb:/etc/mta/virtual", cfg)
    table.lookup("user@example.com")      # asks $queue_directory/private/proxymap

DESCRIPTION
    Forwards each lookup to the proxymap service over its UNIX socket, in
    the framing of mta/common/attr_proto.py:

        request: {"request": "lookup", "table": "TYPE:NAME", "flags": F, "key": K}
        reply:   {"status": S, "value": V}

    S is 0 found, 1 not found, 2 temporary failure, 3 table not allowed
    (not in proxy_read_maps), 4 bad request. F is "fold" or "" so that
    the service opens the table with the same case folding.

    One connection per table object, opened at the first lookup (so a
    table can be named before proxymap runs). The waits follow
    mta/common/ipc.py: a socket nobody serves (no such file, connection
    refused) raises MapRetry at once; a reply is awaited at most
    ipc_timeout, never longer than IPC_REPLY_LIMIT (5s), and after such a
    timeout lookups raise MapRetry at once for IPC_DOWN_HOLD (10s). Only a
    kept connection that broke (proxymap exited after max_idle) is opened
    again and the request repeated, once. The caller turns MapRetry into
    a temporary failure (smtpd: 451 4.3.0 Temporary lookup failure). A
    refused table or request raises MapError.

    The socket path is $queue_directory/private/proxymap unless the
    caller passes socket_path (tests).

SECURITY
    Talks only to the local proxymap socket; keys may be untrusted
    addresses and are passed along as data.
"""

from __future__ import annotations

import os
import socket

from mta.common import attr_proto, ipc
from mta.maps.maps import Dict, MapError, MapRetry, register

PROXY_STAT_FOUND = "0"  # key found, value follows
PROXY_STAT_NOKEY = "1"  # key not found
PROXY_STAT_RETRY = "2"  # temporary failure, try again later
PROXY_STAT_DENY = "3"  # table not listed in proxy_read_maps
PROXY_STAT_BAD = "4"  # malformed request


def proxymap_socket(cfg) -> str:
    qdir = cfg.get("queue_directory") if cfg is not None else "/var/spool/mta"
    return os.path.join(qdir, "private", "proxymap")


class ProxyDict(Dict):
    kind = "proxy"

    def __init__(
        self, spec: str, name: str, cfg=None, fold: bool = True, socket_path: str | None = None
    ) -> None:
        super().__init__(spec, name, fold)
        from mta.maps.maps import split_spec

        inner_kind, inner_name = split_spec(name, cfg)
        if inner_kind == "proxy":
            raise MapError(f"{spec}: proxy: of proxy: is not allowed")
        self.table = f"{inner_kind}:{inner_name}"
        # partial lookups (user, @domain) go through only when the inner type allows them
        self.fixed = inner_kind not in ("regexp", "pcre", "cidr")
        self.socket_path = socket_path or proxymap_socket(cfg)
        self.timeout = ipc.reply_timeout(cfg) if cfg is not None else ipc.IPC_REPLY_LIMIT
        self._sock: socket.socket | None = None
        self._reader: attr_proto.AttrReader | None = None

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self._sock, self._reader = sock, attr_proto.AttrReader()

    def _retry(self, why: str) -> MapRetry:
        return MapRetry(f"{self.spec}: proxymap service {self.socket_path}: {why}")

    def _request(self, req: dict[str, str]) -> dict[str, str]:
        path = self.socket_path
        if ipc.is_down(path):
            raise self._retry(ipc.down_text(path))
        while True:
            fresh = self._sock is None
            if fresh:
                try:
                    self._connect()
                except OSError as exc:
                    raise self._retry(ipc.connect_error(exc)) from None
            try:
                attr_proto.send(self._sock, req)
                reply = attr_proto.recv(self._sock, self._reader)
                if reply is None:
                    raise ConnectionError("proxymap closed the connection")
                return reply
            except TimeoutError:
                self.close()
                ipc.mark_down(path, self.timeout)
                raise self._retry(ipc.timeout_text(self.timeout)) from None
            except (OSError, ValueError) as exc:
                self.close()
                if fresh:
                    raise self._retry(str(exc)) from None
                # a kept connection went stale: once more on a new one

    def lookup(self, key: str) -> str | None:
        reply = self._request(
            {
                "request": "lookup",
                "table": self.table,
                "flags": "fold" if self.fold else "",
                "key": key,
            }
        )
        status = reply.get("status")
        if status == PROXY_STAT_FOUND:
            return reply.get("value", "")
        if status == PROXY_STAT_NOKEY:
            return None
        if status == PROXY_STAT_RETRY:
            raise MapRetry(f"{self.spec}: temporary lookup failure")
        if status == PROXY_STAT_DENY:
            raise MapError(f"{self.spec}: table is not approved for proxy read access")
        raise MapError(f"{self.spec}: proxymap refused the request (status {status})")

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._reader = None


register("proxy", ProxyDict)
