"""postscreen.footer - postscreen_reject_footer on postscreen's 4xx and 5xx replies

SYNOPSIS
    from mta.postscreen.footer import PscFooter
    footer = PscFooter(cfg)
    text = footer.apply("550 5.7.1 Service unavailable; ...", {"client_address": "192.0.2.1"})

DESCRIPTION
    smtpd's reply footer (mta/smtpd/footer.py: \\n, \\c, $client_address
    and the other attributes, the expansion filter) with postscreen's
    parameters: postscreen_reject_footer (by default the raw text of
    smtpd_reject_footer), postscreen_reject_footer_maps and
    postscreen_expansion_filter. postscreen knows the client address and
    port, the HELO name in its dummy engine, and its own host name.

SECURITY
    As smtpd/footer.py: client values pass the expansion filter.
"""

from __future__ import annotations

from mta.maps import Maps
from mta.smtpd.footer import ReplyFooter, unescape


def _raw_following(cfg, name: str, smtpd_name: str) -> str:
    """The raw text of name; its default "$smtpd_..." stands for smtpd's raw text."""
    value = cfg.raw(name) or ""
    if value.strip() in (f"${smtpd_name}", f"${{{smtpd_name}}}", f"$({smtpd_name})"):
        return cfg.raw(smtpd_name) or ""
    return value


class PscFooter(ReplyFooter):
    def __init__(self, cfg) -> None:  # noqa: D107 - smtpd's state, postscreen's parameters
        self.template = _raw_following(cfg, "postscreen_reject_footer", "smtpd_reject_footer")
        self.maps = Maps(cfg.get_list("postscreen_reject_footer_maps"), cfg)
        allowed = _raw_following(cfg, "postscreen_expansion_filter", "smtpd_expansion_filter")
        self.allowed = frozenset(unescape(allowed))
        self.hostname = cfg.get("myhostname")
        self.warned: set[str] = set()
