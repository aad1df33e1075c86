"""config.unimplemented - parameters mta knows by name but does not act on yet

SYNOPSIS
    from mta.config.unimplemented import UNIMPLEMENTED
    if name in UNIMPLEMENTED and cfg.get(name) != default: warn(...)

DESCRIPTION
    Postfix's parameter table (params.py) is declared whole, so that a
    Postfix main.cf reads without "unknown parameter" noise, but some of
    its features are not built yet. A name in UNIMPLEMENTED is one that
    no code reads: "mta check" and "mta start" warn "NAME is not
    implemented" when main.cf or a master.cf -o override gives it a
    value other than its default, so an operator never believes such a
    setting is in force. tests/unit/config/test_unimplemented.py keeps
    the set honest: a declared parameter must be read by the code or be
    listed here, and a listed one must not be read.

    AS_IF gives, for some of them, the value mta behaves as when it
    differs from the default: setting exactly that value ("biff = no",
    as Debian's main.cf does) is not warned, since it is in force.

    REFUSED gives values that ask for more security than mta can give:
    serving them with less would weaken what the operator asked for, so
    they are fatal problems (start and reload refuse), not warnings.

SECURITY
    Static data.
"""

from __future__ import annotations

# fmt: off
UNIMPLEMENTED: frozenset[str] = frozenset({
    # --- set or shown by the mail system itself; a main.cf value changes nothing
    "enable_long_queue_ids",        # queue ids are always the long, time-sortable form
    "process_name",                 # informational
    "readme_directory",             # informational: mta installs no README files
    "html_directory",               # informational: mta installs no HTML documentation
    # --- authorization of the local commands
    "setgid_group",                 # there is no setgid postdrop
    # --- local submission
    "local_login_sender_maps",      # sendmail -f is not checked per login (refused)
    "empty_address_local_login_sender_maps_lookup_key",  # no local_login_sender_maps
    # --- local delivery and addressing
    "allow_min_user",               # not consulted
    "best_mx_transport",            # no MX-to-self detection
    "biff",                         # no comsat notification
    "virtual_alias_address_length_limit",  # no length cap on virtual alias results
    # --- content inspection and filters
    "detect_8bit_encoding_header",  # not consulted
    "message_reject_characters",    # no per-character rejection
    "message_strip_characters",     # no per-character stripping
    "mime_boundary_length_limit",   # MIME boundaries are not length-checked
    # --- smtpd
    "allow_untrusted_routing",      # routed addresses are never authorized destinations
    "debug_peer_level",             # no per-peer verbose logging
    "debug_peer_list",              # no per-peer verbose logging
    "smtpd_client_port_logging",    # the client port is never logged
    "smtpd_forbid_bare_newline_reject_code",  # not consulted
    "smtpd_log_access_permit_actions",  # permit actions are not logged
    "smtpd_noop_commands",          # no extra NOOP-like commands
    # --- the TLS library: OpenSSL (through Python's ssl) decides these itself
    "smtpd_tls_always_issue_session_ids",  # OpenSSL's server session ids are always issued
    "tls_fast_shutdown_enable",     # asyncio never waits on the peer's TLS close at session end
    "tls_legacy_public_key_fingerprints",  # only the correct fingerprints of Postfix 2.9.6 on
    "smtpd_tls_dh512_param_file",   # no export ciphers (ignored by Postfix 3.6 on too)
    "tls_random_source",            # OpenSSL seeds its own PRNG from the system
    "tls_random_bytes",             # OpenSSL seeds its own PRNG from the system
    "tls_daemon_random_bytes",      # OpenSSL seeds its own PRNG from the system
    "tls_random_exchange_name",     # no PRNG exchange file: OpenSSL seeds itself
    "tls_random_prng_update_period",  # no PRNG exchange file: OpenSSL seeds itself
    "tls_random_reseed_period",     # OpenSSL reseeds its own PRNG
    "tls_config_file",              # OpenSSL reads its system openssl.cnf as Python loads it
    "tls_config_name",              # no per-application OpenSSL configuration section
    # --- smtp client
    "smtp_always_send_ehlo",        # not consulted (smtp_never_send_ehlo is)
    "smtp_body_checks",             # no outbound content checks
    "smtp_header_checks",           # no outbound content checks
    "smtp_mime_header_checks",      # no outbound content checks
    "smtp_nested_header_checks",    # no outbound content checks
    "smtp_defer_if_no_mx_address_found",  # not consulted
    "smtp_sasl_path",               # the built-in client has no SASL plug-in to configure
    "lmtp_sasl_path",               # the built-in client has no SASL plug-in to configure
    "smtp_tls_per_site",            # obsolete; smtp_tls_policy_maps is the table (refused)
    "lmtp_tls_per_site",            # obsolete; lmtp_tls_policy_maps is the table (refused)
    # --- queue manager and scheduler
    "default_delivery_slot_cost",   # no preemptive scheduler
    "default_delivery_slot_discount",  # no preemptive scheduler
    "default_delivery_slot_loan",   # no preemptive scheduler
    "default_minimum_delivery_slots",  # no preemptive scheduler
    "default_extra_recipient_limit",   # no per-transport recipient memory limits
    "default_recipient_limit",      # no per-transport recipient memory limits
    "default_recipient_refill_delay",  # no per-transport recipient memory limits
    "default_recipient_refill_limit",  # no per-transport recipient memory limits
    "default_transport_rate_delay",  # no per-transport rate delay
    "default_delivery_status_filter",  # delivery status is logged as reported
    "delay_logging_resolution_limit",  # not consulted
    "qmgr_clog_warn_time",          # no clog warnings
    "qmgr_fudge_factor",            # no fudge factor
    "qmgr_ipc_timeout",             # not consulted
    "qmgr_message_recipient_minimum",  # no per-message recipient minimum
    "transport_retry_time",         # not consulted
    "smtpd_use_tls",                # obsolete; smtpd_tls_security_level is read
    "smtpd_enforce_tls",            # obsolete; smtpd_tls_security_level is read (refused)
    # --- postscreen (its dummy SMTP engine has no STARTTLS)
    "postscreen_enforce_tls",       # no STARTTLS in the dummy engine (smtpd has it)
    "postscreen_use_tls",           # no STARTTLS in the dummy engine (smtpd has it)
    "postscreen_tls_security_level",  # no STARTTLS in the dummy engine (smtpd has it)
    "postscreen_upstream_proxy_protocol",  # no haproxy protocol (refused)
    "postscreen_upstream_proxy_timeout",  # no haproxy protocol
    "smtpd_upstream_proxy_protocol",  # no haproxy protocol (refused)
    "smtpd_upstream_proxy_timeout",  # no haproxy protocol
    # --- processes and environment
    "daemon_timeout",               # no watchdog on service requests yet
    "fork_attempts",                # the master does not retry a failed fork
    "fork_delay",                   # the master does not retry a failed fork
    "import_environment",           # the environment of services is not filtered
    "proxy_write_maps",             # proxymap serves reads only
    "trigger_timeout",              # not consulted
})
# fmt: on

# the value mta behaves as, where that is not the default: setting it is no warning
AS_IF: dict[str, str] = {
    "biff": "no",  # there is no comsat notification
    "allow_untrusted_routing": "no",  # user%site@relay is not a relay destination
}

# values that demand what mta cannot do: refused rather than served with less security
# ("*": any value other than the default, "/": any absolute path)
REFUSED: dict[str, tuple[str, ...]] = {
    # content inspection the operator relies on: mail would pass unscanned
    "message_reject_characters": ("*",),
    # obsolete form of smtpd_tls_security_level = encrypt: refused rather than ignored
    "smtpd_enforce_tls": ("*",),
    # a restriction on sendmail -f that would not be applied
    "local_login_sender_maps": ("*",),
    # the real client address would be lost: postscreen would screen the proxy
    "postscreen_upstream_proxy_protocol": ("*",),
    # the same for smtpd: every session would start with the proxy's header as a command
    "smtpd_upstream_proxy_protocol": ("*",),
    # OpenSSL settings (MinProtocol, CipherString ...) mta would not apply; "none" only
    # skips the system baseline, which mta keeps: a warning
    "tls_config_file": ("/",),
    "tls_config_name": ("*",),
    # TLS the operator asks for that mta cannot give: per-site TLS requirements in the
    # old table
    "smtp_tls_per_site": ("*",),
    "lmtp_tls_per_site": ("*",),
}
