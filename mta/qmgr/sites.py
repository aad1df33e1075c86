"""qmgr.sites - which mailbox provider (site) a destination domain belongs to

SYNOPSIS
    from mta.qmgr.sites import SiteResolver
    sites = SiteResolver(cfg)
    site = sites.cached("googlemail.com")        # "gmail", or None: not known yet
    sites.resolve("example.net", on_done)       # looks the MX hosts up, then on_done(site)

DESCRIPTION
    Large providers host many domains on one set of servers, and limit
    senders per server set, not per domain: gmail.com, googlemail.com
    and every Google Workspace domain share Google's MX hosts. qmgr
    therefore queues mail for the smtp transports (shaping_transports)
    by site: the site of a domain is found by looking up its MX hosts
    and asking shaping_site_maps, then the built-in table
    mta/qmgr/shaping_sites.regexp (unless shaping_builtin_tables = no),
    first with the domain itself, then with each MX host name in
    preference order; the first answer is the site's name ("gmail").
    A domain whose MX hosts no rule names gets the site named by its
    MX host set (the host names sorted and joined with commas), so
    domains that share servers still share a site. A next hop that is
    not a domain to look up ("[host]:port", a relayhost, a domain with
    no MX record or a failed look-up) is its own site; a literal next
    hop ([host], a relayhost) is not shaped at all.

    With DNS off for the smtp client (disable_dns_lookups = yes,
    smtp_dns_support_level = disabled, or smtp_host_lookup without dns)
    a domain is its own site, unless a table names it.

    Look-ups run on qmgr's event loop (common/dns), at most one per
    domain at a time; callers park the mail of a domain being looked up
    and queue it when on_done() runs. Answers are kept for
    shaping_site_cache_time, at most SITE_CACHE_LIMIT domains.

SECURITY
    Domains come from recipient addresses and MX names from DNS; they
    are matched against the administrator's patterns and used as names,
    never interpreted.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

from mta import log
from mta.common import dns as mta_dns
from mta.common.deadline import bounded
from mta.maps import MapError, MapRetry, Maps
from mta.maps.dict_regexp import RegexpDict
from mta.maps.text import preload_source

BUILTIN_SITES = os.path.join(os.path.dirname(__file__), "shaping_sites.regexp")
preload_source(BUILTIN_SITES)  # read while qmgr may still be root
SITE_CACHE_LIMIT = 100000  # domains whose site is remembered
LOOKUP_LIMIT = 30.0  # seconds a site look-up may take in all
SITE_NAME_LIMIT = 200  # characters of a site named by its MX hosts


def literal_site(nexthop: str) -> str | None:
    """The site of a next hop that is not looked up: itself; None for a domain."""
    text = nexthop.strip().lower()
    if not text or text.startswith("[") or ":" in text or "/" in text or "." not in text:
        return text
    return None


class SiteResolver:
    def __init__(self, cfg) -> None:
        self.user = Maps.from_param(cfg, "shaping_site_maps")
        self.builtin = None
        if cfg.get_bool("shaping_builtin_tables"):
            self.builtin = RegexpDict(f"regexp:{BUILTIN_SITES}", BUILTIN_SITES)
        self.cache_time = float(cfg.get_time("shaping_site_cache_time"))
        # no MX look-ups where the smtp client makes none either
        self.dns = (
            not cfg.get_bool("disable_dns_lookups")
            and "dns" in [w.lower() for w in cfg.get_list("smtp_host_lookup")]
            and cfg.get("smtp_dns_support_level").strip().lower() != "disabled"
        )
        self.known: dict[str, tuple[str, float]] = {}  # domain -> (site, until)
        self.pending: dict[str, list[Callable[[str], None]]] = {}
        self.warned: set[str] = set()

    def name(self, key: str) -> str | None:
        """The site a table gives a domain or host name, if any."""
        for table in (self.user, self.builtin):
            if not table:
                continue
            try:
                found = table.lookup(key)
            except (MapRetry, MapError) as exc:
                self._warn(f"shaping_site_maps: {exc}")
                continue
            if found:
                return found.split()[0].lower()
        return None

    def _warn(self, text: str) -> None:
        if text not in self.warned:
            self.warned.add(text)
            log.warning("%s", text)

    def cached(self, nexthop: str, now: float | None = None) -> str | None:
        """The site of nexthop when it is known without a look-up; else None."""
        site = literal_site(nexthop)
        if site is not None:
            return site
        domain = nexthop.strip().lower().rstrip(".")
        hit = self.known.get(domain)
        if hit is not None and hit[1] > (time.time() if now is None else now):
            return hit[0]
        named = self.name(domain)
        if named is not None:
            return named  # a rule for the domain itself: no look-up needed
        if not self.dns:
            return domain
        return None

    def resolve(self, nexthop: str, on_done: Callable[[str], None]) -> None:
        """Find the site of a domain cached() did not know; on_done(site) when found."""
        domain = nexthop.strip().lower().rstrip(".")
        waiting = self.pending.get(domain)
        if waiting is not None:
            waiting.append(on_done)
            return
        self.pending[domain] = [on_done]
        asyncio.get_running_loop().create_task(self._lookup(domain))

    async def _lookup(self, domain: str) -> None:
        site = domain
        try:
            answer = await bounded(mta_dns.lookup_mx(domain), LOOKUP_LIMIT)
        except (asyncio.TimeoutError, OSError) as exc:
            log.info("site of %s: MX look-up failed: %s", domain, exc)
            answer = None
        except Exception as exc:  # noqa: BLE001 - the mail goes on under its own domain
            log.warning("site of %s: %s: %s", domain, type(exc).__name__, exc)
            answer = None
        if answer is not None and answer.status == mta_dns.DNS_OK and answer.hosts:
            site = self.site_of_hosts([h for _, h in answer.hosts])
        self.remember(domain, site)
        for on_done in self.pending.pop(domain, []):
            on_done(site)

    def site_of_hosts(self, hosts: list[str]) -> str:
        """The site of a set of MX hosts (best preference first)."""
        for host in hosts:
            named = self.name(host)
            if named is not None:
                return named
        return ",".join(sorted(set(hosts)))[:SITE_NAME_LIMIT]

    def remember(self, domain: str, site: str) -> None:
        if len(self.known) >= SITE_CACHE_LIMIT:
            self.known.clear()  # crude, and rare: the next look-ups refill it
        self.known[domain] = (site, time.time() + self.cache_time)
