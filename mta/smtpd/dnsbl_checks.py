"""smtpd.dnsbl_checks - the DNS blocklist and allowlist restrictions

SYNOPSIS
    from mta.smtpd.dnsbl_checks import DNSBL_WITH_ARG, apply_dnsbl, parse_dnsbl
    arg = parse_dnsbl(checks, "zen.example=127.0.0.[2..11]")   # SmtpdChecks.parse_restrictions
    result = await apply_dnsbl(checks, ctx, name, arg, CHECK_OK)   # SmtpdChecks._apply

DESCRIPTION
    Restrictions for smtpd_*_restrictions, with Postfix's meaning; each
    takes a DNS list domain as its argument:

    reject_rbl_client domain[=d.d.d.d]
        The client address, reversed (IPv4: octets, IPv6: nibbles),
        looked up as an A record under domain. reject_rbl is its old name.
    permit_dnswl_client domain[=d.d.d.d]
        The same look-up; a listed client is permitted.
    reject_rhsbl_client, permit_rhswl_client domain[=d.d.d.d]
        The client host name ("unknown" is never looked up).
    reject_rhsbl_reverse_client domain[=d.d.d.d]
        The unverified reverse client host name.
    reject_rhsbl_helo, reject_rhsbl_sender, reject_rhsbl_recipient
        The HELO name, the domain of MAIL FROM, of RCPT TO. The null
        sender, an address literal and a name whose last label is all
        digits are not looked up.

    With "=d.d.d.d" only an A record that matches counts: each d is a
    number or "[...]" holding ";"-separated numbers and n..m ranges
    (127.0.0.2, 127.0.0.[2..11], 127.0.0.[2;4;6]). Anything else is a
    configuration error, reported by SmtpdChecks naming the parameter.

    A listed name is refused with the template found in rbl_reply_maps
    (searched with "domain=d.d.d.d", then with the domain alone), else
    default_rbl_reply. The template's $name forms are expanded once
    (mta/smtpd/footer.py): rbl_code (maps_rbl_reject_code), rbl_domain,
    rbl_reason and rbl_txt (the TXT records of the listed name, joined
    with " / ", at most 500 characters), rbl_what (the address or name
    looked up), rbl_class (the reply subject: Client host, Helo command
    ...), client, client_address, client_name, reverse_client_name,
    helo_name, sender, sender_name, sender_domain, recipient,
    recipient_name, recipient_domain; values are filtered through
    smtpd_expansion_filter. The result must start with a 4xx or 5xx
    code, optionally followed by an enhanced status code (default
    4.7.1, fitted to the reply code and subject); otherwise it is
    logged ("rbl response code configuration error") and the reply is
    450 4.7.1 Service unavailable. A template of rbl_reply_maps that does
    not expand is logged and the default used instead.

    A look-up that fails (timeout, SERVFAIL, a reply that does not
    parse) is logged as "QUERY: RBL lookup error: ..." and counts as not
    listed; for the permit_* forms it is a DEFER_IF_REJECT 450 4.7.1
    "<what>: SUBJECT rejected: Service unavailable". At RCPT, the
    permit_* forms do nothing for a recipient that
    permit_auth_destination would not accept.

    Answers (A and TXT records, failures too) are kept in the session
    (SessionState.dnsbl_cache): the same query twice in one session goes
    to the DNS once. Postfix keeps them per smtpd process instead.

SECURITY
    Client addresses, host names and addresses from untrusted clients
    become DNS queries; the TXT answer from the list's servers goes into
    the reply only through smtpd_expansion_filter.

STANDARDS
    RFC 5782 (DNS blacklists and whitelists).

SEE ALSO
    postconf(5) reject_rbl_client, default_rbl_reply, rbl_reply_maps;
    mta/smtpd/dns_access.py, mta/common/dns.py
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mta import log
from mta.common import dns as mta_dns
from mta.common.dnsbl_names import client_query, parse_reply_pattern, pattern_match
from mta.common.dsn import leading_failure_dsn
from mta.maps import MapError, MapRetry, Maps
from mta.smtpd.footer import FooterError, expand_macros, unescape

DNSBL_ADDR = frozenset({"reject_rbl_client", "reject_rbl", "permit_dnswl_client"})
DNSBL_PERMIT = frozenset({"permit_dnswl_client", "permit_rhswl_client"})
DNSBL_WITH_ARG = DNSBL_ADDR | frozenset(
    {
        "reject_rhsbl_client",
        "permit_rhswl_client",
        "reject_rhsbl_reverse_client",
        "reject_rhsbl_helo",
        "reject_rhsbl_sender",
        "reject_rhsbl_recipient",
    }
)
RBL_TXT_LIMIT = 500  # characters of TXT text kept for $rbl_reason
RBL_LISTED = "listed"  # an A record (matching the filter) exists
RBL_NOTFOUND = "notfound"  # no such name (or no A record)
RBL_SOFT = "soft"  # the look-up failed; counts as not listed
SMTPD_NAME_CLIENT = "Client host"  # reply subjects, as in smtpd/checks.py
SMTPD_NAME_REV_CLIENT = "Unverified Client host"
SMTPD_NAME_HELO = "Helo command"
SMTPD_NAME_SENDER = "Sender address"
SMTPD_NAME_RECIPIENT = "Recipient address"
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
_REPLY = re.compile(r"([45]\d\d) (.*)", re.S)


@dataclass(frozen=True)
class DnsblDomain:
    """A restriction's argument: "domain" or "domain=d.d.d.d"."""

    spec: str  # as written
    domain: str  # without the filter
    pattern: tuple = ()  # per octet, (low, high) ranges; () matches any A record

    def matches(self, addrs: list[str]) -> bool:
        if not self.pattern:
            return bool(addrs)
        return any(pattern_match(self.pattern, a) for a in addrs)


@dataclass
class RblAnswer:
    """One DNSBL query's answer, as kept in the session cache."""

    status: str
    addrs: list[str] = field(default_factory=list)
    txt: str = ""


def parse_dnsbl(checks, arg: str) -> DnsblDomain:
    """The argument of a DNSBL restriction; ValueError when its filter is malformed."""
    domain, sep, filt = arg.partition("=")
    if not domain or domain.startswith(".") or ".." in domain:
        raise ValueError(f'bad DNSBL domain "{arg}"')
    _check_config(checks)
    return DnsblDomain(arg, domain.rstrip(".").lower(), parse_reply_pattern(filt) if sep else ())


def _check_config(checks) -> None:
    """Open rbl_reply_maps and try default_rbl_reply once per SmtpdChecks."""
    if getattr(checks, "_rbl_reply_maps", None) is not None:
        return
    try:
        maps = Maps.from_param(checks.cfg, "rbl_reply_maps")
    except MapError as exc:
        raise checks._config_error("rbl_reply_maps", str(exc)) from None
    checks._rbl_allowed = frozenset(unescape(checks.cfg.raw("smtpd_expansion_filter") or ""))
    checks._rbl_default = checks.cfg.raw("default_rbl_reply") or ""
    checks._rbl_code = checks.cfg.get_int("maps_rbl_reject_code")
    try:
        expand_macros(checks._rbl_default, {}, checks._rbl_allowed)
    except FooterError as exc:
        raise checks._config_error("default_rbl_reply", f"bad template: {exc}") from None
    checks._rbl_reply_maps = maps


def domain_query(what: str) -> str | None:
    """The domain of a name or address as a DNSBL name prefix; None: not looked up."""
    domain = what[what.rfind("@") + 1 :]
    if not domain or domain.startswith("["):
        return None
    domain = domain.rstrip(".")
    if not domain or domain.rsplit(".", 1)[-1].isdigit():
        return None
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = domain.split(".")
    if len(domain) > 255 or not all(_HOST_LABEL.match(label) for label in labels):
        return None
    return domain.lower()


async def rbl_lookup(st, query: str) -> RblAnswer:
    """The A (and TXT) records of query, once per session."""
    cache = st.dnsbl_cache
    key = query.lower()
    hit = cache.get(key)
    if hit is not None:
        return hit
    answer = await mta_dns.lookup(query, "A")
    if answer.status == mta_dns.DNS_OK:
        txt = await mta_dns.lookup_txt(query)
        result = RblAnswer(RBL_LISTED, answer.records, _join_txt(txt.records))
    elif answer.status == mta_dns.DNS_RETRY:
        log.warning(
            "%s: RBL lookup error: Host or domain name not found. "
            "Name service error for name=%s type=A: Host not found, try again",
            query,
            query,
        )
        result = RblAnswer(RBL_SOFT)
    else:
        result = RblAnswer(RBL_NOTFOUND)
    cache[key] = result
    return result


def _join_txt(records: list[str]) -> str:
    text = ""
    for i, rec in enumerate(records):
        text += rec[: RBL_TXT_LIMIT - len(text)]
        if len(text) >= RBL_TXT_LIMIT:
            break
        if i + 1 < len(records) and RBL_TXT_LIMIT - len(text) > 3:
            text += " / "
    return text


def _target(ctx, name: str) -> tuple[str | None, str]:
    """(what is looked up, reply subject) for a DNSBL restriction at this stage."""
    st = ctx.st
    if name in DNSBL_ADDR:
        return st.client_addr or None, SMTPD_NAME_CLIENT
    if name in ("reject_rhsbl_client", "permit_rhswl_client"):
        known = st.client_name and st.client_name.lower() != "unknown"
        return (st.client_name if known else None), SMTPD_NAME_CLIENT
    if name == "reject_rhsbl_reverse_client":
        known = st.reverse_name and st.reverse_name.lower() != "unknown"
        return (st.reverse_name if known else None), SMTPD_NAME_REV_CLIENT
    if name == "reject_rhsbl_helo":
        return st.helo_name or None, SMTPD_NAME_HELO
    if name == "reject_rhsbl_sender":
        return st.sender or None, SMTPD_NAME_SENDER
    return ctx.recipient or None, SMTPD_NAME_RECIPIENT


async def apply_dnsbl(checks, ctx, name: str, arg: DnsblDomain, ok):
    """One DNSBL restriction: ok (a permit), a verdict, or None (as SmtpdChecks._apply)."""
    what, subject = _target(ctx, name)
    if what is None:
        return None
    if name in DNSBL_PERMIT and ctx.stage == "RCPT" and ctx.recipient:
        # never allowlist a recipient that reject_unauth_destination refuses
        auth = await checks._address_check(
            ctx, "permit_auth_destination", None, ctx.recipient, SMTPD_NAME_RECIPIENT
        )
        if auth != ok:
            return None
    prefix = client_query(what) if name in DNSBL_ADDR else domain_query(what)
    if prefix is None:
        return None
    answer = await rbl_lookup(ctx.st, f"{prefix}.{arg.domain}")
    if answer.status == RBL_SOFT:
        if name in DNSBL_PERMIT:
            text = f"<{what}>: {subject} rejected: Service unavailable"
            return checks._defer_if(ctx, "reject", 450, "4.7.1", subject, text)
        return None
    if answer.status != RBL_LISTED or not arg.matches(answer.addrs):
        return None
    if name in DNSBL_PERMIT:
        return ok
    return rbl_reject_reply(checks, ctx, arg, answer, what, subject)


def _reply_attrs(checks, ctx, arg: DnsblDomain, answer: RblAnswer, what: str, subject: str):
    st = ctx.st
    attrs = {
        "rbl_code": str(checks._rbl_code),
        "rbl_domain": arg.domain,
        "rbl_reason": answer.txt,
        "rbl_txt": answer.txt,
        "rbl_what": what,
        "rbl_class": subject,
        "client": f"{st.client_name}[{st.client_addr}]",
        "client_address": st.client_addr,
        "client_name": st.client_name,
        "reverse_client_name": st.reverse_name,
        "helo_name": st.helo_name,
    }
    for key, addr in (("sender", st.sender), ("recipient", ctx.recipient or None)):
        if addr is None:
            continue
        local, at, domain = addr.rpartition("@")
        attrs[key] = addr or "<>"
        attrs[f"{key}_name"] = (local if at else addr) or "<>"
        attrs[f"{key}_domain"] = domain if at else ""
    return attrs


def rbl_reject_reply(checks, ctx, arg: DnsblDomain, answer: RblAnswer, what: str, subject: str):
    """The refusal of a listed name, from rbl_reply_maps or default_rbl_reply."""
    template = None
    maps = checks._rbl_reply_maps
    if maps:
        try:
            template = maps.lookup(arg.spec)
            if template is None and arg.spec != arg.domain:
                template = maps.lookup(arg.domain)
        except (MapError, MapRetry) as exc:
            raise checks._lookup_error(arg.spec, exc) from None
    attrs = _reply_attrs(checks, ctx, arg, answer, what, subject)
    text = None
    if template is not None:
        try:
            text = expand_macros(template, attrs, checks._rbl_allowed)
        except FooterError:
            log.warning(
                "rbl_reject_reply: bad rbl reply template for domain %s: %s", arg.spec, template
            )
    if text is None:
        text = expand_macros(checks._rbl_default, attrs, checks._rbl_allowed)
    m = _REPLY.match(text)
    if m is None:
        log.warning("rbl response code configuration error: %s", text)
        return checks._reject(ctx, 450, "4.7.1", subject, "Service unavailable")
    code = int(m.group(1))
    dsn, rest = leading_failure_dsn(m.group(2)) or ("4.7.1", m.group(2))
    return checks._reject(ctx, code, dsn, subject, rest or "Service unavailable")
