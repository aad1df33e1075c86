"""smtpd.tls_library - the TLS library settings of main.cf on smtpd's context

SYNOPSIS
    from mta.smtpd.tls_library import configure_library
    configure_library(ctx, cfg)     # TlsSetupError names the parameter

DESCRIPTION
    tls_ssl_options turns OpenSSL options on and tls_disable_workarounds
    turns bug workarounds off (common/tls_options.py).

    tls_eecdh_auto_curves lists the key exchange groups (curves) of
    smtpd_tls_eecdh_grade = auto, best first; names OpenSSL does not
    know are skipped, as in Postfix, and none left is an error. Python's
    ssl sets one curve only, so the list goes to OpenSSL through ctypes
    (SSL_CTX_set1_groups_list on the context's SSL_CTX, checked against
    what Python reports); where that is not possible the first usable
    curve alone is set, with a warning.

SECURITY
    Administrator settings; runs as smtpd before any client speaks.
"""

from __future__ import annotations

import ssl

from mta import log
from mta.common.tls_options import disabled_workarounds, ssl_options
from mta.smtpd.tls_ccert import libssl_context
from mta.smtpd.tls_params import TlsSetupError

SSL_CTRL_SET_GROUPS_LIST = 92  # ssl.h: SSL_CTX_set1_groups_list() is this SSL_CTX_ctrl()


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


def _set_groups(lib, ptr: int, names: str) -> bool:
    ok = lib.SSL_CTX_ctrl(ptr, SSL_CTRL_SET_GROUPS_LIST, 0, names.encode("ascii")) == 1
    if not ok:
        lib.ERR_clear_error()  # the failed call's error must not reach Python's next one
    return ok


def _auto_curves(ctx: ssl.SSLContext, cfg) -> None:
    param = "tls_eecdh_auto_curves"
    wanted = [c for c in cfg.get_list(param) if c.isascii() and c.replace("-", "").isalnum()]
    found = libssl_context(ctx)
    if found is not None:
        lib, ptr = found
        usable = [c for c in wanted if _set_groups(lib, ptr, c)]
        if usable and _set_groups(lib, ptr, ":".join(usable)):
            return
    else:
        for curve in wanted:
            try:
                ctx.set_ecdh_curve(curve)
            except (ValueError, ssl.SSLError):
                continue
            log.warning("%s: only the curve %s is used: no way to set a list here", param, curve)
            return
    raise TlsSetupError(param, "", f"no curve OpenSSL can use: {cfg.get(param).strip()}")


def configure_library(ctx: ssl.SSLContext, cfg) -> None:
    """tls_ssl_options, tls_disable_workarounds and (at grade auto) tls_eecdh_auto_curves."""
    _options(ctx, cfg)
    if cfg.get("smtpd_tls_eecdh_grade").strip().lower() == "auto":
        _auto_curves(ctx, cfg)
