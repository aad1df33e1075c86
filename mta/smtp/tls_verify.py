"""smtp.tls_verify - the client's TLS context and the check of the server's certificate

SYNOPSIS
    from mta.smtp.tls_verify import client_context, check_peer, client_setup_problems
    ctx = client_context(tls, policy)          # cached; TlsSetupError names param and file
    outcome = check_peer(tls, policy, ssl_object, hostname, nexthop)
    outcome.status      # "Untrusted", "Trusted" or "Verified"
    outcome.failure     # "" or "Server certificate not verified"
    established_text(outcome.status, relay, ssl_object)
    problems = client_setup_problems(cfg)      # [(param, text)] for mta check

DESCRIPTION
    client_context() builds the ssl.SSLContext for a policy
    (mta/smtp/tls_policy.py): the protocol range and the cipher list of
    its level (anonymous ciphers excluded where the certificate is
    checked), the client certificates, and for "verify" and "secure"
    the trust store: smtp_tls_CAfile and smtp_tls_CApath, with the
    system's default CAs added when tls_append_default_CA is set (and
    a CA file or directory is given, as in Postfix); trust-anchor files
    (smtp_tls_trust_anchor_file, tafile=) replace them and may hold
    intermediate certificates. Those levels verify the chain in the
    handshake (CERT_REQUIRED): an untrusted, expired or not yet valid
    certificate ends the handshake with ssl.SSLCertVerificationError,
    which the client reports as "Server certificate not trusted".
    Host names are checked here, not by the library. At those levels
    smtp_tls_scert_verifydepth bounds the chain (1: a trusted authority
    signed the server's certificate itself; common/tls_libssl.py sets it):
    a longer chain is "not trusted" too; a depth below 1, or one that
    cannot be set (other than the default, which then warns), leaves
    the context unbuilt, so mail that needs it is deferred. Every
    context offers the key exchange groups of tls_eecdh_auto_curves
    that OpenSSL knows (common/tls_curves.py), as smtpd does.

    check_peer() judges a completed handshake. At "verify" and
    "secure" the certificate's DNS names (subjectAltName; the common
    name only when there is none) must match one of the policy's
    patterns: a name ("mx.example.com", equal ignoring case), a
    sub-domain pattern (".example.com": any name below it) or a
    strategy: "hostname" (the server's host name, usually from an MX
    record), "nexthop" (the next-hop domain before any MX look-up,
    without brackets and port) and "dot-nexthop" (names below it);
    for LMTP over a UNIX-domain socket both are $myhostname. A "*" in
    a certificate name matches only as the whole leftmost label; it
    spans several labels when tls_wildcard_matches_multiple_labels is
    set (Postfix's default), one otherwise. At "fingerprint" the
    digest (smtp_tls_fingerprint_digest) of the certificate or of its
    public key must be one of the policy's fingerprints; no CA is
    consulted. Anything else is "Server certificate not verified".

    client_setup_problems() builds the main.cf contexts of the smtp and
    lmtp clients as they will, for mta check and start: wrapper mode
    under a level weaker than encrypt (used as encrypt), an unreadable
    CA file, a client key that does not match its certificate, an
    unknown protocol, cipher grade or digest, each with its parameter
    (warnings: the clients then defer mail that needs TLS, with
    "TLS is required, but our TLS engine is unavailable", and send
    the rest in plain text).

    established_text() is the smtp_tls_loglevel line: "Verified TLS
    connection established to mx.example.com[192.0.2.1]:25: TLSv1.3
    with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)".

SECURITY
    The server's certificate is untrusted input: it is parsed by the
    TLS library and by cryptography's DER parser only, and its names
    are compared, never interpreted.

STANDARDS
    RFC 6125 (names in certificates), RFC 7672 section 3.2.3 (wildcards
    in SMTP), RFC 5280.

SEE ALSO
    mta/smtp/tls_policy.py (levels and the policy table),
    mta/smtp/tls_proto.py (protocol and cipher syntax).
"""

from __future__ import annotations

import hashlib
import os
import ssl
import warnings
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mta import log
from mta.common import tls_libssl
from mta.common.tls_cert import one_label_wildcard
from mta.common.tls_curves import set_auto_curves
from mta.common.tls_keys import TlsSetupError, load_cert_pairs, load_chain_files
from mta.common.tls_options import disabled_workarounds, ssl_options
from mta.smtp.tls_policy import (
    TLS_CA_LEVELS,
    TLS_WRAPPER_WEAK,
    ClientTls,
    TlsPolicy,
    obsolete_level,
    sni_name_ok,
)
from mta.smtp.tls_proto import cipher_string, protocol_range

TLS_NOT_TRUSTED = "Server certificate not trusted"  # Postfix's reason texts (4.7.5)
TLS_NOT_VERIFIED = "Server certificate not verified"
TLS_ENGINE_UNAVAILABLE = "TLS is required, but our TLS engine is unavailable"
SCERT_VERIFYDEPTH_DEFAULT = 9  # Postfix's smtp_tls_scert_verifydepth
OPENSSL_VERIFY_DEPTH = 100  # OpenSSL's own limit when none is set


@dataclass
class PeerOutcome:
    status: str  # "Untrusted", "Trusted" or "Verified" (the log line's first word)
    failure: str = ""  # the reason to defer with, "" when the level is met
    detail: str = ""  # what was compared, for the log


# ------------------------------------------------------------------ contexts
def client_context(tls: ClientTls, policy: TlsPolicy) -> ssl.SSLContext:
    """The context for a policy, built once per configuration; TlsSetupError when it cannot be."""
    ca_level = policy.level in TLS_CA_LEVELS
    key = (
        ca_level,
        policy.level == "fingerprint",
        policy.verifies,
        policy.protocols,
        policy.ciphers,
        policy.exclude,
        policy.tafiles if ca_level else (),
        policy.system_cas,
    )
    ctx = tls.contexts.get(key)
    if ctx is None:
        ctx = tls.contexts[key] = _build(tls, policy, ca_level)
        # what the context trusts and presents, beyond what it reports itself (a CA
        # directory is read lazily, a client certificate not shown): the TLS session
        # cache tells contexts apart by it (common/tls_session.py)
        # curves and the verification depth are not readable from the context either
        ctx.mta_identity = repr(  # type: ignore[attr-defined]
            (key, tls.ca_file, tls.ca_path, tls.append_default_ca, tls.chain_files, tls.cert_pairs,
             tls.auto_curves, tls.verify_depth if ca_level else "")
        )  # fmt: skip
    return ctx


def _build(tls: ClientTls, policy: TlsPolicy, ca_level: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # check_peer() matches the names, as the policy says
    _library(ctx, tls)
    proto = tls.param("tls_mandatory_protocols" if policy.mandatory else "tls_protocols")
    try:
        low, high = protocol_range(policy.protocols)
    except ValueError as exc:
        raise TlsSetupError(proto, "", str(exc)) from None
    try:
        with warnings.catch_warnings():  # TLSv1 and TLSv1.1 are what the setting asks for
            warnings.simplefilter("ignore", DeprecationWarning)
            if low is not None:
                ctx.minimum_version = low
            if high is not None:
                ctx.maximum_version = high
    except (ValueError, ssl.SSLError) as exc:
        raise TlsSetupError(proto, "", f"cannot set the protocol range: {exc}") from None
    grade = tls.param("tls_mandatory_ciphers" if policy.mandatory else "tls_ciphers")
    try:
        ctx.set_ciphers(
            cipher_string(policy.ciphers, policy.exclude, tls.cipherlists, policy.verifies)
        )
    except ValueError as exc:
        raise TlsSetupError(grade, "", str(exc)) from None
    except ssl.SSLError as exc:
        raise TlsSetupError(grade, "", f"no usable cipher: {exc.reason or exc}") from None
    if policy.level == "fingerprint" and tls.fingerprint_digest not in hashlib.algorithms_available:
        name = tls.param("tls_fingerprint_digest")
        raise TlsSetupError(name, "", f"unknown digest: {tls.fingerprint_digest}")
    if ca_level:
        ctx.verify_mode = ssl.CERT_REQUIRED
        _load_trust(ctx, tls, policy)
        _verify_depth(ctx, tls)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    _load_client_certs(ctx, tls)
    return ctx


def _library(ctx: ssl.SSLContext, tls: ClientTls) -> None:
    """tls_ssl_options, tls_disable_workarounds and tls_eecdh_auto_curves."""
    for param, text, parse in (
        ("tls_ssl_options", tls.ssl_options, ssl_options),
        ("tls_disable_workarounds", tls.disable_workarounds, disabled_workarounds),
    ):
        try:
            bits = parse(text)
        except ValueError as exc:
            raise TlsSetupError(param, "", str(exc)) from None
        ctx.options = ctx.options | bits if param == "tls_ssl_options" else ctx.options & ~bits
    ctx.options |= ssl.OP_NO_COMPRESSION
    set_auto_curves(ctx, list(tls.auto_curves))


def _verify_depth(ctx: ssl.SSLContext, tls: ClientTls) -> None:
    """smtp_tls_scert_verifydepth on a context that verifies the chain."""
    param = tls.param("tls_scert_verifydepth")
    try:
        depth = int(tls.verify_depth)
    except ValueError:
        raise TlsSetupError(param, "", f"not a number: {tls.verify_depth}") from None
    if depth < 1:  # OpenSSL always lets a trust anchor sign the certificate
        raise TlsSetupError(param, "", f"depth {depth} cannot be enforced; the least is 1")
    why = tls_libssl.set_verify_depth(ctx, depth)
    if not why:
        return
    if depth < OPENSSL_VERIFY_DEPTH + 1 and depth != SCERT_VERIFYDEPTH_DEFAULT:
        raise TlsSetupError(param, "", f"cannot set the verification depth: {why}")
    log.warning("%s = %d is not enforced (OpenSSL's own limit stays): %s", param, depth, why)


def _load_trust(ctx: ssl.SSLContext, tls: ClientTls, policy: TlsPolicy) -> None:
    if policy.tafiles:
        for path in policy.tafiles:
            _load_locations(ctx, tls.param("tls_trust_anchor_file"), cafile=path)
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # an anchor need not be a root
        return
    if tls.ca_file:
        _load_locations(ctx, tls.param("tls_CAfile"), cafile=tls.ca_file)
    if tls.ca_path:
        if not os.path.isdir(tls.ca_path):
            raise TlsSetupError(tls.param("tls_CApath"), tls.ca_path, "not a directory")
        _load_locations(ctx, tls.param("tls_CApath"), capath=tls.ca_path)
    if policy.system_cas or (tls.append_default_ca and (tls.ca_file or tls.ca_path)):
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)


def _load_locations(ctx: ssl.SSLContext, param: str, **where: str) -> None:
    path = next(iter(where.values()))
    try:
        ctx.load_verify_locations(**where)
    except ssl.SSLError as exc:
        raise TlsSetupError(param, path, f"cannot load certificates: {exc.reason or exc}") from None
    except OSError as exc:
        raise TlsSetupError(param, path, exc.strerror or str(exc)) from None


def _load_client_certs(ctx: ssl.SSLContext, tls: ClientTls) -> None:
    """smtp_tls_chain_files (key, then its chain, per algorithm), else the
    cert_file/key_file, dcert_file/dkey_file and eccert_file/eckey_file pairs."""
    if tls.chain_files:
        load_chain_files(ctx, tls.param("tls_chain_files"), list(tls.chain_files))
    else:
        load_cert_pairs(ctx, tls.cert_pairs)


def client_setup_problems(cfg) -> list[tuple[str, str]]:
    """What mta check says about the smtp and lmtp clients' TLS settings: [(param, message)]."""
    out = []
    for lmtp in (False, True):
        tls = ClientTls.of(cfg, lmtp)
        level_param = tls.param("tls_security_level")
        asked = cfg.get(level_param).strip().lower() or obsolete_level(cfg, lmtp)
        if tls.wrapper and asked in TLS_WRAPPER_WEAK:
            out.append(
                (
                    level_param,
                    f"{tls.param('tls_wrappermode')} requires {level_param} = encrypt or "
                    "stronger; using encrypt",
                )
            )
        for found in setup_problems(tls):
            if found not in out:
                out.append(found)
    return out


def setup_problems(tls: ClientTls) -> list[tuple[str, str]]:
    """What mta check says about one client's TLS settings: [(param, message)]."""
    if tls.level in ("", "none"):
        return []
    policy = tls.make_policy(tls.level)
    out = []
    if not sni_name_ok(tls.servername):
        out.append(
            (
                tls.param("tls_servername"),
                f"invalid SNI name: {tls.servername} (expected a DNS name in A-label form, "
                "hostname, nexthop or nothing); mail is deferred",
            )
        )
    if tls.chain_files:
        for cert_param, cert, *_ in tls.cert_pairs:
            if cert:
                why = f"ignored: {tls.param('tls_chain_files')} is set"
                out.append((cert_param, why))
    try:
        client_context(tls, policy)
    except TlsSetupError as exc:
        out.append((exc.param, f"TLS not available: {exc}"))
    if policy.level == "fingerprint" and not policy.match:
        out.append(
            (tls.param("tls_fingerprint_cert_match"), "no fingerprint: no server can be verified")
        )
    return out


# ------------------------------------------------------------------ the peer
def check_peer(
    tls: ClientTls, policy: TlsPolicy, ssl_object, hostname: str, nexthop: str
) -> PeerOutcome:
    """Judge the server's certificate after the handshake, as the policy's level says."""
    level = policy.level
    if level == "fingerprint":
        der = ssl_object.getpeercert(binary_form=True)
        if not der:
            return PeerOutcome("Untrusted", TLS_NOT_VERIFIED, "no certificate")
        found = fingerprints(der, tls.fingerprint_digest)
        if found & set(policy.match):
            return PeerOutcome("Verified")
        shown = ", ".join(sorted(found))
        return PeerOutcome("Untrusted", TLS_NOT_VERIFIED, f"fingerprint mismatch: {shown}")
    if level not in TLS_CA_LEVELS:
        return PeerOutcome("Untrusted")
    # the handshake verified the chain (CERT_REQUIRED): trusted; now the names
    names = certificate_names(ssl_object.getpeercert() or {})
    patterns = expand_patterns(policy.match, hostname, nexthop)
    for name in names:
        if any(name_matches(name, p, tls.wildcard_multi_label) for p in patterns):
            return PeerOutcome("Verified", "", name)
    return PeerOutcome(
        "Trusted",
        TLS_NOT_VERIFIED,
        f"certificate names {', '.join(names) or '(none)'} match none of "
        f"{', '.join(patterns) or '(nothing)'}",
    )


def fingerprints(der: bytes, digest: str) -> set[str]:
    """Lower-case hex digests of the certificate and of its public key (SubjectPublicKeyInfo)."""
    out = {hashlib.new(digest, der).hexdigest()}
    try:
        spki = (
            x509.load_der_x509_certificate(der)
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    except (ValueError, TypeError):
        return out
    out.add(hashlib.new(digest, spki).hexdigest())
    return out


def certificate_names(cert: dict) -> list[str]:
    """The DNS names of a certificate (getpeercert() form): subjectAltName, else the CN."""
    names = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
    if not names:
        for rdn in cert.get("subject", ()):
            names.extend(v for k, v in rdn if k == "commonName")
    return [n.rstrip(".").lower() for n in names if n]


def _ascii(name: str) -> str:
    name = name.strip().rstrip(".").lower()
    if name.isascii():
        return name
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


def expand_patterns(match: tuple[str, ...], hostname: str, nexthop: str) -> list[str]:
    """The match list with the strategies replaced by the names they stand for."""
    out: list[str] = []
    for word in match:
        low = word.lower()
        if low == "hostname":
            name = _ascii(hostname)
        elif low == "nexthop":
            name = _ascii(nexthop)
        elif low == "dot-nexthop":
            name = "." + _ascii(nexthop)
        else:
            name = ("." + _ascii(low[1:])) if low.startswith(".") else _ascii(low)
        if name not in out and name not in ("", "."):
            out.append(name)
    return out


def name_matches(cert_name: str, pattern: str, multi_label: bool = True) -> bool:
    """True when a certificate name satisfies one pattern (a name or ".suffix")."""
    if pattern.startswith("."):  # any name below the domain
        return len(cert_name) > len(pattern) and cert_name.endswith(pattern)
    if cert_name == pattern:
        return True
    if not cert_name.startswith("*.") or "*" in cert_name[1:]:
        return False
    parent = cert_name[1:]  # ".example.com"
    if parent.count(".") < 2:
        return False  # "*.com": too wide to mean anything
    if multi_label:
        return len(pattern) > len(parent) and pattern.endswith(parent)
    return one_label_wildcard(cert_name, pattern)


def established_text(status: str, relay: str, ssl_object) -> str:
    """The smtp_tls_loglevel line of a completed handshake, in Postfix's form."""
    name, _, bits = ssl_object.cipher()
    return (
        f"{status} TLS connection established to {relay}: "
        f"{ssl_object.version()} with cipher {name} ({bits}/{bits} bits)"
    )


def verify_error_text(relay: str, exc: ssl.SSLCertVerificationError) -> str:
    """The log line of a chain that did not verify."""
    return (
        f"certificate verification failed for {relay}: "
        f"num={exc.verify_code}:{exc.verify_message or exc.reason}"
    )
