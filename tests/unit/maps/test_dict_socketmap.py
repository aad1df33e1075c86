"""socketmap: against a socketmap server written here (Sendmail's protocol, netstrings),
on 127.0.0.1 and on a UNIX socket: found, not found, TEMP, PERM, a closed kept
connection, a reply that is too long or not a netstring."""

from __future__ import annotations

import socket
import threading

import pytest

from mta.maps import MapError, MapRetry, open_map
from mta.maps.dict_socketmap import netstring, parse_socketmap_name
from tests.support.running import free_port

ANSWERS = {
    "virtual a@example.com": b"OK b@example.net",
    "virtual busy": b"TEMP database busy",
    "virtual broken": b"PERM no such map",
    "virtual long": b"OK " + b"x" * 200000,
}


class SocketmapServer:
    """Answers each netstring request from ANSWERS (else NOTFOUND); counts connections."""

    def __init__(self, family=socket.AF_INET, address=None, close_after: int = 0):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        self.sock.listen(8)
        self.connections = 0
        self.requests: list[str] = []
        self.close_after = close_after
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        try:
            self._handle(conn)
        except OSError:
            pass  # the client gave up on a reply (too long, garbage): what is tested

    def _handle(self, conn):
        buf, served = b"", 0
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b":" in buf:
                    head, _, rest = buf.partition(b":")
                    size = int(head)
                    if len(rest) < size + 1:
                        break
                    request, buf = rest[:size].decode(), rest[size + 1 :]
                    self.requests.append(request)
                    if request == "virtual garbage":
                        conn.sendall(b"this is no netstring")
                        continue
                    conn.sendall(netstring(ANSWERS.get(request, b"NOTFOUND ")))
                    served += 1
                    if self.close_after and served >= self.close_after:
                        return

    def close(self):
        self.sock.close()


@pytest.fixture
def inet_server():
    port = free_port()
    srv = SocketmapServer(address=("127.0.0.1", port))
    yield srv, port
    srv.close()


def test_found_and_not_found_over_one_connection(inet_server, cfg):
    srv, port = inet_server
    table = open_map(f"socketmap:inet:127.0.0.1:{port}:virtual", cfg)
    assert table.lookup("a@example.com") == "b@example.net"
    assert table.lookup("c@example.com") is None
    assert table.lookup("a@example.com") == "b@example.net"
    assert srv.connections == 1
    assert srv.requests == ["virtual a@example.com", "virtual c@example.com"] + [
        "virtual a@example.com"
    ]


def test_unix_socket(tmp_path, cfg):
    path = str(tmp_path / "sm.sock")
    srv = SocketmapServer(socket.AF_UNIX, path)
    try:
        assert open_map(f"socketmap:unix:{path}:virtual", cfg).lookup("a@example.com") == (
            "b@example.net"
        )
    finally:
        srv.close()


def test_temp_perm_and_bad_replies(inet_server, cfg):
    _, port = inet_server
    table = open_map(f"socketmap:inet:127.0.0.1:{port}:virtual", cfg)
    with pytest.raises(MapRetry, match="TEMP database busy"):
        table.lookup("busy")
    with pytest.raises(MapError, match="PERM no such map"):
        table.lookup("broken")
    with pytest.raises(MapRetry, match="too long"):
        table.lookup("long")
    with pytest.raises(MapRetry, match="not a netstring"):
        table.lookup("garbage")
    assert table.lookup("a@example.com") == "b@example.net"  # a new connection works


def test_server_that_closes_kept_connections(cfg):
    port = free_port()
    srv = SocketmapServer(address=("127.0.0.1", port), close_after=1)
    try:
        table = open_map(f"socketmap:inet:127.0.0.1:{port}:virtual", cfg)
        for _ in range(3):
            assert table.lookup("a@example.com") == "b@example.net"
        assert srv.connections == 3
    finally:
        srv.close()


def test_server_down_is_a_temporary_failure(cfg):
    table = open_map(f"socketmap:inet:127.0.0.1:{free_port()}:virtual", cfg)
    with pytest.raises(MapRetry):
        table.lookup("a@example.com")


def test_names():
    assert parse_socketmap_name("s", "inet:[::1]:99:m") == ("inet", ("::1", 99), "m")
    assert parse_socketmap_name("s", "unix:/run/x.sock:m") == ("unix", ("/run/x.sock",), "m")
    for bad in ("inet:host:m", "tcp:h:1:m", "unix:/x"):
        with pytest.raises(MapError):
            parse_socketmap_name("s", bad)
