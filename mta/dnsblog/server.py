"""dnsblog.server - answer postscreen's DNSBL queries

SYNOPSIS
    master.cf:  dnsblog  unix  -  -  n  -  0  dnsblog
    reply = await answer_query({"rbl_domain": "zen.example", "address": "192.0.2.1"},
                               reply_delay=0.0)

DESCRIPTION
    postscreen sends one request per DNS list domain and client
    (common/attr_proto.py framing): rbl_domain and address. dnsblog
    reverses the address (IPv4 octets, IPv6 nibbles), looks up the A
    records of the name under the domain (mta/common/dns.py, whose name
    servers come from MTA_DNS_SERVER or /etc/resolv.conf) and answers
    with the same two attributes, result (the A records that look like
    IPv4 addresses, space-separated; empty when not listed) and ttl.

    A look-up that fails (timeout, SERVFAIL, an answer that does not
    parse) is logged as one warning and answered as not listed; so is a
    request with an address that is not one (an error attribute says
    why). dnsblog_reply_delay holds every answer back that long (for
    tests of postscreen_dnsbl_timeout).

SECURITY
    The address comes from postscreen, which had it from the client's
    socket; answers come from the network and are passed on only when
    they have the form of an IPv4 address.

SEE ALSO
    Postfix's dnsblog(8); mta/postscreen/dnsbl.py
"""

from __future__ import annotations

import asyncio
import ipaddress

from mta import log
from mta.common import attr_proto
from mta.common import dns as mta_dns
from mta.common.dnsbl_names import client_query


def _ipv4(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv4Address)
    except ValueError:
        return False


async def answer_query(request: dict[str, str], reply_delay: float = 0.0) -> dict[str, str]:
    """The reply to one request (never raises for bad input)."""
    domain = request.get("rbl_domain", "").strip().rstrip(".").lower()
    addr = request.get("address", "")
    reply = {"rbl_domain": domain, "address": addr, "result": "", "ttl": ""}
    prefix = client_query(addr)
    if prefix is None or not domain:
        log.warning("dnsblog: bad request: address=%s rbl_domain=%s", addr[:64], domain[:255])
        reply["error"] = "bad request"
        return reply
    query = f"{prefix}.{domain}"
    answer = await mta_dns.lookup(query, "A")
    if answer.status == mta_dns.DNS_RETRY:
        log.warning(
            "dnsblog_query: lookup error for DNS query %s: Host or domain name not "
            "found. Name service error for name=%s type=A: Host not found, try again",
            query,
            query,
        )
    elif answer.status == mta_dns.DNS_OK:
        good = [a for a in answer.records if _ipv4(a)]
        if len(good) != len(answer.records):
            log.warning("dnsblog_query: ignoring malformed A records for %s", query)
        reply["result"] = " ".join(good)
        reply["ttl"] = str(answer.ttl)
    if reply_delay > 0:
        await asyncio.sleep(reply_delay)
    return reply


async def handle_client(reader, writer, ctx) -> None:
    """One postscreen connection: answer each request until it closes."""
    delay = float(ctx.cfg.get_time("dnsblog_reply_delay"))
    try:
        while True:
            try:
                msg = await attr_proto.read_attrs(reader, limit=4096)
            except ValueError as exc:
                log.warning("dnsblog: malformed request: %s; closing connection", exc)
                return
            if msg is None:
                return
            await attr_proto.write_attrs(writer, await answer_query(msg, delay))
    except (ConnectionError, OSError):
        pass
