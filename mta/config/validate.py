"""config.validate - every problem of main.cf and master.cf, each with its file and line

SYNOPSIS
    from mta.config.validate import config_problems, read_services
    services, problems = read_services(cfg)
    problems += config_problems(cfg, services, open_tables=True)
    for p in problems:
        print(("fatal: " if p.fatal else "warning: ") + str(p))

DESCRIPTION
    config_problems() looks at the configuration as every service will
    see it: main.cf alone, and main.cf under the "-o" overrides of each
    master.cf service. In each view it checks every parameter that is
    set there:

        a value of a known kind converts (int, size, time, bool, list)
        and its $names expand without a loop;
        a parameter with a fixed set of values (CHOICES: mynetworks_style,
        smtp_tls_security_level ...) has one of them, and a concurrency
        feedback is a number or N/concurrency;
        the TLS session caches (smtp_tls_session_cache_database,
        lmtp_..., smtpd_...) and the MTA-STS policy cache are lmdb: tables;
        the address lists (mynetworks, qmqpd_authorized_clients ...)
        hold only addresses, networks without host bits, host names,
        /files and tables;
        default_verp_delimiters is two characters that
        verp_delimiter_filter allows (checked when either is set);
        each type:name in a table list or a match list names a table
        type mta has, and with open_tables the table opens (except the
        ones services write, WRITTEN_TABLES; one of OPTIONAL_TABLES
        that does not open is only a warning).

    Those are fatal, and so is a parameter set to a value that asks for
    more security than mta can give (mta.config.unimplemented.REFUSED).
    Warnings: where smtpd offers STARTTLS (smtpd_tls_security_level may
    or encrypt), a server certificate or key that cannot be loaded,
    naming the parameter and the file (smtpd then answers STARTTLS
    with 454 4.7.0, as Postfix does); where the smtp or lmtp client
    uses TLS, a CA file, client certificate, protocol list, cipher
    grade or fingerprint digest it cannot use (mta/smtp/tls_verify.py;
    mail that needs TLS is then deferred); with smtpd_sasl_auth_enable, a
    users table or Dovecot socket that is not there (smtpd answers AUTH
    with 454 4.7.0), while a backend that cannot be used at all
    (smtpd_sasl_type = cyrus, an unknown security option) is fatal; a
    DKIM key of dkim_key_table that cannot be used or that mail_owner
    cannot read, and a key name dkim_signing_table lists that the key
    table lacks (common/dkim_keys.setup_problems); a suppression_map
    that is not lmdb: or suppression_classes naming an unknown class
    (fatal), an event_log_file whose directory is missing and a
    bounce_class_maps rule whose result is not a class (warnings,
    common/suppress.setup_problems); a shaping_table limit or
    shaping_reply_maps action that does not parse (qmgr/shaping.problems,
    fatal); an egress source, pool or warm-up
    schedule that cannot be used, such as an address not configured on
    this host (fatal; a pool egress_pool_maps names but egress_pools
    lacks is a warning; common/egress.setup_problems); a
    main.cf name that no parameter has and that no setting uses as
    $name (nor smtpd_restriction_classes lists),
    which is probably a typo, and a parameter from
    mta.config.unimplemented set to something other than its default.

    read_services() parses master.cf and returns the services, or the
    parse problem.

SECURITY
    Reads the administrator's files and, with open_tables, opens the
    tables they name, read-only.

SEE ALSO
    mta/config/unimplemented.py; mta/cli/postfix.py (check, start, reload)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mta._speedups.scheduler_ref import parse_feedback
from mta.common.match_list import AddrList
from mta.common.tls_proto import SYNTAX_BY_SUFFIX as TLS_SYNTAX
from mta.common.verp import delimiters_problem
from mta.config.errors import ConfigError
from mta.config.master_cf import ServiceEntry, read_master_cf
from mta.config.params import PARAMS, per_transport_default
from mta.config.unimplemented import AS_IF, REFUSED, UNIMPLEMENTED
from mta.config.values import split_list
from mta.maps import MapError, open_map, split_spec, table_types

# parameters that hold host and network lists (common.match_list.AddrList)
ADDRESS_LISTS = (
    "mynetworks",
    "debug_peer_list",
    "qmqpd_authorized_clients",
    "smtpd_authorized_xclient_hosts",
    "smtpd_forbid_bare_newline_exclusions",
    "smtpd_sasl_exceptions_networks",
    "smtpd_authorized_verp_clients",
    "authorized_verp_clients",
)
# the VERP delimiters and the filter they must pass (common/verp.py)
VERP_PARAMS = ("default_verp_delimiters", "verp_delimiter_filter")
# parameters that take one word (or, for lists, words) out of a fixed set; "" is the default
CHOICES: dict[str, tuple[str, ...]] = {
    "mynetworks_style": ("host", "subnet", "class"),
    "inet_protocols": ("all", "ipv4", "ipv6"),
    "smtp_address_preference": ("any", "ipv4", "ipv6"),
    "smtp_host_lookup": ("dns", "native"),
    "header_from_format": ("standard", "obsolete"),
    "notify_classes": (
        "bounce",
        "2bounce",
        "data",
        "delay",
        "policy",
        "protocol",
        "resource",
        "software",
    ),
    "smtpd_tls_security_level": ("", "none", "may", "encrypt"),
    "smtp_tls_security_level": (
        "",
        "none",
        "may",
        "encrypt",
        "dane",
        "dane-only",
        "fingerprint",
        "verify",
        "secure",
    ),
}
CHOICES["lmtp_tls_security_level"] = CHOICES["smtp_tls_security_level"]
CHOICES["suppression_scope"] = ("global", "sender_domain")
CHOICES["suppression_action"] = ("reject", "drop")
CHOICES["smtp_sasl_type"] = ("cyrus",)  # Postfix's only client type: the built-in client
CHOICES["lmtp_sasl_type"] = CHOICES["smtp_sasl_type"]
CHOICES["smtp_dns_support_level"] = ("", "disabled", "enabled", "dnssec")
CHOICES["lmtp_dns_support_level"] = CHOICES["smtp_dns_support_level"]
CHOICES["tls_dane_digests"] = ("sha256", "sha512", "sha256=1", "sha512=2")
CHOICES["smtp_tls_dane_insecure_mx_policy"] = ("", "may", "encrypt", "dane")
for _test in ("greet", "denylist", "dnsbl", "pipelining", "non_smtp_command", "bare_newline"):
    CHOICES[f"postscreen_{_test}_action"] = ("ignore", "enforce", "drop")
CHOICES["smtpd_tls_eecdh_grade"] = ("auto", "strong", "ultra", "none")
CHOICES["dkim_failure_action"] = ("defer", "send")
CHOICES["dkim_canonicalization"] = (
    "relaxed/relaxed",
    "relaxed/simple",
    "simple/relaxed",
    "simple/simple",
    "relaxed",
    "simple",
)
# OpenSSL's ticket key (common/tls_ticket.py) is AES-256-CBC: aes-128-cbc gets that too
CHOICES["tls_session_ticket_cipher"] = ("", "aes-256-cbc", "aes-128-cbc")
# TRANSPORT_ suffixes written in qmgr's feedback notation ("1", "1/concurrency")
FEEDBACK_SUFFIXES = (
    "_destination_concurrency_positive_feedback",
    "_destination_concurrency_negative_feedback",
)
# caches kept in an LMDB file the service writes: lmdb:PATH (hash: and btree: name the same
# file): tlsmgr's TLS sessions, the smtp client's MTA-STS policies
LMDB_TABLES = frozenset(
    {
        "smtp_tls_session_cache_database",
        "lmtp_tls_session_cache_database",
        "smtpd_tls_session_cache_database",
        "smtp_tls_mta_sts_cache_database",
        "suppression_map",
        "egress_state_map",
    }
)
LMDB_TABLE_TYPES = ("lmdb", "hash", "btree")
# tables a service or command writes: only their type is checked, never opened
WRITTEN_TABLES = frozenset({"address_verify_map", "alias_database", "proxy_write_maps"})
# tables whose absence only defers mail (local delivery), as in Postfix: a warning
OPTIONAL_TABLES = frozenset({"alias_maps"})
# master.cf commands whose service names get TRANSPORT_* parameters
DELIVERY_AGENTS = frozenset(
    {"smtp", "lmtp", "local", "virtual", "pipe", "error", "discard", "bouncein"}
)

_REF_RE = re.compile(r"\$(?:([A-Za-z0-9_]+)|[{(]\s*([A-Za-z0-9_]+))")
_TABLE_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):(.+)\Z", re.DOTALL)


@dataclass(frozen=True)
class Problem:
    """One finding: "PATH, line N: message"; fatal ones stop start and reload."""

    message: str
    path: str | None = None
    line: int | None = None
    fatal: bool = True

    def __str__(self) -> str:
        if not self.path:
            return self.message
        where = self.path if not self.line else f"{self.path}, line {self.line}"
        return f"{where}: {self.message}"

    @classmethod
    def from_error(cls, exc: ConfigError) -> Problem:
        text = f"parameter {exc.param}: {exc.message}" if exc.param else exc.message
        return cls(text, exc.path, exc.line)


def read_services(cfg) -> tuple[list[ServiceEntry], list[Problem]]:
    """Parse master.cf: (services, []) or ([], [the problem])."""
    try:
        limit = cfg.get_int("default_process_limit")
    except ConfigError:
        limit = 100  # reported with the other values
    try:
        return read_master_cf(cfg.master_cf, limit), []
    except ConfigError as exc:
        return [], [Problem.from_error(exc)]


def transport_names(services: list[ServiceEntry]) -> set[str]:
    """Service names of the delivery agents in master.cf (TRANSPORT_* prefixes)."""
    return {s.name for s in services if s.command in DELIVERY_AGENTS and s.type == "unix"}


def spawn_param_names(services: list[ServiceEntry]) -> set[str]:
    """${service}_time_limit of each spawn(8) service in master.cf."""
    return {f"{s.name}_time_limit" for s in services if s.command == "spawn"}


def referenced_names(cfg, services: list[ServiceEntry]) -> set[str]:
    """Names used as $name in main.cf, master.cf, a conditional default, or listed as
    restriction classes; and the spawn services' time limits."""
    texts = [e.value for e in cfg.entries.values()]
    # old names a default still honours (postscreen_blacklist_action ...)
    texts.extend(p.default for p in PARAMS.values() if "?{" in p.default)
    for s in services:
        texts.extend(s.overrides.values())
        texts.extend(s.args)
    out: set[str] = set()
    for text in texts:
        for m in _REF_RE.finditer(text):
            out.add(m.group(1) or m.group(2))
    try:
        out.update(cfg.get_list("smtpd_restriction_classes"))
    except ConfigError:
        pass
    return out | spawn_param_names(services)


def _uses(text: str, names) -> bool:
    return any((m.group(1) or m.group(2)) in names for m in _REF_RE.finditer(text))


def _where(cfg, name: str) -> tuple[str | None, int | None]:
    path, line = cfg.source(name)
    return path or cfg.main_cf, line


def _table_problem(spec: str, cfg, open_tables: bool) -> tuple[str, bool] | None:
    """(why the table spec is bad, whether it merely did not open), or None."""
    kind, name = split_spec(spec, cfg)
    if kind == "proxy":  # the proxymap service may not run now: check what it would open
        kind, name = split_spec(name, cfg)
        if kind == "proxy":
            return f"{spec}: proxy: of proxy: is not allowed", False
    if kind not in table_types():
        return f"{spec}: unsupported dictionary type: {kind}", False
    if open_tables:
        try:
            open_map(f"{kind}:{name}", cfg)
        except MapError as exc:
            return str(exc), True
        except (OSError, ValueError) as exc:
            return f"{spec}: {exc}", True
    return None


def _value_problems(cfg, name: str, open_tables: bool) -> list[tuple[str, bool]]:
    """Problems of one parameter's value in one view (raises ConfigError for kinds)."""
    p = PARAMS.get(name) or per_transport_default(name)
    open_tables = open_tables and name not in WRITTEN_TABLES
    out: list[tuple[str, bool]] = []  # (why, fatal)
    if p is not None and p.kind != "str":
        cfg.get_typed(name)
    value = cfg.get(name)
    if name in CHOICES:
        words = split_list(value) if p is not None and p.kind == "list" else [value.strip()]
        allowed = CHOICES[name]
        for word in words:
            if word.lower() not in allowed:
                out.append(
                    (f'bad value "{word}" (expected {" or ".join(a for a in allowed if a)})', True)
                )
    for suffix, check in TLS_SYNTAX.items():
        if name.endswith(suffix):  # protocol lists, cipher grades, exclusions
            try:
                check(value)
            except ValueError as exc:
                out.append((str(exc), True))
    if name.endswith(FEEDBACK_SUFFIXES):
        try:
            parse_feedback(value)
        except ValueError as exc:
            out.append((str(exc), True))
    if name in ADDRESS_LISTS:
        out.extend((why, True) for why in _address_problems(value))
    if name in VERP_PARAMS:
        why = _verp_problem(cfg, name)
        if why:
            out.append((why, True))
    if name in LMDB_TABLES and value.strip():
        kind, _, path = value.strip().partition(":")
        if kind.lower() not in LMDB_TABLE_TYPES or not path:
            out.append((f'bad value "{value.strip()}" (expected lmdb:PATH)', True))
    if p is not None and p.kind in ("list", "maps"):
        items = split_list(value)
        for i, item in enumerate(items):
            if i and items[i - 1].lower() == "check_policy_service":
                continue  # a policy server, not a table: smtpd's own check parses it
            spec = item[1:] if item.startswith("!") else item
            if p.kind == "maps" or (_TABLE_RE.match(spec) and not spec.startswith("[")):
                found = _table_problem(spec, cfg, open_tables)
                if found:
                    why, not_opened = found
                    out.append((why, not (not_opened and name in OPTIONAL_TABLES)))
    return out


def _verp_problem(cfg, name: str) -> str | None:
    """default_verp_delimiters must be two characters of verp_delimiter_filter."""
    delims, allowed = cfg.get("default_verp_delimiters"), cfg.get("verp_delimiter_filter")
    why = delimiters_problem(delims, allowed)
    if why is None:
        return None
    if name == "verp_delimiter_filter":
        return f'default_verp_delimiters "{delims}" do not pass it: {why}'
    return f'{why} in "{delims}" (expected two characters from "{allowed}")'


def _address_problems(value: str) -> list[str]:
    out = []
    for item in split_list(value):
        bare = item[1:] if item.startswith("!") else item
        if bare.startswith("/") or (_TABLE_RE.match(bare) and not bare.startswith("[")):
            continue  # files are read and tables opened by the table checks
        try:
            AddrList([bare])
        except MapError as exc:
            out.append(str(exc))
    return out


def _check_view(cfg, names, open_tables: bool, seen: set[str]) -> list[Problem]:
    out: list[Problem] = []
    for name in names:
        path, line = _where(cfg, name)
        try:
            reasons = _value_problems(cfg, name, open_tables)
        except ConfigError as exc:
            problem = Problem.from_error(exc)
            if str(problem) not in seen:
                seen.add(str(problem))
                out.append(problem)
            continue
        for why, fatal in reasons:
            problem = Problem(f"parameter {name}: {why}", path, line, fatal)
            if str(problem) not in seen:
                seen.add(str(problem))
                out.append(problem)
    return out


def _tls_problems(cfg, seen: set[str]) -> list[Problem]:
    """smtpd's STARTTLS certificates, loaded as smtpd will (warnings)."""
    from mta.smtpd.tls import setup_problems

    out = []
    try:
        found = setup_problems(cfg)
    except ConfigError:
        return []  # the value problem is reported by _check_view
    for name, why in found:
        path, line = _where(cfg, name)
        problem = Problem(f"parameter {name}: {why}", path, line, fatal=False)
        if str(problem) not in seen:
            seen.add(str(problem))
            out.append(problem)
    return out


def _client_tls_problems(cfg, seen: set[str]) -> list[Problem]:
    """The smtp and lmtp clients' TLS settings, built as the clients will (warnings)."""
    from mta.smtp.tls_verify import client_setup_problems

    return _setup_problems(
        cfg, seen, lambda c: [(name, why, False) for name, why in client_setup_problems(c)]
    )


def _client_sasl_problems(cfg, seen: set[str]) -> list[Problem]:
    """The smtp and lmtp clients' SASL options and auth cache (mta/smtp/sasl.py)."""
    from mta.smtp.sasl import client_setup_problems

    return _setup_problems(cfg, seen, client_setup_problems)


def _dkim_problems(cfg, seen: set[str]) -> list[Problem]:
    """DKIM keys that cannot be used, key names the key table lacks: warnings."""
    from mta.common.dkim_keys import setup_problems

    return _setup_problems(cfg, seen, setup_problems)


def _suppression_problems(cfg, seen: set[str]) -> list[Problem]:
    """The suppression list, its classes, the event log, the bounce class tables."""
    from mta.common.suppress import setup_problems

    return _setup_problems(cfg, seen, setup_problems)


def _egress_problems(cfg, seen: set[str]) -> list[Problem]:
    """Egress sources, pools and warm-up schedules (common/egress.setup_problems)."""
    from mta.common.egress import setup_problems

    return _setup_problems(cfg, seen, setup_problems)


def _milter_problems(cfg, seen: set[str]) -> list[Problem]:
    """smtpd_milters, non_smtpd_milters and milter_* settings that do not parse: fatal."""
    from mta.milter.settings import setup_problems

    return _setup_problems(cfg, seen, setup_problems)


def _shaping_problems(cfg, seen: set[str]) -> list[Problem]:
    """shaping_table limits and shaping_reply_maps actions that do not parse: fatal."""
    from mta.qmgr.shaping import problems

    return _setup_problems(cfg, seen, problems)


def _spawn_problems(cfg, services: list[ServiceEntry]) -> list[Problem]:
    """spawn(8) services whose user= or argv= the service would refuse: warnings."""
    from mta.spawn import attribute_problem

    out = []
    for s in services:
        if s.command == "spawn":
            why = attribute_problem(s.args, cfg.get("mail_owner"))
            if why:
                out.append(Problem(f"service {s.key}: {why}", s.path, s.line, fatal=False))
    return out


def _sasl_problems(cfg, seen: set[str]) -> list[Problem]:
    """smtpd's SMTP AUTH settings: an unusable backend is fatal, a missing table a warning."""
    from mta.smtpd.sasl import setup_problems

    return _setup_problems(cfg, seen, setup_problems)


def _setup_problems(cfg, seen: set[str], find) -> list[Problem]:
    """Problems a service's own set-up check finds, as (param, why, fatal), once each."""
    out = []
    try:
        found = find(cfg)
    except ConfigError:
        return []  # the value problem is reported by _check_view
    for name, why, fatal in found:
        path, line = _where(cfg, name)
        problem = Problem(f"parameter {name}: {why}", path, line, fatal=fatal)
        if str(problem) not in seen:
            seen.add(str(problem))
            out.append(problem)
    return out


def unimplemented_setting(cfg, name: str) -> Problem | None:
    """A warning when name is not implemented and cfg sets it away from its default."""
    if name not in UNIMPLEMENTED:
        return None
    try:
        value = cfg.get(name)
        default = cfg.expand(cfg.default(name) or "")
    except ConfigError:
        return None
    if value.strip() in (default.strip(), AS_IF.get(name)):
        return None
    path, line = _where(cfg, name)
    refused = REFUSED.get(name, ())
    if (
        "*" in refused
        or value.strip().lower() in refused
        or ("/" in refused and value.strip().startswith("/"))
    ):
        return Problem(
            f"{name} = {value.strip()} is not implemented, and mta would give less "
            "security than it asks for; refused",
            path,
            line,
        )
    return Problem(
        f"{name} is not implemented: the setting {name} = {cfg.raw(name)} has no effect",
        path,
        line,
        fatal=False,
    )


def config_problems(
    cfg, services: list[ServiceEntry] | None = None, *, open_tables: bool = False
) -> list[Problem]:
    """Every problem of cfg and of each service's view of it; see the module docstring."""
    if services is None:
        services, out = read_services(cfg)
    else:
        out = []
    seen: set[str] = set()
    transports = transport_names(services)
    referenced = referenced_names(cfg, services)
    out.extend(_check_view(cfg, list(cfg.entries), open_tables, seen))
    out.extend(_tls_problems(cfg, seen))
    out.extend(_client_tls_problems(cfg, seen))
    out.extend(_sasl_problems(cfg, seen))
    out.extend(_client_sasl_problems(cfg, seen))
    out.extend(_dkim_problems(cfg, seen))
    out.extend(_suppression_problems(cfg, seen))
    out.extend(_shaping_problems(cfg, seen))
    out.extend(_egress_problems(cfg, seen))
    out.extend(_spawn_problems(cfg, services))
    out.extend(_milter_problems(cfg, seen))
    for name, e in cfg.entries.items():
        if name in PARAMS or per_transport_default(name, transports) or name in referenced:
            continue
        out.append(Problem(f"unused parameter: {name}={e.value}", e.path, e.line, fatal=False))
    for name in cfg.entries:
        problem = unimplemented_setting(cfg, name)
        if problem is not None:
            out.append(problem)
    for s in services:
        if not s.overrides:
            continue
        view = cfg.with_overrides(s.overrides, where=(s.path, s.line))
        # the overridden names, and the main.cf settings that use them
        names = list(s.overrides) + [
            n
            for n, e in cfg.entries.items()
            if n not in s.overrides and _uses(e.value, s.overrides)
        ]
        out.extend(_check_view(view, names, open_tables, seen))
        if any(n.startswith(("smtpd_tls_", "tls_")) for n in s.overrides):
            out.extend(_tls_problems(view, seen))
        if any(n.startswith(("smtp_tls_", "lmtp_tls_", "tls_")) for n in s.overrides):
            out.extend(_client_tls_problems(view, seen))
        if any(n.startswith(("smtpd_sasl_", "smtpd_tls_auth")) for n in s.overrides):
            out.extend(_sasl_problems(view, seen))
        if any(n.startswith(("smtp_sasl_", "lmtp_sasl_")) for n in s.overrides):
            out.extend(_client_sasl_problems(view, seen))
        if any("milter" in n for n in s.overrides):
            out.extend(_milter_problems(view, seen))
        for name in s.overrides:
            known = name in PARAMS or per_transport_default(name, transports)
            if not known and name not in referenced and name not in cfg.entries:
                out.append(
                    Problem(
                        f"service {s.key}: unused parameter: {name}={s.overrides[name]}",
                        s.path,
                        s.line,
                        fatal=False,
                    )
                )
            problem = unimplemented_setting(view, name)
            if problem is not None:
                out.append(problem)
    return out


def config_errors(cfg, services: list[ServiceEntry] | None = None) -> list[Problem]:
    """The fatal problems only, without opening tables (what master and services check)."""
    return [p for p in config_problems(cfg, services) if p.fatal]
