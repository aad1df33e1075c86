"""postscreen.dnsbl - postscreen_dnsbl_sites: parse, ask dnsblog, weigh

SYNOPSIS
    from mta.postscreen.dnsbl import parse_dnsbl_sites, weigh, query_dnsbl
    sites = parse_dnsbl_sites(["zen.example*3", "list.dnswl.org=127.0.[0..255].[0..255]*-2"])
    answers = await query_dnsbl(sites, "192.0.2.1", "/queue/private/dnsblog", timeout=10)
    result = weigh(sites, answers)     # result.score, result.site, result.ttl

DESCRIPTION
    Each site is "domain[=filter][*weight]": the DNS list domain, an
    optional filter on the A records of a listing (d.d.d.d where each d
    is a number or "[...]" of ";"-separated numbers and n..m ranges, as
    for reject_rbl_client), and an integer weight (default 1; negative
    for allowlists). A domain named by several sites is looked up once.

    query_dnsbl() sends one request per domain to the dnsblog service
    (mta/dnsblog) at once and waits for the answers until timeout; a
    domain that does not answer in time, or whose answer cannot be
    used, counts as not listed (one warning each). weigh() adds the
    weight of every site whose domain listed the client with an address
    its filter accepts. result.site is the domain of the site that
    contributed the largest positive weight, the name the 550 reply
    shows (through postscreen_dnsbl_reply_map). result.ttl is the
    smallest TTL of the answers that counted (None when none did).

SECURITY
    The client address is only formatted into DNS names by dnsblog;
    the answers come from the network and are matched, never executed.

SEE ALSO
    postconf(5) postscreen_dnsbl_sites; mta/smtpd/dnsbl_checks.py
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from mta import log
from mta.common import attr_proto
from mta.common.dnsbl_names import parse_reply_pattern, pattern_match

DNSBL_DEFAULT_WEIGHT = 1  # weight of a site written without "*N"
DNSBLOG_RETRY_PAUSE = 0.05  # seconds between connects while dnsblog's queue is full


@dataclass(frozen=True)
class DnsblSite:
    spec: str  # as written
    domain: str
    pattern: tuple = ()  # () accepts any A record
    weight: int = DNSBL_DEFAULT_WEIGHT

    def matches(self, addrs: list[str]) -> bool:
        if not self.pattern:
            return bool(addrs)
        return any(pattern_match(self.pattern, a) for a in addrs)


@dataclass
class DnsblAnswer:
    """What dnsblog found for one domain."""

    addrs: list[str] = field(default_factory=list)
    ttl: int | None = None


@dataclass
class DnsblResult:
    score: int = 0
    site: str = ""
    ttl: int | None = None


def parse_dnsbl_site(text: str) -> DnsblSite:
    """One postscreen_dnsbl_sites entry; ValueError names what is wrong."""
    body, star, weight_text = text.partition("*")
    weight = DNSBL_DEFAULT_WEIGHT
    if star:
        try:
            weight = int(weight_text)
        except ValueError:
            raise ValueError(f'bad DNSBL weight in "{text}"') from None
    domain, eq, filt = body.partition("=")
    domain = domain.strip().rstrip(".").lower()
    if not domain or domain.startswith(".") or ".." in domain or " " in domain:
        raise ValueError(f'bad DNSBL domain in "{text}"')
    pattern = parse_reply_pattern(filt) if eq else ()
    return DnsblSite(text, domain, pattern, weight)


def parse_dnsbl_sites(items: list[str]) -> list[DnsblSite]:
    return [parse_dnsbl_site(item) for item in items if item]


def weigh(sites: list[DnsblSite], answers: dict[str, DnsblAnswer]) -> DnsblResult:
    """The combined score of the answers, the site to name, the TTL to keep it."""
    result = DnsblResult()
    top = 0
    for site in sites:
        answer = answers.get(site.domain)
        if answer is None or not site.matches(answer.addrs):
            continue
        result.score += site.weight
        if site.weight > top:
            top, result.site = site.weight, site.domain
        if answer.ttl is not None:
            result.ttl = answer.ttl if result.ttl is None else min(result.ttl, answer.ttl)
    return result


async def _connect(path: str):
    """Connect to dnsblog; a full listen queue (EAGAIN) is waited out."""
    while True:
        try:
            return await asyncio.open_unix_connection(path)
        except BlockingIOError:
            await asyncio.sleep(DNSBLOG_RETRY_PAUSE)


async def _ask(path: str, domain: str, addr: str) -> DnsblAnswer:
    reader, writer = await _connect(path)
    try:
        await attr_proto.write_attrs(writer, {"rbl_domain": domain, "address": addr})
        reply = await attr_proto.read_attrs(reader, limit=65536)
    finally:
        await attr_proto.close_writer(writer)
    if reply is None:
        raise ValueError("dnsblog closed the connection")
    addrs = reply.get("result", "").split()
    ttl_text = reply.get("ttl", "")
    return DnsblAnswer(addrs, int(ttl_text) if ttl_text.isdigit() else None)


async def query_dnsbl(
    sites: list[DnsblSite], addr: str, path: str, timeout: float
) -> dict[str, DnsblAnswer]:
    """Ask dnsblog about addr under every domain at once; the answers that came in time."""
    domains = list(dict.fromkeys(site.domain for site in sites))
    tasks = {d: asyncio.ensure_future(_ask(path, d, addr)) for d in domains}
    for task in tasks.values():  # a failure nobody waits for any more is dropped quietly
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
    try:
        done, pending = await asyncio.wait(tasks.values(), timeout=timeout)
    finally:  # on time, or when the client is gone and the caller cancels us
        for task in tasks.values():
            if not task.done():
                task.cancel()
    answers: dict[str, DnsblAnswer] = {}
    for domain, task in tasks.items():
        if task in pending:
            log.warning("dnsblog reply timeout %gs for %s", timeout, domain)
            continue
        exc = task.exception()
        if exc is not None:
            log.warning("dnsblog query for %s: %s", domain, exc)
            continue
        answers[domain] = task.result()
    return answers
