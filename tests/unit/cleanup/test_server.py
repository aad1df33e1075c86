"""The cleanup service over a real UNIX socket, with the blocking client."""

import asyncio
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from mta.cleanup.client import CleanupClient, CleanupClientError
from mta.cleanup.server import handle_client
from mta.common import attr_proto
from mta.queue.queue_file import iter_content, read_queue_file
from tests.unit.cleanup.conftest import REMOTE


class Server:
    """handle_client served by asyncio.start_unix_server in a background thread."""

    def __init__(self, path, cfg):
        self.path = path
        self.ctx = SimpleNamespace(cfg=cfg)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(5)

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def main():
            self.server = await asyncio.start_unix_server(
                lambda r, w: handle_client(r, w, self.ctx), path=self.path
            )
            self.ready.set()

        self.loop.run_until_complete(main())
        self.loop.run_forever()

    def stop(self):
        async def shutdown():
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def service(instance, tmp_path):
    inst = instance()
    srv = Server(str(tmp_path / "cleanup.sock"), inst.cfg)
    srv.inst = inst
    yield srv
    srv.stop()


def test_message_through_service_is_queued(service):
    job = CleanupClient(service.path).open("a@example.org", REMOTE)
    assert job.queue_id
    job.add_recipient("b@example.net", notify=2)
    job.write(b"Subject: via service\r\n\r\n8-bit \xff body\r\n")
    result = job.close()
    assert (result.action, result.queue_id, result.nrcpt) == ("queued", job.queue_id, 1)
    (path,) = service.inst.files()
    msg = read_queue_file(path)
    assert msg.sender == "a@example.org" and msg.recipients[0].notify == 2
    assert b"8-bit \xff body" in list(iter_content(path))


def test_large_content_in_pieces(service):
    job = CleanupClient(service.path).open("a@example.org", REMOTE)
    job.add_recipient("b@example.net")
    body = b"Subject: big\r\n\r\n" + b"x" * 998 + b"\r\n" * 1 + (b"y" * 78 + b"\r\n") * 10000
    job.write(body)
    result = job.close()
    assert result.action == "queued" and result.size >= len(body)


def test_close_into_hold(service):
    job = CleanupClient(service.path).open("a@example.org", REMOTE)
    job.add_recipient("b@example.net")
    job.write(b"Subject: x\r\n\r\ny\r\n")
    assert job.close("hold").hold
    assert service.inst.files("hold")


def test_abort_leaves_nothing(service):
    job = CleanupClient(service.path).open("a@example.org", REMOTE)
    job.add_recipient("b@example.net")
    job.write(b"Subject: x\r\n\r\ny\r\n")
    job.abort()
    assert service.inst.files() == []


def test_out_of_turn_request_is_refused(service):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(service.path)
        attr_proto.send(s, {"request": "data", "data": ""})
        reply = attr_proto.recv(s)
        assert reply["status"] == "4" and "outside a message" in reply["reply"]
        assert attr_proto.recv(s) is None  # connection closed


def test_bad_base64_refused_and_message_dropped(service):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(service.path)
        attr_proto.send(s, {"request": "open", "sender": "a@x.org"})
        assert attr_proto.recv(s)["status"] == "0"
        attr_proto.send(s, {"request": "data", "data": "!!!"})
        assert attr_proto.recv(s)["status"] == "4"
    assert service.inst.files() == []


def test_client_gone_mid_message_leaves_nothing(service):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(service.path)
        attr_proto.send(s, {"request": "open", "sender": "a@x.org"})
        attr_proto.recv(s)
        attr_proto.send(s, {"request": "rcpt", "address": "b@y.org"})
    job = CleanupClient(service.path).open("c@x.org", REMOTE)  # service still serves
    job.add_recipient("d@y.org")
    job.write(b"\r\n")
    assert job.close().action == "queued"
    assert len(service.inst.files()) == 1
    for _ in range(100):  # the dropped connection's temporary file goes away
        if not [p for p in service.inst.all_files() if p.endswith(".tmp")]:
            break
        time.sleep(0.02)
    assert not [p for p in service.inst.all_files() if p.endswith(".tmp")]


def test_unreachable_service_raises(tmp_path):
    with pytest.raises(CleanupClientError):
        CleanupClient(str(tmp_path / "nothing")).open("a@x.org", {})
