"""verify service over a real unix socket: queries, updates, probes queued into a
real queue directory, malformed requests; and the client's failure reporting."""

import asyncio
import socket
import time

import pytest

from mta.common import attr_proto
from mta.common.verify_clnt import VerifyClient, VerifyError
from mta.config import load_config
from mta.queue import rec_type as R
from mta.queue.queue_file import iter_content, read_queue_file
from mta.verify.cache import STATUS_BOUNCE, STATUS_OK, STATUS_TODO, TEXT_IN_PROGRESS
from mta.verify.server import VerifyService, probe_sender
from tests.support.instance import incoming_files, make_instance
from tests.support.unix_server import HandlerServer


@pytest.fixture
def cfg(tmp_path):
    return load_config(str(make_instance(tmp_path, main_cf="myorigin = origin.example\n")))


@pytest.fixture
def service(tmp_path, cfg):
    svc = VerifyService(cfg)
    srv = HandlerServer(str(tmp_path / "verify.sock"), svc.handle_client, cfg)
    srv.service = svc
    yield srv
    srv.stop()


def client_run(cfg, path, fn):
    async def go():
        client = VerifyClient(cfg, socket_path=path)
        try:
            return await fn(client)
        finally:
            client.close()

    return asyncio.run(go())


def test_query_of_unknown_address_queues_one_probe(tmp_path, cfg, service):
    async def two_queries(client):
        first = await client.query("user@far.example")
        second = await client.query("user@far.example")
        return first, second

    first, second = client_run(cfg, service.path, two_queries)
    assert first == second == (STATUS_TODO, TEXT_IN_PROGRESS)
    files = []
    deadline = time.monotonic() + 5
    while not files and time.monotonic() < deadline:
        files = incoming_files(tmp_path / "etc")
        time.sleep(0.05)
    time.sleep(0.2)
    files = incoming_files(tmp_path / "etc")
    assert len(files) == 1
    probe = read_queue_file(files[0])
    assert probe.sender == "double-bounce@origin.example"
    assert [r.address for r in probe.recipients] == ["user@far.example"]
    assert probe.flags & R.QF_VERIFY_MTA
    assert b"Subject: probe" in b"\n".join(iter_content(files[0], probe))


def test_update_then_query_answers_from_cache(cfg, service):
    async def go(client):
        await client.update("ok@far.example", STATUS_OK, "250 2.1.5 Ok")
        await client.update("bad@far.example", STATUS_BOUNCE, "550 5.1.1 no")
        return await client.query("OK@far.example"), await client.query("bad@far.example")

    assert client_run(cfg, service.path, go) == ((STATUS_OK, "250 2.1.5 Ok"), (4, "550 5.1.1 no"))


@pytest.mark.parametrize(
    "msg",
    [
        {"request": "query", "address": "x" * 2000},
        {"request": "query", "address": "a@b\r\nRCPT TO:<c@d>"},
        {"request": "update", "address": "a@b", "addr_status": "3", "text": ""},
        {"request": "update", "address": "a@b", "addr_status": "ok"},
        {"request": "forget", "address": "a@b"},
    ],
)
def test_malformed_requests_get_status_1(service, msg):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(service.path)
        attr_proto.send(s, msg)
        assert attr_proto.recv(s) == {"status": "1"}
        # the connection stays usable
        attr_proto.send(s, {"request": "query", "address": "ok@x.example"})
        assert attr_proto.recv(s)["status"] == "0"


def test_garbage_bytes_close_the_connection_only(cfg, service):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(service.path)
        s.sendall(b"\xff\xfe\x00\x00")
        assert s.recv(100) == b""
    assert client_run(cfg, service.path, lambda c: c.query("a@x.example"))[0] == STATUS_TODO


def test_client_reports_a_missing_service(tmp_path, cfg):
    with pytest.raises(VerifyError, match="verify service"):
        client_run(cfg, str(tmp_path / "nothing"), lambda c: c.query("a@x.example"))


def test_client_fails_at_once_on_a_missing_service(tmp_path, cfg):
    began = time.monotonic()
    with pytest.raises(VerifyError, match="connect: No such file or directory"):
        client_run(cfg, str(tmp_path / "nothing"), lambda c: c.query("a@x.example"))
    assert time.monotonic() - began < 0.5


def test_client_gives_up_on_a_stuck_service_and_then_fails_at_once(tmp_path):
    from mta.common import ipc

    cfg = load_config(str(make_instance(tmp_path, main_cf="ipc_timeout = 1s\n")))
    path = str(tmp_path / "stuck.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(5)  # taken, never answered: a service master cannot start

    async def twice(client):
        out = []
        for _ in range(2):
            began = time.monotonic()
            try:
                await client.query("a@x.example")
            except VerifyError as exc:
                out.append((str(exc), time.monotonic() - began))
        return out

    try:
        (first, took1), (second, took2) = client_run(cfg, path, twice)
    finally:
        listener.close()
        ipc.mark_up(path)
    assert "no reply within 1s" in first and 0.9 < took1 < 2.5
    assert "not asked again" in second and took2 < 0.1


def test_probe_sender_forms(tmp_path):
    def sender(value):
        d = tmp_path / value.replace("<", "").replace(">", "").replace("@", "_") / "c"
        d.mkdir(parents=True)
        (d / "main.cf").write_text(f"myorigin = o.example\naddress_verify_sender = {value}\n")
        return probe_sender(load_config(str(d)))

    assert sender("postmaster") == "postmaster@o.example"
    assert sender("probe@x.example") == "probe@x.example"
    assert sender("<>") == ""


def test_probe_sender_ttl_changes_the_local_part(tmp_path):
    (tmp_path / "main.cf").write_text("myorigin = o.example\naddress_verify_sender_ttl = 1h\n")
    cfg = load_config(str(tmp_path))
    t = 1_800_000_000 - 1_800_000_000 % 3600
    first = probe_sender(cfg, now=t)
    assert first == f"double-bounce{t // 3600:x}@o.example"
    assert probe_sender(cfg, now=t + 3599) == first
    assert probe_sender(cfg, now=t + 3600) != first


def test_pending_request_limit_holds_back_probes(tmp_path):
    cfg = load_config(
        str(make_instance(tmp_path, main_cf="address_verify_pending_request_limit = 1\n"))
    )
    svc = VerifyService(cfg)
    srv = HandlerServer(str(tmp_path / "verify.sock"), svc.handle_client, cfg)

    def probes():
        time.sleep(0.3)  # probes are queued in the background
        return len(incoming_files(tmp_path / "etc"))

    try:
        run = lambda fn: client_run(cfg, srv.path, fn)  # noqa: E731
        assert run(lambda c: c.query("one@far.example")) == (STATUS_TODO, TEXT_IN_PROGRESS)
        assert probes() == 1
        # the limit is reached: an answer, but no probe
        assert run(lambda c: c.query("two@far.example")) == (STATUS_TODO, TEXT_IN_PROGRESS)
        assert probes() == 1
        # the first result frees the room
        run(lambda c: c.update("one@far.example", STATUS_OK, "250 ok"))
        run(lambda c: c.query("two@far.example"))
        assert probes() == 2
    finally:
        srv.stop()
