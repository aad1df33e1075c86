"""Shaping by provider: sites rolled up by MX hosts (a loopback DNS server), limits
and reply rules parsed and applied to the scheduler kernel, and qmgr queueing the
mail of every domain of a site on one destination, backing off on a 421 4.7.28."""

from __future__ import annotations

import asyncio
import os

import pytest

from mta.common.deliver_agent import DeliveryJob
from mta.config import load_config
from mta.config.errors import ConfigError
from mta.qmgr.kernel import Scheduler
from mta.qmgr.shaping import Shaper, parse_actions, parse_limits, problems
from mta.qmgr.sites import SiteResolver, literal_site
from tests.support.agent import queue_message
from tests.support.dns_server import zone_fixtures
from tests.support.instance import make_instance
from tests.unit.qmgr.test_manager import files, run_qmgr, serve_agent

ZONE = {
    "gmail.com": {"MX": ["5 gmail-smtp-in.l.google.com.", "10 alt1.gmail-smtp-in.l.google.com."]},
    "corp.example": {"MX": ["1 aspmx.l.google.com."]},
    "a.example": {"MX": ["10 mx1.hoster.example.", "20 mx2.hoster.example."]},
    "b.example": {"MX": ["10 mx2.hoster.example.", "10 mx1.hoster.example."]},
    "nomx.example": {"A": ["192.0.2.1"]},
    "broken.example": "SERVFAIL",
}
dns_server, use_dns = zone_fixtures(ZONE)


def cfg_of(tmp_path, main_cf: str = "", master_cf: str = ""):
    return load_config(str(make_instance(tmp_path, main_cf, master_cf)))


def resolve_all(sites: SiteResolver, domains: list[str]) -> dict[str, str]:
    async def main():
        out = {}
        done = asyncio.Event()
        left = set(domains)

        def got(domain):
            def on_done(site):
                out[domain] = site
                left.discard(domain)
                if not left:
                    done.set()

            return on_done

        for d in domains:
            site = sites.cached(d)
            if site is not None:
                out[d] = site
                left.discard(d)
            else:
                sites.resolve(d, got(d))
        if left:
            await asyncio.wait_for(done.wait(), 10)
        return out

    return asyncio.run(main())


def test_sites_by_mx_hosts(tmp_path, dns_server):
    sites = SiteResolver(cfg_of(tmp_path))
    got = resolve_all(
        sites,
        ["gmail.com", "corp.example", "a.example", "b.example", "nomx.example", "broken.example"],
    )
    assert got["gmail.com"] == "gmail"  # named by the domain itself
    assert got["corp.example"] == "gmail"  # a Workspace domain: by its MX host
    assert got["a.example"] == got["b.example"] == "mx1.hoster.example,mx2.hoster.example"
    assert got["nomx.example"] == "nomx.example" and got["broken.example"] == "broken.example"
    asked = {n.rstrip(".").lower() for n, t in dns_server.queries if t == "MX"}
    assert "gmail.com" not in asked  # a rule for the domain needs no look-up
    before = len(dns_server.queries)
    assert sites.cached("corp.example") == "gmail" and len(dns_server.queries) == before


def test_administrators_site_table_first(tmp_path, dns_server):
    table = tmp_path / "sites"
    table.write_text("/hoster\\.example$/ hoster\n/^gmail\\.com$/ mine\n")
    sites = SiteResolver(cfg_of(tmp_path, f"shaping_site_maps = regexp:{table}\n"))
    got = resolve_all(sites, ["gmail.com", "a.example", "corp.example"])
    assert got == {"gmail.com": "mine", "a.example": "hoster", "corp.example": "gmail"}


def test_literal_next_hops_are_not_looked_up():
    assert literal_site("[192.0.2.1]:2525") == "[192.0.2.1]:2525"
    assert literal_site("relay.example:587") == "relay.example:587"
    assert literal_site("localhost") == "localhost"
    assert literal_site("Example.COM") is None


def test_limits_and_actions_parse_and_refuse():
    lim = parse_limits("concurrency=3 messages_per_minute=120 messages_per_hour=3600", "t")
    assert (lim.concurrency, lim.interval, lim.per_connection) == (3, 1.0, 0)
    assert parse_limits("per_connection=5", "t").per_connection == 5
    assert parse_limits("connections_per_minute=30", "t").connections_per_minute == 30
    with pytest.raises(ConfigError, match="t: unknown limit 'speed=9'"):
        parse_limits("speed=9", "t")
    with pytest.raises(ConfigError, match="concurrency needs a whole number"):
        parse_limits("concurrency=-1", "t")
    assert parse_actions("suspend=1h scope=site", "r").whole_site
    assert not parse_actions("suspend=1h scope=source", "r").whole_site
    act = parse_actions("suspend=30m concurrency=50% rate=25% for=2h", "r")
    assert (act.suspend, act.concurrency, act.rate, act.duration) == (1800, 0.5, 0.25, 7200)
    for bad in ("suspend=soon", "rate=150%", "concurrency=5", "pause=1m", "scope=all"):
        with pytest.raises(ConfigError):
            parse_actions(bad, "r")


def test_check_reports_rules_that_do_not_parse(tmp_path):
    (tmp_path / "limits").write_text("gmail concurrency=2\nyahoo speed=fast\n")
    (tmp_path / "replies").write_text("/4\\.7\\.28/ suspend=30m\n/TSS04/ wait=1h\n")
    cfg = cfg_of(
        tmp_path,
        f"shaping_table = texthash:{tmp_path / 'limits'}\n"
        f"shaping_reply_maps = regexp:{tmp_path / 'replies'}\n",
    )
    found = problems(cfg)
    assert [p for p, _, _ in found] == ["shaping_table", "shaping_reply_maps"]
    assert "yahoo: unknown limit 'speed=fast'" in found[0][1]
    assert "line 2: unknown action 'wait=1h'" in found[1][1]


def test_limits_and_reply_rules_on_the_kernel(tmp_path):
    cfg = cfg_of(
        tmp_path, "shaping_table = inline:{ {gmail=concurrency=4 messages_per_minute=60} }\n"
    )
    shaper = Shaper(cfg)
    sched = Scheduler()
    sched.set_transport("smtp", 100)
    d = sched.destination("smtp", "gmail", 5, 20)
    shaper.configure(d, 1000.0)
    assert (d.limit, d.window, d.rate_delay) == (4, 4.0, 1.0)
    assert shaper.is_shaped(d)
    assert shaper.request_attrs(d) == {}
    # the built-in rules: Microsoft's throttling halves window and rate for an hour
    act, _ = shaper.on_reply(
        d, "4.7.650", "451 4.7.650 The mail server has been temporarily rate limited", 1000.0
    )
    assert act.rate == 0.5 and (d.window, d.rate_delay) == (2.0, 2.0)
    shaper.restore(sched, 1000.0 + 3599)
    assert d.rate_delay == 2.0
    shaper.restore(sched, 1000.0 + 3601)
    assert d.rate_delay == 1.0
    act, _ = shaper.on_reply(
        d, "4.7.28", "421-4.7.28 [192.0.2.1] Our system has detected an unusual rate", 2000.0
    )
    assert act.suspend == 1800 and d.is_dead() and d.dead_until == 3800.0
    assert shaper.on_reply(d, "4.2.2", "452 4.2.2 mailbox full", 2000.0) is None


def test_qmgr_queues_a_site_as_one_and_backs_off_on_its_421(tmp_path, dns_server):
    """Three domains of the gmail site and one other: concurrency=1 for gmail; the
    first gmail delivery gets 421 4.7.28, which suspends the site: its other mail is
    deferred without an attempt, while the other site is delivered."""
    attempts: list[str] = []

    async def smtp_like(job: DeliveryJob) -> None:
        for rcpt in job.pending():
            attempts.append(rcpt.address)
            if rcpt.address.endswith(("gmail.com", "corp.example")):
                reply = "421-4.7.28 [127.0.0.1] Our system has detected an unusual rate of mail"
                job.defer(rcpt, f"host mx said: {reply}", "4.7.28", "mx[127.0.0.1]:25", reply, "mx")
            else:
                job.sent(rcpt, "250 ok", "mx[127.0.0.1]:25")

    cfg = cfg_of(
        tmp_path,
        "shaping_table = inline:{ {gmail=concurrency=1} }\nminimal_backoff_time = 300s\n",
        "qmgr fifo n - n 300 1 qmgr\nsmtp unix - - n - - smtp\n",
    )
    from mta import log

    log.init("qmgr", cfg)
    msgs = [
        queue_message(cfg, [f"u{i}@{d}"], queue="incoming")
        for i, d in enumerate(
            ["gmail.com", "corp.example", "gmail.com", "a.example", "corp.example"]
        )
    ]
    agent = serve_agent(cfg, "smtp", smtp_like)
    seen = {}
    try:

        def done(qm):
            seen["gmail"] = qm.sched.find("smtp", "gmail")
            return len(files(cfg, "deferred")) == 4 and not qm.active

        qm = run_qmgr(cfg, done, timeout=15)
    finally:
        agent.stop()
    gmail_tries = [a for a in attempts if not a.endswith("a.example")]
    assert len(gmail_tries) == 1, attempts
    assert "u3@a.example" in attempts and not os.path.exists(msgs[3].path)
    maillog = (tmp_path / "maillog").read_text()
    assert "gmail: shaping: 4.7.28 421-4.7.28" in maillog and "suspend=30m" in maillog
    suspended = [
        x
        for x in maillog.splitlines()
        if "delivery temporarily suspended: site gmail: 421-4.7.28" in x
    ]
    assert len(suspended) == 3  # the other gmail.com and corp.example mail, never tried
    assert qm.sched.find("smtp", "corp.example") is None  # no queue of its own
    assert seen["gmail"] is not None and seen["gmail"].limit == 1


def test_reply_scope_source_or_whole_site(tmp_path):
    """With egress pools a site is queued per source: a rule acts on the source that
    got the reply, or with scope=site on every source's queue of the site."""
    (tmp_path / "replies").write_text("/TSS04/ suspend=1h\n/TS03/ suspend=2h scope=site\n")
    shaper = Shaper(cfg_of(tmp_path, f"shaping_reply_maps = regexp:{tmp_path / 'replies'}\n"))
    sched = Scheduler()
    sched.set_transport("smtp", 100)
    a, b, other = (
        sched.destination("smtp", k, 5, 20) for k in ("yahoo/ip1", "yahoo/ip2", "gmail/ip1")
    )
    for d in (a, b, other):
        shaper.configure(d, 0.0)
    _, targets = shaper.on_reply(a, "4.7.0", "421 4.7.0 [TSS04] deferred", 100.0, sched)
    assert targets == [a] and a.is_dead() and not b.is_dead()
    _, targets = shaper.on_reply(b, "5.7.9", "554 5.7.9 blocked TS03", 100.0, sched)
    assert set(targets) == {a, b} and b.dead_until == a.dead_until == 7300.0
    assert not other.is_dead()


def test_client_limits_travel_with_the_request(tmp_path):
    cfg = cfg_of(
        tmp_path,
        "shaping_table = inline:{ {gmail=per_connection=50 connections_per_minute=20} }\n",
    )
    shaper = Shaper(cfg)
    sched = Scheduler()
    d = sched.destination("smtp", "gmail/ip1", 5, 20)
    shaper.configure(d, 0.0)
    assert shaper.request_attrs(d) == {
        "reuse_count_limit": "50",
        "connections_per_minute": "20",
        "connection_pace_key": "gmail/ip1",
    }
