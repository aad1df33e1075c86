"""trivial_rewrite.resolve - resolve an address to class, transport, next hop, recipient

SYNOPSIS
    from mta.trivial_rewrite.resolve import Resolver
    r = Resolver(cfg).resolve("user@example.com")
    r.transport, r.nexthop, r.recipient, r.addr_class, r.flags

DESCRIPTION
    The address should be in standard form already (see rewrite.py).
    The recipient domain decides the address class, first match wins:

      local            the domain is in mydestination, is "[ip]" for an
                       address of inet_interfaces or proxy_interfaces
                       (also a bare ip with resolve_numeric_domain), or
                       the address has no domain ("@$myhostname" is
                       appended); "user@" only with resolve_null_domain
      virtual_alias    virtual_alias_domains; goes to the error transport
                       ("User unknown in virtual alias table"), since
                       cleanup expands virtual aliases before this
      virtual_mailbox  virtual_mailbox_domains, via virtual_transport
      relay            relay_domains, via relay_transport
      default          everything else, via default_transport

    Each *_transport value is "transport[:nexthop]". The next hop comes
    from that value, else (relay and default only) from relayhost, else
    it is the recipient domain. Given the envelope sender, the
    sender_dependent_default_transport_maps answer replaces
    default_transport and the sender_dependent_relayhost_maps answer
    replaces relayhost (searched as user+ext@domain, user@domain,
    @domain; the null sender as empty_address_*_maps_lookup_key; DUNNO
    means no answer). For a local domain, "user%site@local"
    (allow_percent_hack) is resolved again as "user@site". Then
    transport_maps may change transport and next hop (transport.py),
    and relocated_maps turns the address into a bounce through the
    error transport ("5.1.6 User has moved to ...").

    flags is a frozenset of: "routed" (the local part holds "@", "%" or
    "!" while the domain is not ours: a relay attempt smtpd should not
    trust), "error" (unusable address), "relocated", "transport_map".
    The null address resolves as $empty_address_recipient@$myhostname.
    Results are cached per Resolver (bounded); MapRetry from a table
    passes to the caller and is not cached.

SECURITY
    Addresses are untrusted; they are compared and used as lookup keys.

SEE ALSO
    ADDRESS_CLASS_README, transport(5), relocated(5), postconf(5)
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

from mta.common.addr_find import find_address
from mta.common.match_list import DomainList
from mta.maps import Maps
from mta.trivial_rewrite.address import split_addr, unquote_local
from mta.trivial_rewrite.rewrite import find_unquoted
from mta.trivial_rewrite.transport import TransportTable, split_transport

CLASS_LOCAL = "local"  # mydestination, our own addresses
CLASS_VIRTUAL_ALIAS = "virtual_alias"  # virtual_alias_domains
CLASS_VIRTUAL_MAILBOX = "virtual_mailbox"  # virtual_mailbox_domains
CLASS_RELAY = "relay"  # relay_domains
CLASS_DEFAULT = "default"  # everything else
ERROR_TRANSPORT = "error"  # the transport that bounces
RESOLVE_CACHE_SIZE = 10000  # cached results per Resolver before the cache starts over


@dataclass(frozen=True)
class Resolved:
    """Where one recipient goes."""

    transport: str
    nexthop: str
    recipient: str
    addr_class: str
    flags: frozenset = field(default_factory=frozenset)


def _is_local_address(ip: str) -> bool:
    """True when ip is an address of this host (it can be bound to)."""
    try:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((ip, 0))
        return True
    except OSError:
        return False


class OwnAddresses:
    """The addresses of inet_interfaces and proxy_interfaces.

    With inet_interfaces = all, an address is ours when a socket can be
    bound to it; answers are remembered (bounded like the resolve cache).
    """

    def __init__(self, cfg) -> None:
        self.any_local = False
        self.addrs: set[str] = set()
        for name in cfg.get_list("inet_interfaces") + cfg.get_list("proxy_interfaces"):
            low = name.lower()
            if low == "all":
                self.any_local = True
            elif low in ("loopback-only", "localhost"):
                self.addrs |= {"127.0.0.1", "::1"}
            else:
                self.addrs |= self._lookup(name)
        self._seen: dict[str, bool] = {}

    @staticmethod
    def _lookup(name: str) -> set[str]:
        try:
            return {str(ipaddress.ip_address(name.strip("[]")))}
        except ValueError:
            pass
        try:
            return {info[4][0] for info in socket.getaddrinfo(name, None)}
        except OSError:
            return set()

    def __contains__(self, ip: str) -> bool:
        if ip in self.addrs:
            return True
        if not self.any_local:
            return False
        known = self._seen.get(ip)
        if known is None:
            if len(self._seen) >= RESOLVE_CACHE_SIZE:
                self._seen = {}
            known = self._seen[ip] = _is_local_address(ip)
        return known


class Resolver:
    """Address resolution with one configuration; see the module docstring."""

    def __init__(self, cfg) -> None:
        self.myhostname = cfg.get("myhostname").lower()
        self.mydestination = DomainList.from_param(cfg, "mydestination")
        self.alias_domains = DomainList.from_param(cfg, "virtual_alias_domains")
        self.mailbox_domains = DomainList.from_param(cfg, "virtual_mailbox_domains")
        self.relay_domains = DomainList.from_param(cfg, "relay_domains")
        self.own = OwnAddresses(cfg)
        self.local_transport = split_transport(cfg.get("local_transport"))
        self.virtual_transport = split_transport(cfg.get("virtual_transport"))
        self.relay_transport = split_transport(cfg.get("relay_transport"))
        self.default_transport = split_transport(cfg.get("default_transport"))
        self.relayhost = cfg.get("relayhost").strip()
        self.sender_relayhost = Maps.from_param(cfg, "sender_dependent_relayhost_maps")
        self.sender_transport = Maps.from_param(cfg, "sender_dependent_default_transport_maps")
        self.sender_dependent = bool(self.sender_relayhost or self.sender_transport)
        self.null_relayhost_key = cfg.get("empty_address_relayhost_maps_lookup_key")
        self.null_transport_key = cfg.get("empty_address_default_transport_maps_lookup_key")
        self.transport_maps = TransportTable(cfg)
        self.relocated = Maps.from_param(cfg, "relocated_maps")
        self.delimiter = cfg.get("recipient_delimiter")
        self.percent_hack = cfg.get_bool("allow_percent_hack")
        self.null_domain = cfg.get_bool("resolve_null_domain")
        self.numeric_domain = cfg.get_bool("resolve_numeric_domain")
        self.dequoted = cfg.get_bool("resolve_dequoted_address")
        self.empty_recipient = cfg.get("empty_address_recipient")
        self._cache: dict[str, Resolved] = {}

    # ---- classes

    def _numeric(self, domain: str) -> str | None:
        text = domain[1:-1] if domain.startswith("[") and domain.endswith("]") else None
        if text is None and self.numeric_domain:
            text = domain
        if text is None:
            return None
        if text.lower().startswith("ipv6:"):
            text = text[5:]
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            return None

    def is_local_domain(self, domain: str) -> bool:
        """True when domain is one this host delivers locally."""
        ip = self._numeric(domain)
        if ip is not None:
            return ip in self.own
        return self.mydestination.match(domain)

    def domain_class(self, domain: str) -> str:
        """The address class of a recipient domain."""
        if self.is_local_domain(domain):
            return CLASS_LOCAL
        if self.alias_domains.match(domain):
            return CLASS_VIRTUAL_ALIAS
        if self.mailbox_domains.match(domain):
            return CLASS_VIRTUAL_MAILBOX
        if self.relay_domains.match(domain):
            return CLASS_RELAY
        return CLASS_DEFAULT

    # ---- resolution

    def resolve(self, addr: str, sender: str | None = None) -> Resolved:
        """Resolve addr (standard form); see the module docstring.

        sender: the envelope sender, for sender_dependent_*_maps (None: no
        sender to go by, as when smtpd classifies an address)."""
        if not self.sender_dependent or sender is None:
            sender = None
            key = addr
        else:
            key = f"{addr}\0{sender}"
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        result = self._resolve(addr, sender)
        if len(self._cache) >= RESOLVE_CACHE_SIZE:
            self._cache = {}
        self._cache[key] = result
        return result

    def _by_sender(self, maps: Maps, sender: str, null_key: str) -> str | None:
        """A sender_dependent_* table's answer for sender; None for none or DUNNO."""
        if not maps:
            return None
        if sender:
            value = find_address(maps, sender, self.delimiter, local=False)
        else:
            value = maps.lookup(null_key)
        if value is None or value.strip().upper() == "DUNNO":
            return None
        return value.strip()

    def _error(self, addr: str, text: str, klass: str = CLASS_DEFAULT) -> Resolved:
        return Resolved(ERROR_TRANSPORT, text, addr, klass, frozenset({"error"}))

    def _resolve(self, addr: str, sender: str | None = None) -> Resolved:
        flags: set[str] = set()
        if not addr:
            addr = f"{self.empty_recipient}@{self.myhostname}"
        local, domain = split_addr(addr)
        hops = 0
        for _ in range(100):  # user%a%b@here: one round per "%"
            if domain is None:
                domain = self.myhostname
                addr = f"{local}@{domain}"
            if domain == "":
                if not self.null_domain:
                    return self._error(addr, "5.1.3 bad address syntax")
                domain = self.myhostname
                addr = f"{local}@{domain}"
            if domain.endswith(".") and not domain.endswith(".."):
                domain = domain[:-1]
                addr = f"{local}@{domain}"
            if not self.is_local_domain(domain):
                break
            inner = find_unquoted(local, "@", last=True)
            if inner < 0 and self.percent_hack:
                inner = find_unquoted(local, "%", last=True)
            if inner <= 0:
                break
            hops += 1
            local, domain = local[:inner], local[inner + 1 :]
        domain = domain.lower()
        addr = f"{local}@{domain}"
        klass = self.domain_class(domain)
        if klass != CLASS_LOCAL:
            if hops:
                flags.add("routed")
            bare = unquote_local(local) if self.dequoted else local
            if any(find_unquoted(bare, c) >= 0 for c in "@%!") or (
                not self.dequoted and any(c in local for c in "@%!")
            ):
                flags.add("routed")
        if klass == CLASS_LOCAL:
            transport, nexthop = self.local_transport
            nexthop = nexthop or domain
        elif klass == CLASS_VIRTUAL_ALIAS:
            transport, nexthop = ERROR_TRANSPORT, "5.1.1 User unknown in virtual alias table"
        elif klass == CLASS_VIRTUAL_MAILBOX:
            transport, nexthop = self.virtual_transport
            nexthop = nexthop or domain
        else:
            relayhost = self.relayhost
            if klass == CLASS_RELAY:
                transport, nexthop = self.relay_transport
            else:
                transport, nexthop = self.default_transport
            if sender is not None:
                if klass != CLASS_RELAY:
                    value = self._by_sender(self.sender_transport, sender, self.null_transport_key)
                    if value:
                        transport, nexthop = split_transport(value)
                relayhost = (
                    self._by_sender(self.sender_relayhost, sender, self.null_relayhost_key)
                    or relayhost
                )
            nexthop = nexthop or relayhost or domain
        if self.transport_maps:
            transport, nexthop, matched = self.transport_maps.apply(
                transport, nexthop, addr, domain
            )
            if matched:
                flags.add("transport_map")
        if self.relocated:
            moved = find_address(self.relocated, addr, self.delimiter)
            if moved is not None:
                flags.add("relocated")
                transport, nexthop = ERROR_TRANSPORT, f"5.1.6 User has moved to {moved}"
        if transport == ERROR_TRANSPORT:
            flags.add("error")
        return Resolved(transport, nexthop, addr, klass, frozenset(flags))
