"""smtpd.tls_params - smtpd's TLS protocols, ciphers and key exchange from main.cf

SYNOPSIS
    from mta.smtpd.tls_params import TlsSetupError, configure_context, mandatory
    configure_context(ctx, cfg)      # TlsSetupError names the parameter

DESCRIPTION
    TLS is mandatory (smtpd_tls_security_level = encrypt, or
    smtpd_tls_wrappermode = yes) or opportunistic (may). Mandatory TLS
    takes its protocols from smtpd_tls_mandatory_protocols and its
    cipher grade from smtpd_tls_mandatory_ciphers, and leaves out the
    ciphers of smtpd_tls_exclude_ciphers and of
    smtpd_tls_mandatory_exclude_ciphers; opportunistic TLS uses
    smtpd_tls_protocols, smtpd_tls_ciphers and smtpd_tls_exclude_ciphers.
    A grade is the OpenSSL list in tls_GRADE_cipherlist (common/tls_proto.py).
    The grades govern TLS 1.2 and older; TLS 1.3 suites are OpenSSL's.

    When smtpd asks for client certificates the anonymous (aNULL)
    ciphers are left out, as Postfix does.

    tls_preempt_cipherlist makes the server's order win.
    smtpd_tls_eecdh_grade: auto uses tls_eecdh_auto_curves (smtpd/tls_library.py), strong
    and ultra use the one curve in tls_eecdh_strong_curve or
    tls_eecdh_ultra_curve, none drops the ECDHE key exchange of TLS 1.2
    and older. smtpd_tls_dh1024_param_file names PEM DH parameters for
    DHE ciphers (without it there are none).

    Every problem raises TlsSetupError naming the parameter (and file).

SECURITY
    Reads administrator settings and the DH file, as the user smtpd
    starts as, before privileges are dropped.
"""

from __future__ import annotations

import ssl

from mta.common.tls_keys import TlsSetupError  # noqa: F401 - smtpd modules import it from here
from mta.common.tls_proto import (
    apply_protocols,
    check_exclusions,
    cipher_string,
    protocol_range,
)

EECDH_GRADES = ("auto", "strong", "ultra", "none")


def mandatory(cfg) -> bool:
    """Is TLS mandatory here (level encrypt, or wrapper mode)?"""
    level = cfg.get("smtpd_tls_security_level").strip().lower()
    return level == "encrypt" or cfg.get_bool("smtpd_tls_wrappermode")


def asks_for_certificate(cfg) -> bool:
    """smtpd_tls_ask_ccert, or smtpd_tls_req_ccert where TLS is mandatory."""
    return cfg.get_bool("smtpd_tls_ask_ccert") or requires_certificate(cfg)


def requires_certificate(cfg) -> bool:
    """smtpd_tls_req_ccert counts at level encrypt (and in wrapper mode) only, as in Postfix."""
    return cfg.get_bool("smtpd_tls_req_ccert") and mandatory(cfg)


def _protocols(ctx: ssl.SSLContext, cfg, must: bool) -> None:
    param = "smtpd_tls_mandatory_protocols" if must else "smtpd_tls_protocols"
    try:
        lo, hi = protocol_range(cfg.get(param))
        apply_protocols(ctx, lo, hi)
    except ValueError as exc:
        raise TlsSetupError(param, "", str(exc)) from None


def _ciphers(ctx: ssl.SSLContext, cfg, must: bool) -> None:
    param = "smtpd_tls_mandatory_ciphers" if must else "smtpd_tls_ciphers"
    excludes = ["smtpd_tls_exclude_ciphers"]
    if must:
        excludes.append("smtpd_tls_mandatory_exclude_ciphers")
    for name in excludes:
        try:
            check_exclusions(cfg.get(name))
        except ValueError as exc:
            raise TlsSetupError(name, "", str(exc)) from None
    try:
        text = cipher_string(cfg, cfg.get(param), " ".join(cfg.get(n) for n in excludes))
    except ValueError as exc:
        raise TlsSetupError(param, "", str(exc)) from None
    if asks_for_certificate(cfg):
        text += ":!aNULL"  # an anonymous cipher cannot carry a client certificate
    if cfg.get("smtpd_tls_eecdh_grade").strip().lower() == "none":
        text += ":!kECDHE"  # no ephemeral elliptic-curve key exchange
    try:
        ctx.set_ciphers(text)
    except ssl.SSLError:
        raise TlsSetupError(param, "", f"no cipher can be selected from {text}") from None


def _eecdh(ctx: ssl.SSLContext, cfg) -> None:
    param = "smtpd_tls_eecdh_grade"
    grade = cfg.get(param).strip().lower()
    if grade not in EECDH_GRADES:
        raise TlsSetupError(
            param, "", f"unknown grade: {grade} (expected auto, strong, ultra or none)"
        )
    if grade in ("strong", "ultra"):
        curve_param = f"tls_eecdh_{grade}_curve"
        curve = cfg.get(curve_param).strip()
        try:
            ctx.set_ecdh_curve(curve)
        except (ValueError, ssl.SSLError):
            raise TlsSetupError(curve_param, "", f"unknown curve: {curve}") from None


def _dh_params(ctx: ssl.SSLContext, cfg) -> None:
    param = "smtpd_tls_dh1024_param_file"
    path = cfg.get(param).strip()
    if not path:
        return
    try:
        ctx.load_dh_params(path)
    except ssl.SSLError as exc:  # before OSError, of which it is a kind
        raise TlsSetupError(param, path, f"no DH parameters: {exc.reason or exc}") from None
    except OSError as exc:
        raise TlsSetupError(param, path, exc.strerror or str(exc)) from None


def configure_context(ctx: ssl.SSLContext, cfg) -> None:
    """Protocols, ciphers, curves and DH parameters of smtpd's context from cfg."""
    must = mandatory(cfg)
    _protocols(ctx, cfg, must)
    _eecdh(ctx, cfg)
    _ciphers(ctx, cfg, must)
    _dh_params(ctx, cfg)
    if cfg.get_bool("tls_preempt_cipherlist"):
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:  # Python's contexts prefer their own order unless told otherwise
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
