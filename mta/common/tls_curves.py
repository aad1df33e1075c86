"""common.tls_curves - tls_eecdh_auto_curves on a server or client context

SYNOPSIS
    from mta.common.tls_curves import set_auto_curves
    set_auto_curves(ctx, cfg.get_list("tls_eecdh_auto_curves"))   # TlsSetupError when none

DESCRIPTION
    tls_eecdh_auto_curves lists the key exchange groups (curves) to
    offer, best first. As in Postfix, each name is tried on its own and
    the ones OpenSSL does not know are skipped; none left is an error
    (TlsSetupError naming the parameter). smtpd applies the list at
    smtpd_tls_eecdh_grade = auto (smtpd/tls_library.py), the smtp and
    lmtp clients always (smtp/tls_verify.py), as Postfix does.

    Python's ssl sets one curve only, so the list goes to OpenSSL
    through common/tls_libssl.py; where the context's pointer does not
    check out, the first curve Python's ssl takes is set alone, with a
    warning.

SECURITY
    Administrator settings; runs before any peer speaks.
"""

from __future__ import annotations

import ssl

from mta import log
from mta.common import tls_libssl
from mta.common.tls_keys import TlsSetupError

CURVES_PARAM = "tls_eecdh_auto_curves"


def set_auto_curves(ctx: ssl.SSLContext, wanted: list[str]) -> list[str]:
    """Offer the curves of wanted that OpenSSL knows; the ones set. TlsSetupError when none."""
    usable = tls_libssl.set_groups(ctx, wanted)
    if usable is None:
        for curve in wanted:
            try:
                ctx.set_ecdh_curve(curve)
            except (ValueError, ssl.SSLError):
                continue
            log.warning(
                "%s: only the curve %s is used: no way to set a list here", CURVES_PARAM, curve
            )
            return [curve]
        usable = []
    if not usable:
        raise TlsSetupError(CURVES_PARAM, "", f"no curve OpenSSL can use: {' '.join(wanted)}")
    return usable
