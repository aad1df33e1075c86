"""smtp.nexthop - from a next hop to the addresses the smtp client tries

SYNOPSIS
    from mta.smtp.nexthop import resolve_nexthop, NexthopError
    targets = await resolve_nexthop("example.com", cfg, lmtp=False)
    targets[0].host, targets[0].addr, targets[0].port   # "mx1.example.com", "192.0.2.1", 25
    targets[0].relay                                     # "mx1.example.com[192.0.2.1]:25"

DESCRIPTION
    A next hop comes from transport_maps, relayhost or the recipient
    domain, in one of the forms

        domain, domain:port          MX look-up, then the hosts' addresses
        [host], [host]:port          the host's addresses only, no MX
        [192.0.2.1], [ipv6:2001:db8::1]   an address literal
        inet:host:port, unix:/path   (LMTP) a TCP or UNIX-domain server

    A port may be a number or a service name; the default port is
    smtp_tcp_port (lmtp_tcp_port for LMTP). LMTP never looks up MX
    records.

    MX records are ordered by preference, and shuffled among equal
    preferences when smtp_randomize_addresses is set. A domain without
    MX records is its own mail exchanger (implicit MX). When an MX host
    is this host (its name is myhostname, or its address is one of an
    explicit inet_interfaces list), only the hosts with a better
    preference are kept; when none is better, the mail loops back to
    this host (5.4.6). At most smtp_mx_address_limit addresses are
    returned (0: no limit). The answer (Targets, a list) says in
    mx_self whether this host was among the MX hosts.

    Host addresses come from DNS (A, then AAAA) when smtp_host_lookup
    says dns, from the system's resolver (getaddrinfo) when it says
    native, and "localhost" always from the system. inet_protocols and
    smtp_address_preference choose and order the address families.

    smtp_dns_support_level (lmtp_dns_support_level) says how DNS is
    used: "disabled" (or, when it is empty, disable_dns_lookups = yes)
    looks up no MX records and host addresses only through the system;
    "dnssec" asks for DNSSEC (mta/common/dns.py) and marks each target
    with what the resolver vouched for: mx_secure when the MX answer (or
    the NODATA answer that made the domain its own MX) had the AD bit,
    or when no MX look-up applied ([host], LMTP inet:), and addr_secure
    when the host's address answers had it. DANE (mta/smtp/dane.py)
    relies on both.

    Answers are cached in this process for the records' TTL
    (NEXTHOP_NEGATIVE_TTL for answers that found nothing).

    NexthopError carries a DSN code and a reason in Postfix's words: a
    5.x.x error (no such domain, null MX, loop) bounces the request, a
    4.x.x one defers it.

SECURITY
    Next hops come from the configuration and from recipient domains
    (untrusted); they only become DNS queries and connection targets.
    DNS answers are untrusted and are only parsed as host names and
    addresses.

STANDARDS
    RFC 5321 section 5.1 (MX, implicit MX), RFC 7505 (null MX).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import time
from dataclasses import dataclass

from mta.common import dns as mta_dns

NEXTHOP_NEGATIVE_TTL = 10  # seconds an empty or failed answer is remembered
NEXTHOP_DEFAULT_PORTS = {"smtp": 25, "lmtp": 24}  # when /etc/services lacks them


class NexthopError(Exception):
    """The next hop cannot be used; dsn says whether for now (4.x.x) or for good."""

    def __init__(self, dsn: str, reason: str) -> None:
        super().__init__(reason)
        self.dsn = dsn
        self.reason = reason


@dataclass
class Target:
    """One place to connect to."""

    host: str
    addr: str  # IP address, or the socket path of a UNIX-domain target
    port: int = 0  # 0 for a UNIX-domain target
    unix: bool = False
    mx_secure: bool = False  # dnssec: the host name came from a validated MX answer (or no MX)
    addr_secure: bool = False  # dnssec: the address came from a validated answer

    @property
    def relay(self) -> str:
        if self.unix:
            return f"{self.host}[{self.addr}]"
        return f"{self.host}[{self.addr}]:{self.port}"


@dataclass
class Nexthop:
    """A parsed next hop."""

    host: str  # domain, host name, address or socket path
    port: int
    use_mx: bool
    unix: bool = False


_cache: dict[tuple[str, str], tuple[float, object]] = {}


def clear_cache() -> None:
    """Forget every cached answer (tests)."""
    _cache.clear()


def parse_port(text: str) -> int:
    """A port number or service name; ValueError when it is neither."""
    text = text.strip()
    if text.isdigit():
        port = int(text)
    else:
        try:
            port = socket.getservbyname(text, "tcp")
        except OSError:
            if text not in NEXTHOP_DEFAULT_PORTS:
                raise ValueError(f"unknown service: {text}") from None
            port = NEXTHOP_DEFAULT_PORTS[text]
    if not 0 < port < 65536:
        raise ValueError(f"bad port: {text}")
    return port


def parse_nexthop(nexthop: str, default_port: int, lmtp: bool = False) -> Nexthop:
    """Split a next hop into host, port and whether MX records apply."""
    text = nexthop.strip()
    if lmtp:
        if text.startswith("unix:"):
            return Nexthop(text[5:], 0, False, unix=True)
        if text.startswith("/"):
            return Nexthop(text, 0, False, unix=True)
        if text.startswith("inet:"):
            text = text[5:]
    elif text.startswith("inet:"):
        text = text[5:]
    if not text:
        raise NexthopError("5.3.5", "empty next hop")
    port = default_port
    try:
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep:
                raise NexthopError("5.3.5", f"malformed next hop: {nexthop}")
            if rest.startswith(":"):
                port = parse_port(rest[1:])
            elif rest:
                raise NexthopError("5.3.5", f"malformed next hop: {nexthop}")
            if host.lower().startswith("ipv6:"):
                host = host[5:]
            return Nexthop(host, port, False)
        if text.count(":") == 1:
            host, _, num = text.partition(":")
            port = parse_port(num)
        elif ":" in text:
            raise NexthopError("5.3.5", f"malformed next hop: {nexthop}")
        else:
            host = text
    except ValueError as exc:
        raise NexthopError("5.3.5", f"next hop {nexthop}: {exc}") from None
    return Nexthop(host.rstrip(".").lower(), port, not lmtp)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _cached(kind: str, name: str):
    entry = _cache.get((kind, name))
    if entry is None or entry[0] < time.monotonic():
        return None
    return entry[1]


def _remember(kind: str, name: str, value, ttl: float) -> None:
    _cache[(kind, name)] = (time.monotonic() + max(1.0, ttl), value)


def dns_support_level(cfg, lmtp: bool = False) -> str:
    """smtp_dns_support_level (lmtp_...): "disabled", "enabled" or "dnssec"; an
    empty value follows disable_dns_lookups."""
    name = "lmtp_dns_support_level" if lmtp else "smtp_dns_support_level"
    level = cfg.get(name).strip().lower()
    if not level:
        return "disabled" if cfg.get_bool("disable_dns_lookups") else "enabled"
    return level


async def _lookup_mx(domain: str, dnssec: bool = False) -> mta_dns.MxAnswer:
    kind = "mx+dnssec" if dnssec else "mx"
    answer = _cached(kind, domain)
    if answer is None:
        answer = await mta_dns.lookup_mx(domain, dnssec)
        ok = answer.status in (mta_dns.DNS_OK, mta_dns.DNS_NULLMX)
        if answer.status != mta_dns.DNS_RETRY:
            _remember(kind, domain, answer, answer.ttl if ok else NEXTHOP_NEGATIVE_TTL)
    return answer


async def _native_addresses(host: str) -> tuple[str, list[str]]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_AGAIN,):
            return mta_dns.DNS_RETRY, []
        return mta_dns.DNS_NOTFOUND, []
    addrs: list[str] = []
    for info in infos:
        addr = info[4][0]
        if addr not in addrs:
            addrs.append(addr)
    return mta_dns.DNS_OK, addrs


async def host_addresses(host: str, cfg, lmtp: bool = False) -> tuple[str, list[str]]:
    """(status, addresses) of a host name, by DNS or the system, cached."""
    status, addrs, _ = await host_addresses_secure(host, cfg, lmtp)
    return status, addrs


async def host_addresses_secure(host: str, cfg, lmtp: bool = False) -> tuple[str, list[str], bool]:
    """(status, addresses, secure): secure when DNSSEC look-ups (dnssec level)
    found them in validated answers; never for an address literal (no name to
    look TLSA records up for)."""
    if _is_address(host):
        return mta_dns.DNS_OK, [host], False
    level = dns_support_level(cfg, lmtp)
    dnssec = level == "dnssec"
    kind = "addr+dnssec" if dnssec else "addr"
    cached = _cached(kind, host)
    if cached is not None:
        return cached
    methods = [m.lower() for m in cfg.get_list("smtp_host_lookup")] or ["dns"]
    if level == "disabled" or host == "localhost" or "." not in host:
        methods = ["native"]
    status, addrs, ttl, secure = mta_dns.DNS_NOTFOUND, [], NEXTHOP_NEGATIVE_TTL, False
    for method in methods:
        if method == "native":
            if dnssec and status == mta_dns.DNS_RETRY:
                break  # a DNSSEC look-up that failed for now blocks the native one
            status, addrs = await _native_addresses(host)
            ttl, secure = (60 if addrs else NEXTHOP_NEGATIVE_TTL), False
        else:
            answer = await mta_dns.host_addresses(host, dnssec)
            status, addrs, secure = answer.status, answer.records, answer.secure
            ttl = answer.ttl if addrs else NEXTHOP_NEGATIVE_TTL
        if addrs:
            break
    if status != mta_dns.DNS_RETRY:
        _remember(kind, host, (status, addrs, secure), ttl)
    return status, addrs, secure


def _families(cfg, addrs: list[str]) -> list[str]:
    """Keep the families inet_protocols allows, ordered by smtp_address_preference."""
    protocols = {p.lower() for p in cfg.get_list("inet_protocols")} or {"all"}
    keep = []
    for addr in addrs:
        v6 = ":" in addr
        if "all" in protocols or ("ipv6" if v6 else "ipv4") in protocols:
            keep.append(addr)
    pref = cfg.get("smtp_address_preference").lower()
    if pref == "ipv4":
        keep.sort(key=lambda a: ":" in a)
    elif pref == "ipv6":
        keep.sort(key=lambda a: ":" not in a)
    return keep


def _own_addresses(cfg) -> set[str]:
    out = set()
    for item in cfg.get_list("inet_interfaces"):
        if _is_address(item):
            out.add(item)
    return out


class Targets(list):
    """resolve_nexthop()'s answer: the targets, best first; mx_self is true when
    this host is one of the next hop's MX hosts (the list then holds only the
    better ones), so that no fallback relay is used for it."""

    mx_self: bool = False


async def resolve_nexthop(nexthop: str, cfg, lmtp: bool = False) -> Targets:
    """The targets to try for a next hop, best first; NexthopError when there are none."""
    port_param = "lmtp_tcp_port" if lmtp else "smtp_tcp_port"
    try:
        default_port = parse_port(cfg.get(port_param))
    except ValueError as exc:
        raise NexthopError("4.3.5", f"{port_param}: {exc}") from None
    hop = parse_nexthop(nexthop, default_port, lmtp)
    if hop.unix:
        return Targets([Target("localhost", hop.host, 0, unix=True)])
    myhostname = cfg.get("myhostname").lower()
    hosts: list[tuple[int, str]]
    level = dns_support_level(cfg, lmtp)
    mx_secure = True  # no MX look-up: the next hop names the host itself
    if hop.use_mx and not _is_address(hop.host) and level != "disabled":
        mx = await _lookup_mx(hop.host, level == "dnssec")
        mx_secure = mx.secure
        if mx.status == mta_dns.DNS_NULLMX:
            raise NexthopError(
                "5.1.10", f"recipient domain {hop.host} does not accept mail (null MX)"
            )
        if mx.status == mta_dns.DNS_NOTFOUND:
            raise NexthopError(
                "5.4.4",
                f"Host or domain name not found. Name service error for "
                f"name={hop.host} type=MX: Host not found",
            )
        if mx.status == mta_dns.DNS_RETRY:
            raise NexthopError(
                "4.4.3",
                f"Host or domain name not found. Name service error for "
                f"name={hop.host} type=MX: Host not found, try again",
            )
        if mx.status == mta_dns.DNS_INVAL:
            raise NexthopError("4.4.4", f"malformed MX records for {hop.host}")
        if mx.status == mta_dns.DNS_OK:
            hosts = list(mx.hosts)
        else:  # nodata: implicit MX
            hosts = [(0, hop.host)]
        if cfg.get_bool("smtp_randomize_addresses"):
            hosts = _shuffle_equal(hosts)
    else:
        hosts = [(0, hop.host)]
    limit = cfg.get_int("smtp_mx_address_limit")
    own = _own_addresses(cfg)
    targets: list[Target] = []
    retry = False
    own_pref: int | None = None
    for pref, host in hosts:
        if own_pref is not None and pref >= own_pref:
            break
        if hop.use_mx and host == myhostname:
            own_pref = pref
            continue
        status, addrs, secure = await host_addresses_secure(host, cfg, lmtp)
        retry = retry or status == mta_dns.DNS_RETRY
        addrs = _families(cfg, addrs)
        if hop.use_mx and own & set(addrs):
            own_pref = pref
            targets = [t for t in targets if t.host != host]
            continue
        for addr in addrs:
            targets.append(Target(host, addr, hop.port, False, mx_secure, secure))
    if own_pref is not None:
        if not targets:
            raise NexthopError("5.4.6", f"mail for {hop.host} loops back to myself")
    if not targets:
        if retry:
            raise NexthopError(
                "4.4.3",
                f"Host or domain name not found. Name service error for "
                f"name={hosts[0][1]} type=A: Host not found, try again",
            )
        raise NexthopError(
            "5.4.4",
            f"Host or domain name not found. Name service error for "
            f"name={hosts[0][1]} type=A: Host not found",
        )
    if limit > 0:
        targets = targets[:limit]
    out = Targets(targets)
    out.mx_self = own_pref is not None
    return out


def _shuffle_equal(hosts: list[tuple[int, str]]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(hosts):
        j = i
        while j < len(hosts) and hosts[j][0] == hosts[i][0]:
            j += 1
        group = hosts[i:j]
        random.shuffle(group)
        out += group
        i = j
    return out
