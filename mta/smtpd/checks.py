"""smtpd.checks - SMTP access restrictions, evaluated at Postfix's stages

SYNOPSIS
    from mta.smtpd.checks import SessionState, SmtpdChecks, Verdict
    checks = SmtpdChecks(cfg)                  # parses every restriction list once
    st = SessionState(client_addr="192.0.2.7", client_name="unknown",
                      client_port=40000, reverse_name="unknown")
    verdict = await checks.recipient(st)       # None: accepted; else Verdict(reply, kind)
    checks.on_warn = fn                        # fn(stage, verdict) for reject_warning

DESCRIPTION
    The session fills a SessionState and calls one method per stage:
    client() at connect, helo(), sender() at MAIL FROM, recipient() at
    each RCPT TO, data() at DATA and end_of_data() after the message.
    Each returns None (go on) or a Verdict: the whole reply line without
    CRLF and a kind, "reject" (5xx) or "defer" (4xx). With
    smtpd_delay_reject = yes (the default) the session calls client(),
    helo() and sender() only through recipient(), which evaluates their
    lists first, each against its own information, as Postfix does.

    Lists and their reply subjects:

        smtpd_client_restrictions        <name[addr]>: Client host rejected
        smtpd_helo_restrictions          <helo>: Helo command rejected
        smtpd_sender_restrictions        <sender>: Sender address rejected
        smtpd_relay_restrictions, then
        smtpd_recipient_restrictions     <rcpt>: Recipient address rejected
        smtpd_data_restrictions          <DATA>: Data command rejected
        smtpd_end_of_data_restrictions   <END-OF-MESSAGE>: End-of-data rejected

    Within a list the first restriction that permits or rejects ends
    that list; a permit in one list does not skip the next. A restriction
    that needs information the stage lacks (a sender before MAIL, a
    recipient before RCPT) does nothing.

    Restrictions (postconf(5) names, codes from the parameters named):
    permit, reject (reject_code), defer (defer_code), warn_if_reject,
    defer_if_permit, defer_if_reject, sleep N (ignored, logged),
    permit_mynetworks, permit_sasl_authenticated,
    permit_auth_destination, reject_unauth_destination
    (relay_domains_reject_code), defer_unauth_destination (the same as
    a 4xx), reject_unauth_pipelining, reject_multi_recipient_bounce,
    check_client_access, check_reverse_client_hostname_access,
    check_helo_access, check_sender_access, check_recipient_access,
    reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname,
    reject_unknown_helo_hostname, reject_non_fqdn_sender,
    reject_non_fqdn_recipient, reject_unknown_sender_domain,
    reject_unknown_recipient_domain, reject_unlisted_sender,
    reject_unlisted_recipient, reject_unknown_client_hostname,
    reject_unknown_reverse_client_hostname, reject_unverified_sender
    (unverified_sender_reject_code / _defer_code),
    reject_unverified_recipient (unverified_recipient_reject_code /
    _defer_code), check_sasl_access and the sender login restrictions
    (smtpd/sasl_checks.py), check_policy_service (smtpd/policy_checks.py),
    the DNS blocklists reject_rbl_client, reject_rhsbl_*,
    permit_dnswl_client and permit_rhswl_client (smtpd/dnsbl_checks.py),
    check_*_{a,mx,ns}_access and permit_mx_backup (smtpd/dns_access.py),
    and the names listed in smtpd_restriction_classes
    (each a parameter holding a list).
    Pre-2.3 Postfix aliases are accepted (reject_invalid_hostname ...).

    Access tables (access(5)) are searched in Postfix's order: a client
    by host name and its parent domains, then by address and by the
    address with its last octets (IPv4 ".", IPv6 ":") cut off; an
    address (in canonical form, through trivial-rewrite) as
    user+ext@domain, user@domain, the domain and its parents,
    user+ext@, user@; the null sender as smtpd_null_access_lookup_key.
    Partial keys go to fixed-string tables only. The first key found
    decides, even when its value is DUNNO. Results: OK, RELAY, an
    all-numerical value (permit); REJECT, DEFER, DEFER_IF_REJECT,
    DEFER_IF_PERMIT, "4NN text", "5NN text" (421 and 521 also ask the
    session to disconnect: Verdict.disconnect); DUNNO; DISCARD (accept
    and stop evaluating); HOLD, REDIRECT addr, FILTER transport:dest,
    BCC addr, PREPEND header, WARN and INFO text (noted or logged, then
    go on); anything else is a list of restrictions or class names to
    apply. An enhanced status code at the start of the text replaces the
    default one; an address-class code is turned into the sender,
    recipient or non-address form the stage needs.

    Side effects that do not end the evaluation are appended to
    st.actions (once each): ("discard", text), ("hold", text),
    ("redirect", addr), ("filter", "transport:dest"), ("bcc", addr),
    ("prepend", "Header: value"), ("warn", text).

    A temporary DNS failure of reject_unknown_*_domain or
    reject_unknown_helo_hostname acts as unknown_address_tempfail_action
    / unknown_helo_hostname_tempfail_action says: defer_if_permit (note
    it, and defer when the stage would otherwise accept) or defer (at
    once). A defer_if_permit noted at the client, HELO or MAIL stage
    is kept in st.deferred and applied at RCPT. warn_if_reject turns
    the next restriction's reject into a "reject_warning" log line,
    through on_warn(stage, verdict). A table that fails temporarily
    answers "451 4.3.0 <name>: Temporary lookup failure"; a broken one
    "451 4.3.5 Server configuration error". Verdict.error_class says
    which notify_classes bit a refusal belongs to: policy, except
    resource for the first and software for the second.

    reject_unverified_* ask the verify service (common/verify_clnt.py),
    polling address_verify_poll_count times, address_verify_poll_delay
    apart, while the first probe for the address is on its way. An
    undeliverable address gets "<addr>: Recipient address rejected:
    undeliverable address: REASON" with the reject code; one not known
    yet, or a verify service that does not answer, "...: unverified
    address: REASON" with the defer code, through
    unverified_*_tempfail_action. unverified_*_reject_reason replaces
    the text after "rejected:".

    receive_override_options = no_unknown_recipient_checks (the smtpd
    behind a content filter) turns reject_unlisted_recipient off, both
    the restriction and the implicit check below.

    After the recipient lists, smtpd_reject_unlisted_recipient = yes
    applies reject_unlisted_recipient once more unless it already ran:
    recipients in local domains must be in local_recipient_maps (an
    empty value accepts all), in virtual mailbox domains in
    virtual_mailbox_maps, in relay_domains in relay_recipient_maps (when
    set), in virtual alias domains in virtual_alias_maps; an address in
    canonical_maps, recipient_canonical_maps or virtual_alias_maps is
    always known. smtpd_reject_unlisted_sender does the same for MAIL
    FROM.

    SmtpdChecks() raises ConfigError, naming the parameter, for an
    unknown restriction, a restriction without its argument, a table
    that cannot be opened, a class without a definition, or relay and
    recipient lists of which neither can refuse anything.

SECURITY
    Sees untrusted client data: host names, HELO names, addresses. They
    are only compared, used as table keys or DNS queries, and quoted in
    replies after the session's parser accepted them. Runs inside smtpd,
    unprivileged.

STANDARDS
    RFC 5321 (replies), RFC 3463 (enhanced status codes), RFC 7505 (null MX).

SEE ALSO
    postconf(5) smtpd_*_restrictions, access(5), SMTPD_ACCESS_README,
    mta/smtpd/dns.py, mta/smtpd/session.py
"""

from __future__ import annotations

import contextvars
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from mta import log
from mta.common.addr_find import address_keys, domain_keys, find_access, find_address
from mta.common.match_list import AddrList
from mta.common.receive_override import NO_UNKNOWN_RECIPIENT_CHECKS, receive_overrides
from mta.config.errors import ConfigError
from mta.maps import MapError, MapRetry, Maps, open_map
from mta.smtpd import dns as smtpd_dns
from mta.smtpd.dns_access import DNS_ACCESS_SIMPLE, DNS_ACCESS_WITH_ARG, apply_dns_access
from mta.smtpd.dns_access import check_config as check_dns_access_config
from mta.smtpd.dnsbl_checks import DNSBL_WITH_ARG, apply_dnsbl, parse_dnsbl
from mta.smtpd.policy_checks import POLICY_WITH_ARG, apply_policy, policy_client
from mta.smtpd.sasl_checks import SASL_RESTRICTIONS, SASL_SIMPLE, SASL_WITH_ARG, apply_sasl
from mta.smtpd.sasl_checks import check_config as check_sasl_config
from mta.smtpd.tls_checks import TLS_SIMPLE, TLS_WITH_ARG, tls_restriction
from mta.smtpd.transcript import NOTIFY_POLICY, NOTIFY_RESOURCE, NOTIFY_SOFTWARE

SMTPD_NAME_CLIENT = "Client host"  # reply subjects, as Postfix words them
SMTPD_NAME_REV_CLIENT = "Unverified Client host"
SMTPD_NAME_HELO = "Helo command"
SMTPD_NAME_SENDER = "Sender address"
SMTPD_NAME_RECIPIENT = "Recipient address"
SMTPD_NAME_DATA = "Data command"
SMTPD_NAME_EOD = "End-of-data"
SMTPD_NAME_ETRN = "Etrn command"
SMTPD_CMD_DATA = "DATA"  # reply names of the message stages
SMTPD_CMD_EOD = "END-OF-MESSAGE"

CHECK_OK = "OK"  # a restriction permitted; DUNNO is None, a reject is a Verdict
RECURSION_LIMIT = 100  # nesting of restriction classes and table results

# restrictions that take the next list element as their argument
RESTRICT_WITH_ARG = frozenset(
    {
        "check_client_access",
        "check_reverse_client_hostname_access",
        "check_helo_access",
        "check_sender_access",
        "check_recipient_access",
        "check_etrn_access",
        "sleep",
    }
)
RESTRICT_ALIASES = {
    "reject_invalid_hostname": "reject_invalid_helo_hostname",
    "reject_non_fqdn_hostname": "reject_non_fqdn_helo_hostname",
    "reject_unknown_hostname": "reject_unknown_helo_hostname",
    "reject_unknown_client": "reject_unknown_client_hostname",
    "check_recipient_maps": "reject_unlisted_recipient",
}
RESTRICT_SIMPLE = frozenset(
    {
        "permit",
        "reject",
        "defer",
        "warn_if_reject",
        "defer_if_permit",
        "defer_if_reject",
        "permit_mynetworks",
        "permit_sasl_authenticated",
        "permit_auth_destination",
        "reject_unauth_destination",
        "defer_unauth_destination",
        "reject_unauth_pipelining",
        "reject_multi_recipient_bounce",
        "reject_invalid_helo_hostname",
        "reject_non_fqdn_helo_hostname",
        "reject_unknown_helo_hostname",
        "reject_non_fqdn_sender",
        "reject_non_fqdn_recipient",
        "reject_unknown_sender_domain",
        "reject_unknown_recipient_domain",
        "reject_unlisted_sender",
        "reject_unlisted_recipient",
        "reject_unknown_client_hostname",
        "reject_unknown_reverse_client_hostname",
        "reject_unverified_sender",
        "reject_unverified_recipient",
    }
)
# the SASL restrictions (smtpd/sasl_checks.py)
RESTRICT_WITH_ARG |= SASL_WITH_ARG
RESTRICT_SIMPLE |= SASL_SIMPLE
# DNSBLs (smtpd/dnsbl_checks.py), check_*_{a,mx,ns}_access and permit_mx_backup (dns_access.py)
RESTRICT_WITH_ARG |= DNSBL_WITH_ARG | DNS_ACCESS_WITH_ARG
RESTRICT_SIMPLE |= DNS_ACCESS_SIMPLE
RESTRICT_WITH_ARG |= POLICY_WITH_ARG  # check_policy_service (smtpd/policy_checks.py)
# one of these must be in the relay or the recipient restrictions
RESTRICT_REQUIRED = frozenset(
    {"reject", "defer", "defer_if_permit", "reject_unauth_destination", "defer_unauth_destination"}
)
TEMPFAIL_ACTIONS = ("defer", "defer_if_permit")
HELO_RESTRICTIONS = frozenset(
    {
        "check_helo_access",
        "reject_invalid_helo_hostname",
        "reject_non_fqdn_helo_hostname",
        "reject_unknown_helo_hostname",
    }
)

_DSN_RE = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")
_HEADER_RE = re.compile(r"[!-9;-~]+:")
_LABEL_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?$")
# sender/recipient forms of an X.1.Y address status (Postfix's smtpd_dsn_fix)
_DSN_ADDR_MAP = {
    "1": ("1.0", "1.1"),
    "2": ("1.8", "1.2"),
    "3": ("1.7", "1.3"),
    "4": ("1.0", "1.4"),
    "5": ("1.0", "1.5"),
    "6": ("1.0", "1.6"),
    "7": ("1.7", "1.3"),
    "8": ("1.8", "1.2"),
    "10": ("1.10", "1.10"),  # RFC 7505 null MX, either side
}

_current: contextvars.ContextVar = contextvars.ContextVar("smtpd_checks_ctx")


@dataclass
class SessionState:
    """What the session knows; the checks only read it (and append to actions)."""

    client_addr: str
    client_name: str
    client_port: int
    reverse_name: str
    helo_name: str = ""
    protocol: str = "SMTP"
    sasl_username: str = ""
    sender: str | None = None  # None before MAIL; "" is the null sender
    recipient: str = ""  # the RCPT being checked
    recipient_count: int = 0
    pipelining_violation: bool = False  # client sent commands before our reply
    tls_peer: object = None  # smtpd.tls_ccert.TlsPeer once the session runs over TLS
    esmtp: bool = False
    actions: list = field(default_factory=list)  # message-level side effects
    # defer_if_permit verdicts noted at the client, helo and sender stages,
    # applied at RCPT (smtpd_delay_reject = no); kept by the checks
    deferred: dict = field(default_factory=dict)
    dnsbl_cache: dict = field(default_factory=dict)  # DNSBL answers (smtpd/dnsbl_checks.py)
    # more that check_policy_service sends (smtpd/policy_checks.py); the session fills them
    server_addr: str = ""
    server_port: int = 0
    sasl_method: str = ""  # the mechanism of the AUTH that set sasl_username
    sasl_sender: str = ""  # MAIL FROM's AUTH=
    size: int = 0  # MAIL FROM's SIZE=, the received size after the message
    queue_id: str = ""  # once the queue file is open
    instance: str = ""  # new for each MAIL FROM


@dataclass
class Verdict:
    """A refusal: the whole SMTP reply (no CRLF) and its kind."""

    reply: str
    kind: str  # "reject" (5xx) or "defer" (4xx)
    disconnect: bool = False  # 421/521 from an access table: hang up after the reply
    error_class: int = NOTIFY_POLICY  # notify_classes bit: policy, resource or software


class _Abort(Exception):
    """Stop evaluating at once with this verdict (lookup and server errors)."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reply)
        self.verdict = verdict


class _Ctx:
    """State of one evaluation (one stage call)."""

    def __init__(self, st: SessionState, stage: str) -> None:
        self.st = st
        self.stage = stage  # for logs: CONNECT HELO EHLO MAIL RCPT DATA END-OF-MESSAGE
        self.defer_if_permit: Verdict | None = None
        self.defer_if_reject: Verdict | None = None
        self.warn = 0  # depth at which warn_if_reject was given; 0: off
        self.depth = 0
        self.discard = False
        self.rcptmap_checked = False
        self.recipient = st.recipient
        self.etrn_domain = ""  # the ETRN argument, for check_etrn_access
        self.canon: dict[str, tuple[str, str, bool]] = {}

    def reset(self) -> None:
        """Start a new list group (Postfix's SMTPD_CHECK_RESET)."""
        self.warn = 0
        self.depth = 0
        self.defer_if_reject = None


def _kind(code: int) -> str:
    return "defer" if code < 500 else "reject"


def _strip_dot(name: str) -> str:
    """Drop one trailing dot, but not from a name ending in two."""
    if name.endswith(".") and not name.endswith(".."):
        return name[:-1]
    return name


def valid_hostname(name: str) -> bool:
    """A syntactically valid host name (letters, digits, "-", "_"; not all-numeric)."""
    if not name or len(name) > 255:
        return False
    labels = name.split(".")
    for label in labels:
        if not label or len(label) > 63:
            return False
        if not _LABEL_RE.match(label) and not (
            not label.isascii()
            and label[0] != "-"
            and label[-1] != "-"
            and all(c.isalnum() or c in "-_" for c in label)
        ):
            return False
    return not all(label.isdigit() for label in labels)


def valid_hostaddr(text: str) -> bool:
    """An IPv4 or IPv6 address, without brackets."""
    if text.lower().startswith("ipv6:"):
        text = text[5:]
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _literal(name: str) -> str | None:
    """The inside of an address literal "[...]", or None."""
    if len(name) > 2 and name.startswith("[") and name.endswith("]"):
        return name[1:-1]
    return None


def client_address_keys(addr: str) -> list[str]:
    """An address and its networks by cutting octets: 1.2.3.4 1.2.3 1.2 1."""
    return address_keys(addr)


def fix_dsn(code: int, dsn: str, subject: str) -> str:
    """Make the status fit the reply code and the kind of subject (RFC 3463)."""
    first = str(code)[0]
    _, cls, detail = dsn.split(".")
    if cls == "1":
        if subject == SMTPD_NAME_SENDER:
            cls, detail = _DSN_ADDR_MAP.get(detail, ("1.0", "1.0"))[0].split(".")
        elif subject == SMTPD_NAME_RECIPIENT:
            cls, detail = _DSN_ADDR_MAP.get(detail, ("1.0", "1.0"))[1].split(".")
        else:
            cls, detail = "0", "0"
    return f"{first}.{cls}.{detail}"


def split_dsn(text: str, default: str) -> tuple[str, str]:
    """Split "X.Y.Z rest" into (dsn, rest); without a status, (default, text)."""
    m = _DSN_RE.match(text)
    if m and m.group(1) in "45":
        return f"{m.group(1)}.{m.group(2)}.{m.group(3)}", text[m.end() :]
    return default, text


class _Classifier:
    """Canonical form and address class of an address, through trivial-rewrite."""

    def __init__(self, cfg) -> None:
        from mta.trivial_rewrite.resolve import Resolver
        from mta.trivial_rewrite.rewrite import Rewriter

        self.rewriter = Rewriter(cfg)
        self.resolver = Resolver(cfg)

    def resolve(self, addr: str) -> tuple[str, str, bool]:
        """Return (canonical address, class, routed)."""
        r = self.resolver.resolve(self.rewriter.rewrite(addr, "local"))
        return r.recipient, r.addr_class, "routed" in r.flags


class SmtpdChecks:
    """The access restrictions of one smtpd; see the module docstring."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.delay_reject = cfg.get_bool("smtpd_delay_reject")
        self.on_warn: Callable[[str, Verdict], None] = self.log_warning
        self.codes = {
            name: cfg.get_int(name)
            for name in (
                "reject_code",
                "defer_code",
                "access_map_reject_code",
                "access_map_defer_code",
                "relay_domains_reject_code",
                "invalid_hostname_reject_code",
                "non_fqdn_reject_code",
                "unknown_address_reject_code",
                "unknown_hostname_reject_code",
                "unknown_client_reject_code",
                "unknown_local_recipient_reject_code",
                "unknown_relay_recipient_reject_code",
                "unknown_virtual_alias_reject_code",
                "unknown_virtual_mailbox_reject_code",
                "multi_recipient_bounce_reject_code",
                "unverified_sender_reject_code",
                "unverified_sender_defer_code",
                "unverified_recipient_reject_code",
                "unverified_recipient_defer_code",
            )
        }
        self.soft_bounce = cfg.get_bool("soft_bounce")
        self.delimiter = cfg.get("recipient_delimiter")
        self.null_key = cfg.get("smtpd_null_access_lookup_key")
        self.double_bounce = cfg.get("double_bounce_sender").lower()
        self.parent_matches = "smtpd_access_maps" in cfg.get_list(
            "parent_domain_matches_subdomains"
        )
        self.show_table = cfg.get_bool("show_user_unknown_table_name")
        # receive_override_options no_unknown_recipient_checks (after a content filter)
        self.no_unknown_rcpt = NO_UNKNOWN_RECIPIENT_CHECKS in receive_overrides(cfg)
        self.reject_unlisted_recipient = cfg.get_bool("smtpd_reject_unlisted_recipient")
        self.reject_unlisted_recipient &= not self.no_unknown_rcpt
        self.reject_unlisted_sender = cfg.get_bool("smtpd_reject_unlisted_sender")
        self.address_tempfail = self._tempfail_action("unknown_address_tempfail_action")
        self.helo_tempfail = self._tempfail_action("unknown_helo_hostname_tempfail_action")
        self.verify_tempfail = {
            kind: self._tempfail_action(f"unverified_{kind}_tempfail_action")
            for kind in ("sender", "recipient")
        }
        self.verify_polls = max(1, cfg.get_int("address_verify_poll_count"))
        self.verify_delay = cfg.get_time("address_verify_poll_delay")
        self._verify_client = None
        try:
            self.mynetworks = AddrList.from_param(cfg, "mynetworks")
        except MapError as exc:
            raise self._config_error("mynetworks", str(exc)) from None
        self.classes: dict[str, list] = {}
        self._class_names = set(cfg.get_list("smtpd_restriction_classes"))
        for name in sorted(self._class_names):
            if not cfg.get(name).strip():
                raise self._config_error(
                    "smtpd_restriction_classes", f'restriction class "{name}" needs a definition'
                )
            self.classes[name] = self._parse_param(name)
        self.lists = {
            name: self._parse_param(name)
            for name in (
                "smtpd_client_restrictions",
                "smtpd_helo_restrictions",
                "smtpd_sender_restrictions",
                "smtpd_relay_restrictions",
                "smtpd_recipient_restrictions",
                "smtpd_data_restrictions",
                "smtpd_end_of_data_restrictions",
                "smtpd_etrn_restrictions",
            )
        }
        if not (
            self._has_required(self.lists["smtpd_relay_restrictions"], set())
            or self._has_required(self.lists["smtpd_recipient_restrictions"], set())
        ):
            raise self._config_error(
                "smtpd_recipient_restrictions",
                "neither it nor smtpd_relay_restrictions has one of "
                + ", ".join(sorted(RESTRICT_REQUIRED))
                + ": mail would be relayed for anyone",
            )
        self._classifier: _Classifier | None = None
        self._rcpt_maps: dict[str, Maps] = {}

    # ------------------------------------------------------------ configuration
    def _config_error(self, param: str, message: str) -> ConfigError:
        path, line = self.cfg.source(param)
        return ConfigError(message, path=path or self.cfg.main_cf, line=line, param=param)

    def _tempfail_action(self, name: str) -> str:
        value = self.cfg.get(name).strip().lower()
        if value not in TEMPFAIL_ACTIONS:
            raise self._config_error(
                name, f'bad value "{value}": need {" or ".join(TEMPFAIL_ACTIONS)}'
            )
        return value

    def _parse_param(self, param: str) -> list[tuple[str, object]]:
        try:
            return self.parse_restrictions(self.cfg.get_list(param))
        except ValueError as exc:
            raise self._config_error(param, str(exc)) from None
        except MapError as exc:
            raise self._config_error(param, str(exc)) from None

    def parse_restrictions(self, words: list[str]) -> list[tuple[str, object]]:
        """Turn list words into (name, argument) pairs; ValueError for a bad one."""
        ops: list[tuple[str, object]] = []
        i = 0
        while i < len(words):
            word = words[i]
            i += 1
            name = RESTRICT_ALIASES.get(word.lower(), word.lower())
            with_arg = name in RESTRICT_WITH_ARG or name in TLS_WITH_ARG  # smtpd/tls_checks.py
            if not with_arg and name not in RESTRICT_SIMPLE and name not in TLS_SIMPLE:
                if word not in self._class_names:
                    raise ValueError(f'unknown restriction "{word}"')
                ops.append(("class", word))
            elif with_arg:
                if i >= len(words):
                    raise ValueError(f'restriction "{word}" needs an argument')
                arg = words[i]
                i += 1
                if name == "sleep":
                    if not arg.isdigit():
                        raise ValueError(f'restriction "sleep" needs a number, not "{arg}"')
                    ops.append((name, int(arg)))
                elif name in DNSBL_WITH_ARG:  # a DNS list domain, not a table
                    ops.append((name, parse_dnsbl(self, arg)))
                elif name in POLICY_WITH_ARG:  # a policy server, not a table
                    ops.append((name, policy_client(self, arg)))
                else:
                    ops.append((name, open_map(arg, self.cfg)))
            else:
                if name in SASL_SIMPLE:
                    check_sasl_config(self, name)
                if name in DNS_ACCESS_SIMPLE:
                    check_dns_access_config(self, name)
                ops.append((name, None))
        return ops

    def _has_required(self, ops, seen: set[str]) -> bool:
        for name, arg in ops:
            if name in RESTRICT_REQUIRED:
                return True
            if name == "class" and arg not in seen:
                seen.add(arg)
                if self._has_required(self.classes.get(arg, []), seen):
                    return True
        return False

    @property
    def classifier(self) -> _Classifier:
        if self._classifier is None:
            self._classifier = _Classifier(self.cfg)
        return self._classifier

    def _maps(self, name: str) -> Maps:
        maps = self._rcpt_maps.get(name)
        if maps is None:
            maps = Maps(self.cfg.get_list(name), self.cfg)
            self._rcpt_maps[name] = maps
        return maps

    # ------------------------------------------------------------ logging
    def log_event(self, ctx: _Ctx, what: str, text: str) -> None:
        """Log one line in Postfix's form: NOQUEUE: what: STAGE from host[addr]: text; ..."""
        st = ctx.st
        extra = []
        if st.sender is not None:
            extra.append(f"from=<{st.sender}>")
        if ctx.recipient:
            extra.append(f"to=<{ctx.recipient}>")
        extra.append(f"proto={st.protocol}")
        if st.helo_name:
            extra.append(f"helo=<{st.helo_name}>")
        log.info(
            "NOQUEUE: %s: %s from %s[%s]: %s; %s",
            what,
            ctx.stage,
            st.client_name,
            st.client_addr,
            text,
            " ".join(extra),
        )

    def log_warning(self, stage: str, verdict: Verdict) -> None:
        """The default on_warn: a reject_warning line for the evaluation under way."""
        ctx = _current.get(None)
        if ctx is not None:
            self.log_event(ctx, "reject_warning", verdict.reply)
        else:
            log.info("NOQUEUE: reject_warning: %s: %s", stage, verdict.reply)

    # ------------------------------------------------------------ stages
    async def client(self, st: SessionState) -> Verdict | None:
        """smtpd_client_restrictions (at connect, or at RCPT with delay_reject)."""
        ctx = _Ctx(st, "CONNECT")
        return await self._stage(ctx, self._client_group, "client")

    async def helo(self, st: SessionState) -> Verdict | None:
        """smtpd_helo_restrictions."""
        ctx = _Ctx(st, "EHLO" if st.esmtp else "HELO")
        ctx.defer_if_permit = st.deferred.get("client")
        return await self._stage(ctx, self._helo_group, "helo")

    async def etrn(self, st: SessionState, domain: str) -> Verdict | None:
        """smtpd_etrn_restrictions, for the ETRN of domain."""
        ops = self.lists["smtpd_etrn_restrictions"]
        if not ops:
            return None
        ctx = _Ctx(st, "ETRN")
        ctx.etrn_domain = domain
        token = _current.set(ctx)
        try:
            result = await self._run(ctx, ops, domain, SMTPD_NAME_ETRN)
            return result if isinstance(result, Verdict) else None
        except _Abort as abort:
            return abort.verdict
        finally:
            _current.reset(token)

    async def sender(self, st: SessionState) -> Verdict | None:
        """smtpd_sender_restrictions (and smtpd_reject_unlisted_sender)."""
        ctx = _Ctx(st, "MAIL")
        ctx.defer_if_permit = st.deferred.get("helo", st.deferred.get("client"))
        return await self._stage(ctx, self._sender_group, "sender")

    async def recipient(self, st: SessionState) -> Verdict | None:
        """The relay and recipient restrictions; with delay_reject client, helo, sender first."""
        if st.recipient.lower() == "postmaster":
            return None  # RFC 5321 section 4.5.1: accepted without a domain, always
        ctx = _Ctx(st, "RCPT")
        token = _current.set(ctx)
        try:
            if self.delay_reject:
                for group in (self._client_group, self._helo_group, self._sender_group):
                    ctx.reset()
                    verdict = await group(ctx)
                    if verdict is not None:
                        return verdict
            else:
                for stage in ("sender", "helo", "client"):
                    if st.deferred.get(stage) is not None:
                        ctx.defer_if_permit = st.deferred[stage]
                        break
            ctx.reset()
            verdict = await self._recipient_group(ctx)
            if verdict is not None:
                return verdict
            if ctx.discard:
                return None
            if ctx.defer_if_permit is not None:
                return ctx.defer_if_permit
            if self.reject_unlisted_recipient and not ctx.rcptmap_checked and st.recipient:
                ctx.reset()
                result = await self._check_rcpt_maps(ctx, st.recipient, SMTPD_NAME_RECIPIENT)
                if isinstance(result, Verdict):
                    return result
            return None
        except _Abort as abort:
            return abort.verdict
        finally:
            _current.reset(token)

    async def data(self, st: SessionState) -> Verdict | None:
        """smtpd_data_restrictions."""
        return await self._message_stage(
            st, SMTPD_CMD_DATA, "smtpd_data_restrictions", SMTPD_CMD_DATA, SMTPD_NAME_DATA
        )

    async def end_of_data(self, st: SessionState) -> Verdict | None:
        """smtpd_end_of_data_restrictions."""
        return await self._message_stage(
            st, SMTPD_CMD_EOD, "smtpd_end_of_data_restrictions", SMTPD_CMD_EOD, SMTPD_NAME_EOD
        )

    async def _message_stage(
        self, st: SessionState, stage: str, param: str, reply_name: str, reply_class: str
    ) -> Verdict | None:
        ops = self.lists[param]
        if not ops:
            return None
        ctx = _Ctx(st, stage)
        if st.recipient_count != 1:
            ctx.recipient = ""  # no recipient information for multi-recipient mail
        token = _current.set(ctx)
        try:
            result = await self._run(ctx, ops, reply_name, reply_class)
            if isinstance(result, Verdict):
                return result
            if ctx.defer_if_permit is not None and not ctx.discard:
                return ctx.defer_if_permit
            return None
        except _Abort as abort:
            return abort.verdict
        finally:
            _current.reset(token)

    async def _stage(self, ctx: _Ctx, group, key: str) -> Verdict | None:
        token = _current.set(ctx)
        try:
            verdict = await group(ctx)
            ctx.st.deferred[key] = ctx.defer_if_permit
            return verdict
        except _Abort as abort:
            return abort.verdict
        finally:
            _current.reset(token)

    async def _client_group(self, ctx: _Ctx) -> Verdict | None:
        st = ctx.st
        result = await self._run(
            ctx,
            self.lists["smtpd_client_restrictions"],
            f"{st.client_name}[{st.client_addr}]",
            SMTPD_NAME_CLIENT,
        )
        return result if isinstance(result, Verdict) else None

    async def _helo_group(self, ctx: _Ctx) -> Verdict | None:
        ops = self.lists["smtpd_helo_restrictions"]
        if not ops or not ctx.st.helo_name:
            return None
        result = await self._run(ctx, ops, ctx.st.helo_name, SMTPD_NAME_HELO)
        return result if isinstance(result, Verdict) else None

    async def _sender_group(self, ctx: _Ctx) -> Verdict | None:
        sender = ctx.st.sender
        if sender is None:
            return None
        ops = self.lists["smtpd_sender_restrictions"]
        result = await self._run(ctx, ops, sender, SMTPD_NAME_SENDER) if ops else None
        if isinstance(result, Verdict):
            return result
        if self.reject_unlisted_sender and sender and not ctx.discard:
            result = await self._check_rcpt_maps(ctx, sender, SMTPD_NAME_SENDER)
            if isinstance(result, Verdict):
                return result
        return None

    async def _recipient_group(self, ctx: _Ctx) -> Verdict | None:
        rcpt = ctx.st.recipient
        for param in ("smtpd_relay_restrictions", "smtpd_recipient_restrictions"):
            if ctx.discard:
                return None
            result = await self._run(ctx, self.lists[param], rcpt, SMTPD_NAME_RECIPIENT)
            if isinstance(result, Verdict):
                return result
        return None

    # ------------------------------------------------------------ evaluation
    async def _run(self, ctx: _Ctx, ops, reply_name: str, reply_class: str):
        """Apply ops in order; CHECK_OK, a Verdict, or None when none decided."""
        ctx.depth += 1
        if ctx.depth > RECURSION_LIMIT:
            log.warning("restriction classes or table results nested too deep")
            raise _Abort(self._server_error())
        try:
            for name, arg in ops:
                if ctx.discard:
                    return CHECK_OK
                if name == "warn_if_reject":
                    if not ctx.warn:
                        ctx.warn = ctx.depth
                    continue
                result = await self._apply(ctx, name, arg, reply_name, reply_class)
                if ctx.warn >= ctx.depth:
                    ctx.warn = 0
                if result is not None:
                    return result
            return None
        finally:
            ctx.depth -= 1

    def _reject(self, ctx: _Ctx, code: int, dsn: str, subject: str, text: str):
        """A reject-type result, subject to defer_if_reject and warn_if_reject."""
        if self.soft_bounce and code >= 500:
            code -= 100
        verdict = Verdict(
            f"{code} {fix_dsn(code, dsn, subject)} {text}", _kind(code), code in (421, 521)
        )
        if ctx.defer_if_reject is not None and code >= 500:
            verdict = ctx.defer_if_reject
        if ctx.warn:
            self.on_warn(ctx.stage, verdict)
            return None
        return verdict

    def _defer_if(self, ctx: _Ctx, which: str, code: int, dsn: str, subject: str, text: str):
        verdict = Verdict(f"{code} {fix_dsn(code, dsn, subject)} {text}", _kind(code))
        if which == "permit":
            if ctx.warn:
                self.on_warn(ctx.stage, verdict)
            elif ctx.defer_if_permit is None:
                ctx.defer_if_permit = verdict
        elif ctx.defer_if_reject is None:
            ctx.defer_if_reject = verdict
        return None

    def _tempfail(self, ctx: _Ctx, action: str, code: int, dsn: str, subject: str, text: str):
        if action == "defer":
            return self._reject(ctx, code, dsn, subject, text)
        return self._defer_if(ctx, "permit", code, dsn, subject, text)

    @staticmethod
    def _server_error() -> Verdict:
        return Verdict("451 4.3.5 Server configuration error", "defer", False, NOTIFY_SOFTWARE)

    def _lookup_error(self, name: str, exc: Exception) -> _Abort:
        if isinstance(exc, MapRetry):
            log.warning("%s: %s", name, exc)
            reply = f"451 4.3.0 <{name}>: Temporary lookup failure"
            return _Abort(Verdict(reply, "defer", False, NOTIFY_RESOURCE))
        log.warning("%s: table lookup problem: %s", name, exc)
        return _Abort(self._server_error())

    async def _apply(self, ctx: _Ctx, name: str, arg, reply_name: str, reply_class: str):
        st = ctx.st
        codes = self.codes
        if name == "class":
            return await self._run(ctx, self.classes[arg], reply_name, reply_class)
        if name == "permit":
            return CHECK_OK
        if name == "reject":
            return self._reject(
                ctx,
                codes["reject_code"],
                "5.7.1",
                reply_class,
                f"<{reply_name}>: {reply_class} rejected: Access denied",
            )
        if name == "defer":
            return self._reject(
                ctx,
                codes["defer_code"],
                "4.7.1",
                reply_class,
                f"<{reply_name}>: {reply_class} rejected: Try again later",
            )
        if name == "defer_if_permit" or name == "defer_if_reject":
            which = name[len("defer_if_") :]
            return self._defer_if(
                ctx,
                which,
                codes["defer_code"],
                "4.7.0",
                reply_class,
                f"<{reply_name}>: {reply_class} rejected: {name} requested",
            )
        if name == "sleep":
            log.info('restriction "sleep %d" ignored', arg)
            return None
        if name == "permit_mynetworks":
            return CHECK_OK if self.mynetworks.match(st.client_addr, st.client_name) else None
        if name == "permit_sasl_authenticated":
            return CHECK_OK if st.sasl_username else None
        if name == "reject_unauth_pipelining":
            if not st.pipelining_violation:
                return None
            return self._reject(
                ctx,
                503,
                "5.5.0",
                reply_class,
                f"<{reply_name}>: {reply_class} rejected: Improper use of SMTP command pipelining",
            )
        if name == "reject_multi_recipient_bounce":
            count = st.recipient_count + (1 if ctx.stage == "RCPT" else 0)
            if st.sender != "" or count <= 1:
                return None
            return self._reject(
                ctx,
                codes["multi_recipient_bounce_reject_code"],
                "5.5.3",
                reply_class,
                f"<{reply_name}>: {reply_class} rejected: Multi-recipient bounce",
            )
        if name == "check_client_access":
            return await self._check_namaddr(
                ctx,
                arg,
                st.client_name,
                st.client_addr,
                f"{st.client_name}[{st.client_addr}]",
                SMTPD_NAME_CLIENT,
            )
        if name == "check_reverse_client_hostname_access":
            return await self._check_namaddr(
                ctx,
                arg,
                st.reverse_name,
                st.client_addr,
                f"{st.reverse_name}[{st.client_addr}]",
                SMTPD_NAME_REV_CLIENT,
                allow_ok=False,
            )
        if name == "reject_unknown_client_hostname":
            return self._unknown_client(ctx, st.client_name, "hostname")
        if name == "reject_unknown_reverse_client_hostname":
            return self._unknown_client(ctx, st.reverse_name, "reverse hostname")
        if name in HELO_RESTRICTIONS:
            if not st.helo_name:
                return None
            return await self._helo_check(ctx, name, arg)
        if name in (
            "check_sender_access",
            "reject_non_fqdn_sender",
            "reject_unknown_sender_domain",
            "reject_unlisted_sender",
        ):
            if st.sender is None:
                return None
            return await self._address_check(ctx, name, arg, st.sender, SMTPD_NAME_SENDER)
        if name in (
            "check_recipient_access",
            "reject_non_fqdn_recipient",
            "reject_unknown_recipient_domain",
            "reject_unlisted_recipient",
            "permit_auth_destination",
            "reject_unauth_destination",
            "defer_unauth_destination",
        ):
            if not ctx.recipient:
                return None
            return await self._address_check(ctx, name, arg, ctx.recipient, SMTPD_NAME_RECIPIENT)
        if name == "reject_unverified_sender":
            if not st.sender or st.sender.lower() == self.probe_sender():
                return None  # the null sender, and our own probes' sender, are never probed
            return await self._verify(ctx, "sender", st.sender, SMTPD_NAME_SENDER)
        if name == "reject_unverified_recipient":
            if not ctx.recipient:
                return None
            return await self._verify(ctx, "recipient", ctx.recipient, SMTPD_NAME_RECIPIENT)
        if name == "check_etrn_access":
            domain = ctx.etrn_domain.lower()
            if not domain:
                return None
            keys = (
                [domain]
                if _literal(domain) is not None
                else domain_keys(domain, self.parent_matches)
            )
            return await self._search(ctx, arg, keys, domain, SMTPD_NAME_ETRN)
        if name in POLICY_WITH_ARG:
            return await apply_policy(self, ctx, arg, reply_name, reply_class)
        if name in SASL_RESTRICTIONS:
            return await apply_sasl(self, ctx, name, arg)
        if name in DNSBL_WITH_ARG:
            return await apply_dnsbl(self, ctx, name, arg, CHECK_OK)
        if name in DNS_ACCESS_WITH_ARG or name in DNS_ACCESS_SIMPLE:
            return await apply_dns_access(self, ctx, name, arg, CHECK_OK)
        if name in TLS_SIMPLE or name in TLS_WITH_ARG:
            return await tls_restriction(self, ctx, name, arg, CHECK_OK, SMTPD_NAME_CLIENT)
        log.warning('unknown smtpd restriction: "%s"', name)
        raise _Abort(self._server_error())

    # ------------------------------------------------------------ address verification
    def probe_sender(self) -> str:
        from mta.verify.server import probe_sender

        return probe_sender(self.cfg).lower()

    async def _verify(self, ctx: _Ctx, kind: str, addr: str, subject: str):
        """reject_unverified_sender / reject_unverified_recipient.

        Asks the verify service, polling address_verify_poll_count times
        address_verify_poll_delay apart while a probe is on its way. A
        deliverable address passes; an undeliverable one gets
        unverified_KIND_reject_code; one still not known (or a verify
        service that does not answer) gets unverified_KIND_defer_code
        through unverified_KIND_tempfail_action (250 there lets it pass)."""
        import asyncio

        from mta.common.verify_clnt import VerifyClient, VerifyError
        from mta.verify.cache import STATUS_BOUNCE, STATUS_OK, STATUS_TODO

        if self._verify_client is None:
            self._verify_client = VerifyClient(self.cfg)
        status, text = STATUS_TODO, ""
        for poll in range(self.verify_polls):
            try:
                status, text = await self._verify_client.query(addr)
            except VerifyError as exc:
                log.warning("%s", exc)
                status, text = -1, "Address verification service is unavailable"
                break
            if status != STATUS_TODO:
                break
            if poll + 1 < self.verify_polls:
                await asyncio.sleep(self.verify_delay)
        if status == STATUS_OK:
            return None
        reason = self.cfg.get(f"unverified_{kind}_reject_reason").strip()
        prefix = f"<{addr}>: {subject} rejected:"
        if status == STATUS_BOUNCE:
            return self._reject(
                ctx,
                self.codes[f"unverified_{kind}_reject_code"],
                "5.1.1",
                subject,
                f"{prefix} {reason or 'undeliverable address: ' + text}",
            )
        code = self.codes[f"unverified_{kind}_defer_code"]
        if code == 250:
            return None
        return self._tempfail(
            ctx,
            self.verify_tempfail[kind],
            code,
            "4.1.1",
            subject,
            f"{prefix} {reason or 'unverified address: ' + text}",
        )

    # ------------------------------------------------------------ client
    def _unknown_client(self, ctx: _Ctx, name: str, what: str):
        if name.lower() != "unknown":
            return None
        st = ctx.st
        return self._reject(
            ctx,
            self.codes["unknown_client_reject_code"],
            "4.7.25",
            SMTPD_NAME_CLIENT,
            f"<{st.client_name}[{st.client_addr}]>: {SMTPD_NAME_CLIENT} rejected: "
            f"cannot find your {what}, [{st.client_addr}]",
        )

    async def _check_namaddr(
        self, ctx, table, name: str, addr: str, reply_name: str, subject: str, allow_ok: bool = True
    ):
        """check_client_access: the host name and parents, then the address and networks."""
        if name:
            keys = domain_keys(name.lower().rstrip("."), self.parent_matches)
            found, result = await self._search_found(
                ctx, table, keys, reply_name, subject, allow_ok
            )
            if found:
                return result
        if addr:
            keys = client_address_keys(addr)
            return await self._search(ctx, table, keys, reply_name, subject, allow_ok)
        return None

    async def _search(self, ctx, table, keys, reply_name, subject, allow_ok=True):
        return (await self._search_found(ctx, table, keys, reply_name, subject, allow_ok))[1]

    async def _search_found(self, ctx, table, keys, reply_name, subject, allow_ok=True):
        """Try keys in order (all but the first on fixed-string tables only)."""
        for i, key in enumerate(keys):
            if i and not table.fixed:
                break
            try:
                value = table.lookup(key)
            except (MapError, MapRetry) as exc:
                raise self._lookup_error(reply_name, exc) from None
            if value is not None:
                return True, await self._table_result(
                    ctx, table, value, reply_name, subject, allow_ok=allow_ok
                )
        return False, None

    # ------------------------------------------------------------ helo
    async def _helo_check(self, ctx: _Ctx, name: str, table):
        helo = ctx.st.helo_name
        lit = _literal(helo)
        if name == "check_helo_access":
            keys = (
                [helo.lower()]
                if lit is not None
                else domain_keys(helo.lower(), self.parent_matches)
            )
            return await self._search(ctx, table, keys, helo, SMTPD_NAME_HELO)
        prefix = f"<{helo}>: {SMTPD_NAME_HELO} rejected:"
        if lit is not None:
            if name == "reject_unknown_helo_hostname" or valid_hostaddr(lit):
                return None
            return self._reject(
                ctx,
                self.codes["invalid_hostname_reject_code"],
                "5.5.2",
                SMTPD_NAME_HELO,
                f"{prefix} Invalid name",
            )
        test = _strip_dot(helo)
        if name == "reject_invalid_helo_hostname":
            if valid_hostname(test) or valid_hostaddr(test):
                return None
            return self._reject(
                ctx,
                self.codes["invalid_hostname_reject_code"],
                "5.5.2",
                SMTPD_NAME_HELO,
                f"{prefix} Invalid name",
            )
        if name == "reject_non_fqdn_helo_hostname":
            if valid_hostname(test) and "." in test:
                return None
            return self._reject(
                ctx,
                self.codes["non_fqdn_reject_code"],
                "5.5.2",
                SMTPD_NAME_HELO,
                f"{prefix} need fully-qualified hostname",
            )
        # reject_unknown_helo_hostname
        status = await smtpd_dns.host_status(test)
        if status == smtpd_dns.DNS_OK:
            return None
        if status == smtpd_dns.DNS_RETRY:
            return self._tempfail(
                ctx, self.helo_tempfail, 450, "4.7.1", SMTPD_NAME_HELO, f"{prefix} Host not found"
            )
        return self._reject(
            ctx,
            self.codes["unknown_hostname_reject_code"],
            "4.7.1",
            SMTPD_NAME_HELO,
            f"{prefix} Host not found",
        )

    # ------------------------------------------------------------ addresses
    def _resolve(self, ctx: _Ctx, addr: str) -> tuple[str, str, bool]:
        hit = ctx.canon.get(addr)
        if hit is None:
            try:
                hit = self.classifier.resolve(addr)
            except (MapError, MapRetry) as exc:
                raise self._lookup_error(addr, exc) from None
            ctx.canon[addr] = hit
        return hit

    async def _address_check(self, ctx: _Ctx, name: str, arg, addr: str, subject: str):
        codes = self.codes
        prefix = f"<{addr}>: {subject} rejected:"
        if name in ("check_sender_access", "check_recipient_access"):
            try:
                if not addr:
                    value = arg.lookup(self.null_key)
                else:
                    canon = self._resolve(ctx, addr)[0]
                    value = find_access(arg, canon, self.delimiter, self.parent_matches)
            except (MapError, MapRetry) as exc:
                raise self._lookup_error(addr, exc) from None
            if value is None:
                return None
            return await self._table_result(ctx, arg, value, addr, subject)
        if not addr:
            return None  # the null sender passes every address test
        if name.startswith("reject_non_fqdn_"):
            domain = addr[addr.rfind("@") + 1 :] if "@" in addr else ""
            if _literal(domain) is not None:
                return None
            test = _strip_dot(domain)
            if test and "." in test and valid_hostname(test):
                return None
            return self._reject(
                ctx,
                codes["non_fqdn_reject_code"],
                "4.5.2",
                "",
                f"{prefix} need fully-qualified address",
            )
        if name.startswith("reject_unknown_") and name.endswith("_domain"):
            return await self._unknown_domain(ctx, addr, subject, prefix)
        if name.startswith("reject_unlisted_"):
            if self.no_unknown_rcpt and subject == SMTPD_NAME_RECIPIENT:
                return None
            ctx.rcptmap_checked = ctx.rcptmap_checked or subject == SMTPD_NAME_RECIPIENT
            return await self._check_rcpt_maps(ctx, addr, subject)
        # permit_auth_destination, reject_unauth_destination, defer_unauth_destination
        canon, cls, routed = self._resolve(ctx, addr)
        authorized = "@" not in canon or (
            not routed and cls in ("local", "virtual_alias", "virtual_mailbox", "relay")
        )
        if name == "permit_auth_destination":
            return CHECK_OK if authorized else None
        if authorized:
            return None
        code = codes["relay_domains_reject_code"]
        if name == "defer_unauth_destination":
            code = 400 + code % 100
        return self._reject(ctx, code, "5.7.1", "", f"<{addr}>: Relay access denied")

    async def _unknown_domain(self, ctx: _Ctx, addr: str, subject: str, prefix: str):
        canon, cls, _ = self._resolve(ctx, addr)
        if "@" not in canon or cls in ("local", "virtual_alias", "virtual_mailbox"):
            return None
        domain = canon[canon.rfind("@") + 1 :]
        if _literal(domain) is not None:
            return None
        sender = subject == SMTPD_NAME_SENDER
        status = await smtpd_dns.mail_domain_status(domain)
        if status == smtpd_dns.DNS_OK:
            return None
        if status == smtpd_dns.DNS_NULLMX:
            return self._reject(
                ctx,
                550 if sender else 556,
                "5.7.27" if sender else "5.1.10",
                subject,
                f"{prefix} Domain {domain} does not accept mail (nullMX)",
            )
        dsn = "4.1.8" if sender else "4.1.2"
        if status == smtpd_dns.DNS_RETRY:
            return self._tempfail(
                ctx, self.address_tempfail, 450, dsn, subject, f"{prefix} Domain not found"
            )
        text = "Malformed DNS server reply" if status == smtpd_dns.DNS_INVAL else "Domain not found"
        return self._reject(
            ctx, self.codes["unknown_address_reject_code"], dsn, subject, f"{prefix} {text}"
        )

    async def _check_rcpt_maps(self, ctx: _Ctx, addr: str, subject: str):
        """reject_unlisted_recipient / reject_unlisted_sender."""
        canon, cls, _ = self._resolve(ctx, addr)
        if "@" not in canon:
            return None
        local = cls == "local"
        known_maps = [
            "sender_canonical_maps" if subject == SMTPD_NAME_SENDER else "recipient_canonical_maps",
            "canonical_maps",
            "virtual_alias_maps",
        ]
        table_of_class = {
            "local": (
                "local_recipient_maps",
                "unknown_local_recipient_reject_code",
                "local recipient table",
            ),
            "virtual_mailbox": (
                "virtual_mailbox_maps",
                "unknown_virtual_mailbox_reject_code",
                "virtual mailbox table",
            ),
            "relay": (
                "relay_recipient_maps",
                "unknown_relay_recipient_reject_code",
                "relay recipient table",
            ),
            "virtual_alias": (
                "virtual_alias_maps",
                "unknown_virtual_alias_reject_code",
                "virtual alias table",
            ),
        }
        entry = table_of_class.get(cls)
        if entry is None:
            return None
        param, code_name, table_name = entry
        if cls != "virtual_alias" and not self.cfg.get(param).strip():
            return None  # an empty table list accepts everyone
        if local and canon[: canon.rfind("@")].lower() == self.double_bounce:
            return None
        try:
            for name in [*known_maps, param]:
                maps = self._maps(name)
                if maps and find_address(maps, canon, self.delimiter, local=local) is not None:
                    return None
        except (MapError, MapRetry) as exc:
            raise self._lookup_error(addr, exc) from None
        where = f" in {table_name}" if self.show_table else ""
        dsn = "5.1.0" if subject == SMTPD_NAME_SENDER else "5.1.1"
        return self._reject(
            ctx,
            self.codes[code_name],
            dsn,
            subject,
            f"<{addr}>: {subject} rejected: User unknown{where}",
        )

    # ------------------------------------------------------------ access(5) results
    async def _table_result(
        self, ctx: _Ctx, table, value: str, reply_name: str, subject: str, allow_ok: bool = True
    ):
        codes = self.codes
        value = value.strip()
        word, _, rest = value.partition(" ")
        if "\t" in word:
            word, _, more = word.partition("\t")
            rest = (more + " " + rest).strip()
        rest = rest.strip()
        cmd = word.upper()
        prefix = f"<{reply_name}>: {subject}"
        where = f"access table {table.spec}"
        if cmd == "DUNNO":
            return None
        if cmd in ("OK", "RELAY") or value.isdigit():
            if not allow_ok:
                log.warning('%s: "%s" result not allowed here; treated as DUNNO', where, value)
                return None
            return CHECK_OK
        if cmd in ("REJECT", "DEFER"):
            code = codes["access_map_reject_code" if cmd == "REJECT" else "access_map_defer_code"]
            dsn, text = split_dsn(rest, "5.7.1" if cmd == "REJECT" else "4.7.1")
            return self._reject(
                ctx, code, dsn, subject, f"{prefix} rejected: {text or 'Access denied'}"
            )
        if cmd in ("DEFER_IF_REJECT", "DEFER_IF_PERMIT"):
            dsn, text = split_dsn(rest, "4.7.1")
            return self._defer_if(
                ctx,
                cmd[len("DEFER_IF_") :].lower(),
                codes["access_map_defer_code"],
                dsn,
                subject,
                f"{prefix} rejected: {text or 'Service unavailable'}",
            )
        if len(word) == 3 and word.isdigit() and rest:
            code = int(word)
            if word[0] not in "45":
                log.warning('%s: numerical code "%s" ignored', where, word)
                return None
            dsn, text = split_dsn(rest, "4.7.1" if word[0] == "4" else "5.7.1")
            return self._reject(ctx, code, dsn, subject, f"{prefix} rejected: {text}")
        if cmd == "PREPEND":
            if ctx.stage == SMTPD_CMD_EOD:
                log.warning("%s: PREPEND is unavailable after the message", where)
                return None
            if not _HEADER_RE.match(rest):
                log.warning('%s: PREPEND needs "Header: text", not "%s"', where, rest)
                return None
            self._note(ctx, ("prepend", rest))
            return None
        if cmd in ("HOLD", "DISCARD"):
            text = f"{prefix} {rest or f'triggers {cmd} action'}"
            self._note(ctx, (cmd.lower(), text))
            self.log_event(ctx, cmd.lower(), text)
            if cmd == "DISCARD":
                ctx.discard = True
                return CHECK_OK
            return None
        if cmd in ("REDIRECT", "BCC"):
            if "@" not in rest:
                log.warning('%s: %s needs an address, not "%s"', where, cmd, rest)
                return None
            self._note(ctx, (cmd.lower(), rest))
            self.log_event(ctx, cmd.lower(), f"{prefix} triggers {cmd} {rest}")
            return None
        if cmd == "FILTER":
            if ":" not in rest:
                log.warning('%s: FILTER needs "transport:destination", not "%s"', where, rest)
                return None
            self._note(ctx, ("filter", rest))
            self.log_event(ctx, "filter", f"{prefix} triggers FILTER {rest}")
            return None
        if cmd in ("WARN", "INFO"):
            text = f"{prefix} {rest}" if rest else prefix
            if cmd == "WARN":
                self._note(ctx, ("warn", rest))
            self.log_event(ctx, cmd.lower(), text)
            return None
        # Anything else names restrictions to apply.
        try:
            ops = self.parse_restrictions(_split_words(value))
        except (ValueError, MapError) as exc:
            log.warning('%s: bad result "%s": %s', where, value, exc)
            raise _Abort(self._server_error()) from None
        return await self._run(ctx, ops, reply_name, subject)

    @staticmethod
    def _note(ctx: _Ctx, action: tuple[str, str]) -> None:
        if action not in ctx.st.actions:
            ctx.st.actions.append(action)


def _split_words(text: str) -> list[str]:
    from mta.config.values import split_list

    return split_list(text)
