"""The showq service over a real unix socket, and mta queue's way to it."""

import io
import json
import os

import pytest

from mta.cli import queue as queue_cli
from mta.common.attr_proto import encode
from mta.common.showq_clnt import ShowqError, fetch_listing, showq_path
from mta.config import load_config
from mta.showq import handle_client
from tests.support.agent import queue_message
from tests.support.instance import make_instance
from tests.support.unix_server import HandlerServer


async def serve_one(reader, writer, ctx):
    """As the multi_server does: the connection closes when the handler returns."""
    try:
        await handle_client(reader, writer, ctx)
    finally:
        writer.close()


@pytest.fixture
def cfg(tmp_path):
    cfg = load_config(str(make_instance(tmp_path)))
    queue_message(cfg, ["a@x.example", "b@y.example"], queue="deferred")
    queue_message(cfg, ["c@x.example"], sender="", queue="hold")
    for i in range(50):
        queue_message(cfg, [f"r{i}@z.example"], queue="incoming")
    return cfg


@pytest.fixture
def showq(cfg):
    server = HandlerServer(showq_path(cfg), serve_one, cfg)
    yield server
    server.stop()


def direct(cfg, as_json: bool) -> bytes:
    out = io.StringIO()
    queue_cli.list_queue(cfg, as_json, out)
    return out.getvalue().encode()


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_the_service_sends_what_the_direct_listing_prints(cfg, showq, as_json):
    out = io.BytesIO()
    assert fetch_listing(cfg, as_json, out, timeout=10) == len(out.getvalue())
    assert out.getvalue() == direct(cfg, as_json)
    if as_json:
        assert len(out.getvalue().splitlines()) == 52
        assert all(json.loads(line)["queue_id"] for line in out.getvalue().splitlines())


def test_an_empty_queue_lists_as_empty(tmp_path):
    cfg = load_config(str(make_instance(tmp_path)))
    server = HandlerServer(showq_path(cfg), serve_one, cfg)
    try:
        out = io.BytesIO()
        fetch_listing(cfg, False, out, timeout=10)
        assert out.getvalue() == b"Mail queue is empty\n"
        out = io.BytesIO()
        assert fetch_listing(cfg, True, out, timeout=10) == 0
    finally:
        server.stop()


def test_an_unknown_request_gets_no_listing(cfg, showq):
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(showq_path(cfg))
        sock.sendall(encode({"request": "list", "format": "yaml"}))
        assert sock.recv(100) == b""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(showq_path(cfg))
        sock.sendall(b"request\0list")  # not a whole message
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b""


def test_no_service_is_an_error_naming_the_socket(cfg):
    with pytest.raises(ShowqError) as info:
        fetch_listing(cfg, False, io.BytesIO(), timeout=10)
    assert showq_path(cfg) in str(info.value)


def test_mta_queue_showq_copies_the_service_listing(cfg, showq, capfdbinary):
    assert queue_cli.main(["-c", cfg.config_dir, "-j", "--showq"]) == 0
    assert capfdbinary.readouterr().out == direct(cfg, True)


def test_an_unreadable_queue_is_listed_through_showq(cfg, showq, monkeypatch, capfdbinary):
    expected = direct(cfg, False)
    monkeypatch.setattr(queue_cli, "queue_readable", lambda cfg: False)
    monkeypatch.setattr(queue_cli, "list_queue", None)  # must not be used
    assert queue_cli.show_queue(cfg, False, "mailq") == 0
    assert capfdbinary.readouterr().out == expected


def test_neither_queue_nor_service_exits_69(cfg, monkeypatch, capfd):
    monkeypatch.setattr(queue_cli, "queue_readable", lambda cfg: False)
    assert queue_cli.show_queue(cfg, False, "mailq") == queue_cli.EX_UNAVAILABLE
    out, err = capfd.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("mailq: fatal: cannot list the queue: the queue is not readable")
    assert showq_path(cfg) in line and line.endswith("the mail system is down")


def test_a_readable_queue_is_read_directly(cfg, capsys):
    assert queue_cli.queue_readable(cfg)
    assert queue_cli.show_queue(cfg, True, "mta queue") == 0  # no service runs
    assert capsys.readouterr().out.encode() == direct(cfg, True)


def test_a_queue_directory_the_user_may_not_read_means_showq(cfg, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(
        queue_cli.os, "access", lambda p, m: not p.endswith("deferred") and real_access(p, m)
    )
    assert not queue_cli.queue_readable(cfg)
