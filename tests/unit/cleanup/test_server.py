"""The cleanup service over a real UNIX socket, with the blocking client."""

import socket
import time

import pytest

from mta.cleanup.client import CleanupClient, CleanupClientError
from mta.cleanup.server import handle_client
from mta.common import attr_proto
from mta.queue.queue_file import iter_content, read_queue_file
from tests.support.unix_server import HandlerServer
from tests.unit.cleanup.conftest import REMOTE


@pytest.fixture
def service(instance, tmp_path):
    inst = instance()
    srv = HandlerServer(str(tmp_path / "cleanup.sock"), handle_client, inst.cfg)
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
