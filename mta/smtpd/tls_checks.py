"""smtpd.tls_checks - the restrictions that look at the session's TLS

SYNOPSIS
    from mta.smtpd.tls_checks import TLS_SIMPLE, TLS_WITH_ARG, tls_restriction
    result = await tls_restriction(checks, ctx, name, arg, CHECK_OK, SMTPD_NAME_CLIENT)

DESCRIPTION
    permit_tls_all_clientcerts
        permits when the client certificate verified against
        smtpd_tls_CAfile / smtpd_tls_CApath.
    permit_tls_clientcerts
        permits when the certificate verified and
        permit_tls_all_clientcerts is the rule, or when its fingerprint
        or its public-key fingerprint (smtpd_tls_fingerprint_digest) is
        a key of relay_clientcerts; a listed fingerprint need not come
        from a trusted authority, as in Postfix.
    check_ccert_access type:table
        looks both fingerprints up in an access table; the result is
        an access action, its reply subject "Client certificate".
    reject_plaintext_session
        refuses a session without TLS with plaintext_reject_code
        (450) 4.7.1 "Session encryption is required".

    Without TLS, or without a certificate, the permits and the table
    have no opinion.

SECURITY
    Decides relaying for clients by their certificates: a permit needs
    a verified certificate or a fingerprint the administrator listed.
"""

from __future__ import annotations

from mta.maps import Maps

TLS_SIMPLE = frozenset(
    {"permit_tls_clientcerts", "permit_tls_all_clientcerts", "reject_plaintext_session"}
)
TLS_WITH_ARG = frozenset({"check_ccert_access"})
SMTPD_NAME_CCERT = "Client certificate"  # reply subject, as Postfix words it


def _relay_clientcerts(checks) -> Maps:
    maps = getattr(checks, "_relay_clientcerts", None)
    if maps is None:
        maps = checks._relay_clientcerts = Maps.from_param(checks.cfg, "relay_clientcerts")
    return maps


async def tls_restriction(checks, ctx, name: str, arg, ok, client_subject: str):
    """One TLS restriction for SmtpdChecks: ok (its permit), a verdict, or None."""
    st = ctx.st
    peer = st.tls_peer
    client = f"{st.client_name}[{st.client_addr}]"
    if name == "reject_plaintext_session":
        if peer is not None:
            return None
        code = checks.cfg.get_int("plaintext_reject_code")
        return checks._reject(ctx, code, "4.7.1", client_subject, "Session encryption is required")
    if peer is None or not peer.present:
        return None
    prints = [peer.fingerprint, peer.pkey_fingerprint]
    if name == "permit_tls_all_clientcerts":
        return ok if peer.trusted else None
    if name == "permit_tls_clientcerts":
        table = _relay_clientcerts(checks)
        for fp in prints:
            try:
                found = table.lookup(fp)
            except Exception as exc:  # noqa: BLE001 - MapError or MapRetry, reported as Postfix does
                raise checks._lookup_error("relay_clientcerts", exc) from None
            if found is not None:
                return ok
        return None
    # check_ccert_access
    return await checks._search(ctx, arg, prints, client, SMTPD_NAME_CCERT)
