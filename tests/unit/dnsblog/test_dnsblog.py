"""dnsblog against a loopback DNS server, and postscreen's queries through a real
dnsblog listener: listed, not listed, failing and garbage answers, and the timeout."""

from __future__ import annotations

import asyncio
import types

from mta import log
from mta.dnsblog.server import answer_query, handle_client
from mta.postscreen.dnsbl import parse_dnsbl_sites, query_dnsbl, weigh
from tests.support.dns_server import zone_fixtures

ZONE = {
    "2.0.0.127.zen.example": {"A": ["127.0.0.2", "127.0.0.4"]},
    "2.0.0.127.broken.example": "SERVFAIL",
    "2.0.0.127.slow.example": "TIMEOUT",
    "2.0.0.127.txt.example": {"TXT": ['"not an address"']},
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.v6.example": {
        "A": ["127.0.0.3"]
    },
}
dns_server, use_dns = zone_fixtures(ZONE)


def _logged(tmp_path) -> str:
    log.flush()
    path = tmp_path / "maillog"
    return path.read_text() if path.exists() else ""


def _log_to(tmp_path):
    from mta.config import load_config

    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "main.cf").write_text(f"maillog_file = {tmp_path}/maillog\n")
    log.init("dnsblog", load_config(str(conf)))


def test_listed_client_gets_the_addresses_and_ttl():
    reply = asyncio.run(answer_query({"rbl_domain": "zen.example", "address": "127.0.0.2"}))
    assert sorted(reply["result"].split()) == ["127.0.0.2", "127.0.0.4"]
    assert reply["ttl"] == "60"


def test_ipv6_client_is_looked_up_by_nibbles():
    reply = asyncio.run(answer_query({"rbl_domain": "v6.example", "address": "2001:db8::1"}))
    assert reply["result"] == "127.0.0.3"


def test_not_listed_failing_and_garbage_answers_count_as_not_listed(tmp_path):
    _log_to(tmp_path)
    try:
        for domain in ("other.example", "broken.example", "txt.example"):
            reply = asyncio.run(answer_query({"rbl_domain": domain, "address": "127.0.0.2"}))
            assert reply["result"] == "", domain
        bad = asyncio.run(answer_query({"rbl_domain": "zen.example", "address": "not-an-ip"}))
        assert bad["result"] == "" and bad["error"] == "bad request"
        text = _logged(tmp_path)
    finally:
        log.init("dnsblog", None, stdout=False)
    assert "lookup error for DNS query 2.0.0.127.broken.example" in text
    assert "bad request: address=not-an-ip" in text


def test_postscreen_asks_dnsblog_in_parallel_and_gives_up_on_the_slow_list(tmp_path):
    path = str(tmp_path / "dnsblog")
    ctx = types.SimpleNamespace(cfg=types.SimpleNamespace(get_time=lambda name: 0))

    async def run():
        server = await asyncio.start_unix_server(lambda r, w: _serve(r, w), path)

        async def _serve(reader, writer):
            await handle_client(reader, writer, ctx)
            writer.close()

        sites = parse_dnsbl_sites(["zen.example*3", "slow.example*5", "broken.example*2"])
        start = asyncio.get_running_loop().time()
        answers = await query_dnsbl(sites, "127.0.0.2", path, timeout=0.5)
        took = asyncio.get_running_loop().time() - start
        server.close()
        return weigh(sites, answers), took

    _log_to(tmp_path)
    try:
        result, took = asyncio.run(run())
        text = _logged(tmp_path)
    finally:
        log.init("dnsblog", None, stdout=False)
    assert (result.score, result.site) == (3, "zen.example")
    assert took < 2.0
    assert "dnsblog reply timeout 0.5s for slow.example" in text
