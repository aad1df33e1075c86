"""common.dns - asynchronous DNS look-ups for smtpd's restrictions and the smtp client

SYNOPSIS
    from mta.common import dns as mta_dns
    mta_dns.set_nameservers(["127.0.0.1:5353"])       # tests; None: environment/system
    answer = await mta_dns.lookup("example.com", "MX")
    answer.status, answer.records, answer.ttl          # "ok", ["10 mx.example.com."], 60
    await mta_dns.lookup_txt("_mta-sts.example.com")   # records: the strings joined, unquoted
    await mta_dns.mail_domain_status("example.com")    # "ok" "notfound" "nullmx" "inval" "retry"
    await mta_dns.host_status("mail.example.com")      # "ok" "notfound" "retry"
    mx = await mta_dns.lookup_mx("example.com")
    mx.status, mx.hosts, mx.ttl                        # "ok", [(10, "mx.example.com")], 60

DESCRIPTION
    Thin helpers on dnspython's dns.asyncresolver, so that a slow name
    server holds up only the session that waits for it. Names are always
    looked up as absolute names: no search list, no ndots games.

    The name servers are, in order: those given to set_nameservers();
    those in the environment variable MTA_DNS_SERVER ("ADDR[:PORT]",
    several separated by commas or spaces, "[v6addr]:PORT" for IPv6);
    those of /etc/resolv.conf; 127.0.0.1. The resolver is built once and
    rebuilt after set_nameservers() or set_timeouts().

    Every answer is one of the DNS_* statuses:

        ok        records found (lookup() returns them as master-file text)
        nodata    the name exists but has no record of that type
        notfound  the name does not exist, or is no valid DNS name
        retry     a temporary failure: SERVFAIL, REFUSED from every server,
                  timeout, or no server reachable

    mail_domain_status() asks what reject_unknown_sender_domain and
    reject_unknown_recipient_domain need: MX records, else an A, else an
    AAAA record. It answers "nullmx" for a domain whose only MX record is
    the RFC 7505 null MX ("0 ."), and "inval" for an MX set that names
    the root among other hosts (a malformed reply). host_status() is the
    test of reject_unknown_helo_hostname: any A, AAAA or MX record.

    The smtp client uses lookup_mx(): the MX records of a domain as
    (preference, host) pairs sorted by preference, with the smallest TTL
    of the answer (for its cache), and the same statuses plus "nullmx"
    and "inval"; host_addresses() gives A and AAAA records with a TTL.

    With dnssec=True (smtp_dns_support_level = dnssec) a look-up goes
    out with the EDNS0 DO bit and the AD bit set, and the answer's
    secure attribute says whether the name server set the AD bit in its
    reply: this module validates nothing itself, it trusts the
    configured resolver, as Postfix does. DANE (mta/smtp/dane.py) trusts
    only secure answers.

    mta/smtpd/dns.py re-exports this module under its old name.

SECURITY
    Names come from untrusted clients (HELO, MAIL FROM, RCPT TO domains);
    they are only turned into DNS queries. Answers come from the network
    and are only classified or returned as text.

STANDARDS
    RFC 1035 (DNS), RFC 5321 section 5.1 (MX, then address records),
    RFC 7505 (null MX), RFC 4035 section 3.2 and RFC 6840 section 5.7
    (the DO and AD bits).

SEE ALSO
    tests/support/dns_server.py (the test server), mta/smtpd/checks.py,
    mta/smtp/nexthop.py
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

DNS_OK = "ok"  # records found
DNS_NODATA = "nodata"  # name exists, no record of the type
DNS_NOTFOUND = "notfound"  # no such name, or not a valid name
DNS_RETRY = "retry"  # temporary failure
DNS_NULLMX = "nullmx"  # RFC 7505: the domain accepts no mail
DNS_INVAL = "inval"  # malformed MX set
DNS_ENV = "MTA_DNS_SERVER"  # environment variable naming test name servers
DNS_TIMEOUT = 3.0  # seconds per server try
DNS_LIFETIME = 8.0  # seconds for one whole look-up
DNS_EDNS_PAYLOAD = 1232  # bytes: the EDNS0 UDP payload of DNSSEC queries

_state: dict[str, object] = {
    "override": None,  # list of (addr, port) from set_nameservers()
    "resolver": None,  # the built resolver
    "dnssec_resolver": None,  # the same servers, queries with the DO and AD bits
    "timeout": DNS_TIMEOUT,
    "lifetime": DNS_LIFETIME,
}


@dataclass
class DnsAnswer:
    """The result of one look-up."""

    status: str
    records: list[str] = field(default_factory=list)
    ttl: int = field(default=0, compare=False)  # smallest TTL of the answer, seconds
    secure: bool = field(default=False, compare=False)  # the resolver set the AD bit


@dataclass
class MxAnswer:
    """The MX records of a domain, best preference first."""

    status: str
    hosts: list[tuple[int, str]] = field(default_factory=list)  # (preference, host)
    ttl: int = 0
    secure: bool = False  # the resolver set the AD bit (dnssec look-ups only)


def parse_nameservers(text: str) -> list[tuple[str, int]]:
    """Split "ADDR[:PORT], [V6]:PORT ..." into (address, port) pairs."""
    out: list[tuple[str, int]] = []
    for item in text.replace(",", " ").split():
        port = 53
        if item.startswith("["):
            addr, _, rest = item[1:].partition("]")
            if rest.startswith(":"):
                port = int(rest[1:])
        elif item.count(":") == 1:
            addr, _, num = item.partition(":")
            port = int(num)
        else:
            addr = item
        if not addr or not 0 < port < 65536:
            raise ValueError(f'bad name server "{item}"')
        out.append((addr, port))
    return out


def set_nameservers(servers: list[str] | list[tuple[str, int]] | str | None) -> None:
    """Use these servers from now on; None goes back to MTA_DNS_SERVER or the system's."""
    if servers is None:
        _state["override"] = None
    elif isinstance(servers, str):
        _state["override"] = parse_nameservers(servers)
    else:
        pairs: list[tuple[str, int]] = []
        for item in servers:
            pairs += parse_nameservers(item) if isinstance(item, str) else [tuple(item)]
        _state["override"] = pairs
    _state["resolver"] = _state["dnssec_resolver"] = None


def set_timeouts(timeout: float = DNS_TIMEOUT, lifetime: float = DNS_LIFETIME) -> None:
    """Seconds per server try and per look-up (tests shorten them)."""
    _state["timeout"], _state["lifetime"] = timeout, lifetime
    _state["resolver"] = _state["dnssec_resolver"] = None


def get_resolver(dnssec: bool = False) -> dns.asyncresolver.Resolver:
    """The resolver every look-up uses (dnssec: the one that asks for DNSSEC); built on first use."""
    key = "dnssec_resolver" if dnssec else "resolver"
    resolver = _state[key]
    if resolver is not None:
        return resolver
    servers = _state["override"]
    if servers is None and os.environ.get(DNS_ENV):
        servers = parse_nameservers(os.environ[DNS_ENV])
    if servers is None:
        try:
            resolver = dns.asyncresolver.Resolver(configure=True)
        except dns.resolver.NoResolverConfiguration:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = ["127.0.0.1"]
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(a, p) for a, p in servers]
    resolver.timeout = float(_state["timeout"])
    resolver.lifetime = float(_state["lifetime"])
    resolver.search = []
    if dnssec:
        resolver.use_edns(0, dns.flags.DO, DNS_EDNS_PAYLOAD)
        resolver.flags = dns.flags.RD | dns.flags.AD
    _state[key] = resolver
    return resolver


def _absolute(name: str) -> dns.name.Name | None:
    text = name.strip()
    if not text or text.startswith(".") or ".." in text:
        return None
    try:
        return dns.name.from_text(text if text.endswith(".") else text + ".")
    except (dns.exception.DNSException, UnicodeError, ValueError):
        return None


async def lookup(name: str, rdtype: str, dnssec: bool = False) -> DnsAnswer:
    """Look up one record type of name; records come back as master-file text.
    With dnssec the query asks for DNSSEC and answer.secure reports the AD bit."""
    return await _lookup(name, rdtype, _text_of, dnssec)


async def lookup_txt(name: str) -> DnsAnswer:
    """The TXT records of name, each one's strings joined and decoded (not quoted)."""
    return await _lookup(name, "TXT", _joined_strings)


def _text_of(rdata) -> str:
    return rdata.to_text()


def _joined_strings(rdata) -> str:
    return b"".join(rdata.strings).decode("utf-8", "replace")


async def _lookup(name: str, rdtype: str, render, dnssec: bool = False) -> DnsAnswer:
    qname = _absolute(name)
    if qname is None:
        return DnsAnswer(DNS_NOTFOUND)
    try:
        answer = await get_resolver(dnssec).resolve(
            qname, dns.rdatatype.from_text(rdtype), search=False, raise_on_no_answer=False
        )
    except (dns.resolver.NXDOMAIN, dns.resolver.YXDOMAIN):
        return DnsAnswer(DNS_NOTFOUND)
    except dns.resolver.NoAnswer:
        return DnsAnswer(DNS_NODATA)
    except (dns.resolver.NoNameservers, dns.exception.Timeout, OSError):
        return DnsAnswer(DNS_RETRY)
    except dns.exception.DNSException:
        return DnsAnswer(DNS_RETRY)
    secure = dnssec and bool(answer.response.flags & dns.flags.AD)
    if answer.rrset is None:
        return DnsAnswer(DNS_NODATA, secure=secure)
    records = [render(rdata) for rdata in answer.rrset]
    return DnsAnswer(DNS_OK, records, answer.rrset.ttl, secure)


def _mx_status(records: list[str]) -> str:
    targets = [r.split()[-1] for r in records]
    if any(t == "." for t in targets):
        return DNS_NULLMX if len(targets) == 1 and records[0].split()[0] == "0" else DNS_INVAL
    return DNS_OK


async def mail_domain_status(domain: str) -> str:
    """Can domain receive mail by DNS: MX records, else A, else AAAA."""
    mx = await lookup(domain, "MX")
    if mx.status == DNS_OK:
        return _mx_status(mx.records)
    if mx.status != DNS_NODATA:
        return mx.status
    return await _address_status(domain)


async def _first_status(name: str, rdtypes: tuple[str, ...]) -> str:
    """DNS_OK at the first record type found, DNS_NOTFOUND when the name does
    not exist or has none of them, DNS_RETRY when a lookup failed for now."""
    retry = False
    for rdtype in rdtypes:
        answer = await lookup(name, rdtype)
        if answer.status == DNS_OK:
            return DNS_OK
        if answer.status == DNS_NOTFOUND:
            return DNS_NOTFOUND
        retry = retry or answer.status == DNS_RETRY
    return DNS_RETRY if retry else DNS_NOTFOUND


async def _address_status(name: str) -> str:
    return await _first_status(name, ("A", "AAAA"))


async def host_status(name: str) -> str:
    """Does name have an A, MX or AAAA record (reject_unknown_helo_hostname)?"""
    return await _first_status(name, ("A", "MX", "AAAA"))


async def host_addresses(name: str, dnssec: bool = False) -> DnsAnswer:
    """The A and AAAA records of name, together; secure when every answer that
    gave records was (dnssec look-ups only)."""
    records: list[str] = []
    statuses = []
    ttls = []
    secure = dnssec
    for rdtype in ("A", "AAAA"):
        answer = await lookup(name, rdtype, dnssec)
        statuses.append(answer.status)
        records += answer.records
        if answer.records:
            ttls.append(answer.ttl)
            secure = secure and answer.secure
        if answer.status == DNS_NOTFOUND:
            break
    if records:
        return DnsAnswer(DNS_OK, records, min(ttls), secure)
    if DNS_RETRY in statuses:
        return DnsAnswer(DNS_RETRY)
    return DnsAnswer(DNS_NOTFOUND if DNS_NOTFOUND in statuses else DNS_NODATA)


async def lookup_mx(domain: str, dnssec: bool = False) -> MxAnswer:
    """The MX hosts of domain, sorted by preference; "nullmx" for RFC 7505's "0 .".
    With dnssec, secure says whether the answer (or the NODATA) had the AD bit."""
    answer = await lookup(domain, "MX", dnssec)
    if answer.status != DNS_OK:
        return MxAnswer(answer.status, secure=answer.secure)
    status = _mx_status(answer.records)
    if status != DNS_OK:
        return MxAnswer(status, ttl=answer.ttl, secure=answer.secure)
    hosts: list[tuple[int, str]] = []
    for text in answer.records:
        pref, _, host = text.partition(" ")
        try:
            hosts.append((int(pref), host.strip().rstrip(".").lower()))
        except ValueError:
            continue
    hosts.sort(key=lambda item: item[0])
    return MxAnswer(DNS_OK if hosts else DNS_INVAL, hosts, answer.ttl, answer.secure)
