"""tlsmgr: the ticket key, its rotation every smtpd_tls_session_cache_timeout,
and the service smtpd processes fetch it from (through the real client)."""

import asyncio
import socket
import time

import pytest

from mta.common.tlsmgr_clnt import (
    BLOCKING_LIMIT,
    TicketsOff,
    TlsmgrBlockingClient,
    TlsmgrClient,
    TlsmgrError,
)
from mta.common.trigger import TRIGGER_WAKEUP
from mta.config import load_config
from mta.tlsmgr.keys import TicketKeys
from mta.tlsmgr.scache import open_session_caches
from mta.tlsmgr.server import TlsmgrService
from mta.verify.cache import StoreError
from tests.support.instance import make_instance
from tests.support.unix_server import HandlerServer


def test_one_key_until_the_timeout_then_a_new_one():
    keys = TicketKeys(timeout=3600)
    first = keys.current(1000.0)
    assert len(first.keybuf) == 80 and first.expires == 4600.0
    assert keys.current(4599.0) is first
    second = keys.current(4600.0)
    assert second.keybuf != first.keybuf and second.name != first.name
    assert second.expires == 8200.0


def test_the_previous_key_is_known_for_one_more_timeout():
    keys = TicketKeys(timeout=100)
    first = keys.current(0.0)
    second = keys.current(150.0)
    assert keys.lookup(first.name, 150.0) is first
    assert keys.lookup(second.name, 150.0) is second
    assert keys.lookup(first.name, 200.0) is None  # expired at 100, kept until 200
    assert keys.lookup(b"\0" * 16, 150.0) is None


def test_keys_are_random():
    assert TicketKeys(60).current(0).keybuf != TicketKeys(60).current(0).keybuf


def config(tmp_path, main_cf: str = ""):
    return load_config(str(make_instance(tmp_path, main_cf=main_cf)))


def test_requests_and_replies(tmp_path):
    svc = TlsmgrService(config(tmp_path))
    reply = svc.serve({"request": "tktkey"})
    assert reply["status"] == "0" and len(bytes.fromhex(reply["keybuf"])) == 80
    assert svc.serve({"request": "tktkey"}) == reply  # the same key for every smtpd
    assert reply["previous"] == ""  # nothing rotated yet
    name = reply["keybuf"][:32]
    assert svc.serve({"request": "tktkey", "keyname": name})["keybuf"] == reply["keybuf"]
    svc.keys.current(time.time() + 3601)  # rotated: the old key comes as "previous"
    rotated = svc.serve({"request": "tktkey"})
    assert rotated["previous"] == reply["keybuf"] != rotated["keybuf"]
    assert svc.serve({"request": "tktkey", "keyname": "00" * 16})["status"] == "1"
    assert svc.serve({"request": "tktkey", "keyname": "zz"})["status"] == "1"
    assert svc.serve({"request": "seed"})["status"] == "1"


@pytest.mark.parametrize(
    "main_cf", ["smtpd_tls_session_cache_timeout = 0\n", "tls_session_ticket_cipher =\n"]
)
def test_tickets_off_gives_an_empty_key(tmp_path, main_cf):
    svc = TlsmgrService(config(tmp_path, main_cf))
    assert svc.serve({"request": "tktkey"}) == {"status": "0", "keybuf": "", "expires": "0"}


@pytest.fixture
def service(tmp_path):
    cfg = config(tmp_path, "smtpd_tls_session_cache_timeout = 300s\n")
    svc = TlsmgrService(cfg)
    srv = HandlerServer(str(tmp_path / "tlsmgr.sock"), svc.handle_client, cfg)
    srv.cfg = cfg
    yield srv
    srv.stop()


def test_two_clients_get_the_same_key_and_its_expiry(service):
    async def go():
        one = TlsmgrClient(service.cfg, socket_path=service.path)
        two = TlsmgrClient(service.cfg, socket_path=service.path)
        try:
            return await one.ticket_key(), await two.ticket_key(), await one.ticket_key()
        finally:
            one.close()
            two.close()

    a, b, c = asyncio.run(go())
    assert a == b == c
    assert len(a[0]) == 80
    assert 290 < a[1] - time.time() <= 300


def test_the_masters_wakeup_is_no_malformed_request(service, tmp_path):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(service.path)
        s.sendall(TRIGGER_WAKEUP)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        assert s.recv(10) == b""  # closed without a reply


def test_a_missing_service_and_tickets_off(tmp_path):
    cfg = config(tmp_path, "smtpd_tls_session_cache_timeout = 0\n")
    svc = TlsmgrService(cfg)
    srv = HandlerServer(str(tmp_path / "off.sock"), svc.handle_client, cfg)

    async def go():
        off = TlsmgrClient(cfg, socket_path=srv.path)
        try:
            with pytest.raises(TicketsOff):
                await off.ticket_key()
        finally:
            off.close()
        gone = TlsmgrClient(cfg, socket_path=str(tmp_path / "nobody.sock"))
        with pytest.raises(TlsmgrError, match="tlsmgr service .*connect"):
            await gone.ticket_key()

    try:
        asyncio.run(go())
    finally:
        srv.stop()


# ---------------------------------------------------------------- client session cache


def cache_config(tmp_path, extra: str = ""):
    return config(
        tmp_path,
        f"smtp_tls_session_cache_database = lmdb:{tmp_path}/smtp_scache\n"
        f"smtp_tls_session_cache_timeout = 300s\n{extra}",
    )


def test_the_session_cache_keeps_a_session_until_its_timeout(tmp_path):
    cache = open_session_caches(cache_config(tmp_path))["smtp"]
    cache.update("mx[192.0.2.1]:25&may", b"\x30\x01\x02", 1000.0)
    assert cache.lookup("mx[192.0.2.1]:25&may", 1299.0) == b"\x30\x01\x02"
    assert cache.lookup("mx[192.0.2.1]:25&may", 1300.0) == b""  # expired
    assert cache.lookup("other", 1000.0) == b""
    assert (tmp_path / "smtp_scache.lmdb").exists()
    cache.store.put("damaged", "soon:zz")
    assert cache.lookup("damaged", 0.0) == b""
    cache.update("fresh", b"\x30", 1200.0)
    assert cache.cleanup(1300.0) == 2  # the expired and the damaged one
    assert [k for k, _ in cache.store.items()] == ["fresh"]


def test_no_cache_without_the_parameter_or_with_another_table_type(tmp_path):
    assert open_session_caches(config(tmp_path)) == {}
    cfg = config(tmp_path / "x", "smtp_tls_session_cache_database = texthash:/nowhere\n")
    with pytest.raises(StoreError, match="smtp_tls_session_cache_database: unsupported table"):
        open_session_caches(cfg)


def test_sessions_travel_through_the_service(tmp_path):
    cfg = cache_config(tmp_path)
    svc = TlsmgrService(cfg)
    srv = HandlerServer(str(tmp_path / "tlsmgr.sock"), svc.handle_client, cfg)

    async def go():
        one = TlsmgrClient(cfg, socket_path=srv.path)
        two = TlsmgrClient(cfg, socket_path=srv.path)
        try:
            assert await one.lookup_session("smtp", "mx&may") == b""
            await one.update_session("smtp", "mx&may", b"\x30\x03abc")
            got = await two.lookup_session("smtp", "mx&may")
            with pytest.raises(TlsmgrError, match="status 1"):
                await two.lookup_session("lmtp", "mx&may")  # no lmtp cache here
            with pytest.raises(TlsmgrError, match="status 1"):
                await two.lookup_session("smtp", "x" * 401)
            await two.delete_session("smtp", "mx&may")
            return got, await one.lookup_session("smtp", "mx&may")
        finally:
            one.close()
            two.close()

    try:
        assert asyncio.run(go()) == (b"\x30\x03abc", b"")
    finally:
        srv.stop()


# ---------------------------------------------------------------- smtpd's session-id cache


def test_smtpds_cache_opens_from_its_own_parameters(tmp_path):
    cfg = config(
        tmp_path,
        f"smtpd_tls_session_cache_database = btree:{tmp_path}/smtpd_scache\n"
        "smtpd_tls_session_cache_timeout = 10s\n",
    )
    caches = open_session_caches(cfg)
    assert set(caches) == {"smtpd"}
    assert caches["smtpd"].timeout == 120  # clamped as Postfix does
    assert (tmp_path / "smtpd_scache.lmdb").exists()  # btree: names the lmdb file
    off = config(tmp_path / "off", f"smtpd_tls_session_cache_database = lmdb:{tmp_path}/x\n"
                 "smtpd_tls_session_cache_timeout = 0\n")  # fmt: skip
    assert open_session_caches(off) == {}


def test_the_blocking_client_stores_finds_and_deletes(tmp_path):
    cfg = config(tmp_path, f"smtpd_tls_session_cache_database = lmdb:{tmp_path}/smtpd_scache\n")
    svc = TlsmgrService(cfg)
    srv = HandlerServer(str(tmp_path / "tlsmgr.sock"), svc.handle_client, cfg)
    one = TlsmgrBlockingClient(cfg, srv.path)
    two = TlsmgrBlockingClient(cfg, srv.path)
    try:
        assert one.lookup_session("smtpd", "ab" * 32) == b""
        assert one.update_session("smtpd", "ab" * 32, b"\x30\x03abc")
        assert two.lookup_session("smtpd", "ab" * 32) == b"\x30\x03abc"
        assert not two.update_session("smtp", "ab" * 32, b"\x30")  # no smtp cache here
        assert two.delete_session("smtpd", "ab" * 32)
        assert one.lookup_session("smtpd", "ab" * 32) == b""
        assert one.error == ""
    finally:
        one.close()
        two.close()
        srv.stop()
    # the service went away: every request is a miss, and says why
    assert one.lookup_session("smtpd", "ab" * 32) == b""
    assert one.error.startswith("connect:")


def test_the_blocking_client_gives_up_on_a_silent_service(tmp_path):
    cfg = config(tmp_path)
    path = str(tmp_path / "silent.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen()
        client = TlsmgrBlockingClient(cfg, path)
        start = time.monotonic()
        assert client.lookup_session("smtpd", "ab") == b""
        assert time.monotonic() - start < BLOCKING_LIMIT + 0.5
        assert "no reply within" in client.error
        start = time.monotonic()
        assert client.lookup_session("smtpd", "ab") == b""  # down: not asked again for a while
        assert time.monotonic() - start < 0.1 and "not asked again" in client.error
        client.close()
