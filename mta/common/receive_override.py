"""common.receive_override - receive_override_options and internal_mail_filter_classes

SYNOPSIS
    from mta.common.receive_override import receive_overrides, milters_disabled
    opts = receive_overrides(cfg)        # frozenset of option names
    if NO_HEADER_BODY_CHECKS in opts: ...
    if milters_disabled(cfg): ...        # smtpd and cleanup milter hooks
    inspect_internal(cfg, "bounce")      # may a notice of this class be inspected?

DESCRIPTION
    receive_override_options switches intake features off for one
    service, typically with "-o receive_override_options=..." on the
    smtpd that takes mail back from a content filter (after the filter)
    or on the one that hands it to the filter (before it):

        no_unknown_recipient_checks   smtpd: no reject_unlisted_recipient
                                      and smtpd_reject_unlisted_recipient
        no_address_mappings           cleanup: no canonical maps, virtual
                                      aliases, masquerading or automatic BCC
        no_header_body_checks         cleanup: no header_checks, body_checks
                                      and their MIME and nested variants
        no_milters                    no smtpd_milters / non_smtpd_milters

    The service and the cleanup inside it read the same configuration
    (the master.cf -o overrides included), so every part asks here.
    An unknown word is logged once per configuration and otherwise
    ignored: it switches nothing off.

    internal_mail_filter_classes names which notices mta makes itself
    (bounce: delivery status notifications; notify: the postmaster
    notices of smtpd and smtp) may be inspected like other mail: header
    and body checks, milters and the content filter. Empty by default,
    so notices are not inspected.

SECURITY
    Reads only the operator's configuration.
"""

from __future__ import annotations

from mta import log

NO_UNKNOWN_RECIPIENT_CHECKS = "no_unknown_recipient_checks"  # smtpd: no unlisted-recipient check
NO_ADDRESS_MAPPINGS = "no_address_mappings"  # cleanup: no canonical, virtual, masquerade, BCC
NO_HEADER_BODY_CHECKS = "no_header_body_checks"  # cleanup: no header/body checks
NO_MILTERS = "no_milters"  # no milters

RECEIVE_OPTIONS = frozenset(
    {NO_UNKNOWN_RECIPIENT_CHECKS, NO_ADDRESS_MAPPINGS, NO_HEADER_BODY_CHECKS, NO_MILTERS}
)
INTERNAL_CLASSES = frozenset({"bounce", "notify"})  # internal_mail_filter_classes words

_CACHE: dict[tuple[str, str], frozenset[str]] = {}


def parse_words(value: str, allowed: frozenset[str], param: str) -> frozenset[str]:
    """The known words of a comma or space separated value; unknown ones warned once."""
    key = (param, value)
    found = _CACHE.get(key)
    if found is not None:
        return found
    words = {w.lower() for w in value.replace(",", " ").split()}
    for bad in sorted(words - allowed):
        log.warning("%s: unknown option %s ignored", param, bad)
    found = _CACHE[key] = frozenset(words & allowed)
    return found


def receive_overrides(cfg) -> frozenset[str]:
    """The receive_override_options in force for cfg's service."""
    return parse_words(
        cfg.get("receive_override_options"), RECEIVE_OPTIONS, "receive_override_options"
    )


def milters_disabled(cfg) -> bool:
    """True when receive_override_options has no_milters: milters must not run."""
    return NO_MILTERS in receive_overrides(cfg)


def internal_classes(cfg) -> frozenset[str]:
    """internal_mail_filter_classes as a set of class names."""
    return parse_words(
        cfg.get("internal_mail_filter_classes"), INTERNAL_CLASSES, "internal_mail_filter_classes"
    )


def inspect_internal(cfg, klass: str) -> bool:
    """May a notice of klass ("bounce" or "notify") be inspected and filtered?"""
    return klass in internal_classes(cfg)
