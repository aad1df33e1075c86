"""trivial_rewrite.transport - transport(5) tables: per-destination transport and next hop

SYNOPSIS
    from mta.trivial_rewrite.transport import TransportTable, split_transport
    split_transport("smtp:[relay.example]:587")      # ("smtp", "[relay.example]:587")
    table = TransportTable(cfg)                       # transport_maps
    table.apply("smtp", "example.com", "u@example.com", "example.com")

DESCRIPTION
    split_transport() splits "transport:nexthop" at the first colon; a
    value without a colon is a transport with no next hop.

    TransportTable.find() searches transport_maps in transport(5) order:
    the whole address (every table, so regexp and pcre tables see it),
    then without the address extension (recipient_delimiter), the
    domain, its parent domains (".parent" style, or "parent" when
    transport_maps is in parent_domain_matches_subdomains), and the
    wildcard "*" (fixed-string tables only for all but the first key).

    apply() merges an answer with what the address class gave, as
    transport(5) says: empty transport and empty next hop change
    nothing; a transport with an empty next hop resets the next hop to
    the recipient domain; an empty transport with a next hop keeps the
    transport and takes the next hop. MapRetry passes to the caller.

SECURITY
    Keys are untrusted addresses; the table contents come from the
    administrator.

SEE ALSO
    transport(5), postconf(5) transport_maps
"""

from __future__ import annotations

from mta.common.addr_find import domain_keys, split_extension
from mta.maps import Maps
from mta.trivial_rewrite.address import split_addr

TRANSPORT_WILDCARD = "*"  # the key that matches any address


def split_transport(value: str) -> tuple[str, str]:
    """Return (transport, nexthop) of "transport:nexthop"."""
    transport, _, nexthop = value.strip().partition(":")
    return transport.strip(), nexthop.strip()


class TransportTable:
    """transport_maps of one configuration."""

    def __init__(self, cfg) -> None:
        self.maps = Maps.from_param(cfg, "transport_maps")
        self.delimiter = cfg.get("recipient_delimiter")
        self.parent_matches = "transport_maps" in cfg.get_list("parent_domain_matches_subdomains")

    def __bool__(self) -> bool:
        return bool(self.maps)

    def find(self, addr: str) -> str | None:
        """The transport_maps answer for addr, or None."""
        if not self.maps:
            return None
        value = self.maps.lookup(addr)
        if value is not None:
            return value
        local, domain = split_addr(addr)
        user, ext = split_extension(local, self.delimiter)
        if ext is not None and domain is not None:
            value = self.maps.lookup(f"{user}@{domain}", fixed_only=True)
            if value is not None:
                return value
        if domain:
            for key in domain_keys(domain.lower(), self.parent_matches):
                value = self.maps.lookup(key, fixed_only=True)
                if value is not None:
                    return value
        return self.maps.lookup(TRANSPORT_WILDCARD, fixed_only=True)

    def apply(self, transport: str, nexthop: str, addr: str, domain: str) -> tuple[str, str, bool]:
        """Return (transport, nexthop, matched) after the table's say on addr."""
        value = self.find(addr)
        if value is None:
            return transport, nexthop, False
        new_transport, new_nexthop = split_transport(value)
        if new_transport:
            transport = new_transport
            nexthop = new_nexthop or domain
        elif new_nexthop:
            nexthop = new_nexthop
        return transport, nexthop, True
