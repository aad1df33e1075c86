"""smtpd.dns_access - access tables searched with a name's A, MX or NS hosts; permit_mx_backup

SYNOPSIS
    from mta.smtpd.dns_access import DNS_ACCESS_SIMPLE, DNS_ACCESS_WITH_ARG, apply_dns_access
    result = await apply_dns_access(checks, ctx, name, table, CHECK_OK)   # SmtpdChecks._apply

DESCRIPTION
    check_WHAT_a_access, check_WHAT_mx_access, check_WHAT_ns_access
    type:table, for WHAT client, reverse_client_hostname, helo, sender
    and recipient (Postfix's fifteen names), look up the client host
    name, the unverified reverse name, the HELO name, or the domain of
    MAIL FROM or RCPT TO in the DNS, and search the access(5) table:

        a    the name's own addresses (A and AAAA records)
        mx   each MX host by name and parent domains, then its
             addresses; a name without MX records is its own MX host;
             a null MX means no opinion
        ns   each name server the same way; a name without NS records
             borrows those of its nearest parent domain that has some

    An MX or NS host given as an address is searched as one. An address
    literal ([192.0.2.1]) is searched as an address for a and mx, not
    at all for ns. A client name "unknown", the null sender and an
    empty HELO are not looked up. Addresses are searched with their
    networks (1.2.3.4, 1.2.3, 1.2, 1); the first key found decides, even
    a DUNNO. Table results are those of check_client_access
    (SmtpdChecks._table_result) with the reply name of the stage (the
    client as name[addr]); an OK result is refused for safety: it is
    logged as Postfix does and answered "451 4.3.5 Server configuration
    error" (DUNNO is the way to make an exception). A failed MX or NS
    look-up is logged ("Unable to look up MX host for DOMAIN: ...") and
    has no opinion; so has a host whose addresses cannot be found.
    Searching stops after 100 addresses (the dns_rr_list_limit default).

    permit_mx_backup permits a recipient whose domain is ours (as
    permit_auth_destination), or one whose domain lists this host as a
    backup MX, but not as a best MX host, when permit_mx_backup_networks
    is empty or holds every address of every best MX host. An MX host
    is this host when it is a local domain (mydestination, an address
    of inet_interfaces or proxy_interfaces), or when one of its
    addresses is. A recipient with sender-specified routing is never
    permitted. A DNS failure on the way is a DEFER_IF_REJECT 450 4.4.4
    ("<rcpt>: Recipient address rejected: Unable to look up mail
    exchanger information: ..."). An smtpd whose lists name it logs
    Postfix's warning, once, that the restriction is going away in
    favour of relay_domains.

SECURITY
    Names from untrusted clients become DNS queries; the answers are
    only used as table keys. OK is refused because a client controls
    the DNS of its own names.

SEE ALSO
    postconf(5) check_client_mx_access, permit_mx_backup,
    permit_mx_backup_networks; mta/smtpd/checks.py, mta/common/dns.py
"""

from __future__ import annotations

import ipaddress

from mta import log
from mta.common import dns as mta_dns
from mta.common.addr_find import address_keys, domain_keys
from mta.common.match_list import AddrList
from mta.maps import MapError

_WHAT = {  # name part -> (reply subject, Postfix's own wording)
    "client": "Client host",
    "reverse_client_hostname": "Unverified Client host",
    "helo": "Helo command",
    "sender": "Sender address",
    "recipient": "Recipient address",
}
DNS_ACCESS_CHECKS = {  # restriction -> (what is looked up, record type)
    f"check_{what}_{kind}_access": (what, kind.upper())
    for what in _WHAT
    for kind in ("a", "mx", "ns")
}
DNS_ACCESS_WITH_ARG = frozenset(DNS_ACCESS_CHECKS)  # each takes a table
DNS_ACCESS_SIMPLE = frozenset({"permit_mx_backup"})
DNS_RR_LIST_LIMIT = 100  # dns_rr_list_limit: addresses searched per restriction
_DNS_ERRORS = {
    mta_dns.DNS_RETRY: "Host not found, try again",
    mta_dns.DNS_NOTFOUND: "Host not found",
    mta_dns.DNS_NODATA: "No address associated with hostname",
    mta_dns.DNS_INVAL: "Malformed or unexpected name server reply",
}


def _dns_error(status: str) -> str:
    return _DNS_ERRORS.get(status, "Host not found")


def _bare_ip(text: str) -> str | None:
    if text.lower().startswith("ipv6:"):
        text = text[5:]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _target(ctx, what: str) -> tuple[str | None, str]:
    """(the name or address looked up, the reply name) at this stage."""
    st = ctx.st
    if what == "client":
        if not st.client_name or st.client_name.lower() == "unknown":
            return None, ""
        return st.client_name, f"{st.client_name}[{st.client_addr}]"
    if what == "reverse_client_hostname":
        if not st.reverse_name or st.reverse_name.lower() == "unknown":
            return None, ""
        return st.reverse_name, st.reverse_name
    value = {"helo": st.helo_name, "sender": st.sender, "recipient": ctx.recipient}[what]
    return (value or None), value or ""


async def apply_dns_access(checks, ctx, name: str, arg, ok):
    """One restriction of this module: ok (a permit), a verdict, or None."""
    if name == "permit_mx_backup":
        if not ctx.recipient:
            return None
        return await permit_mx_backup(checks, ctx, ctx.recipient, ok)
    what, rdtype = DNS_ACCESS_CHECKS[name]
    target, reply_name = _target(ctx, what)
    if target is None:
        return None
    subject = _WHAT[what]
    result = await check_server_access(checks, ctx, arg, target, rdtype, reply_name, subject)
    if result == ok and not ctx.discard:
        log.warning("restriction %s returns OK for %s", name, target)
        log.warning("this is not allowed for security reasons")
        log.warning("use DUNNO instead of OK if you want to make an exception")
        return checks._server_error()
    return result


async def _search_addr(checks, ctx, table, addr: str, reply_name: str, subject: str):
    return await checks._search_found(ctx, table, address_keys(addr), reply_name, subject)


async def _server_hosts(name: str, domain: str, rdtype: str) -> list[str] | None:
    """The MX or NS hosts of domain (of name); None when there is no opinion (logged)."""
    if rdtype == "MX":
        mx = await mta_dns.lookup_mx(domain)
        if mx.status == mta_dns.DNS_NULLMX:
            return None
        if mx.status in (mta_dns.DNS_NOTFOUND, mta_dns.DNS_NODATA):
            return [domain]
        if mx.status != mta_dns.DNS_OK:
            log.warning("Unable to look up MX host for %s: %s", domain, _dns_error(mx.status))
            return None
        return [host for _, host in mx.hosts]
    asked = domain
    answer = await mta_dns.lookup(asked, "NS")
    while answer.status in (mta_dns.DNS_NOTFOUND, mta_dns.DNS_NODATA) and "." in asked:
        asked = asked[asked.find(".") + 1 :]
        answer = await mta_dns.lookup(asked, "NS")
    if answer.status != mta_dns.DNS_OK:
        where = name if "." not in asked else asked  # no parent left: the name itself
        log.warning("Unable to look up NS host for %s: %s", where, _dns_error(answer.status))
        return None
    return [r.rstrip(".").lower() for r in answer.records]


async def check_server_access(checks, ctx, table, name: str, rdtype: str, reply_name, subject):
    """Search table with the A, MX or NS hosts of name (an address: its domain)."""
    domain = name[name.rfind("@") + 1 :].rstrip(".").lower()
    if domain.startswith("["):
        if rdtype == "NS" or not domain.endswith("]"):
            return None
        bare = _bare_ip(domain[1:-1])
        if bare is None:
            return None
        return (await _search_addr(checks, ctx, table, bare, reply_name, subject))[1]
    if not domain:
        return None
    if rdtype == "A":
        hosts = [domain]
    else:
        hosts = await _server_hosts(name, domain, rdtype)
        if hosts is None:
            return None
    count = 0
    for host in hosts:
        if _bare_ip(host) is not None:
            found, result = await _search_addr(checks, ctx, table, host, reply_name, subject)
            if found:
                return result
            continue
        if rdtype != "A":
            keys = domain_keys(host, checks.parent_matches)
            found, result = await checks._search_found(ctx, table, keys, reply_name, subject)
            if found:
                return result
        addrs = await mta_dns.host_addresses(host)
        if addrs.status != mta_dns.DNS_OK:
            if rdtype != "A":
                log.warning(
                    "Unable to look up %s host %s for %s %s: %s",
                    rdtype,
                    host,
                    subject,
                    reply_name,
                    _dns_error(addrs.status),
                )
            continue
        for addr in addrs.records:
            count += 1
            if count > DNS_RR_LIST_LIMIT:
                log.warning(
                    "check_server_access: %s server address count limit (%d) exceeded"
                    " for %s %s -- ignoring the remainder",
                    rdtype,
                    DNS_RR_LIST_LIMIT,
                    subject,
                    reply_name,
                )
                return None
            found, result = await _search_addr(checks, ctx, table, addr, reply_name, subject)
            if found:
                return result
    return None


# ---------------------------------------------------------------- permit_mx_backup
def _mx_networks(checks) -> AddrList:
    nets = getattr(checks, "_mx_backup_networks", None)
    if nets is None:
        try:
            nets = AddrList.from_param(checks.cfg, "permit_mx_backup_networks")
        except MapError as exc:
            raise checks._config_error("permit_mx_backup_networks", str(exc)) from None
        checks._mx_backup_networks = nets
        checks._mx_backup_networks_set = bool(checks.cfg.get_list("permit_mx_backup_networks"))
        log.warning(
            'support for restriction "permit_mx_backup" will be removed from %s; '
            'instead, specify "relay_domains"',
            checks.cfg.get("mail_name"),
        )
    return nets


def check_config(checks, name: str) -> None:
    """Called as a restriction list is parsed: opens what name needs once."""
    if name == "permit_mx_backup":
        _mx_networks(checks)


async def _has_my_addr(checks, ctx, host: str, rcpt: str) -> bool:
    answer = await mta_dns.host_addresses(host)
    if answer.status != mta_dns.DNS_OK:
        text = (
            f"<{rcpt}>: Recipient address rejected: Unable to look up mail exchanger "
            f"host {host}: {_dns_error(answer.status)}"
        )
        checks._defer_if(ctx, "reject", 450, "4.4.4", _WHAT["recipient"], text)
        return False
    own = checks.classifier.resolver.own
    return any(addr in own for addr in answer.records)


async def _i_am_mx(checks, ctx, hosts: list[str], rcpt: str) -> bool:
    resolver = checks.classifier.resolver
    if any(resolver.is_local_domain(host) for host in hosts):
        return True
    for host in hosts:
        if await _has_my_addr(checks, ctx, host, rcpt):
            return True
    return False


async def _primaries_allowed(checks, ctx, hosts: list[str], rcpt: str) -> bool:
    """Every address of every best MX host is in permit_mx_backup_networks."""
    nets = _mx_networks(checks)
    for host in hosts:
        answer = await mta_dns.host_addresses(host)
        if answer.status != mta_dns.DNS_OK:
            text = (
                f"<{rcpt}>: Recipient address rejected: Unable to look up host {host} "
                f"as mail exchanger: {_dns_error(answer.status)}"
            )
            checks._defer_if(ctx, "reject", 450, "4.4.4", _WHAT["recipient"], text)
            return False
        if not all(nets.match(addr, host) for addr in answer.records):
            return False
    return True


async def permit_mx_backup(checks, ctx, rcpt: str, ok):
    """ok when this host may relay to rcpt as its domain's backup MX (see DESCRIPTION)."""
    _mx_networks(checks)
    canon, cls, routed = checks._resolve(ctx, rcpt)
    if "@" not in canon:
        return ok
    if routed:
        return None
    if cls in ("local", "virtual_alias", "virtual_mailbox", "relay"):
        return ok
    domain = canon[canon.rfind("@") + 1 :]
    if domain.startswith("[") and domain.endswith("]"):
        return None
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    mx = await mta_dns.lookup_mx(domain)
    if mx.status != mta_dns.DNS_OK:
        if mx.status == mta_dns.DNS_RETRY:
            text = (
                f"<{rcpt}>: Recipient address rejected: Unable to look up mail exchanger "
                f"information: {_dns_error(mx.status)}"
            )
            checks._defer_if(ctx, "reject", 450, "4.4.4", _WHAT["recipient"], text)
        return None
    best = mx.hosts[0][0]
    primaries = [host for pref, host in mx.hosts if pref == best]
    backups = [host for pref, host in mx.hosts if pref != best]
    if await _i_am_mx(checks, ctx, primaries, rcpt):
        return None
    if not backups or not await _i_am_mx(checks, ctx, backups, rcpt):
        return None
    if checks._mx_backup_networks_set and not await _primaries_allowed(
        checks, ctx, primaries, rcpt
    ):
        return None
    return ok
