"""smtpd.tls_library - the TLS library settings of main.cf on smtpd's context

SYNOPSIS
    from mta.smtpd.tls_library import configure_library
    configure_library(ctx, cfg)     # TlsSetupError names the parameter

DESCRIPTION
    tls_ssl_options turns OpenSSL options on and tls_disable_workarounds
    turns bug workarounds off (common/tls_options.py).

    tls_eecdh_auto_curves lists the key exchange groups (curves) of
    smtpd_tls_eecdh_grade = auto, best first (common/tls_curves.py, shared
    with the smtp client): names OpenSSL does not know are skipped, as in
    Postfix, and none left is an error.

SECURITY
    Administrator settings; runs as smtpd before any client speaks.
"""

from __future__ import annotations

import ssl

from mta.common.tls_curves import set_auto_curves
from mta.common.tls_options import disabled_workarounds, ssl_options
from mta.smtpd.tls_params import TlsSetupError


def _options(ctx: ssl.SSLContext, cfg) -> None:
    for param, parse in (("tls_ssl_options", ssl_options),
                         ("tls_disable_workarounds", disabled_workarounds)):  # fmt: skip
        try:
            bits = parse(cfg.get(param))
        except ValueError as exc:
            raise TlsSetupError(param, "", str(exc)) from None
        if param == "tls_ssl_options":
            ctx.options |= bits
        else:
            ctx.options &= ~bits


def configure_library(ctx: ssl.SSLContext, cfg) -> None:
    """tls_ssl_options, tls_disable_workarounds and (at grade auto) tls_eecdh_auto_curves."""
    _options(ctx, cfg)
    if cfg.get("smtpd_tls_eecdh_grade").strip().lower() == "auto":
        set_auto_curves(ctx, cfg.get_list("tls_eecdh_auto_curves"))
