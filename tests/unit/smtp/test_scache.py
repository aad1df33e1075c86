"""Shared connection cache: the store, descriptor passing over a real socket, and smtp reuse."""

import asyncio
import os
import socket
import threading
import time

import pytest

from mta.config import load_config
from mta.scache import ScacheStore, scache_find, scache_save, serve_client
from mta.smtp import deliver, session_cache
from tests.support.agent import queue_message, request_for
from tests.support.instance import make_instance
from tests.unit.smtp.peers import AgentServer, SinkHandler, sink


def fd_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_store_finds_most_recent_first():
    store = ScacheStore()
    a, b = os.dup(0), os.dup(0)
    store.save("k", a, b"A", 10)
    store.save("k", b, b"B", 10)
    assert store.find("k") == (b, b"B")
    assert store.find("k") == (a, b"A")
    assert store.find("k") is None
    os.close(a)
    os.close(b)


def test_store_expiry_closes_descriptor():
    store = ScacheStore()
    fd = os.dup(0)
    store.save("k", fd, b"", 0.01)
    time.sleep(0.03)
    assert store.find("k") is None
    assert not fd_open(fd)


class ScacheThread:
    def __init__(self, path):
        self.store = ScacheStore()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.sock.setblocking(False)

        def run():
            asyncio.set_event_loop(self.loop)

            async def accept():
                while True:
                    conn, _ = await self.loop.sock_accept(self.sock)
                    self.loop.create_task(serve_client(conn, self.store))

            self.task = self.loop.create_task(accept())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(5)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.sock.close()
        self.store.clear()


@pytest.fixture
def scache(tmp_path):
    srv = ScacheThread(str(tmp_path / "scache"))
    yield str(tmp_path / "scache")
    srv.stop()


def test_descriptor_round_trip(scache):
    left, right = socket.socketpair()
    assert scache_save(scache, "smtp:example.com", b'{"x": 1}', left.fileno(), 5)
    left.close()  # the cache holds its own copy
    assert scache_find(scache, "smtp:other.example") is None
    props, fd = scache_find(scache, "smtp:example.com")
    assert props == b'{"x": 1}'
    with socket.socket(fileno=fd) as got:
        got.sendall(b"still connected")
        assert right.recv(100) == b"still connected"
    right.close()


def test_bad_request_is_refused(scache):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(scache)
        s.sendall(b"launch missiles\n")
        assert s.recv(100) == b"fail\n"


def test_smtp_sessions_move_between_processes(tmp_path, monkeypatch):
    import mta.smtp

    monkeypatch.setattr(mta.smtp, "LOCAL_IDLE_PER_KEY", 1)  # keep one, share the rest
    connections = []

    class Counting(SinkHandler):
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            connections.append(hostname)
            session.host_name = hostname
            return responses

    ctl, handler = sink(Counting())
    cfg = load_config(
        str(
            make_instance(
                tmp_path, f"smtp_tcp_port = {ctl.port}\nsmtp_connection_cache_time_limit = 5s\n"
            )
        )
    )
    srv = ScacheThread(os.path.join(cfg.get("queue_directory"), "private", "scache"))
    agent = AgentServer(deliver, cfg, tmp_path)
    try:
        reqs = [
            request_for(queue_message(cfg, [f"u{i}@example.com"]), "[127.0.0.1]") for i in range(3)
        ]

        async def both():
            from mta.common.deliver_request import deliver as send

            return await asyncio.gather(
                send(agent.path, reqs[0], 10), send(agent.path, reqs[1], 10)
            )

        first = asyncio.run(both())
        assert len(connections) == 2
        assert srv.store.total == 1  # the surplus session went to the shared cache
        # another process: nothing of its own, so it asks the shared cache
        session_cache.idle = {}
        third = agent.send(reqs[2])
    finally:
        agent.stop()
        srv.stop()
        ctl.stop()
    assert [r.statuses[0].action for r in first + [third]] == ["relayed"] * 3
    assert len(connections) == 2
    assert len(handler.messages) == 3
