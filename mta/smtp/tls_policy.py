"""smtp.tls_policy - the client TLS settings and the policy of one next hop

SYNOPSIS
    from mta.smtp.tls_policy import ClientTls, TlsPolicy
    tls = ClientTls.of(cfg, lmtp=False)       # the smtp_tls_* (lmtp_tls_*) parameters
    policy = tls.policy_for("example.com")    # smtp_tls_policy_maps, else main.cf
    policy.level, policy.match, policy.protocols, policy.error

DESCRIPTION
    ClientTls holds the main.cf side: smtp_tls_security_level, the
    certificate match lists (smtp_tls_verify_cert_match, default
    "hostname"; smtp_tls_secure_cert_match, default "nexthop,
    dot-nexthop"; smtp_tls_fingerprint_cert_match with
    smtp_tls_fingerprint_digest), the trust store (smtp_tls_CAfile,
    smtp_tls_CApath, tls_append_default_CA, smtp_tls_trust_anchor_file),
    protocols and cipher grades (opportunistic: smtp_tls_protocols,
    smtp_tls_ciphers, smtp_tls_exclude_ciphers; mandatory, for encrypt
    and above: smtp_tls_mandatory_protocols, smtp_tls_mandatory_ciphers
    plus smtp_tls_mandatory_exclude_ciphers), the client certificates
    (smtp_tls_chain_files, else smtp_tls_cert_file and
    smtp_tls_key_file, smtp_tls_eccert_file and smtp_tls_eckey_file, and
    the DSA pair smtp_tls_dcert_file and smtp_tls_dkey_file), smtp_tls_loglevel and
    smtp_tls_note_starttls_offer, smtp_tls_block_early_mail_reply
    (mta/smtp/client.py). The lmtp agent reads the lmtp_tls_* twins.

    When smtp_tls_security_level is empty, the parameters it replaced
    give the level as in Postfix: smtp_enforce_tls = yes gives "verify"
    (with smtp_tls_enforce_peername = yes, the default) or "encrypt",
    smtp_use_tls = yes gives "may"; otherwise there is no TLS.

    smtp_tls_wrappermode (lmtp_tls_wrappermode) asks for TLS from the
    first byte (SMTPS, "submissions" on port 465) instead of STARTTLS.
    It needs the level "encrypt" or stronger, as in Postfix: a weaker
    level (empty, none or may, in main.cf or in the policy table, or
    "may" decided by DANE) is raised to "encrypt", with a warning at
    mta check, so that such a session is never plain text and never
    served by a weaker TLS than encrypt's. The policy table has no
    attribute for it (Postfix has none either): a master.cf transport
    with -o smtp_tls_wrappermode=yes is the per-destination way.

    A TlsPolicy is what one next hop gets: a level and the effective
    match list, protocols, cipher grade, exclusions and trust-anchor
    files. policy_for(dest) looks dest up in smtp_tls_policy_maps as
    Postfix does: the next hop as given ("example.com",
    "[mail.example.com]:587"; without the LMTP "inet:"/"unix:"
    prefix), and for a bare domain then its parent domains as
    ".example.com", ".com". The value is a level followed by
    name=value attributes separated by blanks or commas: match=
    (colon-separated names and strategies; for "fingerprint",
    "|"-separated fingerprints; may repeat), protocols= and exclude=
    (colon-separated), ciphers= (a grade), tafile= (may repeat),
    servername= (the SNI name) and connection_reuse= (yes or no; see
    below). A table entry overrides the main.cf level.

    smtp_tls_connection_reuse (lmtp_tls_connection_reuse; the table's
    connection_reuse= wins) lets a TLS-encrypted connection into the
    connection cache for more deliveries, under the same rules as a
    plain-text one (mta/smtp/__init__.py). Off by default, as in
    Postfix: each delivery then has its own connection and handshake
    (a kept TLS session may still be resumed). Postfix passes such
    connections through tlsproxy and scache; mta keeps them in the
    smtp process that opened them (the scache service takes plain-text
    connections only).

    The SNI name (smtp_tls_servername, lmtp_tls_servername, or the
    table's servername=, which wins) is, as in Postfix: empty for none
    (the default), "hostname" for the server's host name (usually from
    the MX record), "nexthop" for the next-hop domain, or a DNS name in
    A-label form. A name that is none of these is a configuration
    problem: a warning at mta check, and the mail is deferred. At the
    DANE levels the server's host name is always sent (RFC 7672) and
    the setting is not used.

    An entry with an unknown level or attribute, or a table that fails
    for now, yields a policy whose error says why: the mail is
    deferred (4.7.5 "client TLS configuration problem"), with a
    warning, never sent under a weaker policy.

SECURITY
    Table values come from the administrator; next-hop names come from
    recipient domains (untrusted) and are only used as lookup keys and
    in log text.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from mta import log
from mta.config.params import PARAMS
from mta.maps import MapError, MapRetry, Maps
from mta.smtp.nexthop import NexthopError, parse_nexthop
from mta.smtp.tls_proto import protocol_range

TLS_POLICY_LEVELS = frozenset(
    {"none", "may", "encrypt", "fingerprint", "verify", "secure", "dane", "dane-only"}
)
TLS_MANDATORY_LEVELS = frozenset({"encrypt", "fingerprint", "verify", "secure", "dane-only"})
TLS_CA_LEVELS = frozenset({"verify", "secure"})  # trust chain checked against CAs
TLS_GRADES = ("export", "low", "medium", "high", "null")  # cipher grades, weakest first
TLS_POLICY_ATTRS = frozenset(
    {"match", "protocols", "ciphers", "exclude", "tafile", "servername", "connection_reuse"}
)
TLS_CONFIG_PROBLEM = "client TLS configuration problem"  # Postfix's reason text
TLS_WRAPPER_WEAK = frozenset({"", "none", "may"})  # levels wrapper mode raises to "encrypt"
POLICY_CACHE_LIMIT = 10000  # next hops whose policy one process remembers
_SPLIT_RE = re.compile(r"[\s,:]+")
_DNS_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
TLS_SNI_STRATEGIES = frozenset({"hostname", "nexthop"})  # SNI names that stand for others


def _param(lmtp: bool, name: str) -> str:
    alt = f"lmtp_{name}"
    return alt if lmtp and alt in PARAMS else f"smtp_{name}"


def split_words(text: str) -> list[str]:
    """Words separated by blanks, commas or colons (the main.cf form of these lists)."""
    return [w for w in _SPLIT_RE.split(text.strip()) if w]


@dataclass(frozen=True)
class TlsPolicy:
    """The TLS policy of one next hop; error set means: defer, do not connect."""

    level: str
    match: tuple[str, ...] = ()  # names and strategies, or fingerprints (lower-case hex)
    protocols: str = ""
    ciphers: str = "medium"
    exclude: tuple[str, ...] = ()
    tafiles: tuple[str, ...] = ()
    servername: str = ""
    error: str = ""  # why the policy cannot be served ("" when it can)
    system_cas: bool = False  # the system's CAs are trusted too (MTA-STS: the web's PKI)
    connection_reuse: bool = False  # a TLS connection may go into the connection cache

    @property
    def mandatory(self) -> bool:
        return self.level in TLS_MANDATORY_LEVELS

    @property
    def verifies(self) -> bool:
        """The peer's certificate must be checked (names, chain or fingerprint)."""
        return self.level in ("fingerprint", "verify", "secure")


def normalize_fingerprint(text: str) -> str:
    """A fingerprint as lower-case hex without colons (colons are optional, as in Postfix 3.6)."""
    return text.replace(":", "").strip().lower()


@dataclass
class ClientTls:
    """The main.cf TLS parameters of the smtp (or lmtp) client."""

    lmtp: bool
    level: str
    ca_file: str
    ca_path: str
    append_default_ca: bool
    trust_anchor_files: tuple[str, ...]
    verify_match: tuple[str, ...]
    secure_match: tuple[str, ...]
    fingerprint_match: tuple[str, ...]
    fingerprint_digest: str
    protocols: str
    mandatory_protocols: str
    ciphers: str
    mandatory_ciphers: str
    exclude: tuple[str, ...]
    mandatory_exclude: tuple[str, ...]
    cipherlists: dict[str, str]
    chain_files: tuple[str, ...]
    cert_pairs: tuple[tuple[str, str, str, str], ...]  # (cert param, cert, key param, key)
    loglevel: int
    note_starttls_offer: bool
    wildcard_multi_label: bool
    myhostname: str
    policy_maps: Maps | None
    policy_maps_error: str
    servername: str = ""  # smtp_tls_servername: the SNI name (empty: none)
    connection_reuse: bool = False  # smtp_tls_connection_reuse
    block_early_mail_reply: bool = False  # smtp_tls_block_early_mail_reply
    ssl_options: str = ""  # tls_ssl_options (common/tls_options.py)
    disable_workarounds: str = ""  # tls_disable_workarounds
    wrapper: bool = False  # smtp_tls_wrappermode: TLS from the first byte, no STARTTLS
    auto_curves: tuple[str, ...] = ()  # tls_eecdh_auto_curves (common/tls_curves.py)
    verify_depth: str = "9"  # smtp_tls_scert_verifydepth, checked in smtp/tls_verify.py
    _policies: dict = field(default_factory=dict, repr=False)  # next hop -> TlsPolicy
    contexts: dict = field(default_factory=dict, repr=False)  # see tls_verify.client_context
    _default: TlsPolicy | None = field(default=None, repr=False)  # when there is no table

    @classmethod
    def of(cls, cfg, lmtp: bool = False) -> ClientTls:
        def p(name: str) -> str:
            return _param(lmtp, name)

        maps, maps_error = None, ""
        if cfg.get(p("tls_policy_maps")).strip():
            try:
                maps = Maps.from_param(cfg, p("tls_policy_maps"))
            except MapError as exc:
                maps_error = str(exc)
        wrapper = cfg.get_bool(p("tls_wrappermode"))
        level = cfg.get(p("tls_security_level")).strip().lower() or obsolete_level(cfg, lmtp)
        return cls(
            lmtp=lmtp,
            level=wrapper_level(level) if wrapper else level,
            ca_file=cfg.get(p("tls_CAfile")).strip(),
            ca_path=cfg.get(p("tls_CApath")).strip(),
            append_default_ca=cfg.get_bool("tls_append_default_CA"),
            trust_anchor_files=tuple(cfg.get_list(p("tls_trust_anchor_file"))),
            verify_match=tuple(split_words(cfg.get(p("tls_verify_cert_match")))),
            secure_match=tuple(split_words(cfg.get(p("tls_secure_cert_match")))),
            fingerprint_match=tuple(
                normalize_fingerprint(f)
                for f in re.split(r"[\s,]+", cfg.get(p("tls_fingerprint_cert_match")))
                if f
            ),
            fingerprint_digest=cfg.get(p("tls_fingerprint_digest")).strip().lower(),
            protocols=cfg.get(p("tls_protocols")),
            mandatory_protocols=cfg.get(p("tls_mandatory_protocols")),
            ciphers=cfg.get(p("tls_ciphers")).strip().lower(),
            mandatory_ciphers=cfg.get(p("tls_mandatory_ciphers")).strip().lower(),
            exclude=tuple(split_words(cfg.get(p("tls_exclude_ciphers")))),
            mandatory_exclude=tuple(split_words(cfg.get(p("tls_mandatory_exclude_ciphers")))),
            cipherlists={g: cfg.get(f"tls_{g}_cipherlist") for g in TLS_GRADES},
            chain_files=tuple(cfg.get_list(p("tls_chain_files"))),
            cert_pairs=tuple(
                (c, cfg.get(c).strip(), k, cfg.get(k).strip())
                for c, k in (
                    (p("tls_cert_file"), p("tls_key_file")),
                    (p("tls_dcert_file"), p("tls_dkey_file")),
                    (p("tls_eccert_file"), p("tls_eckey_file")),
                )
            ),
            loglevel=cfg.get_int(p("tls_loglevel")),
            block_early_mail_reply=cfg.get_bool(p("tls_block_early_mail_reply")),
            note_starttls_offer=cfg.get_bool(p("tls_note_starttls_offer")),
            wildcard_multi_label=cfg.get_bool("tls_wildcard_matches_multiple_labels"),
            myhostname=cfg.get("myhostname").strip().lower(),
            policy_maps=maps,
            policy_maps_error=maps_error,
            servername=cfg.get(p("tls_servername")).strip(),
            connection_reuse=cfg.get_bool(p("tls_connection_reuse")),
            wrapper=wrapper,
            ssl_options=cfg.get("tls_ssl_options"),
            disable_workarounds=cfg.get("tls_disable_workarounds"),
            auto_curves=tuple(cfg.get_list("tls_eecdh_auto_curves")),
            verify_depth=cfg.get(p("tls_scert_verifydepth")).strip(),
        )

    def param(self, name: str) -> str:
        return _param(self.lmtp, name)

    # ------------------------------------------------------------- policies
    def make_policy(self, level: str, attrs: dict[str, list[str]] | None = None) -> TlsPolicy:
        """The policy for level with the table's attributes (name -> values) on top of main.cf."""
        attrs = attrs or {}
        if self.wrapper:
            level = wrapper_level(level)
        mandatory = level in TLS_MANDATORY_LEVELS
        if level == "fingerprint":
            if "match" in attrs:
                match = tuple(
                    normalize_fingerprint(f) for v in attrs["match"] for f in v.split("|") if f
                )
            else:
                match = self.fingerprint_match
        elif "match" in attrs:
            match = tuple(w for v in attrs["match"] for w in v.split(":") if w)
        elif level == "secure":
            match = self.secure_match
        else:
            match = self.verify_match
        if "protocols" in attrs:
            protocols = " ".join(attrs["protocols"])
        else:
            protocols = self.mandatory_protocols if mandatory else self.protocols
        if "ciphers" in attrs:
            ciphers = attrs["ciphers"][-1].strip().lower()
        else:
            ciphers = self.mandatory_ciphers if mandatory else self.ciphers
        if "exclude" in attrs:  # preempts both exclusion parameters
            exclude = tuple(w for v in attrs["exclude"] for w in v.split(":") if w)
        else:
            exclude = self.exclude + (self.mandatory_exclude if mandatory else ())
        tafiles = tuple(attrs.get("tafile", ())) or self.trust_anchor_files
        servername = attrs["servername"][-1] if "servername" in attrs else self.servername
        reuse = self.connection_reuse
        if "connection_reuse" in attrs:
            reuse = attrs["connection_reuse"][-1].lower() == "yes"
        return TlsPolicy(
            level, match, protocols, ciphers, exclude, tafiles, servername, connection_reuse=reuse
        )

    def default_policy(self) -> TlsPolicy:
        """The policy main.cf alone gives (no table entry)."""
        level = self.level or "none"
        policy = self.make_policy(level)
        if level != "none" and not sni_name_ok(policy.servername):
            why = f"{self.param('tls_servername')}: invalid SNI name: {policy.servername}"
            return TlsPolicy(level, error=why)
        return policy

    def policy_for(self, dest: str) -> TlsPolicy:
        """The policy for next hop dest: smtp_tls_policy_maps, else main.cf."""
        if self.policy_maps is None and not self.policy_maps_error:
            if self._default is None:
                self._default = self.default_policy()
            return self._default
        key = _policy_key(dest)
        cached = self._policies.get(key)
        if cached is not None:
            return cached
        policy = self._look_up(key)
        if len(self._policies) >= POLICY_CACHE_LIMIT:
            self._policies.clear()
        if policy is None:
            policy = self.default_policy()
        elif policy.error:
            log.warning("%s", policy.error)
            return policy  # not cached: a table fixed for now is read again next time
        self._policies[key] = policy
        return policy

    def _look_up(self, key: str) -> TlsPolicy | None:
        name = self.param("tls_policy_maps")
        if self.policy_maps_error:
            return TlsPolicy("none", error=f"{name}: {self.policy_maps_error}")
        if not self.policy_maps or not key:
            return None
        for candidate in _policy_keys(key):
            try:
                value = self.policy_maps.lookup(candidate)
            except MapRetry as exc:
                return TlsPolicy(
                    "none", error=f'{name}: next-hop destination "{key}": lookup error: {exc}'
                )
            if value is not None:
                return self.parse_entry(value, f'{name}, next-hop destination "{key}"')
        return None

    def parse_entry(self, value: str, where: str) -> TlsPolicy:
        """A table value ("verify match=hostname:nexthop ciphers=high") as a policy."""
        words = [w for w in re.split(r"[\s,]+", value.strip()) if w]
        if not words:
            return TlsPolicy("none", error=f"{where}: empty TLS policy")
        level = words[0].lower()
        if level not in TLS_POLICY_LEVELS:
            return TlsPolicy("none", error=f'{where}: invalid TLS security level "{words[0]}"')
        attrs: dict[str, list[str]] = {}
        for word in words[1:]:
            name, eq, val = word.partition("=")
            name = name.lower()
            if not eq or name not in TLS_POLICY_ATTRS:
                return TlsPolicy(level, error=f'{where}: invalid attribute "{word}"')
            attrs.setdefault(name, []).append(val)
        if level == "none" and attrs:
            log.warning("%s: attributes ignored with TLS security level none", where)
            attrs = {}
        reuse = attrs.get("connection_reuse", [])
        if reuse and reuse[-1].lower() not in ("yes", "no"):
            return TlsPolicy(level, error=f'{where}: invalid connection_reuse value "{reuse[-1]}"')
        policy = self.make_policy(level, attrs)
        problem = policy_problem(policy, self)
        if problem:
            return TlsPolicy(level, error=f"{where}: {problem}")
        return policy


def obsolete_level(cfg, lmtp: bool = False) -> str:
    """The level Postfix's pre-2.3 parameters give when smtp_tls_security_level is empty:
    smtp_enforce_tls (verify with smtp_tls_enforce_peername, else encrypt), smtp_use_tls
    (may), else none ("")."""
    if cfg.get_bool(_param(lmtp, "enforce_tls")):
        return "verify" if cfg.get_bool(_param(lmtp, "tls_enforce_peername")) else "encrypt"
    return "may" if cfg.get_bool(_param(lmtp, "use_tls")) else ""


def wrapper_level(level: str) -> str:
    """The level under wrapper mode: "encrypt" at least (Postfix requires it)."""
    return "encrypt" if level in TLS_WRAPPER_WEAK else level


def policy_problem(policy: TlsPolicy, tls: ClientTls) -> str:
    """Why a policy's protocols, cipher grade or digest are unusable, or ""."""
    if policy.level in ("none", ""):
        return ""
    try:
        protocol_range(policy.protocols)
    except ValueError as exc:
        return f"invalid TLS protocols: {exc}"
    if policy.ciphers not in TLS_GRADES:
        return f'invalid TLS cipher grade "{policy.ciphers}"'
    if not sni_name_ok(policy.servername):
        return f'invalid servername "{policy.servername}"'
    if policy.level == "fingerprint":
        if tls.fingerprint_digest not in hashlib.algorithms_available:
            return f"unknown {tls.param('tls_fingerprint_digest')}: {tls.fingerprint_digest}"
    return ""


def sni_name_ok(name: str) -> bool:
    """True for an SNI setting Postfix accepts: empty, a strategy, or a DNS name (A-labels)."""
    low = name.lower()
    if not low or low in TLS_SNI_STRATEGIES:
        return True
    labels = low.rstrip(".").split(".")
    if len(low) > 253 or len(labels) < 1:
        return False
    return all(_DNS_LABEL_RE.match(label) for label in labels)


def nexthop_name(dest: str, lmtp: bool, myhostname: str) -> str:
    """The next-hop domain the "nexthop" strategies verify: no prefix, brackets or
    port; $myhostname for LMTP over a UNIX-domain socket."""
    try:
        hop = parse_nexthop(dest, 0, lmtp)
    except NexthopError:
        return dest.strip().lower()
    return myhostname if hop.unix else hop.host.lower()


def _policy_key(dest: str) -> str:
    text = dest.strip().lower()
    for prefix in ("inet:", "unix:"):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def _policy_keys(key: str) -> list[str]:
    """key, then for a bare domain its parent domains with a leading dot."""
    keys = [key]
    if key.startswith("[") or ":" in key or "/" in key:
        return keys
    rest = key
    while "." in rest:
        rest = rest.split(".", 1)[1]
        if rest:
            keys.append("." + rest)
    return keys
