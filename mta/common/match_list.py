"""common.match_list - Postfix match lists: mydestination, relay_domains, mynetworks ...

SYNOPSIS
    from mta.common.match_list import DomainList, AddrList, NameList
    dests = DomainList(cfg.get_list("mydestination"), cfg, parent_matches=False)
    dests.match("example.com")                                  # -> bool
    nets = AddrList(cfg.get_list("mynetworks"), cfg)
    nets.match("192.0.2.7", name="mail.example.com")            # -> bool
    DomainList.from_param(cfg, "relay_domains")                 # parent_matches from config
    NameList(cfg.get_list("authorized_submit_users"), cfg).match("alice")

DESCRIPTION
    A match list is a list of items tried in order; the first item that
    matches decides. An item is one of:

        !item           negation: if item matches, the answer is "no"
        /file/name      the items in the file (split like a list; "#"
                        comments, continuation lines); "!/file" negates each
        type:table      the name is looked up; any answer is a match
        example.com     a domain; with parent_matches it also matches
                        sub.example.com, without it ".example.com" is
                        written to match subdomains
        192.0.2.0/24    (AddrList) a network; also [2001:db8::]/32,
        [::1], 192.0.2.7 a single address

    NameList (user names: authorized_submit_users ...) compares whole
    names only: neither a pattern nor a table key matches a part of one.
    Domain table lookups try the name, then its parents on fixed-string
    tables ("example.com" or ".example.com" style as above). AddrList
    tries a table with the host name (as a domain) and then the address.
    Names compare case-insensitively. No item matching means "no".

    from_param() reads parent_domain_matches_subdomains to know whether
    the parameter has parent matching, as Postfix does.

SECURITY
    Names and addresses come from untrusted clients and are only compared
    or used as lookup keys. The items come from main.cf and files the
    administrator named.

SEE ALSO
    postconf(5): mydestination, mynetworks, parent_domain_matches_subdomains
"""

from __future__ import annotations

import ipaddress
import re

from mta.common.addr_find import domain_keys
from mta.maps import MapError, open_map
from mta.maps.text import logical_lines, read_source

_SPLIT_RE = re.compile(r"[\s,]+")


def _split_items(text: str) -> list[str]:
    return [t for t in _SPLIT_RE.split(text) if t]


def _expand(items, where: str = "") -> list[tuple[bool, str]]:
    """Return (negated, item) pairs with /file items replaced by their contents."""
    if isinstance(items, str):
        items = _split_items(items)
    out: list[tuple[bool, str]] = []
    for raw in items:
        negate = False
        item = raw
        while item.startswith("!"):
            negate = not negate
            item = item[1:]
        if not item:
            raise MapError(f"{where or 'match list'}: empty item after '!' in \"{raw}\"")
        if item.startswith("/"):
            text = read_source(item).decode("utf-8", "surrogateescape")
            for _, line in logical_lines(text):
                for neg, sub in _expand(_split_items(line), item):
                    out.append((neg != negate, sub))
            continue
        out.append((negate, item))
    return out


def _is_table(item: str) -> bool:
    if item.startswith("["):
        return False
    kind, sep, _ = item.partition(":")
    return bool(sep) and kind.isidentifier()


def _parent_matches(cfg, name: str) -> bool:
    if cfg is None:
        return True
    return name in cfg.get_list("parent_domain_matches_subdomains")


class _MatchList:
    def __init__(self, items, cfg=None, parent_matches: bool = True, where: str = "") -> None:
        self.parent_matches = parent_matches
        self.entries: list[tuple[bool, str, object]] = []
        for negate, item in _expand(items, where):
            if _is_table(item):
                self.entries.append((negate, "table", open_map(item, cfg)))
            else:
                self.entries.append((negate, *self._pattern(item)))

    @classmethod
    def from_param(cls, cfg, name: str):
        return cls(cfg.get_list(name), cfg, _parent_matches(cfg, name), where=name)

    def _pattern(self, item: str) -> tuple[str, object]:
        return "name", item.lower()

    def _match_name(self, name: str, pattern: str) -> bool:
        if name == pattern:
            return True
        if self.parent_matches:
            return name.endswith("." + pattern)
        return pattern.startswith(".") and name.endswith(pattern) and len(name) > len(pattern)

    def _match_table(self, table, name: str) -> bool:
        for i, key in enumerate(domain_keys(name, self.parent_matches)):
            if i and not table.fixed:
                break
            if table.lookup(key) is not None:
                return True
        return False


class DomainList(_MatchList):
    """A list of domains (mydestination, relay_domains ...)."""

    def match(self, domain: str) -> bool:
        name = domain.lower().rstrip(".")
        for negate, kind, what in self.entries:
            if kind == "table":
                hit = self._match_table(what, name)
            else:
                hit = self._match_name(name, what)
            if hit:
                return not negate
        return False


_IP_CACHE: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address | None] = {}
IP_CACHE_SIZE = 4096  # client addresses remembered; the cache starts afresh when full


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """text as an IP address, None when it is not one; remembered, since every
    connection from the same client asks again (mynetworks, the anvil exceptions)."""
    try:
        return _IP_CACHE[text]
    except KeyError:
        pass
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        ip = None
    if len(_IP_CACHE) >= IP_CACHE_SIZE:
        _IP_CACHE.clear()
    _IP_CACHE[text] = ip
    return ip


class AddrList(_MatchList):
    """A list of hosts and networks (mynetworks, debug_peer_list ...)."""

    def _pattern(self, item: str) -> tuple[str, object]:
        text = item
        addr, slash, plen = text.partition("/")
        bracketed = addr.startswith("[") and addr.endswith("]")
        if bracketed:
            addr = addr[1:-1]
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            if bracketed:
                raise MapError(f'bad address pattern: "{item}"') from None
            return "name", item.lower()
        if not slash:
            return "net", ipaddress.ip_network(ip)
        try:
            if not plen.isdigit():
                raise ValueError
            return "net", ipaddress.ip_network(f"{ip}/{int(plen)}", strict=True)
        except ValueError:
            raise MapError(
                f'bad network pattern "{item}": need network/prefix without host bits'
            ) from None

    def match(self, addr: str, name: str = "") -> bool:
        """True when the client address (and/or host name) is on the list."""
        text = addr[1:-1] if addr.startswith("[") and addr.endswith("]") else addr
        ip = parse_ip(text)
        low = name.lower().rstrip(".")
        for negate, kind, what in self.entries:
            if kind == "net":
                hit = ip is not None and ip.version == what.version and ip in what
            elif kind == "name":
                hit = bool(low) and self._match_name(low, what)
            else:
                hit = (bool(low) and self._match_table(what, low)) or (
                    bool(text) and what.lookup(text) is not None
                )
            if hit:
                return not negate
        return False


class NameList(_MatchList):
    """A list of plain names (authorized_submit_users ...): whole names, no parents."""

    def match(self, name: str) -> bool:
        low = name.lower()
        for negate, kind, what in self.entries:
            hit = what.lookup(low) is not None if kind == "table" else low == what
            if hit:
                return not negate
        return False
