"""common.addr_find - search tables for an address or a domain in Postfix's order

SYNOPSIS
    from mta.common.addr_find import find_address, find_domain, find_access
    find_address(maps, "user+ext@example.com", "+")     # virtual(5), canonical(5) order
    find_domain(maps, "mail.example.com", parent_matches_subdomains=False)
    find_access(maps, "user@mail.example.com", "+", parent_matches_subdomains=True)
    split_extension("user+ext", "+")                     # ("user", "ext")
    address_keys("192.0.2.7")                            # 192.0.2.7 192.0.2 192.0 192

DESCRIPTION
    find_address() tries, for user+ext@domain (recipient_delimiter "+"):

        user+ext@domain   every table
        user@domain       fixed-string tables only
        user+ext          fixed-string tables only  } only when local=True
        user              fixed-string tables only  } (caller: domain is local)
        @domain           fixed-string tables only

    The first answer wins. Pattern tables (regexp, pcre, cidr) see only
    the whole address, as Postfix's table search does; keys are case-
    folded by the fixed-string tables themselves. Steps that would repeat
    a key already tried (no extension) are left out. find_address_ext()
    also says whether the answer came from a key without the extension,
    for callers that propagate unmatched extensions.

    split_extension() splits at the first of any character of the
    delimiter set (recipient_delimiter may hold several), except that,
    like Postfix, it leaves alone a local part that starts with a
    delimiter, "postmaster", "mailer-daemon", the
    double-bounce name, and, when "-" is a delimiter, "owner-*" and
    "*-request".

    find_domain() looks up the domain, then its parent domains on fixed-
    string tables: as "example.com", "com" when parent_matches_subdomains
    is true for the feature, else as ".example.com", ".com" (access(5)).

    find_access() is the access(5) order for an address: user+ext@domain,
    user@domain, the domain as find_domain() does, user+ext@, user@.
    address_keys() gives the keys of a network address: the address,
    then its networks with the last octets (IPv4 ".", IPv6 ":") cut off,
    as smtpd's access checks search them.

    maps may be a mta.maps.Maps, one Dict, or a list of Dicts.

SECURITY
    Addresses come from untrusted clients; they are only used as keys.

SEE ALSO
    virtual(5), canonical(5), access(5), postconf(5) recipient_delimiter
"""

from __future__ import annotations

import re

from mta.maps.maps import lookup_first

_LIST_SPLIT = re.compile(r"[\s,]+")  # a table answer may list several addresses

MAIL_ADDR_POSTMASTER = "postmaster"  # never split
MAIL_ADDR_MAIL_DAEMON = "mailer-daemon"  # never split
MAIL_ADDR_DOUBLE_BOUNCE = "double-bounce"  # double_bounce_sender default


def _lookup(maps, key: str, fixed_only: bool) -> str | None:
    if hasattr(maps, "lookup") and hasattr(maps, "tables"):
        return maps.lookup(key, fixed_only=fixed_only)
    return lookup_first([maps] if hasattr(maps, "lookup") else maps, key, fixed_only)


def split_extension(
    localpart: str, delimiter: str, double_bounce: str = MAIL_ADDR_DOUBLE_BOUNCE
) -> tuple[str, str | None]:
    """Return (user, extension) or (localpart, None) when it is not split."""
    if not delimiter or not localpart:
        return localpart, None
    low = localpart.lower()
    if low in (MAIL_ADDR_POSTMASTER, MAIL_ADDR_MAIL_DAEMON, double_bounce.lower()):
        return localpart, None
    if "-" in delimiter and (
        low.startswith("owner-") or (len(low) > 8 and low.endswith("-request"))
    ):
        return localpart, None
    for i, c in enumerate(localpart):
        if c in delimiter:
            if i == 0:
                return localpart, None
            return localpart[:i], localpart[i + 1 :]
    return localpart, None


def _split(addr: str) -> tuple[str, str | None]:
    at = addr.rfind("@")
    if at < 0:
        return addr, None
    return addr[:at], addr[at + 1 :]


def find_address_ext(
    maps, addr: str, delimiter: str = "", *, local: bool = True
) -> tuple[str | None, str | None]:
    """Like find_address(); also return the extension when the hit ignored it."""
    localpart, domain = _split(addr)
    user, ext = split_extension(localpart, delimiter)
    value = _lookup(maps, addr, False)
    if value is not None:
        return value, None
    if domain is None:
        if ext is not None:
            value = _lookup(maps, user, True)
            if value is not None:
                return value, ext
        return None, None
    if ext is not None:
        value = _lookup(maps, f"{user}@{domain}", True)
        if value is not None:
            return value, ext
    if local:
        value = _lookup(maps, localpart, True)
        if value is not None:
            return value, None
        if ext is not None:
            value = _lookup(maps, user, True)
            if value is not None:
                return value, ext
    value = _lookup(maps, "@" + domain, True)
    return value, None


def map_one_to_one(
    maps, addr: str, delimiter: str = "", *, propagate: bool, local: bool = True
) -> str | None:
    """The first address of maps' answer for addr, as canonical(5) and generic(5)
    take it: an "@domain" answer keeps addr's local part, and with propagate an
    extension the lookup ignored is put back. None when no table has addr."""
    value, ext = find_address_ext(maps, addr, delimiter, local=local)
    if value is None:
        return None
    first = next((v for v in _LIST_SPLIT.split(value.strip()) if v), "")
    if not first:
        return None
    if first.startswith("@"):
        first = _split(addr)[0] + first
    if propagate:
        first = join_extension(first, ext, delimiter)
    return first


def join_extension(addr: str, ext: str | None, delimiter: str) -> str:
    """Put address extension ext back into addr's local part."""
    if not ext or not delimiter:
        return addr
    local, domain = _split(addr)
    local = f"{local}{delimiter[0]}{ext}"
    return local if domain is None else f"{local}@{domain}"


def find_address(maps, addr: str, delimiter: str = "", *, local: bool = True) -> str | None:
    """Search maps for addr in virtual(5) order; first answer wins."""
    return find_address_ext(maps, addr, delimiter, local=local)[0]


def domain_keys(domain: str, parent_matches_subdomains: bool) -> list[str]:
    """The keys find_domain() tries, in order."""
    keys = [domain]
    i = domain.find(".", 1)
    while i > 0:
        keys.append(domain[i + 1 :] if parent_matches_subdomains else domain[i:])
        i = domain.find(".", i + 1)
    if parent_matches_subdomains:
        keys = [k for k in keys if k]
    return keys


def address_keys(addr: str) -> list[str]:
    """An address and its networks by cutting octets: 1.2.3.4 1.2.3 1.2 1 (IPv6 at ":")."""
    text = addr.lower()
    sep = ":" if ":" in text else "."
    keys = [text]
    while True:
        cut = text.rfind(sep)
        if cut <= 0:
            return keys
        text = text[:cut]
        keys.append(text)


def find_domain(maps, domain: str, parent_matches_subdomains: bool = True) -> str | None:
    """Search maps for domain, then its parents on fixed-string tables."""
    for i, key in enumerate(domain_keys(domain, parent_matches_subdomains)):
        value = _lookup(maps, key, i > 0)
        if value is not None:
            return value
    return None


def find_access(
    maps, addr: str, delimiter: str = "", parent_matches_subdomains: bool = True
) -> str | None:
    """Search maps for addr in access(5) order."""
    localpart, domain = _split(addr)
    user, ext = split_extension(localpart, delimiter)
    value = _lookup(maps, addr, False)
    if value is not None or domain is None:
        return value
    if ext is not None:
        value = _lookup(maps, f"{user}@{domain}", True)
        if value is not None:
            return value
    if domain:
        for key in domain_keys(domain, parent_matches_subdomains):
            value = _lookup(maps, key, True)
            if value is not None:
                return value
    value = _lookup(maps, localpart + "@", True)
    if value is None and ext is not None:
        value = _lookup(maps, user + "@", True)
    return value
