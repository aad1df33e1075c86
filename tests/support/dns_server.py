"""dns_server - a tiny authoritative DNS server on 127.0.0.1 for tests

SYNOPSIS
    from tests.support.dns_server import DnsServer
    zone = {
        "example.com": {"MX": ["10 mx.example.com."], "A": ["192.0.2.1"]},
        "mx.example.com": {"A": ["192.0.2.2"], "AAAA": ["2001:db8::2"]},
        "broken.example": "SERVFAIL",          # every query for it fails
        "slow.example": "TIMEOUT",             # never answered
        "www.example.com": {"CNAME": ["example.com."]},
    }
    with DnsServer(zone) as srv:
        srv.nameserver                          # "127.0.0.1:PORT" (MTA_DNS_SERVER form)
        ...
        srv.queries                             # [(name, type), ...] in arrival order
        srv.dnssec_queries                      # those that asked for DNSSEC (DO or AD bit)

    # a validating resolver's view: the AD bit for these names (True: all of them)
    DnsServer({"_25._tcp.mx.example.com": {"TLSA": ["3 1 1 ab12..."]}}, secure=True)

    # in a test module of the smtp client: a server per module, resolver pointed at it
    dns_server, use_dns = zone_fixtures(zone)

DESCRIPTION
    Answers UDP queries from the zone dict, one thread, on a random high
    port of 127.0.0.1. Keys are owner names (a trailing dot is optional,
    case does not matter); values map a record type to a list of record
    texts in master-file form, or are one of the strings "SERVFAIL",
    "REFUSED" or "TIMEOUT" for a name whose every query fails that way.

    A name that is not in the zone gets NXDOMAIN, unless it is below a
    name in the zone (an empty non-terminal or a name with other types):
    a known name without the asked type gets NOERROR with no answer
    (NODATA). A CNAME is followed inside the zone. Every answer has the
    AA bit. Records have a TTL of 60 seconds.

    secure plays a DNSSEC-validating resolver: for a query that has the
    DO or the AD bit, the answer gets the AD bit when secure is True or
    names the queried name (a collection of names, case-insensitive);
    other answers never have it. Any record type dnspython knows may be
    served (TLSA for DANE: "usage selector mtype hexdata").

    Mail-delivery tests use it too: point a resolver at srv.nameserver
    through mta.smtpd.dns.set_nameservers() or the MTA_DNS_SERVER
    environment variable of a child process. zone_fixtures(zone) gives a
    test module both fixtures: dns_server (one DnsServer for the module)
    and use_dns (autouse: mta.common.dns asks it, with short timeouts).

SECURITY
    Listens only on the loopback address; for tests.
"""

from __future__ import annotations

import select
import socket
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

DNS_TTL = 60  # seconds, every record
DNS_FAILURES = {"SERVFAIL": dns.rcode.SERVFAIL, "REFUSED": dns.rcode.REFUSED}
DNS_MAX_CNAME = 8  # CNAME hops followed inside the zone


def _key(name: str | dns.name.Name) -> str:
    text = name.to_text() if isinstance(name, dns.name.Name) else name
    return text.rstrip(".").lower()


class DnsServer:
    """An authoritative UDP server for a zone dict; a context manager."""

    def __init__(self, zone: dict, host: str = "127.0.0.1", secure=False) -> None:
        self.zone: dict[str, object] = {}
        self.secure = secure if isinstance(secure, bool) else {_key(n) for n in secure}
        self.dnssec_queries: list[tuple[str, str]] = []
        self.update(zone)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host, self.port = self.sock.getsockname()[:2]
        self.queries: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def nameserver(self) -> str:
        """The server as "ADDRESS:PORT" (the MTA_DNS_SERVER form)."""
        return f"{self.host}:{self.port}"

    def update(self, zone: dict) -> None:
        """Add or replace names; takes effect for the next query."""
        for name, value in zone.items():
            self.zone[_key(name)] = value

    def start(self) -> DnsServer:
        self._thread = threading.Thread(target=self._serve, name="dns-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sock.close()

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- serving
    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            try:
                wire, peer = self.sock.recvfrom(65535)
            except OSError:
                return
            reply = self._answer(wire)
            if reply is not None:
                try:
                    self.sock.sendto(reply, peer)
                except OSError:
                    pass

    def _known(self, key: str) -> bool:
        """True when key or a name below it is in the zone."""
        suffix = "." + key
        return key in self.zone or any(k.endswith(suffix) for k in self.zone)

    def _answer(self, wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # noqa: BLE001 - garbage in: no answer
            return None
        if not query.question:
            return None
        question = query.question[0]
        qtype = question.rdtype
        asked = (_key(question.name), dns.rdatatype.to_text(qtype))
        self.queries.append(asked)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if query.ednsflags & dns.flags.DO or query.flags & dns.flags.AD:
            self.dnssec_queries.append(asked)
            if self.secure is True or (self.secure and asked[0] in self.secure):
                response.flags |= dns.flags.AD
        name = question.name
        for _ in range(DNS_MAX_CNAME):
            entry = self.zone.get(_key(name))
            if entry == "TIMEOUT":
                return None
            if isinstance(entry, str):
                response.set_rcode(DNS_FAILURES.get(entry, dns.rcode.SERVFAIL))
                return response.to_wire()
            if entry is None:
                if not self._known(_key(name)):
                    response.set_rcode(dns.rcode.NXDOMAIN)
                return response.to_wire()
            records = {k.upper(): v for k, v in entry.items()}
            wanted = dns.rdatatype.to_text(qtype)
            if wanted in records:
                response.answer.append(self._rrset(name, wanted, records[wanted]))
                return response.to_wire()
            if "CNAME" in records and wanted != "CNAME":
                rrset = self._rrset(name, "CNAME", records["CNAME"][:1])
                response.answer.append(rrset)
                name = rrset[0].target
                continue
            return response.to_wire()
        response.set_rcode(dns.rcode.SERVFAIL)
        return response.to_wire()

    @staticmethod
    def _rrset(name: dns.name.Name, rdtype: str, texts) -> dns.rrset.RRset:
        if isinstance(texts, str):
            texts = [texts]
        return dns.rrset.from_text_list(name, DNS_TTL, dns.rdataclass.IN, rdtype, list(texts))


def zone_fixtures(zone: dict, timeouts: tuple[float, float] = (0.5, 1.0)):
    """(dns_server, use_dns): pytest fixtures to bind in a test module under those names."""
    import pytest

    from mta.common import dns as mta_dns

    @pytest.fixture(scope="module")
    def dns_server():
        with DnsServer(zone) as srv:
            yield srv

    @pytest.fixture(autouse=True)
    def use_dns(dns_server):
        mta_dns.set_nameservers(dns_server.nameserver)
        mta_dns.set_timeouts(*timeouts)

    return dns_server, use_dns
