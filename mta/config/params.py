"""config.params - every main.cf parameter mta knows: name, type, default, doc

SYNOPSIS
    from mta.config.params import PARAMS, per_transport_default
    PARAMS["myhostname"].kind        # "str"

DESCRIPTION
    One table, Postfix's names and defaults. A default is written as
    postconf -d prints it and may refer to other parameters with $name.
    Defaults marked derived are computed on this host at run time by
    mta.config.derive (myhostname, mydomain, mynetworks, mail_owner ...).

    Kinds: str, int, bool, time (seconds; a bare number takes the
    parameter's unit), size (bytes), list (comma/space separated), maps
    (a list of type:name lookup tables).

    TRANSPORT_suffix parameters (smtp_destination_concurrency_limit and
    the like) exist for every master.cf transport: per_transport_default()
    gives their defaults.

SECURITY
    Static data.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("str", "int", "bool", "time", "size", "list", "maps")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    default: str
    doc: str
    derived: bool = False
    unit: str = "s"  # time parameters: unit of a bare number
    min: int | None = None
    max: int | None = None


def _time_unit(default: str) -> str:
    return default[-1] if default and default[-1] in "smhdw" else "s"


def _table(rows: list[tuple]) -> dict[str, Param]:
    table: dict[str, Param] = {}
    for row in rows:
        name, kind, default, doc, *extra = row
        opts = extra[0] if extra else {}
        if kind == "time" and "unit" not in opts:
            opts = dict(opts, unit=_time_unit(default))
        assert kind in KINDS, name
        assert name not in table, name
        table[name] = Param(name, kind, default, doc, **opts)
    return table


DERIVED = {"derived": True}

# fmt: off
PARAMS: dict[str, Param] = _table([
    # --- identity and addressing
    ("myhostname", "str", "", "fully-qualified name of this host", DERIVED),
    ("mydomain", "str", "", "domain part of myhostname", DERIVED),
    ("myorigin", "str", "$myhostname", "domain appended to locally posted bare user names"),
    ("mydestination", "list", "$myhostname, localhost.$mydomain, localhost",
     "domains delivered locally"),
    ("mynetworks_style", "str", "host", "host, subnet or class: how mynetworks is derived"),
    ("mynetworks", "list", "", "trusted client networks", DERIVED),
    ("inet_interfaces", "list", "all", "addresses the network services listen on"),
    ("inet_protocols", "list", "all", "ipv4, ipv6 or all"),
    ("recipient_delimiter", "str", "", "characters that separate user from address extension"),
    ("parent_domain_matches_subdomains", "list",
     "debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,"
     "qmqpd_authorized_clients,relay_domains,smtpd_access_maps",
     "features where example.com also matches sub.example.com"),
    ("relay_domains", "list", "", "remote domains this host relays mail to"),
    # --- files, owners and processes
    ("config_directory", "str", "/etc/mta", "where main.cf and master.cf live"),
    ("queue_directory", "str", "/var/spool/mta", "root of the mail queue"),
    ("data_directory", "str", "/var/lib/mta", "where services keep writable data"),
    ("mail_owner", "str", "", "unprivileged account that owns the queue and runs services",
     DERIVED),
    ("default_privs", "str", "nobody", "account for deliveries to files and commands"),
    ("default_process_limit", "int", "100", "default maxproc for master.cf services",
     {"min": 1}),
    ("default_database_type", "str", "lmdb", "table type when none is given"),
    ("maillog_file", "str", "", "log file; empty means syslog (stdout in start-fg)"),
    ("syslog_name", "str", "mta", "prefix of every log tag"),
    ("syslog_facility", "str", "mail", "syslog facility"),
    ("proxy_read_maps", "list",
     "$local_recipient_maps $mydestination $virtual_alias_maps $virtual_alias_domains "
     "$virtual_mailbox_maps $virtual_mailbox_domains $relay_recipient_maps $relay_domains "
     "$canonical_maps $sender_canonical_maps $recipient_canonical_maps $relocated_maps "
     "$transport_maps $mynetworks $alias_maps",
     "tables the proxymap service may open for reading"),
    ("max_idle", "time", "100s", "how long an idle service process waits for a client"),
    ("max_use", "int", "100", "connections a service process handles before it exits",
     {"min": 1}),
    ("daemon_timeout", "time", "18000s", "longest time a service may spend on one request"),
    ("ipc_timeout", "time", "3600s", "longest wait on an internal socket"),
    ("process_id_directory", "str", "pid", "pid files, relative to queue_directory"),
])
# fmt: on

# TRANSPORT_suffix parameters: default template with the "default_" form.
PER_TRANSPORT: dict[str, tuple[str, str]] = {
    "destination_concurrency_limit": ("int", "$default_destination_concurrency_limit"),
    "destination_recipient_limit": ("int", "$default_destination_recipient_limit"),
    "initial_destination_concurrency": ("int", "$initial_destination_concurrency"),
    "destination_concurrency_failed_cohort_limit":
        ("int", "$default_destination_concurrency_failed_cohort_limit"),
    "destination_concurrency_negative_feedback":
        ("str", "$default_destination_concurrency_negative_feedback"),
    "destination_concurrency_positive_feedback":
        ("str", "$default_destination_concurrency_positive_feedback"),
    "destination_rate_delay": ("time", "$default_destination_rate_delay"),
    "recipient_limit": ("int", "$default_recipient_limit"),
    "extra_recipient_limit": ("int", "$default_extra_recipient_limit"),
    "recipient_refill_limit": ("int", "$default_recipient_refill_limit"),
    "recipient_refill_delay": ("time", "$default_recipient_refill_delay"),
    "time_limit": ("time", "$command_time_limit"),
}


def per_transport_default(name: str, transports: set[str] | None = None) -> Param | None:
    """Return a synthetic Param for TRANSPORT_suffix names, else None.

    When transports is given, only those transport names qualify.
    """
    for suffix, (kind, default) in PER_TRANSPORT.items():
        if name.endswith("_" + suffix):
            transport = name[: -len(suffix) - 1]
            if not transport or (transports is not None and transport not in transports):
                continue
            if default == "$" + name:
                continue
            return Param(name, kind, default, f"{suffix.replace('_', ' ')} for {transport}")
    return None
