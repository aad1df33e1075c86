"""How long a proxy: table waits for proxymap (mta/common/ipc.py): not at all for a
socket nobody serves, at most the reply limit for one that never answers, and not
again for a while after that."""

import socket
import time

import pytest

from mta.common import ipc
from mta.config import load_config
from mta.maps import MapRetry
from mta.maps.dict_proxy import ProxyDict
from mta.proxymap.server import handle_client
from tests.support.unix_server import HandlerServer

TABLE = "static:fixed"


def make_cfg(tmp_path, extra=""):
    (tmp_path / "main.cf").write_text(
        f"queue_directory = {tmp_path}/q\nproxy_read_maps = proxy:{TABLE}\n{extra}"
    )
    return load_config(str(tmp_path))


def table(cfg, path):
    return ProxyDict(f"proxy:{TABLE}", TABLE, cfg, socket_path=str(path))


@pytest.fixture(autouse=True)
def forget_down_sockets():
    ipc._down.clear()
    yield
    ipc._down.clear()


def test_reply_wait_is_ipc_timeout_capped_by_the_limit(tmp_path):
    assert ipc.reply_timeout(make_cfg(tmp_path)) == ipc.IPC_REPLY_LIMIT  # 3600s by default
    assert ipc.reply_timeout(make_cfg(tmp_path, "ipc_timeout = 2s\n")) == 2.0


@pytest.mark.parametrize("kind", ["missing", "refused"])
def test_socket_nobody_serves_fails_at_once(tmp_path, kind):
    path = tmp_path / "proxymap"
    if kind == "refused":  # a socket file whose listener is gone
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    began = time.monotonic()
    with pytest.raises(MapRetry, match="connect: (No such file|Connection refused)"):
        table(make_cfg(tmp_path), path).lookup("k")
    assert time.monotonic() - began < 0.5
    assert not ipc.is_down(str(path))  # nothing to wait for: the next lookup tries again


def test_socket_that_never_answers_times_out_then_fails_at_once(tmp_path):
    path = tmp_path / "proxymap"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(5)  # connections are queued and never accepted
    try:
        t = table(make_cfg(tmp_path, "ipc_timeout = 1s\n"), path)
        began = time.monotonic()
        with pytest.raises(MapRetry, match="no reply within 1s"):
            t.lookup("k")
        assert 0.9 < time.monotonic() - began < 2.5  # one wait, no second attempt
        began = time.monotonic()
        with pytest.raises(MapRetry, match="not asked again"):
            t.lookup("k")
        assert time.monotonic() - began < 0.1
    finally:
        listener.close()


def test_the_down_mark_expires(tmp_path, monkeypatch):
    ipc.mark_down("/some/socket", 5.0)
    assert ipc.is_down("/some/socket")
    monkeypatch.setattr(ipc.time, "monotonic", lambda: time.time() + 10**9)
    assert not ipc.is_down("/some/socket")


def test_a_kept_connection_that_broke_is_replaced_once(tmp_path):
    cfg = make_cfg(tmp_path)
    path = str(tmp_path / "proxymap")
    srv = HandlerServer(path, handle_client, cfg)
    t = table(cfg, path)
    try:
        assert t.lookup("k") == "fixed"
    finally:
        srv.stop()  # proxymap exits (max_idle): the kept connection is dead
    srv = HandlerServer(path, handle_client, cfg)
    try:
        assert t.lookup("k") == "fixed"
    finally:
        srv.stop()
        t.close()
