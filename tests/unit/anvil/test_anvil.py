"""anvil: the counting of connections and rates per client ident, and the service
over a real unix socket, where two clients (two smtpd processes) share the counts
and a client that goes away takes its open connections with it."""

import asyncio
import time

import pytest

from mta.anvil.server import AnvilService, Counters
from mta.common.anvil_clnt import AnvilClient, AnvilError
from mta.config import load_config
from tests.support.instance import make_instance
from tests.support.unix_server import HandlerServer

A, B = "smtp:192.0.2.7", "smtp:192.0.2.8"


def test_connections_open_now_and_the_connection_rate():
    c = Counters(60)
    assert c.connect(A, 1000.0) == (1, 1)
    assert c.connect(A, 1001.0) == (2, 2)
    assert c.connect(B, 1001.0) == (1, 1)  # another client counts apart
    c.disconnect(A, 1002.0)
    assert c.connect(A, 1003.0) == (2, 3)  # the rate counts closed ones too
    assert c.lookup(A, 1003.0) == (
        2,
        {"connect": 3, "message": 0, "recipient": 0, "auth": 0, "newtls": 0},
    )


def test_the_rate_period_starts_again_after_the_time_unit():
    c = Counters(60)
    for i in range(3):
        c.event("message", A, 1000.0 + i)
    assert c.event("message", A, 1059.0) == 4
    assert c.event("message", A, 1060.0) == 1  # a new period
    assert c.event("recipient", A, 1061.0) == 1
    assert c.connect(A, 1061.0) == (1, 1)


def test_idle_idents_are_forgotten_but_open_connections_are_not():
    c = Counters(60)
    c.connect(A, 1000.0)
    c.connect(B, 1000.0)
    c.disconnect(B, 1001.0)
    c.sweep(1100.0)
    assert set(c.table) == {A}
    c.disconnect(A, 1100.0)  # closed after its period ended: forgotten at once
    assert c.table == {}
    c.disconnect(A, 1101.0)  # one too many is no negative count
    assert c.lookup(A, 1101.0)[0] == 0


def test_statistics_name_the_peaks_and_start_again():
    c = Counters(60)
    c.connect(A, 1000.0)
    c.connect(A, 1000.0)
    c.connect(B, 1000.0)
    c.event("message", B, 1000.0)
    c.event("auth", B, 1000.0)
    lines = c.report()
    assert any(
        line.startswith("statistics: max connection rate 2/60s for (smtp:192.0.2.7) at ")
        for line in lines
    ), lines
    assert any(
        line.startswith("statistics: max connection count 2 for (smtp:192.0.2.7)") for line in lines
    ), lines
    assert any(
        line.startswith("statistics: max message rate 1/60s for (smtp:192.0.2.8)") for line in lines
    ), lines
    assert any(
        line.startswith("statistics: max auth rate 1/60s for (smtp:192.0.2.8)") for line in lines
    ), lines
    assert c.report() == []


@pytest.fixture
def cfg(tmp_path):
    return load_config(str(make_instance(tmp_path, main_cf="anvil_rate_time_unit = 60s\n")))


@pytest.fixture
def service(tmp_path, cfg):
    svc = AnvilService(cfg)
    srv = HandlerServer(str(tmp_path / "anvil.sock"), svc.handle_client, cfg)
    srv.service = svc
    yield srv
    srv.stop()


def test_two_clients_share_counts_and_a_closed_client_releases_its_connections(cfg, service):
    async def go():
        one = AnvilClient(cfg, socket_path=service.path)
        two = AnvilClient(cfg, socket_path=service.path)
        try:
            assert await one.connect("smtp", "192.0.2.7") == (1, 1)
            assert await two.connect("smtp", "192.0.2.7") == (2, 2)
            assert await two.message("smtp", "192.0.2.7") == 1
            assert await one.recipient("smtp", "192.0.2.7") == 1
            assert await one.auth("smtp", "192.0.2.7") == 1
            assert await two.auth("smtp", "192.0.2.7") == 2  # AUTH commands, shared
            # a client cannot close what another opened
            await one.disconnect("smtp", "192.0.2.7")
            await one.disconnect("smtp", "192.0.2.7")
            assert (await two.lookup("smtp", "192.0.2.7"))["count"] == 1
            await two.connect("smtp", "192.0.2.7")
            two.close()  # as an smtpd process that died
            for _ in range(50):
                found = await one.lookup("smtp", "192.0.2.7")
                if found["count"] == 0:
                    break
                await asyncio.sleep(0.02)
            return found
        finally:
            one.close()

    found = asyncio.run(go())
    assert found == {"count": 0, "rate": 3, "message": 1, "recipient": 1, "auth": 2}


def test_malformed_requests_and_a_missing_service(cfg, service, tmp_path):
    async def go():
        client = AnvilClient(cfg, socket_path=service.path)
        try:
            with pytest.raises(AnvilError, match="status 1"):
                await client.request({"request": "connect", "ident": "x" * 301})
            with pytest.raises(AnvilError, match="status 1"):
                await client.request({"request": "explode", "ident": A})
        finally:
            client.close()
        gone = AnvilClient(cfg, socket_path=str(tmp_path / "nobody.sock"))
        began = time.monotonic()
        with pytest.raises(AnvilError, match="anvil service .*connect"):
            await gone.connect("smtp", "192.0.2.7")
        return time.monotonic() - began

    assert asyncio.run(go()) < 1.0


def test_new_tls_sessions_are_counted_and_reported_without_counting(cfg):
    service = AnvilService(cfg)
    ask = lambda request: service.serve({"request": request, "ident": A}, {})  # noqa: E731
    assert ask("newtls_report") == {"status": "0", "rate": "0"}
    assert ask("newtls") == {"status": "0", "rate": "1"}
    assert ask("newtls") == {"status": "0", "rate": "2"}
    assert ask("newtls_report") == {"status": "0", "rate": "2"}  # a report counts nothing
    lines = service.counters.report()
    assert any(
        x.startswith("statistics: max new TLS sessions 2/60s for (smtp:192.0.2.7)") for x in lines
    )
