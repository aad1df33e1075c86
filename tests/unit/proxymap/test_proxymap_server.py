"""proxymap request handling, exercised through the proxy: client table over a UNIX socket."""

import socket

import pytest

from mta.common import attr_proto
from mta.config import load_config
from mta.maps import MapError, MapRetry, open_map
from mta.maps.dict_proxy import ProxyDict
from mta.proxymap.server import approved_tables, handle_client
from tests.support.unix_server import HandlerServer


@pytest.fixture
def cfg(tmp_path):
    (tmp_path / "main.cf").write_text(
        f"queue_directory = {tmp_path}/q\n"
        "virtual_alias_maps = proxy:inline:{ a@x=b@y, Key=Value }\n"
        "proxy_read_maps = $virtual_alias_maps static:fixed example.com\n"
    )
    return load_config(str(tmp_path))


@pytest.fixture
def server(tmp_path, cfg):
    srv = HandlerServer(str(tmp_path / "proxymap"), handle_client, cfg)
    yield srv
    srv.stop()


def raw_request(path, msg):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        attr_proto.send(s, msg)
        return attr_proto.recv(s)


def test_approved_tables_strip_proxy_prefix_and_skip_domains(cfg):
    assert approved_tables(cfg) == {"inline:{ a@x=b@y, Key=Value }", "static:fixed"}


def test_proxy_lookup_found_and_not_found(server, cfg):
    table = ProxyDict(
        "proxy:inline:{ a@x=b@y, Key=Value }",
        "inline:{ a@x=b@y, Key=Value }",
        cfg,
        socket_path=server.path,
    )
    assert table.lookup("A@X") == "b@y"
    assert table.lookup("key") == "Value"
    assert table.lookup("nobody") is None
    table.close()


def test_open_map_proxy_uses_queue_directory_socket(tmp_path, cfg):
    (tmp_path / "q" / "private").mkdir(parents=True)
    srv = HandlerServer(str(tmp_path / "q" / "private" / "proxymap"), handle_client, cfg)
    try:
        assert open_map("proxy:static:fixed", cfg).lookup("anything") == "fixed"
    finally:
        srv.stop()


def test_unapproved_table_is_refused(server, cfg):
    reply = raw_request(
        server.path, {"request": "lookup", "table": "static:secret", "flags": "", "key": "k"}
    )
    assert reply == {"status": "3"}
    table = ProxyDict("proxy:static:secret", "static:secret", cfg, socket_path=server.path)
    with pytest.raises(MapError, match="not approved"):
        table.lookup("k")
    table.close()


def test_bad_request_gets_status_4(server):
    assert raw_request(server.path, {"request": "frob"}) == {"status": "4"}
    assert raw_request(server.path, {"request": "lookup", "table": "static:fixed"}) == {
        "status": "4"
    }


def test_open_request_returns_status_only(server):
    assert raw_request(server.path, {"request": "open", "table": "static:fixed"}) == {"status": "0"}


def test_garbage_closes_connection_but_server_lives(server):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(server.path)
        s.sendall(b"a\0\xff\xfe\0\0")
        assert s.recv(100) == b""
    assert raw_request(server.path, {"request": "open", "table": "static:fixed"}) == {"status": "0"}


def test_several_requests_on_one_connection(server, cfg):
    table = ProxyDict("proxy:static:fixed", "static:fixed", cfg, socket_path=server.path)
    for _ in range(20):
        assert table.lookup("k") == "fixed"
    assert table._sock is not None
    table.close()


def test_unreachable_service_raises_retry(tmp_path, cfg):
    table = ProxyDict("proxy:static:fixed", "static:fixed", cfg, socket_path=str(tmp_path / "none"))
    with pytest.raises(MapRetry, match="proxymap service"):
        table.lookup("k")


def test_reconnects_after_server_restart(tmp_path, cfg):
    path = str(tmp_path / "pm")
    srv = HandlerServer(path, handle_client, cfg)
    table = ProxyDict("proxy:static:fixed", "static:fixed", cfg, socket_path=path)
    assert table.lookup("k") == "fixed"
    srv.stop()
    srv = HandlerServer(path, handle_client, cfg)
    try:
        assert table.lookup("k") == "fixed"
    finally:
        srv.stop()
        table.close()
